"""The model file: an uncompressed ``.npz`` archive (no pickled objects) of
each layer's arrays, the random state and a JSON ``meta`` entry (the
network's metadata, the model's configuration and history; a checkpoint's
progress lives in the configuration). Written one layer at a time, read with
every array checked.

A path ending in ``.safetensors`` holds the same named arrays as a
safetensors file (the ``safetensors`` package, an optional extra), the JSON
in its header's metadata under ``sparse_mlp``; read through the same checks.
The safetensors writer takes all arrays at once, so that format holds a copy
of the model while it is written."""

from __future__ import annotations

import contextlib
import json
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _core, _netstate
from .errors import CheckpointError, InvalidInputError
from .files import write_npz
from .formats import UNREADABLE_ARCHIVE, describe_file
from .memory import require

FORMAT = "sparse_mlp.model"
FORMAT_VERSION = 1
SAFETENSORS = ".safetensors"
_SAFETENSORS_KEY = "sparse_mlp"


def format_of(path: str | os.PathLike) -> str:
    """``"safetensors"`` for a path ending in ``.safetensors``, else ``"npz"``."""
    return "safetensors" if os.fspath(path).lower().endswith(SAFETENSORS) else "npz"


def _safetensors() -> Any:
    try:
        import safetensors.numpy
    except ImportError:
        raise InvalidInputError(
            "the .safetensors format needs the safetensors package: pip install safetensors "
            "(or the extra: pip install \"sparse_mlp[safetensors]\")") from None
    return safetensors

@dataclass
class Saved:
    """What a model file holds: the network, the model's configuration and
    history, and the extra arrays (a checkpoint's recycling books)."""

    net: _core.Network
    config: dict[str, Any]
    history: list[dict[str, Any]]
    epochs_trained: int
    extra: dict[str, np.ndarray]


def _json_scalar(value: Any) -> Any:
    """numpy scalars and arrays that callbacks may leave in history records."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a model file")


def write(f: Any, net: _core.Network, config: dict[str, Any], history: list[dict[str, Any]],
          epochs_trained: int, extra: dict[str, np.ndarray] | None = None, fmt: str = "npz") -> None:
    """Writes the archive to the open file ``f``, fetching each layer from the
    core only when it is written: saving an ``npz`` holds one layer's copy at
    a time, not the model's (a checkpoint of a 100M-connection model taken
    while training's buffers are allocated must not double it). ``fmt`` is
    ``"npz"`` or ``"safetensors"`` (see :func:`format_of`)."""
    package = _safetensors() if fmt == "safetensors" else None
    meta = _netstate.describe(net)
    rng_state = meta.pop("rng_state")
    meta.update(format=FORMAT, version=FORMAT_VERSION, epochs_trained=epochs_trained, config=config,
                history=history)
    text = json.dumps(meta, default=_json_scalar)

    def arrays() -> Iterator[tuple[str, np.ndarray]]:
        yield from (extra or {}).items()
        for i in range(len(meta["sizes"]) - 1):
            st = _netstate.layer(net, i)
            for k in _netstate.LAYER_ARRAYS + _netstate.SECOND_ARRAYS:
                if k in st:
                    yield f"layer{i}.{k}", st[k]
            del st
        if package is None:
            yield "meta", np.frombuffer(text.encode(), dtype=np.uint8)
        yield "rng_state", np.array(rng_state, dtype=np.uint64)

    if package is None:
        write_npz(f, arrays())
    else:
        tensors = {k: np.ascontiguousarray(a) for k, a in arrays()}
        f.write(package.numpy.save(tensors, metadata={_SAFETENSORS_KEY: text}))


class _SafetensorsFile:
    """A safetensors file seen as an npz archive is: ``files`` and ``z[name]``,
    its metadata as the ``meta`` entry."""

    def __init__(self, handle: Any, metadata: dict[str, str] | None) -> None:
        self._handle = handle
        self._meta = (metadata or {}).get(_SAFETENSORS_KEY)
        self.files = list(handle.keys()) + ([] if self._meta is None else ["meta"])

    def __contains__(self, name: str) -> bool:
        return name in self.files

    def __getitem__(self, name: str) -> np.ndarray:
        if name == "meta" and self._meta is not None:
            return np.frombuffer(self._meta.encode(), dtype=np.uint8)
        if name not in self.files:
            raise KeyError(f"{name} is not in the file")
        return self._handle.get_tensor(name)


@contextlib.contextmanager
def _opened_safetensors(source: Any, path: str) -> Iterator[Any]:
    """A safetensors model file, its failures as :class:`CheckpointError`."""
    st = _safetensors()
    try:
        if not isinstance(source, str):
            data = source.read()
            tensors = st.numpy.load(data)
            # the header's metadata: 8-byte length, then JSON
            n = int.from_bytes(data[:8], "little")
            metadata = json.loads(data[8:8 + n]).get("__metadata__")

            class _Loaded:
                def keys(self) -> list[str]:
                    return list(tensors)

                def get_tensor(self, name: str) -> np.ndarray:
                    return tensors[name]

            yield _SafetensorsFile(_Loaded(), metadata)
            return
        with st.safe_open(source, framework="numpy") as handle:
            yield _SafetensorsFile(handle, handle.metadata())
    except CheckpointError:
        raise
    except KeyError as e:
        raise CheckpointError(f"{path}: {e.args[0] if e.args else e}") from None
    except (st.SafetensorError, *UNREADABLE_ARCHIVE) as e:
        raise CheckpointError(f"{path} is not a readable safetensors model file: {e}") from None


@contextlib.contextmanager
def _opened(source: Any, path: str) -> Iterator[Any]:
    """``np.load`` of a model archive, its failures as :class:`CheckpointError`
    that say what the file is instead (never numpy's advice on pickles); a
    ``.safetensors`` path is opened as one."""
    if format_of(path) == "safetensors":
        with _opened_safetensors(source, path) as z:
            yield z
        return
    try:
        with np.load(source, allow_pickle=False) as z:
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ValueError("not an archive")
            yield z
    except CheckpointError:
        raise
    except UNREADABLE_ARCHIVE as e:
        if isinstance(source, str) and not zipfile.is_zipfile(source):
            raise CheckpointError(f"{path} is not a sparse_mlp model file: it is "
                                  f"{describe_file(source)}; expected an .npz archive written by "
                                  "SparseMLP.save or `sparse-mlp train --save`") from None
        detail = "" if "pickle" in str(e) else f" ({e})"
        raise CheckpointError(f"{path} is a damaged or truncated model file{detail}") from None


def _meta_of(z: Any, path: str) -> dict[str, Any]:
    """The checked metadata of an open model archive."""
    if "meta" not in z.files:
        raise CheckpointError(f"{path} is not a sparse_mlp model file: it is {describe_file(path)}, "
                              "without a model's metadata")
    raw = z["meta"]
    if raw.dtype != np.uint8 or raw.ndim != 1:
        # (bytes() of a crafted integer would allocate that many bytes)
        raise CheckpointError(f"{path}: its metadata is not a byte string")
    try:
        meta = json.loads(raw.tobytes().decode())
    except (UnicodeDecodeError, ValueError):
        raise CheckpointError(f"{path}: its metadata is not JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a sparse_mlp model file (its metadata is another program's)")
    if meta.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format version {meta.get('version')!r}; this version of "
            f"sparse_mlp reads version {FORMAT_VERSION}"
        )
    if not isinstance(meta.get("sizes"), list) or len(meta["sizes"]) < 2:
        raise CheckpointError(f"{path}: its metadata has no layer sizes")
    return meta


def read(source: Any, path: str, extra_prefix: str | None = None) -> Saved:
    """The model in archive ``source`` (a path or a file object; ``path``
    names it in errors). Arrays whose names start with ``extra_prefix``
    are returned too. Crafted or damaged files raise :class:`CheckpointError`
    before anything large is allocated."""
    with _opened(source, path) as z:
        meta = _meta_of(z, path)
        layers = []
        for i in range(len(meta["sizes"]) - 1):
            layers.append({k: _netstate.check_array(k, z[f"layer{i}.{k}"], f"{path}: layer {i}")
                           for k in _netstate.LAYER_ARRAYS + _netstate.SECOND_ARRAYS
                           if k in _netstate.LAYER_ARRAYS or f"layer{i}.{k}" in z.files})
        rng = z["rng_state"]
        if rng.dtype != np.uint64 or rng.shape != (4,):
            raise CheckpointError(f"{path}: rng_state must be 4 uint64 values")
        extra = ({k: z[k] for k in z.files if k.startswith(extra_prefix)} if extra_prefix else {})
    try:
        check_fits(meta["sizes"], [st["row_idx"].size for st in layers], f"loading {path}")
        net = _netstate.build(dict(meta, rng_state=[int(v) for v in rng]), layers)
    except (InvalidInputError, TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path} holds an invalid model: {e}") from None
    config, history, trained = (meta.get("config", {}), meta.get("history", []),
                                meta.get("epochs_trained", 0))
    if (not isinstance(config, dict) or not isinstance(history, list)
            or not all(isinstance(r, dict) for r in history)
            or not isinstance(trained, int) or trained < 0):
        raise CheckpointError(f"{path} holds a malformed configuration or history")
    return Saved(net, config, history, trained, extra)


def check_fits(sizes: list[int], nnz: list[int], what: str) -> None:
    """Refuses a network the machine cannot hold, before the core allocates
    it: its parameters plus the largest layer again (initialization and
    conversions build one layer at a time)."""
    per_layer = [_core.parameter_bytes([a, b], [k]) for a, b, k in zip(sizes[:-1], sizes[1:], nnz)]
    require(sum(per_layer) + max(per_layer, default=0),
            f"{what} ({'-'.join(map(str, sizes))}, {sum(nnz)} connections)")


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of a model file (sizes, configuration, history, a
    checkpoint's progress under ``config["fit"]``), without reading its arrays."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"no model file at {path}")
    with _opened(path, path) as z:
        return _meta_of(z, path)


def describe_run(path: str | os.PathLike) -> str:
    """What a file that is in the way holds, in a few words: a checkpoint's
    progress, a model's epochs, or what kind of file it is."""
    try:
        meta = read_meta(path)
    except CheckpointError:
        return describe_file(os.fspath(path))
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    progress = config.get("fit")
    if isinstance(progress, dict) and "done" in progress:
        total = progress.get("plan", {}).get("epochs", "?")
        state = "finished" if progress.get("finished") else "unfinished"
        return f"the checkpoint of a run at epoch {progress['done']} of {total}, {state}"
    return f"a model trained for {meta.get('epochs_trained', 0)} epochs"
