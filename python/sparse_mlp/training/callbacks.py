"""The hooks of a training run (as Keras's callbacks): one protocol for the
sequential loop and the WASAP server.

A :class:`Callback` may define ``on_train_begin(run)``,
``on_epoch_end(run, record)`` (returning True asks the run to stop) and
``on_train_end(run)``; ``run`` is the :class:`TrainingRun`: the model, the
options, the epoch just done, the total, this run's history. A plain
function ``f(model, record)`` is a callback too (its return value asks to
stop). A callback that raises stops training; the model and the checkpoint
are those of the last completed epoch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

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


class Callback:
    """Base class of training callbacks; every hook does nothing by default."""

    def on_train_begin(self, run: TrainingRun) -> None:
        pass

    def on_epoch_end(self, run: TrainingRun, record: dict[str, Any]) -> bool | None:
        return None

    def on_train_end(self, run: TrainingRun) -> None:
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
