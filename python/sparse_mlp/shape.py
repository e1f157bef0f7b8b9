"""The shape of a network: checked layer sizes and the connections each
layer gets (Erdős–Rényi from ε, or a global density spread by ERK)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from . import _core
from ._validation import number, positive_int
from .errors import InvalidInputError


def layer_sizes(sizes: Any) -> list[int]:
    """``sizes`` checked: at least two layers, each of 1 to ``MAX_INDEX``
    (2**32 - 1) neurons."""
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) or len(sizes) < 2:
        raise InvalidInputError(
            f"sizes must list at least the input and output sizes, e.g. [784, 1000, 10]; got {sizes!r}"
        )
    sizes = [positive_int(f"sizes[{i}]", s) for i, s in enumerate(sizes)]
    for i, s in enumerate(sizes):
        if s > _core.MAX_INDEX:
            raise InvalidInputError(f"sizes[{i}] is {s}; a layer has at most {_core.MAX_INDEX} "
                                    "neurons")
    return sizes


def connection_counts(
    sizes: Sequence[int],
    epsilon: float | None = None,
    density: float | None = None,
    distribution: str = "erk",
) -> list[int]:
    """Connections per layer.

    With ``epsilon`` (Erdős–Rényi, SPEC §2): ``round(min(1, ε(n_in+n_out)/(n_in·n_out))·n_in·n_out)``.
    With a global ``density``: ``"uniform"`` gives every layer that density;
    ``"erk"`` (Erdős–Rényi-Kernel, as in RigL) gives layer ``l`` a density
    proportional to ``(n_in+n_out)/(n_in·n_out)``, capped at 1, scaled so the
    whole network has ``density`` of its dense parameter count.

    Every layer must get at least one connection; a density or ε so small
    that one gets none is refused.

    >>> connection_counts([784, 1000, 10], epsilon=20)
    [35680, 10000]
    """
    sizes = layer_sizes(sizes)
    counts = _connection_counts(sizes, epsilon, density, distribution)
    for i, k in enumerate(counts):
        if k < 1:
            what = f"density {density}" if density is not None else f"epsilon {epsilon}"
            raise InvalidInputError(f"with {what}, layer {i} ({sizes[i]}x{sizes[i + 1]}) gets no "
                                    "connections; use a larger value")
    return counts


def _connection_counts(sizes: Sequence[int], epsilon: float | None, density: float | None,
                       distribution: str) -> list[int]:
    pairs = list(zip(sizes[:-1], sizes[1:]))
    if density is None:
        eps = number("epsilon", 20.0 if epsilon is None else epsilon, 0.0, math.inf, low_open=True)
        return [_core.er_nnz(eps, a, b) for a, b in pairs]
    if epsilon is not None:
        raise InvalidInputError("give either epsilon or density, not both")
    d = number("density", density, 0.0, 1.0, low_open=True)
    caps = [a * b for a, b in pairs]
    if distribution == "uniform":
        return [min(cap, round(d * cap)) for cap in caps]
    if distribution != "erk":
        raise InvalidInputError(f"distribution must be 'erk' or 'uniform', got {distribution!r}")
    raw = [(a + b) / (a * b) for a, b in pairs]
    dense: set[int] = set()
    target = d * sum(caps)
    while True:
        free = [i for i in range(len(caps)) if i not in dense]
        budget = target - sum(caps[i] for i in dense)
        scale = budget / sum(raw[i] * caps[i] for i in free) if free else 0.0
        over = [i for i in free if scale * raw[i] >= 1.0]
        if not over:
            break
        dense.update(over)
    return [caps[i] if i in dense else min(caps[i], round(scale * raw[i] * caps[i]))
            for i in range(len(caps))]
