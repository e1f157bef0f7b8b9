"""Every training setting in one frozen object, checked once.

:class:`FitOptions` is what the training loop and the WASAP server read.
``SparseMLP.fit`` and ``WASAP.fit`` build one from their keyword arguments,
the command line from its flags and TOML files (:meth:`FitOptions.from_settings`),
the scikit-learn estimators from their parameters. A new setting is a new
field here (with its check), read where it acts.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import optimizers, schedules, strategies
from .._validation import number, positive_int, verbosity
from ..errors import InvalidInputError
from ..topology import SET

# A training set holds fewer than 2**32 samples (the core's 32-bit sample
# indices), so a larger batch is the whole data.
MAX_BATCH = 2**32 - 1
DEFAULT_TOPOLOGY = SET()


def batch_size(value: Any) -> int:
    return min(positive_int("batch_size", value), MAX_BATCH)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidInputError(f"{name} must be True or False, got {value!r}")
    return bool(value)


@dataclass(frozen=True)
class FitOptions:
    """The settings of one training run (see :meth:`SparseMLP.fit` for what
    each does). Values are checked and normalized when the object is made;
    a bad one raises :class:`InvalidInputError` naming it."""

    epochs: int = 10
    batch_size: int = 32
    learning_rate: Any = None  # a number or a schedule; None: the optimizer's default
    momentum: float = 0.9
    weight_decay: float = 2e-4
    nesterov: bool = False
    bias_decay: bool = True
    shuffle: bool = True
    topology: Any = DEFAULT_TOPOLOGY
    pruning: Any = None
    recycling: Any = None
    verbose: int = 1
    checkpoint: Any = None
    checkpoint_every: int = 1
    resume: bool = False
    overwrite: bool = False
    optimizer: Any = None  # sm.SGD (default, from momentum and nesterov), sm.Adam, sm.AdamW or a name

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "epochs", positive_int("epochs", self.epochs))
        set_(self, "batch_size", batch_size(self.batch_size))
        set_(self, "momentum", number("momentum", self.momentum, 0.0, 1.0, high_open=True))
        set_(self, "weight_decay", number("weight_decay", self.weight_decay, 0.0, 1.0, high_open=True))
        for name in ("nesterov", "bias_decay", "shuffle", "resume", "overwrite"):
            set_(self, name, _flag(name, getattr(self, name)))
        opt = optimizers.optimizer(self.optimizer, self.momentum, self.nesterov)
        set_(self, "optimizer", opt)
        if isinstance(opt, optimizers.SGD):  # one truth for SGD's settings
            set_(self, "momentum", opt.momentum)
            set_(self, "nesterov", opt.nesterov)
        rate = schedules.learning_rate(self.learning_rate, opt.default_learning_rate)
        set_(self, "learning_rate", rate.value if isinstance(rate, schedules.Constant) else rate)
        if not isinstance(self.topology, strategies.StepStrategy):
            strategies.check(self.topology, strategies.EpochStrategy, "topology", "sm.SET(...), sm.RigL(...)")
        strategies.check(self.pruning, strategies.EpochStrategy, "pruning", "sm.ImportancePruning(...)")
        recycling = self.recycling
        if recycling is not None:
            items = tuple(recycling) if isinstance(recycling, (list, tuple)) else (recycling,)
            for item in items:
                strategies.check(item, strategies.StepStrategy, "recycling",
                                 "sm.NeuronRecycling(...), sm.ReDo(...), sm.ContinualBackprop(...), "
                                 "sm.MidpointLoss(...), a list of them,")
            set_(self, "recycling", items or None)
        set_(self, "verbose", verbosity(self.verbose))
        if self.checkpoint is not None:
            try:
                set_(self, "checkpoint", os.fspath(self.checkpoint))
            except TypeError:
                raise InvalidInputError(f"checkpoint must be a path, got {self.checkpoint!r}") from None
        set_(self, "checkpoint_every", positive_int("checkpoint_every", self.checkpoint_every))
        if self.resume and self.checkpoint is None:
            raise InvalidInputError("resume=True needs the checkpoint path to resume from")

    def replace(self, **changes: Any) -> FitOptions:
        return dataclasses.replace(self, **changes)

    def plan(self) -> dict[str, Any]:
        """What a resumed run (and every rank of a data-parallel one) must
        share with the run it continues, as JSON data; strategies by their
        registered names and fields."""
        plan = {name: getattr(self, name) for name in (
            "epochs", "batch_size", "momentum", "weight_decay", "nesterov", "shuffle")}
        plan["learning_rate"] = schedules.encode(self.schedule)
        if not self.bias_decay:  # (plans of earlier checkpoints have no key: decay on)
            plan["bias_decay"] = False
        if not isinstance(self.optimizer, optimizers.SGD):  # (nor an optimizer: SGD)
            plan["optimizer"] = strategies.encode(self.optimizer, "optimizer")
        plan.update(topology=strategies.encode(self.topology, "topology"),
                    pruning=strategies.encode(self.pruning, "pruning"),
                    recycling=strategies.encode(self.recycling, "recycling"))
        return plan

    @property
    def schedule(self) -> schedules.Schedule:
        """The learning rate as a schedule (a number is a constant one)."""
        rate = self.learning_rate
        return rate if isinstance(rate, schedules.Schedule) else schedules.Constant(rate)

    def core_args(self) -> dict[str, Any]:
        """The optimizer's settings as the core's training calls take them
        (the base learning rate; a schedule's rates go with each call)."""
        return {"learning_rate": self.schedule.base(), "momentum": self.momentum,
                "weight_decay": self.weight_decay, "nesterov": self.nesterov,
                "bias_decay": self.bias_decay, **self.optimizer.core_args()}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every field's default (the command line's defaults come from here)."""
        return {f.name: f.default for f in dataclasses.fields(cls)}

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], **objects: Any) -> FitOptions:
        """The options among ``settings`` (a command line's or a TOML file's,
        keyed by field name; other keys are ignored) and the strategy
        ``objects`` built from them."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in settings.items() if k in names and k not in objects}
        return cls(**values, **objects)
