"""What the neuron recycling strategies keep during one ``fit`` call (their
sessions): recycle counts, immunity, previous selections, ages and debts,
SET protection, the loss probe; and their books for checkpoints. The
strategies themselves (:mod:`sparse_mlp.recycling`) only configure them."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from .errors import CheckpointError, InvalidInputError

log = logging.getLogger("sparse_mlp")
_PROBE_SEED = 0x5EED


class MidpointSession:
    """The session of a :class:`MidpointLoss`: only a training option."""

    def __init__(self, s: Any) -> None:
        self.option = (s.weight, s.midpoint, s.distance)

    def next_event(self, step: int) -> int | None:
        return None

    def train_options(self) -> dict[str, Any]:
        return {"midpoint": self.option}

    def books(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {}

    def restore(self, data: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        pass

    def close(self, model: Any) -> None:
        pass


class RecyclingSession:
    """Book-keeping a recycling strategy keeps during one ``fit``:
    recycle counts, immunity, previous selections, SET protection, the loss
    probe and running totals of the events. The events' records themselves
    go into ``model.history`` (``recycle_events``); the books stay the same
    size however long the run, and so do checkpoints' copies of them."""

    tracking: tuple[bool, float | None] = (False, None)

    def __init__(self, s: Any, model: Any, X: np.ndarray, y: np.ndarray) -> None:
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

    def event(self, step: int, epoch: int, rate: float = 0.0) -> dict[str, Any] | None:
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

    def close(self, model: Any) -> None:
        """Lifts the SET protection and stops gathering activations."""
        for h in self.layers:
            if h < len(model.sizes) - 2:
                self.net.protect_neurons(h, np.zeros(0, dtype=np.int64))
        if self.tracking[0]:
            self.net.track_activity(False)


class PeriodicSession(RecyclingSession):
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


class DormantSession(RecyclingSession):
    tracking = (True, None)

    def pick(self, h: int, step: int) -> np.ndarray:
        mean_abs, _, samples = self.net.activity(h)
        if samples == 0:
            return np.zeros(0, dtype=np.int64)
        layer_mean = mean_abs.mean()
        scores = mean_abs / layer_mean if layer_mean > 0 else np.zeros_like(mean_abs)
        return self.net.select_neurons(scores, self.eligible(h), "at_most", self.s.tau)

    def event(self, step: int, epoch: int, rate: float = 0.0) -> dict[str, Any] | None:
        record = super().event(step, epoch)
        self.net.reset_activity()
        return record


class UtilitySession(RecyclingSession):
    def __init__(self, s: Any, *args: Any) -> None:
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

    def event(self, step: int, epoch: int, rate: float = 0.0) -> dict[str, Any] | None:
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
