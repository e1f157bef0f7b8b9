"""The one codec of a compiled network's state: metadata (JSON-able: sizes,
activations, loss, dropout, init, precision, the random state and counters) plus each
layer's arrays, and back. Model files, checkpoints and the messages of
data-parallel training all go through it; nothing else calls
``_core.Network.from_state``."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core
from .errors import InvalidInputError

# A layer's arrays, in the order files store them.
LAYER_ARRAYS = ("col_ptr", "row_idx", "values", "momentum", "bias", "bias_momentum")
# Adam's second moments, present when the optimizer keeps them.
SECOND_ARRAYS = ("second", "bias_second")
# The dtypes each array may have (files before row indices were stored in
# 32 bits hold int64 ones); everything else is float32.
INDEX_DTYPES = {"col_ptr": (np.int64,), "row_idx": (np.uint32, np.int64)}
META_KEYS = ("sizes", "activations", "loss", "output_activation", "dropout", "init", "seed",
             "rng_state", "step", "topology_version")


def describe(net: _core.Network) -> dict[str, Any]:
    """The network's metadata (everything but the layers' arrays)."""
    seed, rng_state, step, topology_version = net.run_state
    loss, output = net.loss
    return {
        "sizes": list(net.sizes), "nnz": list(net.layer_nnz),
        "activations": [list(a) for a in net.activations], "loss": loss,
        "output_activation": output, "dropout": float(net.dropout), "init": net.init,
        "seed": seed, "rng_state": list(rng_state), "step": step,
        "topology_version": topology_version,
        "optimizer": net.optimizer_state[0], "optimizer_steps": net.optimizer_state[1],
        "precision": net.precision,
    }


def layer(net: _core.Network, i: int, momentum: bool = True) -> dict[str, Any]:
    """Layer ``i``'s arrays (copies; row indices uint32 as the core holds
    them), without the optimizer's moments when ``momentum`` is False."""
    st = net.layer_state(i)
    if not momentum:
        for k in ("momentum", "bias_momentum", *SECOND_ARRAYS):
            st.pop(k, None)
    return st


def build(meta: dict[str, Any], layers: list[dict[str, Any]]) -> _core.Network:
    """The network of ``meta`` (as :func:`describe` makes it) and ``layers``
    (as :func:`layer` makes them; a missing momentum is zero, and layers
    without their moments start the optimizer afresh; files written before
    the precision was recorded are float32). Every array is checked by the
    core; anything malformed raises InvalidInputError."""
    try:
        missing = [k for k in META_KEYS if k not in meta]
        if missing:
            raise InvalidInputError(f"the network's metadata lacks {missing}")
        sizes = meta["sizes"]
        if not isinstance(sizes, list) or len(sizes) != len(layers) + 1:
            raise InvalidInputError(f"{len(layers)} layers do not fit the sizes {sizes!r}")
        optimizer, steps = meta.get("optimizer", "sgd"), meta.get("optimizer_steps", 0)
        if any("momentum" not in st for st in layers):
            optimizer, steps = "sgd", 0
        full = []
        for i, st in enumerate(layers):
            st = {**st, "n_in": sizes[i], "n_out": sizes[i + 1]}
            for k in ("momentum", "bias_momentum"):
                if k not in st:
                    st[k] = np.zeros(np.shape(st["values" if k == "momentum" else "bias"]), np.float32)
            full.append(st)
        net = _core.Network.from_state(
            full, [(str(kind), float(slope)) for kind, slope in meta["activations"]],
            meta["loss"], meta["output_activation"], float(meta["dropout"]), meta["init"],
            int(meta["seed"]), [int(v) for v in meta["rng_state"]], int(meta["step"]),
            int(meta["topology_version"]), str(optimizer), int(steps))
        net.set_precision(str(meta.get("precision", "float32")))
        return net
    except InvalidInputError:
        raise
    except (TypeError, ValueError, KeyError, OverflowError) as e:
        raise InvalidInputError(f"cannot build the network: {e}") from None


def check_array(name: str, a: np.ndarray, where: str) -> np.ndarray:
    """A layer array read from a file or a message, checked for its dtype and rank."""
    want = INDEX_DTYPES.get(name, (np.float32,))
    if a.dtype not in want or a.ndim != 1:
        raise InvalidInputError(f"{where}: array {name} has dtype {a.dtype} and {a.ndim} dimensions")
    return a


def pack(net: _core.Network, momentum: bool) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """The state as one message: metadata, all index arrays in one int64
    array and all values in one float32 array (with the momentum or not)."""
    meta = dict(describe(net), momentum=momentum)
    states = [layer(net, i, momentum) for i in range(len(meta["sizes"]) - 1)]
    idx = np.concatenate([a for st in states for a in (st["col_ptr"], st["row_idx"].astype(np.int64))])
    vals = np.concatenate([st[k] for st in states for k in _value_keys(meta) if k in st])
    return meta, idx, vals


def _value_keys(meta: dict[str, Any]) -> tuple[str, ...]:
    """The float arrays of each layer in a message, in order."""
    keys: tuple[str, ...] = ("values", "bias")
    if meta["momentum"]:
        keys += ("momentum", "bias_momentum")
        if meta.get("optimizer", "sgd") != "sgd":
            keys += SECOND_ARRAYS
    return keys


def unpack(meta: dict[str, Any], idx: np.ndarray, vals: np.ndarray) -> list[dict[str, Any]]:
    """The layers of a message made by :func:`pack`, as views into its arrays."""
    layers = []
    i = v = 0
    sizes, nnz = meta["sizes"], meta["nnz"]
    for n_out, k in zip(sizes[1:], nnz):
        st: dict[str, Any] = {}
        st["col_ptr"], i = idx[i:i + n_out + 1], i + n_out + 1
        st["row_idx"], i = idx[i:i + k], i + k
        for key in _value_keys(meta):
            size = n_out if key.startswith("bias") else k
            st[key], v = vals[v:v + size], v + size
        layers.append(st)
    if i != idx.size or v != vals.size:
        raise ValueError(f"it has {idx.size} indices and {vals.size} values; its metadata "
                         f"describes {i} and {v}")
    return layers
