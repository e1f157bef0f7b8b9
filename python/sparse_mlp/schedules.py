"""Learning-rate schedules: ``fit(learning_rate=...)`` takes a float or one of these.

- :class:`Constant` ``(value)``: what a float means;
- :class:`Step` ``(initial, factor=0.1, every=30)``: times ``factor`` every ``every`` epochs;
- :class:`Cosine` ``(initial, final=0.0, warmup_epochs=0, total_epochs=None)``:
  a linear warm-up from near 0 to ``initial``, then half a cosine down to
  ``final`` at the end of the ``fit`` call (or of ``total_epochs``);
- :class:`ReduceOnPlateau` ``(initial, monitor="val_loss", factor=0.1, patience=10)``:
  times ``factor`` after ``patience`` epochs without improvement of ``monitor``;
- :class:`InvScaling` ``(initial, power=0.5)``: scikit-learn's
  ``initial / (samples seen + 1) ** power``, changed once per epoch;
- :class:`Warmup` ``(schedule, scale, epochs)``: another schedule times a
  factor rising linearly from 1 to ``scale`` (WASSP-SGD's rule for K workers).

A schedule gives every mini-batch its own rate, computed before the epoch and
applied by the compiled core (no Python per batch). SGD's decoupled weight
decay follows the schedule too: a step at rate ``η_t`` decays the weights by
``λ·η_t/η₀`` (SGDW's schedule multiplier), so a rate annealed towards 0 does
not leave the decay to shrink the weights to nothing; at the base rate it is
the papers' ``λ``. The epoch's record holds
``learning_rate``: the rate of its first mini-batch. Positions count the
epochs of the ``fit`` call; a run resumed from a checkpoint continues where it
stopped, with the schedule's state (ReduceOnPlateau's) restored.

>>> import sparse_mlp as sm
>>> s = sm.schedules.Cosine(0.1, warmup_epochs=1)
>>> [round(float(r), 3) for r in s.rates(1, 4, epochs=3, samples=100, state={})]
[0.025, 0.05, 0.075, 0.1]
>>> float(s.rates(3, 4, epochs=3, samples=100, state={})[-1]) < 0.01
True
>>> [float(sm.schedules.Step(1.0, 0.5, every=2).rates(e, 1, 9, 10, {})[0]) for e in (1, 2, 3, 5)]
[1.0, 1.0, 0.5, 0.25]
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._validation import number, positive_int
from .errors import InvalidInputError
from .strategies import REGISTRY, register


def _rate(name: str, value: Any) -> float:
    return number(name, value, 0.0, math.inf, low_open=True, high_open=True)


def monitor_mode(monitor: str, mode: str) -> str:
    """"min" or "max" for ``monitor``: ``mode`` itself, or with "auto" "max"
    for accuracies and R², "min" for losses and errors."""
    if mode not in ("auto", "min", "max"):
        raise InvalidInputError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode != "auto":
        return mode
    return "max" if monitor.endswith(("accuracy", "r2")) else "min"


def improved(value: float, best: float | None, mode: str, min_delta: float) -> bool:
    """Whether ``value`` beats ``best`` by more than ``min_delta``."""
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


def monitored(record: dict[str, Any], monitor: str, who: str) -> float:
    """``record[monitor]``, or a named error listing what the record has."""
    if monitor not in record:
        have = ", ".join(k for k, v in record.items() if isinstance(v, (int, float)) and k != "epoch")
        raise InvalidInputError(f"{who} monitors {monitor!r}, which the epoch's record does not "
                                f"have (it has {have}); give validation_data for val_* metrics")
    return float(record[monitor])


class Schedule:
    """Base class: the rates of one epoch's mini-batches.

    ``rates(epoch, batches, epochs, samples, state)``: ``epoch`` counts from
    1 within the ``fit`` call of ``epochs`` epochs over ``samples`` samples
    in ``batches`` mini-batches; ``state`` is the schedule's own (JSON data,
    saved in checkpoints). ``update(state, record)`` sees each epoch's record
    after evaluation."""

    def rates(self, epoch: int, batches: int, epochs: int, samples: int,
              state: dict[str, Any]) -> np.ndarray:
        raise NotImplementedError

    def update(self, state: dict[str, Any], record: dict[str, Any]) -> None:
        pass

    def needs(self) -> str | None:
        """The record key the schedule monitors (None: it monitors nothing)."""
        return None

    def base(self) -> float:
        """The rate the schedule starts from (``initial``)."""
        return float(self.initial)


def _constant(rate: float, batches: int) -> np.ndarray:
    return np.full(batches, rate, dtype=np.float32)


@register
@dataclass(frozen=True)
class Constant(Schedule):
    """The same rate at every step."""

    value: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", _rate("learning_rate", self.value))

    def rates(self, epoch, batches, epochs, samples, state):
        return _constant(self.value, batches)

    def base(self) -> float:
        return self.value


@register
@dataclass(frozen=True)
class Step(Schedule):
    """``initial · factor^⌊(epoch−1)/every⌋``."""

    initial: float
    factor: float = 0.1
    every: int = 30

    def __post_init__(self) -> None:
        object.__setattr__(self, "initial", _rate("initial", self.initial))
        object.__setattr__(self, "factor", number("factor", self.factor, 0.0, 1.0, low_open=True))
        object.__setattr__(self, "every", positive_int("every", self.every))

    def rates(self, epoch, batches, epochs, samples, state):
        return _constant(self.initial * self.factor ** ((epoch - 1) // self.every), batches)


@register
@dataclass(frozen=True)
class Cosine(Schedule):
    """Linear warm-up over ``warmup_epochs`` (step ``s`` of ``W`` gets
    ``initial·(s+1)/W``), then ``final + (initial−final)·(1+cos(πp))/2`` with
    ``p`` going from 0 to 1 over the remaining steps of the call's epochs
    (or of ``total_epochs``; beyond them the rate stays ``final``)."""

    initial: float
    final: float = 0.0
    warmup_epochs: int = 0
    total_epochs: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "initial", _rate("initial", self.initial))
        object.__setattr__(self, "final", number("final", self.final, 0.0, self.initial))
        object.__setattr__(self, "warmup_epochs", int(number("warmup_epochs", self.warmup_epochs, 0,
                                                             math.inf)))
        if self.total_epochs is not None:
            object.__setattr__(self, "total_epochs", positive_int("total_epochs", self.total_epochs))

    def rates(self, epoch, batches, epochs, samples, state):
        total = (self.total_epochs or epochs) * batches
        warm = min(self.warmup_epochs * batches, total)
        s = (epoch - 1) * batches + np.arange(batches, dtype=np.float64)
        p = np.clip((s - warm) / max(1, total - warm), 0.0, 1.0)
        r = self.final + (self.initial - self.final) * 0.5 * (1.0 + np.cos(np.pi * p))
        if warm:
            r = np.where(s < warm, self.initial * (s + 1) / warm, r)
        return np.maximum(r, 1e-12).astype(np.float32)  # (final 0: the core takes positive rates)


@register
@dataclass(frozen=True)
class ReduceOnPlateau(Schedule):
    """Starts at ``initial``; after ``patience`` epochs in which ``monitor``
    did not improve by more than ``min_delta``, multiplies the rate by
    ``factor`` (not below ``min_rate``) and waits ``cooldown`` epochs before
    counting again."""

    initial: float
    monitor: str = "val_loss"
    factor: float = 0.1
    patience: int = 10
    min_delta: float = 0.0
    mode: str = "auto"
    cooldown: int = 0
    min_rate: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "initial", _rate("initial", self.initial))
        object.__setattr__(self, "factor", number("factor", self.factor, 0.0, 1.0, low_open=True,
                                                  high_open=True))
        object.__setattr__(self, "patience", int(number("patience", self.patience, 0, math.inf)))
        object.__setattr__(self, "cooldown", int(number("cooldown", self.cooldown, 0, math.inf)))
        object.__setattr__(self, "min_delta", number("min_delta", self.min_delta, 0.0, math.inf))
        object.__setattr__(self, "min_rate", number("min_rate", self.min_rate, 0.0, self.initial))
        if not isinstance(self.monitor, str):
            raise InvalidInputError(f"monitor must be a metric name, got {self.monitor!r}")
        monitor_mode(self.monitor, self.mode)

    def rates(self, epoch, batches, epochs, samples, state):
        return _constant(state.get("rate", self.initial), batches)

    def needs(self) -> str:
        return self.monitor

    def update(self, state, record):
        value = monitored(record, self.monitor, "ReduceOnPlateau")
        rate = state.setdefault("rate", self.initial)
        if improved(value, state.get("best"), monitor_mode(self.monitor, self.mode), self.min_delta):
            state.update(best=value, wait=0)
        elif state.get("cooldown", 0) > 0:
            state["cooldown"] -= 1
        else:
            state["wait"] = state.get("wait", 0) + 1
            if state["wait"] >= self.patience and rate > self.min_rate:
                state.update(rate=max(rate * self.factor, self.min_rate), wait=0,
                             cooldown=self.cooldown)


@register
@dataclass(frozen=True)
class InvScaling(Schedule):
    """scikit-learn's ``invscaling``: ``initial / (t + 1) ** power`` with
    ``t`` the samples seen before the epoch (the first epoch at ``initial``)."""

    initial: float
    power: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "initial", _rate("initial", self.initial))
        object.__setattr__(self, "power", number("power", self.power, 0.0, math.inf))

    def rates(self, epoch, batches, epochs, samples, state):
        seen = (epoch - 1) * samples
        return _constant(self.initial / (seen + 1) ** self.power if seen else self.initial, batches)


@register
@dataclass(frozen=True)
class Warmup(Schedule):
    """``schedule``'s rates times a factor rising linearly, step by step,
    from 1 to ``scale`` over ``epochs`` epochs (Goyal et al. 2017: WASSP-SGD's
    K workers train at K times the rate, reached gradually)."""

    schedule: Any
    scale: float = 1.0
    epochs: int = 5

    def __post_init__(self) -> None:
        object.__setattr__(self, "schedule", learning_rate(self.schedule))
        object.__setattr__(self, "scale", number("scale", self.scale, 0.0, math.inf, low_open=True))
        object.__setattr__(self, "epochs", int(number("epochs", self.epochs, 0, math.inf)))

    def rates(self, epoch, batches, epochs, samples, state):
        inner = self.schedule.rates(epoch, batches, epochs, samples, state)
        if self.epochs == 0:
            progress = np.ones(batches)
        else:
            progress = np.minimum(1.0, (epoch - 1 + (np.arange(batches) + 1) / batches) / self.epochs)
        return (inner * (1 + (self.scale - 1) * progress)).astype(np.float32)

    def update(self, state, record):
        self.schedule.update(state, record)

    def needs(self) -> str | None:
        return self.schedule.needs()

    def base(self) -> float:
        return self.schedule.base()


def learning_rate(value: Any, default: float = 0.01) -> Schedule:
    """``value`` (a positive number, a schedule, or None for ``default``) as a schedule."""
    if value is None:
        return Constant(default)
    if isinstance(value, Schedule):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise InvalidInputError(
            f"learning_rate must be a positive number or a schedule (sm.schedules.Constant, Step, "
            f"Cosine, ReduceOnPlateau, InvScaling), got {value!r}")
    return Constant(_rate("learning_rate", value))


def encode(schedule: Schedule) -> Any:
    """A schedule as JSON data (a constant as its number, as plans of
    earlier versions hold it)."""
    if isinstance(schedule, Constant):
        return schedule.value
    fields = {f.name: getattr(schedule, f.name) for f in dataclasses.fields(schedule)}
    if isinstance(schedule, Warmup):
        fields["schedule"] = encode(schedule.schedule)
    if REGISTRY.get(type(schedule).__name__) is not type(schedule):
        raise InvalidInputError(f"{schedule!r} is not a registered schedule; register it with "
                                "sparse_mlp.strategies.register to checkpoint it")
    return {"type": type(schedule).__name__, **fields}


NAMES = {"constant": Constant, "step": Step, "cosine": Cosine, "plateau": ReduceOnPlateau,
         "invscaling": InvScaling}


@dataclass(frozen=True)
class Shifted(Schedule):
    """``schedule`` continued after ``offset`` epochs of a run of ``total``
    epochs, from a state frozen at ``state`` (WASAP's local phase trains
    the server's last epochs on each worker)."""

    schedule: Any
    offset: int
    total: int
    state: Any = None

    def rates(self, epoch, batches, epochs, samples, state):
        return self.schedule.rates(epoch + self.offset, batches, self.total, samples,
                                   dict(self.state or {}))

    def base(self) -> float:
        return self.schedule.base()
