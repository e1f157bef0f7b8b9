"""Neuron recycling (SPEC §7): now and then during training, pick the least
useful hidden neurons and give them new weights.

Strategies, passed to ``SparseMLP.fit(recycling=...)``:

- :class:`NeuronRecycling`: every ``every_steps`` steps, a fraction of each
  hidden layer chosen by magnitude ``‖in‖·‖out‖`` (or at random, or the
  largest, as controls), reinitialized in one of four ways, optionally with
  immunity from re-selection and a gradual interpolation.
- :class:`ReDo` (Sokar et al. 2023): recycles dormant neurons, whose mean
  absolute activation is at most ``tau`` times the layer's mean.
- :class:`ContinualBackprop` (Dohare et al. 2024): replaces mature neurons
  of lowest contribution utility at a steady rate.
- :class:`MidpointLoss`: no recycling; a plain gradient step after each
  update pulls every neuron's magnitude towards the layer's mean or median.

Selection, reinitialization and the statistics run in the compiled core;
the objects here only schedule them and keep the books (recycle counts,
immunity, ages). Recycled neurons keep their fan-in and fan-out counts, get
zero momentum and bias, and SET does not prune them until the next event
(longer with immunity).

:func:`compare` trains the same model with and without each strategy and
:func:`format_table` prints the result.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ._validation import choice, nonnegative_int, number, positive_int
from .errors import CheckpointError, InvalidInputError

if TYPE_CHECKING:
    from .model import SparseMLP

log = logging.getLogger("sparse_mlp")

_REINIT = ("initial", "matrix_normal", "copy", "zero")
_OUTGOING = ("reinit", "zero", "keep")
_PROBE_SEED = 0x5EED


def _check_common(s: Any, default_outgoing: str) -> None:
    """Validates the fields every recycling strategy has (frozen dataclass)."""
    set_ = object.__setattr__
    name = type(s).__name__
    set_(s, "every_steps", positive_int(f"{name} every_steps", s.every_steps))
    start = s.every_steps if s.start_step is None else s.start_step
    set_(s, "start_step", nonnegative_int(f"{name} start_step", start))
    if s.stop_step is not None:
        set_(s, "stop_step", nonnegative_int(f"{name} stop_step", s.stop_step))
    set_(s, "reinit", choice(f"{name} reinit", s.reinit, _REINIT))
    set_(s, "outgoing", choice(f"{name} outgoing", s.outgoing or default_outgoing, _OUTGOING))
    set_(s, "immunity", nonnegative_int(f"{name} immunity", s.immunity))
    set_(s, "interpolate_steps", nonnegative_int(f"{name} interpolate_steps", s.interpolate_steps))
    if s.reinit == "copy" and s.interpolate_steps:
        raise InvalidInputError(f"{name}: reinit='copy' places the donor's connections and "
                                "cannot be interpolated; use interpolate_steps=0")
    set_(s, "probe", nonnegative_int(f"{name} probe", s.probe))
    if s.layers is not None:
        layers = tuple(nonnegative_int(f"{name} layers entry", h) for h in s.layers)
        if len(set(layers)) != len(layers):
            raise InvalidInputError(f"{name} layers lists a hidden layer twice: {layers}")
        set_(s, "layers", layers)


@dataclass(frozen=True)
class NeuronRecycling:
    """The Neuron Recycling study's strategy (SPEC §7).

    Every ``every_steps`` training steps (mini-batches) from ``start_step``
    (default: ``every_steps``) until ``stop_step`` (default: the end), each
    hidden layer in ``layers`` (default: all) recycles ``fraction`` of its
    neurons (at least one), chosen by ``select``:

    - ``"magnitude"``: smallest ``‖incoming‖₂·‖outgoing‖₂``;
    - ``"random"``, ``"largest"``: controls for fair comparisons.

    ``reinit``: ``"initial"`` (the model's initial distribution),
    ``"matrix_normal"`` (normal with the matrix's mean and std),
    ``"copy"`` (a random kept neuron's connections plus noise of 0.05·std),
    ``"zero"``. ``outgoing``: ``"reinit"`` (default: like the incoming side),
    ``"zero"`` (fresh positions, zero weights) or ``"keep"`` (untouched).

    ``immunity=r``: a recycled neuron is not selected again in the next
    ``r`` events, and SET does not prune it meanwhile (always at least until
    the next event). ``interpolate_steps=T``: the neuron keeps its positions
    and its weights move from old to new over ``T`` steps, the new part
    training. ``probe`` training samples (fixed, 0 turns it off) measure the
    loss just before and after each event.

    >>> import numpy as np, sparse_mlp as sm
    >>> X = np.random.default_rng(0).normal(size=(256, 20)).astype(np.float32)
    >>> y = (X[:, 0] > 0).astype(int)
    >>> model = sm.SparseMLP([20, 64, 2], epsilon=5, seed=0)
    >>> history = model.fit(X, y, epochs=4, batch_size=32, verbose=0,
    ...                     recycling=sm.NeuronRecycling(fraction=0.05, every_steps=8))
    >>> sum(history[-1]["recycled"]) > 0
    True
    """

    select: str = "magnitude"
    fraction: float = 0.01
    every_steps: int = 1000
    start_step: int | None = None
    stop_step: int | None = None
    reinit: str = "initial"
    outgoing: str = "reinit"
    immunity: int = 0
    interpolate_steps: int = 0
    layers: Sequence[int] | None = None
    probe: int = 256

    def __post_init__(self) -> None:
        object.__setattr__(self, "select", choice("NeuronRecycling select", self.select,
                                                  ("magnitude", "random", "largest")))
        object.__setattr__(self, "fraction", number("NeuronRecycling fraction", self.fraction,
                                                    0.0, 1.0, low_open=True))
        _check_common(self, "reinit")

    def start(self, model: SparseMLP, X: np.ndarray, y: np.ndarray) -> _Run:
        return _Periodic(self, model, X, y)


@dataclass(frozen=True)
class ReDo:
    """Recycling Dormant neurons (Sokar et al. 2023).

    Every ``every_steps`` steps, a neuron is dormant when its mean absolute
    activation over the training samples since the last event is at most
    ``tau`` times the mean over its layer; dormant neurons get fresh incoming
    weights (``reinit``) and zero outgoing weights (``outgoing="zero"``).
    The activations come from the training forward passes (after dropout,
    whose scaling keeps the mean); gathering them costs nothing when no
    activation-based strategy runs.
    """

    tau: float = 0.025
    every_steps: int = 1000
    start_step: int | None = None
    stop_step: int | None = None
    reinit: str = "initial"
    outgoing: str = "zero"
    immunity: int = 0
    interpolate_steps: int = 0
    layers: Sequence[int] | None = None
    probe: int = 256

    def __post_init__(self) -> None:
        object.__setattr__(self, "tau", number("ReDo tau", self.tau, 0.0, math.inf))
        _check_common(self, "zero")

    def start(self, model: SparseMLP, X: np.ndarray, y: np.ndarray) -> _Run:
        return _Dormant(self, model, X, y)


@dataclass(frozen=True)
class ContinualBackprop:
    """Continual Backprop (Dohare et al. 2024).

    Each neuron's contribution utility is a running average (``decay``) of
    ``mean_batch |a_j| · Σ|outgoing_j|``, updated every training step. Every
    ``every_steps`` steps, neurons older than ``maturity`` steps are
    replaced at ``replacement_rate`` per eligible neuron per step (fractions
    carry over): the lowest bias-corrected utilities get fresh incoming and
    zero outgoing weights, and their age restarts. Young neurons are also
    kept from SET's prune. ``probe`` is off by default because events are
    frequent.
    """

    replacement_rate: float = 1e-4
    maturity: int = 100
    decay: float = 0.99
    every_steps: int = 10
    start_step: int | None = None
    stop_step: int | None = None
    reinit: str = "initial"
    outgoing: str = "zero"
    immunity: int = 0
    interpolate_steps: int = 0
    layers: Sequence[int] | None = None
    probe: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "replacement_rate", number(
            "ContinualBackprop replacement_rate", self.replacement_rate, 0.0, 1.0))
        object.__setattr__(self, "maturity",
                           nonnegative_int("ContinualBackprop maturity", self.maturity))
        object.__setattr__(self, "decay", number("ContinualBackprop decay", self.decay, 0.0, 1.0,
                                                 high_open=True))
        _check_common(self, "zero")

    def start(self, model: SparseMLP, X: np.ndarray, y: np.ndarray) -> _Run:
        return _Utility(self, model, X, y)


@dataclass(frozen=True)
class MidpointLoss:
    """An extra loss ``weight · Σ_n dist(M_n, stopgrad(midpoint(M)))`` over
    each hidden layer's neuron magnitudes ``M_n = ‖in_n‖·‖out_n‖``
    (``midpoint`` ``"mean"`` or ``"median"``, ``distance`` ``"l1"`` or
    ``"l2"``), applied after every update as a separate plain gradient step
    of the learning rate's size (no momentum), like decoupled weight decay.
    It recycles nothing; combine it with a recycling strategy in a list.
    """

    weight: float = 1.0
    midpoint: str = "mean"
    distance: str = "l2"

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", number("MidpointLoss weight", self.weight, 0.0, math.inf))
        object.__setattr__(self, "midpoint", choice("MidpointLoss midpoint", self.midpoint,
                                                    ("mean", "median")))
        object.__setattr__(self, "distance", choice("MidpointLoss distance", self.distance,
                                                    ("l1", "l2")))

    def start(self, model: SparseMLP, X: np.ndarray, y: np.ndarray) -> _Midpoint:
        return _Midpoint(self)


# ---------------------------------------------------------------- runs


class _Midpoint:
    """The run of a :class:`MidpointLoss`: only a training option."""

    def __init__(self, s: MidpointLoss) -> None:
        self.option = (s.weight, s.midpoint, s.distance)

    def next_event(self, step: int) -> int | None:
        return None

    def train_options(self) -> dict[str, Any]:
        return {"midpoint": self.option}

    def books(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {}

    def restore(self, data: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        pass

    def close(self, model: SparseMLP) -> None:
        pass


class _Run:
    """Book-keeping shared by the recycling strategies during one ``fit``:
    recycle counts, immunity, previous selections, SET protection, the loss
    probe and running totals of the events. The events' records themselves
    go into ``model.history`` (``recycle_events``); the books stay the same
    size however long the run, and so do checkpoints' copies of them."""

    tracking: tuple[bool, float | None] = (False, None)

    def __init__(self, s: Any, model: SparseMLP, X: np.ndarray, y: np.ndarray) -> None:
        self.s = s
        self.net = model._net
        n_hidden = len(model.sizes) - 2
        if n_hidden == 0:
            raise InvalidInputError(f"{type(s).__name__} needs a hidden layer; the model has none")
        layers = range(n_hidden) if s.layers is None else s.layers
        bad = [h for h in layers if h >= n_hidden]
        if bad:
            raise InvalidInputError(f"{type(s).__name__} layers {bad} do not exist: the model has "
                                    f"{n_hidden} hidden layers (0..{n_hidden - 1})")
        self.layers = list(layers)
        self.counts: dict[int, np.ndarray] = {}
        self.immune_until: dict[int, np.ndarray] = {}
        self.previous: dict[int, np.ndarray | None] = {}
        for h in self.layers:
            self._reset_layer(h)
        self.round = 0
        self.n_events = 0
        self.width_warned = False
        # per entry of self.layers: sum and count of the overlaps with the previous selection
        self.overlap_sum = [0.0] * len(self.layers)
        self.overlap_n = [0] * len(self.layers)
        self.probe = None
        if s.probe:
            pick = np.random.default_rng(_PROBE_SEED).permutation(len(y))[: s.probe]
            pick.sort()
            self.probe = (np.ascontiguousarray(X[pick]), np.ascontiguousarray(y[pick]))
        if self.tracking[0]:
            self.net.track_activity(True, self.tracking[1])

    def _width(self, h: int) -> int:
        return int(self.net.sizes[h + 1])

    def _reset_layer(self, h: int) -> None:
        n = self._width(h)
        self.counts[h] = np.zeros(n, dtype=np.int64)
        self.immune_until[h] = np.full(n, -1, dtype=np.int64)
        self.previous[h] = None

    def _sync_widths(self) -> None:
        """Importance Pruning with shrink renumbers neurons; the per-neuron
        books of a layer that changed width start over."""
        for h in self.layers:
            if self.counts[h].size != self._width(h):
                if not self.width_warned:  # once a run: pruning shrinks layers again and again
                    log.warning("Importance Pruning changed the width of hidden layers (layer %d: "
                                "%d -> %d neurons); the recycling statistics of a layer start over "
                                "each time it shrinks", h, self.counts[h].size, self._width(h))
                    self.width_warned = True
                self._reset_layer(h)

    def next_event(self, step: int) -> int | None:
        """The first training step after ``step`` at which to act."""
        s = self.s
        if step < s.start_step:
            nxt = max(s.start_step, 1)
        else:
            nxt = step + s.every_steps - (step - s.start_step) % s.every_steps
        if s.stop_step is not None and nxt > s.stop_step:
            return None
        return nxt

    def train_options(self) -> dict[str, Any]:
        return {}

    def eligible(self, h: int) -> np.ndarray:
        return self.immune_until[h] < self.round

    def pick(self, h: int, step: int) -> np.ndarray:
        raise NotImplementedError

    def protected(self, h: int) -> np.ndarray:
        return np.flatnonzero(self.immune_until[h] >= self.round)

    def _probe_loss(self) -> float | None:
        if self.probe is None:
            return None
        return float(self.net.evaluate(*self.probe)[0])

    def event(self, step: int, epoch: int) -> dict[str, Any] | None:
        """Selects and recycles; returns the event's record (None when no
        neuron was picked)."""
        self._sync_widths()
        self.round += 1
        picks = {h: self.pick(h, step) for h in self.layers}
        record: dict[str, Any] | None = None
        if any(ids.size for ids in picks.values()):
            record = self._recycle(picks, step, epoch)
        for h in self.layers:
            self.net.protect_neurons(h, self.protected(h).astype(np.int64))
        return record

    def _recycle(self, picks: dict[int, np.ndarray], step: int, epoch: int) -> dict[str, Any]:
        s = self.s
        loss_before = self._probe_loss()
        record: dict[str, Any] = {"step": step, "epoch": epoch, "layers": self.layers,
                                  "recycled": [], "overlap": [], "magnitude_recycled": [],
                                  "magnitude_kept": []}
        before = {h: self.net.neuron_magnitudes(h) for h in self.layers}
        for h in self.layers:
            ids, mags = picks[h], before[h]
            kept = np.ones(mags.size, dtype=bool)
            kept[ids] = False
            record["recycled"].append(int(ids.size))
            prev = self.previous[h]
            record["overlap"].append(
                None if prev is None or ids.size == 0
                else float(np.intersect1d(prev, ids).size / ids.size))
            record["magnitude_recycled"].append(float(mags[ids].mean()) if ids.size else None)
            record["magnitude_kept"].append(float(mags[kept].mean()) if kept.any() else None)
            if ids.size == 0:
                continue
            self.net.recycle_neurons(h, ids.astype(np.int64), s.reinit, s.outgoing,
                                     s.interpolate_steps)
            self.counts[h][ids] += 1
            self.immune_until[h][ids] = self.round + s.immunity
            self.previous[h] = ids
            self.recycled_hook(h, ids)
        record["loss_before"] = loss_before
        record["loss_after"] = self._probe_loss()
        self._count(record)
        return record

    def _count(self, record: dict[str, Any]) -> None:
        self.n_events += 1
        for i, overlap in enumerate(record["overlap"]):
            if overlap is not None:
                self.overlap_sum[i] += overlap
                self.overlap_n[i] += 1

    def recycled_hook(self, h: int, ids: np.ndarray) -> None:
        pass

    def books(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The run's state for a checkpoint: JSON data and per-neuron arrays."""
        data = {"round": self.round, "n_events": self.n_events,
                "overlap_sum": self.overlap_sum, "overlap_n": self.overlap_n}
        arrays: dict[str, np.ndarray] = {}
        for h in self.layers:
            arrays[f"counts.{h}"] = self.counts[h]
            arrays[f"immune_until.{h}"] = self.immune_until[h]
            previous = self.previous[h]
            if previous is not None:
                arrays[f"previous.{h}"] = previous
        return data, arrays

    def restore(self, data: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Takes back :meth:`books` of the same strategy on the same model."""
        self.round = _int(data, "round")
        if "events" in data:
            self._restore_event_list(data["events"])
        else:
            self.n_events = _int(data, "n_events")
            if self.n_events < 0:
                raise CheckpointError("the recycling books have no valid n_events")
            sums, ns = data.get("overlap_sum"), data.get("overlap_n")
            k = len(self.layers)
            if not (isinstance(sums, list) and len(sums) == k and isinstance(ns, list)
                    and len(ns) == k
                    and all(isinstance(v, float) and math.isfinite(v) for v in sums)
                    and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                            for v in ns)):
                raise CheckpointError("the recycling books have no valid overlap totals")
            self.overlap_sum, self.overlap_n = list(sums), list(ns)
        for h in self.layers:
            self.counts[h] = _ints(arrays, f"counts.{h}")
            self.immune_until[h] = _ints(arrays, f"immune_until.{h}", self.counts[h].size)
            self.previous[h] = _ints(arrays, f"previous.{h}") if f"previous.{h}" in arrays else None

    def _restore_event_list(self, events: Any) -> None:
        """Books written before the running totals kept every event's record."""
        k = len(self.layers)
        if not isinstance(events, list) or not all(
                isinstance(e, dict) and isinstance(e.get("overlap"), list)
                and len(e["overlap"]) == k
                and all(v is None or (isinstance(v, float) and math.isfinite(v))
                        for v in e["overlap"])
                for e in events):
            raise CheckpointError("the recycling books' event list is malformed")
        for e in events:
            self._count(e)

    def summary(self) -> dict[str, Any]:
        """Per hidden layer: each neuron's recycle count and current
        connection count (fan-in + fan-out), the recycle-count histogram
        (``recycle_count_histogram[k]`` neurons were recycled ``k`` times), how
        concentrated recycling was, and the histogram of the current neuron
        magnitudes."""
        layers = []
        for i, h in enumerate(self.layers):
            counts = self.counts[h]
            total = int(counts.sum())
            top = np.sort(counts)[::-1][: max(1, math.ceil(0.1 * counts.size))]
            mags = self.net.neuron_magnitudes(h) if counts.size == self._width(h) else np.zeros(0)
            fan_in = np.diff(self.net.layer_state(h)["col_ptr"])
            fan_out = np.bincount(self.net.layer_state(h + 1)["row_idx"], minlength=fan_in.size)
            hist, edges = np.histogram(mags, bins=20) if mags.size else (np.zeros(0), np.zeros(0))
            layers.append({
                "layer": h,
                "neurons": int(counts.size),
                "recycled": total,
                "distinct_neurons": int((counts > 0).sum()),
                "max_count": int(counts.max()) if counts.size else 0,
                "top_decile_share": float(top.sum() / total) if total else 0.0,
                "mean_overlap": self.overlap_sum[i] / self.overlap_n[i] if self.overlap_n[i] else None,
                "recycle_count_histogram": np.bincount(counts).tolist(),
                "recycle_counts": counts.tolist(),
                "connections": (fan_in + fan_out).tolist(),
                "magnitude_histogram": {"edges": edges.tolist(), "counts": hist.tolist()},
            })
        return {"strategy": repr(self.s), "events": self.n_events, "layers": layers}

    def close(self, model: SparseMLP) -> None:
        """Lifts the SET protection and stops gathering activations."""
        for h in self.layers:
            if h < len(model.sizes) - 2:
                self.net.protect_neurons(h, np.zeros(0, dtype=np.int64))
        if self.tracking[0]:
            self.net.track_activity(False)


class _Periodic(_Run):
    def pick(self, h: int, step: int) -> np.ndarray:
        s = self.s
        n = self._width(h)
        k = max(1, round(s.fraction * n))
        if s.select == "random":
            scores, rule = np.zeros(n), "random"
        else:
            scores = self.net.neuron_magnitudes(h)
            rule = "smallest" if s.select == "magnitude" else "largest"
        return self.net.select_neurons(scores, self.eligible(h), rule, float(k))


class _Dormant(_Run):
    tracking = (True, None)

    def pick(self, h: int, step: int) -> np.ndarray:
        mean_abs, _, samples = self.net.activity(h)
        if samples == 0:
            return np.zeros(0, dtype=np.int64)
        layer_mean = mean_abs.mean()
        scores = mean_abs / layer_mean if layer_mean > 0 else np.zeros_like(mean_abs)
        return self.net.select_neurons(scores, self.eligible(h), "at_most", self.s.tau)

    def event(self, step: int, epoch: int) -> dict[str, Any] | None:
        record = super().event(step, epoch)
        self.net.reset_activity()
        return record


class _Utility(_Run):
    def __init__(self, s: ContinualBackprop, *args: Any) -> None:
        self.tracking = (True, s.decay)
        super().__init__(s, *args)
        self.age = {h: np.zeros(self._width(h), dtype=np.int64) for h in self.layers}
        self.owed = {h: 0.0 for h in self.layers}
        self.last_step = int(self.net.run_state[2])
        self.elapsed = 0

    def _reset_layer(self, h: int) -> None:
        super()._reset_layer(h)
        if hasattr(self, "age"):
            self.age[h] = np.zeros(self._width(h), dtype=np.int64)

    def event(self, step: int, epoch: int) -> dict[str, Any] | None:
        self.elapsed = step - self.last_step
        self.last_step = step
        self._sync_widths()
        for h in self.layers:
            self.age[h] += self.elapsed
        return super().event(step, epoch)

    def eligible(self, h: int) -> np.ndarray:
        return (self.age[h] > self.s.maturity) & super().eligible(h)

    def pick(self, h: int, step: int) -> np.ndarray:
        s = self.s
        eligible = self.eligible(h)
        self.owed[h] += s.replacement_rate * int(eligible.sum()) * self.elapsed
        k = int(self.owed[h])
        if k == 0:
            return np.zeros(0, dtype=np.int64)
        self.owed[h] -= k
        _, utility, _ = self.net.activity(h)
        age = np.maximum(self.age[h], 1)
        corrected = utility / (1.0 - s.decay ** age)
        return self.net.select_neurons(corrected, eligible, "smallest", float(k))

    def recycled_hook(self, h: int, ids: np.ndarray) -> None:
        self.age[h][ids] = 0

    def books(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        data, arrays = super().books()
        data.update(owed={str(h): v for h, v in self.owed.items()}, last_step=self.last_step,
                    elapsed=self.elapsed)
        arrays.update({f"age.{h}": self.age[h] for h in self.layers})
        return data, arrays

    def restore(self, data: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        super().restore(data, arrays)
        owed = data.get("owed")
        if not isinstance(owed, dict) or not all(
                isinstance(owed.get(str(h)), float) and math.isfinite(owed[str(h)])
                for h in self.layers):
            raise CheckpointError("the Continual Backprop books have no valid replacement debts")
        self.owed = {h: owed[str(h)] for h in self.layers}
        self.last_step, self.elapsed = _int(data, "last_step"), _int(data, "elapsed")
        self.age = {h: _ints(arrays, f"age.{h}", self.counts[h].size) for h in self.layers}

    def protected(self, h: int) -> np.ndarray:
        young = self.age[h] <= self.s.maturity
        young &= self.counts[h] > 0
        return np.union1d(np.flatnonzero(young), super().protected(h))


def _int(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise CheckpointError(f"the recycling books have no valid {key}")
    return value


def _ints(arrays: dict[str, np.ndarray], key: str, size: int | None = None) -> np.ndarray:
    a = arrays.get(key)
    if a is None or a.dtype != np.int64 or a.ndim != 1 or (size is not None and a.size != size):
        raise CheckpointError(f"the recycling books' array {key} is missing or malformed")
    return a.copy()


def save_runs(runs: list[Any], model: SparseMLP) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """The state of ``fit``'s recycling runs for a checkpoint: each run's
    books (JSON data, and arrays named ``recycling.<run>.<name>``) and the
    compiled core's part (``recycling.core.<name>``)."""
    data, arrays = [], {}
    for i, r in enumerate(runs):
        d, a = r.books()
        data.append(d)
        arrays.update({f"recycling.{i}.{k}": v for k, v in a.items()})
    if runs:
        state = model._net.recycling_state()
        arrays.update({f"recycling.core.{k}": v for k, v in state.items()})
    return data, arrays


def restore_runs(runs: list[Any], model: SparseMLP, data: Any,
                 arrays: dict[str, np.ndarray]) -> None:
    """Takes back what :func:`save_runs` saved into runs just started with the
    same strategies on the same model; malformed books raise
    :class:`CheckpointError`."""
    if not isinstance(data, list) or len(data) != len(runs) or \
            not all(isinstance(d, dict) for d in data):
        raise CheckpointError("the checkpoint's recycling books do not match its strategies")
    for i, (r, d) in enumerate(zip(runs, data)):
        prefix = f"recycling.{i}."
        r.restore(d, {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})
    if runs:
        prefix = "recycling.core."
        core = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
        try:
            model._net.set_recycling_state(core)
        except (InvalidInputError, TypeError) as e:
            raise CheckpointError(f"the checkpoint's recycling state is invalid: {e}") from None


def start_runs(recycling: Any, model: SparseMLP, X: np.ndarray, y: np.ndarray) -> list[Any]:
    """The runs of ``fit``'s ``recycling`` argument: one strategy, or a list
    with at most one recycling strategy plus a :class:`MidpointLoss`."""
    if recycling is None:
        return []
    items = list(recycling) if isinstance(recycling, (list, tuple)) else [recycling]
    kinds = (NeuronRecycling, ReDo, ContinualBackprop, MidpointLoss)
    for item in items:
        if not isinstance(item, kinds):
            raise InvalidInputError(
                "recycling must be sm.NeuronRecycling, sm.ReDo, sm.ContinualBackprop, "
                f"sm.MidpointLoss or a list of them, got {item!r}")
    if sum(not isinstance(i, MidpointLoss) for i in items) > 1:
        raise InvalidInputError("recycling takes at most one recycling strategy "
                                "(plus optionally a MidpointLoss)")
    if sum(isinstance(i, MidpointLoss) for i in items) > 1:
        raise InvalidInputError("recycling takes at most one MidpointLoss")
    return [item.start(model, X, y) for item in items]


# ---------------------------------------------------------------- comparison


def compare(
    build: Callable[[int], SparseMLP],
    X: Any,
    y: Any,
    strategies: dict[str, Any],
    seeds: Sequence[int] = (0, 1, 2),
    validation_data: tuple[Any, Any] | None = None,
    **fit_kwargs: Any,
) -> list[dict[str, Any]]:
    """Trains ``build(seed)`` on the same data for every seed and every
    strategy (``None`` = no recycling; the baseline belongs in the dict) and
    returns one row per strategy: final and best validation accuracy (mean,
    std, per seed), seconds per run, and the recycling statistics of the
    first hidden layer it recycles, averaged over seeds (total recycles,
    distinct neurons, the largest count, the share of recycles that went to
    the 10 % most-recycled neurons, the mean overlap of an event's selection
    with the previous one).

    >>> import numpy as np, sparse_mlp as sm
    >>> X = np.random.default_rng(0).normal(size=(200, 10)).astype(np.float32)
    >>> y = (X[:, 0] > 0).astype(int)
    >>> rows = sm.recycling.compare(
    ...     lambda seed: sm.SparseMLP([10, 32, 2], epsilon=4, seed=seed), X, y,
    ...     {"none": None, "magnitude": sm.NeuronRecycling(fraction=0.1, every_steps=5)},
    ...     seeds=[0], validation_data=(X, y), epochs=3, verbose=0)
    >>> [r["name"] for r in rows]
    ['none', 'magnitude']
    """
    if validation_data is None:
        raise InvalidInputError("compare needs validation_data to report accuracies")
    rows = []
    for name, strategy in strategies.items():
        runs = []
        for seed in seeds:
            model = build(seed)
            t0 = time.perf_counter()
            hist = model.fit(X, y, validation_data=validation_data, recycling=strategy, **fit_kwargs)
            runs.append({"seconds": time.perf_counter() - t0,
                         "final": hist[-1]["val_accuracy"],
                         "best": max(r["val_accuracy"] for r in hist),
                         "summary": model.recycling_summary})
        rows.append(_row(name, strategy, runs))
    return rows


def _row(name: str, strategy: Any, runs: list[dict[str, Any]]) -> dict[str, Any]:
    def spread(v: list[float]) -> float:
        return statistics.stdev(v) if len(v) > 1 else 0.0

    final = [r["final"] for r in runs]
    best = [r["best"] for r in runs]
    row: dict[str, Any] = {
        "name": name, "strategy": repr(strategy),
        "final": statistics.mean(final), "final_std": spread(final),
        "best": statistics.mean(best), "best_std": spread(best),
        "best_per_seed": best, "seconds": statistics.mean(r["seconds"] for r in runs),
    }
    layers = [r["summary"]["layers"][0] for r in runs if r["summary"] and r["summary"]["layers"]]
    if layers:
        for key in ("recycled", "distinct_neurons", "max_count", "top_decile_share", "neurons"):
            row[key] = statistics.mean(layer[key] for layer in layers)
        overlaps = [layer["mean_overlap"] for layer in layers if layer["mean_overlap"] is not None]
        row["mean_overlap"] = statistics.mean(overlaps) if overlaps else None
        row["layer"] = layers[0]["layer"]
        row["summaries"] = [r["summary"] for r in runs]
    return row


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows of :func:`compare` as a plain-text table (accuracies in %)."""
    head = (f"{'strategy':<32} {'final acc':>14} {'best acc':>14} {'s/run':>7} "
            f"{'recycled':>9} {'distinct':>9} {'max':>5} {'top10%':>7} {'overlap':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        acc = f"{100 * r['final']:6.2f} ± {100 * r['final_std']:4.2f}"
        best = f"{100 * r['best']:6.2f} ± {100 * r['best_std']:4.2f}"
        rec = ""
        if "recycled" in r:
            overlap = "" if r["mean_overlap"] is None else f"{100 * r['mean_overlap']:>7.1f}%"
            rec = (f"{r['recycled']:>9.1f} {r['distinct_neurons']:>9.1f} {r['max_count']:>5.1f} "
                   f"{100 * r['top_decile_share']:>6.1f}% {overlap:>8}")
        lines.append(f"{r['name']:<32} {acc:>14} {best:>14} {r['seconds']:>7.1f} {rec}")
    return "\n".join(lines)


def plot_summary(summary: dict[str, Any], path: str) -> None:
    """Saves the recycle-count and magnitude histograms of a run's
    ``model.recycling_summary`` as an image (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InvalidInputError("plot_summary needs matplotlib: pip install matplotlib") from None
    layers = summary["layers"]
    fig, axes = plt.subplots(2, len(layers), figsize=(4 * len(layers), 6), squeeze=False)
    for c, layer in enumerate(layers):
        hist = layer["recycle_count_histogram"]
        axes[0][c].bar(range(len(hist)), hist)
        axes[0][c].set_yscale("log")
        axes[0][c].set_title(f"hidden layer {layer['layer']}")
        axes[0][c].set_xlabel("times recycled")
        axes[0][c].set_ylabel("neurons")
        m = layer["magnitude_histogram"]
        if m["counts"]:
            edges = np.asarray(m["edges"])
            axes[1][c].bar(edges[:-1], m["counts"], width=np.diff(edges), align="edge")
        axes[1][c].set_xlabel("magnitude ‖in‖·‖out‖")
        axes[1][c].set_ylabel("neurons")
    fig.suptitle(summary["strategy"], fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


__all__ = ["NeuronRecycling", "ReDo", "ContinualBackprop", "MidpointLoss", "compare",
           "format_table", "plot_summary"]
