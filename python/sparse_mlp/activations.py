"""Hidden-layer activations.

Each activation resolves, per hidden layer, to one of the compiled kinds:
``("leaky", slope)`` (ReLU, LeakyReLU and All-ReLU are all piecewise linear),
``("tanh", 0)`` or ``("sigmoid", 0)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Union

from .errors import InvalidInputError


class Activation:
    """Base class: ``core_spec(k)`` gives the compiled form for hidden layer ``k`` (1-based)."""

    def core_spec(self, k: int) -> tuple[str, float]:
        raise NotImplementedError


def _check_slope(name: str, value: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0:
        raise InvalidInputError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


@dataclass(frozen=True)
class AllReLU(Activation):
    """Alternated Left ReLU (Curci et al. 2021).

    Hidden layer ``k`` computes ``z`` for ``z >= 0`` and ``s_k * z`` below zero,
    with ``s_k = -alpha`` on odd layers (V-shaped) and ``+alpha`` on even
    layers (leaky). ``alpha`` may also be a sequence, one slope per hidden layer.

    >>> AllReLU(alpha=0.5).core_spec(1), AllReLU(alpha=0.5).core_spec(2)
    (('leaky', -0.5), ('leaky', 0.5))
    """

    alpha: float | Sequence[float] = 0.6

    def __post_init__(self) -> None:
        if isinstance(self.alpha, Sequence) and not isinstance(self.alpha, str):
            if len(self.alpha) == 0:
                raise InvalidInputError("AllReLU alpha list is empty")
            object.__setattr__(
                self, "alpha", tuple(_check_slope("AllReLU alpha", a) for a in self.alpha)
            )
        else:
            object.__setattr__(self, "alpha", _check_slope("AllReLU alpha", self.alpha))

    def core_spec(self, k: int) -> tuple[str, float]:
        if isinstance(self.alpha, tuple):
            if k > len(self.alpha):
                raise InvalidInputError(
                    f"AllReLU got {len(self.alpha)} slopes but the network has at least {k} "
                    "hidden layers"
                )
            a = self.alpha[k - 1]
        else:
            a = self.alpha
        return ("leaky", -a if k % 2 == 1 else a)


@dataclass(frozen=True)
class ReLU(Activation):
    def core_spec(self, k: int) -> tuple[str, float]:
        return ("leaky", 0.0)


@dataclass(frozen=True)
class LeakyReLU(Activation):
    """``z`` for ``z >= 0``, ``slope * z`` below zero."""

    slope: float = 0.01

    def __post_init__(self) -> None:
        object.__setattr__(self, "slope", _check_slope("LeakyReLU slope", self.slope))

    def core_spec(self, k: int) -> tuple[str, float]:
        return ("leaky", self.slope)


@dataclass(frozen=True)
class Tanh(Activation):
    def core_spec(self, k: int) -> tuple[str, float]:
        return ("tanh", 0.0)


@dataclass(frozen=True)
class Sigmoid(Activation):
    def core_spec(self, k: int) -> tuple[str, float]:
        return ("sigmoid", 0.0)


_BY_NAME = {
    "relu": ReLU,
    "tanh": Tanh,
    "sigmoid": Sigmoid,
    "leaky_relu": LeakyReLU,
    "all_relu": AllReLU,
}

ActivationLike = Union[str, Activation]
# The names an activation may be given by (the command line's choices).
ACTIVATION_NAMES = tuple(_BY_NAME)


def _one(a: ActivationLike) -> Activation:
    if isinstance(a, Activation):
        return a
    if isinstance(a, str) and a.lower() in _BY_NAME:
        return _BY_NAME[a.lower()]()
    raise InvalidInputError(
        f"unknown activation {a!r}; use one of {sorted(_BY_NAME)} or an Activation object "
        "such as sm.AllReLU(alpha=0.6) or sm.LeakyReLU(0.1)"
    )


def resolve(activation: ActivationLike | Sequence[ActivationLike], n_hidden: int) -> list[tuple[str, float]]:
    """Compiled specs for ``n_hidden`` hidden layers from one activation or a list of them."""
    if isinstance(activation, (str, Activation)):
        acts = [_one(activation)] * n_hidden
    elif isinstance(activation, Sequence):
        if len(activation) != n_hidden:
            raise InvalidInputError(
                f"activation list has {len(activation)} entries but the network has "
                f"{n_hidden} hidden layers"
            )
        acts = [_one(a) for a in activation]
    else:
        raise InvalidInputError(f"activation must be a name, an Activation or a list, got {activation!r}")
    specs = [a.core_spec(k) for k, a in enumerate(acts, start=1)]
    for a in acts:
        if isinstance(a, AllReLU) and isinstance(a.alpha, tuple) and len(a.alpha) != n_hidden:
            raise InvalidInputError(
                f"AllReLU got {len(a.alpha)} slopes for {n_hidden} hidden layers"
            )
    return specs
