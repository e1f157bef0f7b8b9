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

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _core
from ._recycling_sessions import DormantSession, MidpointSession, PeriodicSession, UtilitySession
from ._validation import choice, nonnegative_int, number, positive_int
from .errors import CheckpointError, InvalidInputError
from .recycling_study import compare, format_table, plot_summary
from .strategies import StepStrategy, register

# The names the core parses (sparse_mlp._core.NAMES).
_REINIT = tuple(_core.NAMES["reinit"])
_OUTGOING = tuple(_core.NAMES["outgoing"])


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


@register
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

    def start(self, model: Any, X: np.ndarray, y: np.ndarray) -> PeriodicSession:
        return PeriodicSession(self, model, X, y)


@register
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

    def start(self, model: Any, X: np.ndarray, y: np.ndarray) -> DormantSession:
        return DormantSession(self, model, X, y)


@register
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

    def start(self, model: Any, X: np.ndarray, y: np.ndarray) -> UtilitySession:
        return UtilitySession(self, model, X, y)


@register
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
                                                    tuple(_core.NAMES["midpoint"])))
        object.__setattr__(self, "distance", choice("MidpointLoss distance", self.distance,
                                                    tuple(_core.NAMES["distance"])))

    def start(self, model: Any, X: np.ndarray, y: np.ndarray) -> MidpointSession:
        return MidpointSession(self)


def save_sessions(sessions: list[Any], model: Any) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """The state of ``fit``'s recycling sessions for a checkpoint: each session's
    books (JSON data, and arrays named ``recycling.<i>.<name>``) and the
    compiled core's part (``recycling.core.<name>``)."""
    data, arrays = [], {}
    for i, s in enumerate(sessions):
        d, a = s.books()
        data.append(d)
        arrays.update({f"recycling.{i}.{k}": v for k, v in a.items()})
    if sessions:
        state = model._net.recycling_state()
        arrays.update({f"recycling.core.{k}": v for k, v in state.items()})
    return data, arrays


def restore_sessions(sessions: list[Any], model: Any, data: Any,
                     arrays: dict[str, np.ndarray]) -> None:
    """Takes back what :func:`save_sessions` saved into sessions just started with the
    same strategies on the same model; malformed books raise
    :class:`CheckpointError`."""
    if not isinstance(data, list) or len(data) != len(sessions) or \
            not all(isinstance(d, dict) for d in data):
        raise CheckpointError("the checkpoint's recycling books do not match its strategies")
    for i, (s, d) in enumerate(zip(sessions, data)):
        prefix = f"recycling.{i}."
        s.restore(d, {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})
    if sessions:
        prefix = "recycling.core."
        core = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
        try:
            model._net.set_recycling_state(core)
        except (InvalidInputError, TypeError) as e:
            raise CheckpointError(f"the checkpoint's recycling state is invalid: {e}") from None


def start_sessions(recycling: Any, model: Any, X: np.ndarray, y: np.ndarray) -> list[Any]:
    """The sessions of ``fit``'s ``recycling`` argument: one strategy, or a list
    with at most one recycling strategy plus a :class:`MidpointLoss`."""
    if recycling is None:
        return []
    items = list(recycling) if isinstance(recycling, (list, tuple)) else [recycling]
    for item in items:
        if not isinstance(item, StepStrategy):
            raise InvalidInputError(
                "recycling must be sm.NeuronRecycling, sm.ReDo, sm.ContinualBackprop, "
                f"sm.MidpointLoss or a list of them, got {item!r}")
    if sum(not isinstance(i, MidpointLoss) for i in items) > 1:
        raise InvalidInputError("recycling takes at most one recycling strategy "
                                "(plus optionally a MidpointLoss)")
    if sum(isinstance(i, MidpointLoss) for i in items) > 1:
        raise InvalidInputError("recycling takes at most one MidpointLoss")
    return [item.start(model, X, y) for item in items]


__all__ = ["NeuronRecycling", "ReDo", "ContinualBackprop", "MidpointLoss", "compare",
           "format_table", "plot_summary"]
