"""The hooks of a training run (as Keras's): one protocol for the
sequential loop and the WASAP server (made public, with the callbacks most
runs want, as :mod:`sparse_mlp.callbacks`).

A :class:`Callback` may define ``on_train_begin(run)``,
``on_evaluated(run, record)`` (after the epoch's evaluation, before its
topology step), ``on_epoch_end(run, record)`` (returning True asks the run
to stop), ``on_train_end(run)``, and ``state()``/``load_state(data,
arrays)`` for what a checkpoint keeps of it. ``run`` is the
:class:`TrainingRun`: the model, the options, the epoch just done, the
total, this run's history. A plain function ``f(model, record)`` is a
callback too (its return value asks to stop). A callback that raises stops
training; the model and the checkpoint are those of the last completed epoch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InvalidInputError

log = logging.getLogger("sparse_mlp")


@dataclass
class TrainingRun:
    """What callbacks see of a run."""

    model: Any
    options: Any
    epochs: int
    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    stop_requested: bool = False
    has_validation: bool = False
    resumed: bool = False  # the run continues a checkpoint
    restorable: bool = True  # the trained model may be replaced by an earlier one (not WASAP's)
    batches: int = 1  # mini-batches per epoch


class Callback:
    """Base class of training callbacks; every hook does nothing by default."""

    def on_train_begin(self, run: TrainingRun) -> None:
        pass

    def on_evaluated(self, run: TrainingRun, record: dict[str, Any]) -> None:
        pass

    def on_epoch_end(self, run: TrainingRun, record: dict[str, Any]) -> bool | None:
        return None

    def on_train_end(self, run: TrainingRun) -> None:
        pass

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
        """What a checkpoint keeps of the callback (JSON data, arrays); None: nothing."""
        return None

    def load_state(self, data: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        pass


class FunctionCallback(Callback):
    """A plain function ``f(model, record)`` as a callback."""

    def __init__(self, function: Callable[[Any, dict[str, Any]], Any]) -> None:
        self.function = function

    def on_epoch_end(self, run: TrainingRun, record: dict[str, Any]) -> bool | None:
        return bool(self.function(run.model, record))

    def __repr__(self) -> str:
        return repr(self.function)


class CallbackList:
    """Calls every callback's hook in order."""

    def __init__(self, callbacks: Iterable[Any]) -> None:
        if callable(callbacks) and not isinstance(callbacks, Callback):
            callbacks = [callbacks]
        elif isinstance(callbacks, Callback):
            callbacks = [callbacks]
        self.callbacks: list[Callback] = []
        for cb in callbacks:
            if isinstance(cb, Callback):
                self.callbacks.append(cb)
            elif callable(cb):
                self.callbacks.append(FunctionCallback(cb))
            else:
                raise InvalidInputError(f"a callback must be a Callback or a function (model, record), "
                                        f"got {cb!r}")

    def on_train_begin(self, run: TrainingRun) -> None:
        for cb in self.callbacks:
            cb.on_train_begin(run)

    def on_evaluated(self, run: TrainingRun, record: dict[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_evaluated(run, record)

    def _keys(self) -> list[str]:
        """A name per callback: its class and its rank among those of its class."""
        seen: dict[str, int] = {}
        keys = []
        for cb in self.callbacks:
            name = type(cb).__name__
            keys.append(f"{name}{seen.get(name, 0)}")
            seen[name] = seen.get(name, 0) + 1
        return keys

    def states(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The callbacks' states for a checkpoint, keyed by class and rank
        (their arrays under ``key.name``)."""
        data: dict[str, Any] = {}
        arrays: dict[str, np.ndarray] = {}
        for key, cb in zip(self._keys(), self.callbacks):
            st = cb.state()
            if st is not None:
                data[key] = st[0]
                arrays.update({f"{key}.{k}": a for k, a in st[1].items()})
        return data, arrays

    def load_states(self, data: dict[str, Any] | None, arrays: dict[str, np.ndarray]) -> None:
        """Gives each callback its state from :meth:`states` of the saved run
        (a callback the saved run did not have starts afresh)."""
        for key, cb in zip(self._keys(), self.callbacks):
            if data and key in data:
                cb.load_state(data[key], {k[len(key) + 1:]: a for k, a in arrays.items()
                                          if k.startswith(key + ".")})

    def find(self, kind: type) -> Any:
        """The first callback of class ``kind``, or None."""
        return next((cb for cb in self.callbacks if isinstance(cb, kind)), None)

    def add_first(self, cb: Callback) -> None:
        self.callbacks.insert(0, cb)

    def on_epoch_end(self, run: TrainingRun, record: dict[str, Any]) -> bool:
        """Calls every callback (all of them, even after one asked to stop);
        True when one asked to stop."""
        stop = False
        for cb in self.callbacks:
            stop = bool(cb.on_epoch_end(run, record)) or stop
        if stop:
            run.stop_requested = True
        return stop

    def on_train_end(self, run: TrainingRun) -> None:
        for cb in self.callbacks:
            cb.on_train_end(run)
