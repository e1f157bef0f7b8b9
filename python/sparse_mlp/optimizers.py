"""The optimizers ``fit`` can train with, as ``optimizer=``.

- :class:`SGD`: momentum SGD with the papers' decoupled weight decay (the
  default, ``learning_rate`` 0.01);
- :class:`Adam` (Kingma & Ba; weight decay added to the gradient) and
  :class:`AdamW` (decoupled weight decay, Loshchilov & Hutter), default
  ``learning_rate`` 1e-3.

Every update touches only the connections that exist. An optimizer's moments
(SGD's momentum; Adam's first and second moments) are kept per connection,
aligned with its value through SET, Importance Pruning and recycling (a new
connection starts at zero), and saved in checkpoints. Training a model with
another optimizer than the one that trained it restarts the moments at zero.

>>> import sparse_mlp as sm
>>> sm.Adam()
Adam(beta1=0.9, beta2=0.999, eps=1e-08)
>>> optimizer("adamw")
AdamW(beta1=0.9, beta2=0.999, eps=1e-08)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ._validation import number
from .errors import InvalidInputError
from .strategies import register


@register
@dataclass(frozen=True)
class SGD:
    """Momentum SGD: ``v ← μv − ηg``, ``w ← w + v − λw`` (Nesterov:
    ``w ← w + μv − ηg − λw``)."""

    momentum: float = 0.9
    nesterov: bool = False

    name = "sgd"
    default_learning_rate = 0.01

    def __post_init__(self) -> None:
        object.__setattr__(self, "momentum", number("momentum", self.momentum, 0.0, 1.0, high_open=True))
        if not isinstance(self.nesterov, bool):
            raise InvalidInputError(f"nesterov must be True or False, got {self.nesterov!r}")

    def core_args(self) -> dict[str, Any]:
        return {"optimizer": "sgd", "momentum": self.momentum, "nesterov": self.nesterov}


@register
@dataclass(frozen=True)
class Adam:
    """Adam: bias-corrected first and second moments per connection, weight
    decay added to the gradient."""

    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    name = "adam"
    default_learning_rate = 1e-3

    def __post_init__(self) -> None:
        for field in ("beta1", "beta2"):
            object.__setattr__(self, field, number(field, getattr(self, field), 0.0, 1.0, high_open=True))
        object.__setattr__(self, "eps", number("eps", self.eps, 0.0, math.inf, low_open=True,
                                               high_open=True))

    def core_args(self) -> dict[str, Any]:
        return {"optimizer": self.name, "momentum": 0.0, "betas": (self.beta1, self.beta2),
                "eps": self.eps}


@register
@dataclass(frozen=True)
class AdamW(Adam):
    """Adam with decoupled weight decay: ``w ← w − η(m̂/(√v̂+ε) + λw)``."""

    name = "adamw"


NAMES = {cls.name: cls for cls in (SGD, Adam, AdamW)}


def optimizer(value: Any, momentum: float = 0.9, nesterov: bool = False) -> SGD | Adam:
    """``value`` as an optimizer object: one already (returned), a name
    ("sgd", "adam", "adamw"), or None for :class:`SGD` with ``momentum``
    and ``nesterov``."""
    if value is None:
        return SGD(momentum=momentum, nesterov=nesterov)
    if isinstance(value, str):
        cls = NAMES.get(value.lower())
        if cls is None:
            raise InvalidInputError(f"unknown optimizer {value!r}; known: {', '.join(NAMES)} "
                                    "(or sm.SGD(...), sm.Adam(...), sm.AdamW(...))")
        return SGD(momentum=momentum, nesterov=nesterov) if cls is SGD else cls()
    if isinstance(value, (SGD, Adam)):
        return value
    raise InvalidInputError(f"optimizer must be sm.SGD(...), sm.Adam(...), sm.AdamW(...) or one of "
                            f"{', '.join(NAMES)}, got {value!r}")


def from_plan(data: dict[str, Any]) -> SGD | Adam:
    """The optimizer a plan's JSON names (see :func:`strategies.encode`)."""
    fields = {k: v for k, v in data.items() if k != "type"}
    cls = NAMES.get(str(data.get("type", "")).lower()) or {c.__name__: c for c in NAMES.values()}.get(
        data.get("type"))
    if cls is None:
        raise InvalidInputError(f"unknown optimizer {data.get('type')!r}")
    return cls(**{f.name: fields[f.name] for f in dataclasses.fields(cls) if f.name in fields})
