"""The strategies a training run can use, by name, and what each kind must do.

A strategy is a small frozen dataclass with one obvious method:

- an :class:`EpochStrategy` (SET, Importance Pruning) changes the topology
  after an epoch: ``on_epoch_end(model, epoch, epochs)`` returns what it adds
  to the epoch's record;
- a :class:`StepStrategy` (the neuron recyclers, the midpoint loss) acts
  between training steps: ``start(model, X, y)`` returns a :class:`Session`
  that the loop asks when its next event is, runs the event, and whose books
  a checkpoint saves and restores.

Strategies are registered by class name (:func:`register`, as jaxpruner's
``register_algorithm``), which is how checkpoints and data-parallel ranks
name them: code that writes files or messages imports no algorithm.

>>> import sparse_mlp as sm
>>> sorted(REGISTRY)[:3]
['ContinualBackprop', 'ImportancePruning', 'MidpointLoss']
>>> encode(sm.SET(zeta=0.2))
{'type': 'SET', 'zeta': 0.2, 'every': 1, 'layers': None}
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from .errors import InvalidInputError

REGISTRY: dict[str, type] = {}
T = TypeVar("T", bound=type)


def register(cls: T) -> T:
    """Class decorator: makes a strategy known by its class name, so that a
    checkpoint or a data-parallel run can name it. The class must be a
    frozen dataclass whose fields are plain data."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"a strategy must be a dataclass, got {cls!r}")
    REGISTRY[cls.__name__] = cls
    return cls


@runtime_checkable
class EpochStrategy(Protocol):
    def on_epoch_end(self, model: Any, epoch: int, epochs: int) -> dict[str, Any]: ...


class Session(Protocol):
    """What a step strategy keeps during one ``fit`` call."""

    def next_event(self, step: int) -> int | None: ...

    def event(self, step: int, epoch: int, rate: float = 0.0) -> dict[str, Any] | None:
        """Acts at ``step`` (``rate``: the learning rate of the mini-batch just done)."""

    def train_options(self) -> dict[str, Any]: ...

    def books(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]: ...

    def restore(self, data: dict[str, Any], arrays: dict[str, np.ndarray]) -> None: ...

    def close(self, model: Any) -> None: ...


@runtime_checkable
class StepStrategy(Protocol):
    def start(self, model: Any, X: np.ndarray, y: np.ndarray) -> Session: ...


def encode(strategy: Any, role: str = "strategy") -> Any:
    """A strategy (or a list of them, or None) as JSON data: its registered
    name and its fields. An unregistered object cannot be named."""
    if strategy is None:
        return None
    if isinstance(strategy, (list, tuple)):
        return [encode(s, role) for s in strategy]
    name = type(strategy).__name__
    if REGISTRY.get(name) is not type(strategy):
        raise InvalidInputError(
            f"{role}={strategy!r} is not a registered strategy ({', '.join(sorted(REGISTRY))}); "
            "register it with sparse_mlp.strategies.register to checkpoint it or train it in parallel")
    return {"type": name, **json.loads(json.dumps(dataclasses.asdict(strategy)))}


def check(strategy: Any, kind: type, role: str, example: str) -> Any:
    """``strategy`` if it is None or of the protocol ``kind``; else a named error."""
    if strategy is not None and not isinstance(strategy, kind):
        raise InvalidInputError(f"{role} must be {example} or None, got {strategy!r}")
    return strategy
