"""The topology strategies: SET prunes the weights closest to zero and
regrows as many at random after every epoch (``on_epoch_end(model, epoch,
epochs)``, ``epoch`` 1-based, returns the entries it adds to the epoch's
record); RigL regrows where the missing connections' gradient is largest,
every so many mini-batches (a step strategy: ``start`` gives the session the
training loop asks). The work happens in the core."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._validation import choice, nonnegative_int, number, positive_int
from .errors import CheckpointError, InvalidInputError
from .strategies import register


def layer_list(who: str, layers: Any) -> tuple[int, ...] | None:
    """``layers`` as a tuple of distinct layer indices (None stays None)."""
    if layers is None:
        return None
    if isinstance(layers, (str, bytes)) or not hasattr(layers, "__iter__"):
        raise InvalidInputError(f"{who} layers must be a list of layer indices, got {layers!r}")
    out = tuple(nonnegative_int(f"{who} layers entry", k) for k in layers)
    if len(set(out)) != len(out):
        raise InvalidInputError(f"{who} layers lists a layer twice: {out}")
    return out


@register
@dataclass(frozen=True)
class SET:
    """Sparse Evolutionary Training (Mocanu et al. 2018).

    Every ``every`` epochs except the last, each sparse layer loses the
    fraction ``zeta`` of its positive weights closest to zero and the same
    fraction of its negative weights, and regrows as many connections at random
    empty positions with fresh weights and zero momentum. nnz is unchanged.

    ``layers``: the indices of the layers to evolve (layer 0 takes the
    input); by default every sparse layer. Dense layers are never evolved:
    in the paper's networks the output layer is dense (ε·(n_in+n_out) ≥
    n_in·n_out), so SET changes the hidden layers only.
    """

    zeta: float = 0.3
    every: int = 1
    layers: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "zeta", number("SET zeta", self.zeta, 0.0, 1.0))
        object.__setattr__(self, "every", positive_int("SET every", self.every))
        object.__setattr__(self, "layers", layer_list("SET", self.layers))

    def on_epoch_end(self, model: Any, epoch: int, epochs: int) -> dict[str, Any]:
        if epoch >= epochs or epoch % self.every != 0:
            return {}
        layers = None if self.layers is None else list(self.layers)
        steps = model._net.evolve_set(self.zeta, layers)
        return {"set_regrown": int(sum(p + n for p, n in steps))}


@register
@dataclass(frozen=True)
class RigL:
    """Rigging the Lottery (Evci et al. 2020), truly sparse: every
    ``every_steps`` mini-batches, each sparse layer prunes as :class:`SET`
    does (the fraction ``zeta`` of its positive and of its negative weights
    closest to zero) and grows as many connections where the gradient of the
    missing connections is largest, never holding an n_in × n_out array.

    - ``mode="candidates"`` (default): ``candidates`` × (connections to grow)
      missing positions are drawn uniformly when the window opens, their
      gradients summed over the last ``accumulate`` mini-batches before the
      update, and the best grow. Memory: one float and one position per
      candidate.
    - ``mode="exact"``: every missing position, found by a streamed search
      over the window's activations and errors (for small layers, and to
      check the candidates).

    ``zeta`` decays by a cosine to 0 at ``stop_step`` (no update from
    there); ``stop_step=None`` keeps it constant. Grown connections start at
    zero (``init="gradient"``: one SGD step of their gradient, −η·g) with
    zero optimizer state, and are not pruned by the next update. ``layers``:
    the layers to evolve (default: all; a dense layer has nothing to grow).
    Draws and ties depend on (seed, step, layer) only: the same result on any
    thread count. Runs between mini-batches inside the compiled core.
    """

    zeta: float = 0.3
    every_steps: int = 100
    stop_step: int | None = None
    candidates: float = 4.0
    accumulate: int = 1
    mode: str = "candidates"
    init: str = "zero"
    layers: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "zeta", number("RigL zeta", self.zeta, 0.0, 1.0))
        set_(self, "every_steps", positive_int("RigL every_steps", self.every_steps))
        if self.stop_step is not None:
            set_(self, "stop_step", positive_int("RigL stop_step", self.stop_step))
        set_(self, "candidates", number("RigL candidates", self.candidates, 1.0, 1e9))
        set_(self, "accumulate", positive_int("RigL accumulate", self.accumulate))
        if self.accumulate > self.every_steps:
            raise InvalidInputError(f"RigL accumulate={self.accumulate} must be at most "
                                    f"every_steps={self.every_steps}: a window ends at its update")
        set_(self, "mode", choice("RigL mode", self.mode, ("candidates", "exact")))
        set_(self, "init", choice("RigL init", self.init, ("zero", "gradient")))
        set_(self, "layers", layer_list("RigL", self.layers))

    def zeta_at(self, step: int) -> float:
        """The fraction pruned by the update at ``step``."""
        if self.stop_step is None:
            return self.zeta
        if step >= self.stop_step:
            return 0.0
        return self.zeta / 2 * (1 + math.cos(math.pi * step / self.stop_step))

    def update_after(self, step: int) -> int | None:
        """The first update after ``step`` (None: no more)."""
        t = (step // self.every_steps + 1) * self.every_steps
        return None if self.stop_step is not None and t >= self.stop_step else t

    def layer_indices(self, n_layers: int) -> list[int]:
        """The layers an update evolves in a network of ``n_layers`` layers."""
        bad = [k for k in (self.layers or ()) if k >= n_layers]
        if bad:
            raise InvalidInputError(f"RigL layers {bad} do not exist: the model has {n_layers} "
                                    f"layers (0..{n_layers - 1})")
        return list(range(n_layers) if self.layers is None else self.layers)

    def open_window(self, net: Any, update: int, seed: int | None = None) -> None:
        """Opens ``net``'s window for the update at step ``update``."""
        candidates = self.candidates if self.mode == "candidates" else None
        layers = self.layer_indices(len(net.sizes) - 1)
        net.rigl_open(layers, self.zeta_at(update), update, candidates, seed)

    def start(self, model: Any, X: np.ndarray, y: np.ndarray) -> RigLSession:
        return RigLSession(self, model)


class RigLSession:
    """What :class:`RigL` keeps during one ``fit``: the previous update's
    grown connections (kept from the next prune) and the epoch's totals. The
    open window itself lives in the compiled network; a checkpoint saves
    both."""

    def __init__(self, s: RigL, model: Any, step: int | None = None, seed: int | None = None) -> None:
        """``step``: the training step now (default: the network's);
        ``seed``: the key of the draws (default: the network's seed)."""
        self.s, self.net, self.seed = s, model._net, seed
        s.layer_indices(len(model.sizes) - 1)  # (names a layer that does not exist)
        self.keep: dict[int, np.ndarray] = {}
        self.totals = {"grown": 0, "updates": 0, "seconds": 0.0}
        step = int(self.net.run_state[2]) if step is None else step
        due = s.update_after(step)
        if due is not None and due - s.accumulate <= step and self.net.rigl_window() is None:
            self._open(due)  # a new fit starts inside a window: it gathers what is left of it

    def _open(self, update: int) -> None:
        self.s.open_window(self.net, update, self.seed)

    @property
    def window_step(self) -> int:
        """The step of the update the open window prepares (0: none open)."""
        window = self.net.rigl_window()
        return 0 if window is None else int(window[0])

    def next_event(self, step: int) -> int | None:
        t = self.s.update_after(step)
        if t is None:
            return None
        opening = t - self.s.accumulate
        return opening if opening > step else t

    def event(self, step: int, epoch: int, rate: float = 0.0) -> dict[str, Any] | None:
        t0 = time.perf_counter()
        window = self.net.rigl_window()
        if window is not None and window[0] == step:
            self._update(step, rate)
        due = self.s.update_after(step)
        if due is not None and due - self.s.accumulate == step:
            self._open(due)
        self.totals["seconds"] += time.perf_counter() - t0
        return None

    def _update(self, step: int, rate: float) -> None:
        n = len(self.net.sizes) - 1
        keep = [self.keep.get(k, _NONE) for k in range(n)]
        init_lr = rate if self.s.init == "gradient" else None
        done = self.net.rigl_update(self.s.zeta_at(step), init_lr, keep)
        self.keep = {layer: grown for layer, _, _, grown, _ in done}
        self.totals["grown"] += int(sum(len(g) for _, _, _, g, _ in done))
        self.totals["updates"] += 1

    def epoch_record(self) -> dict[str, Any]:
        """The epoch's RigL entries for its record; the totals start over."""
        t = self.totals
        self.totals = {"grown": 0, "updates": 0, "seconds": 0.0}
        return {"rigl_regrown": t["grown"], "rigl_updates": t["updates"], "rigl_seconds": t["seconds"]}

    def train_options(self) -> dict[str, Any]:
        return {}

    def books(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {f"keep.{k}": v for k, v in self.keep.items()}
        data: dict[str, Any] = {"keep": sorted(self.keep), "window": None}
        window = self.net.rigl_window()
        if window is not None:
            step, batches, parts, seed = window
            data["window"] = {"step": int(step), "batches": int(batches), "layers": [], "seed": str(seed)}
            for i, part in enumerate(parts):
                entry = {"layer": int(part["layer"]), "shape": [int(v) for v in part["shape"]]}
                if "len" in part:
                    entry["len"] = int(part["len"])
                data["window"]["layers"].append(entry)
                for name in ("positions", "sums", "a", "delta"):
                    if name in part:
                        arrays[f"window.{i}.{name}"] = part[name]
        return data, arrays

    def restore(self, data: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        try:
            self.keep = {int(k): np.ascontiguousarray(arrays[f"keep.{k}"], dtype=np.uint64)
                         for k in data["keep"]}
            window = data["window"]
            if window is not None:
                parts = []
                for i, entry in enumerate(window["layers"]):
                    part = {"layer": int(entry["layer"]), "shape": tuple(int(v) for v in entry["shape"])}
                    if "len" in entry:
                        part["len"] = int(entry["len"])
                    for name in ("positions", "sums", "a", "delta"):
                        key = f"window.{i}.{name}"
                        if key in arrays:
                            dtype = np.uint64 if name == "positions" else np.float32
                            part[name] = np.ascontiguousarray(arrays[key], dtype=dtype)
                    parts.append(part)
                window = (int(window["step"]), int(window["batches"]), parts, int(window["seed"]))
            self.net.set_rigl_window(window)
        except (KeyError, TypeError, ValueError, InvalidInputError) as e:
            raise CheckpointError(f"the checkpoint's RigL books are invalid: {e}") from None

    def close(self, model: Any) -> None:
        self.net.set_rigl_window(None)  # later backward passes gather nothing


_NONE = np.zeros(0, dtype=np.uint64)
