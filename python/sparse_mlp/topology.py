"""SET, the topology strategy: prune the weights closest to zero and regrow
as many at random, after every epoch (``on_epoch_end(model, epoch, epochs)``,
``epoch`` 1-based, returns the entries it adds to the epoch's record). The
work happens in the core."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._validation import nonnegative_int, number, positive_int
from .errors import InvalidInputError
from .strategies import register


@register
@dataclass(frozen=True)
class SET:
    """Sparse Evolutionary Training (Mocanu et al. 2018).

    Every ``every`` epochs except the last, each sparse layer loses the
    fraction ``zeta`` of its positive weights closest to zero and the same
    fraction of its negative weights, and regrows as many connections at random
    empty positions with fresh weights and zero momentum. nnz is unchanged.

    ``layers``: the indices of the layers to evolve (layer 0 takes the
    input); by default every sparse layer. Dense layers are never evolved:
    in the paper's networks the output layer is dense (ε·(n_in+n_out) ≥
    n_in·n_out), so SET changes the hidden layers only.
    """

    zeta: float = 0.3
    every: int = 1
    layers: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "zeta", number("SET zeta", self.zeta, 0.0, 1.0))
        object.__setattr__(self, "every", positive_int("SET every", self.every))
        if self.layers is not None:
            if isinstance(self.layers, (str, bytes)) or not hasattr(self.layers, "__iter__"):
                raise InvalidInputError(f"SET layers must be a list of layer indices, got {self.layers!r}")
            layers = tuple(nonnegative_int("SET layers entry", k) for k in self.layers)
            if len(set(layers)) != len(layers):
                raise InvalidInputError(f"SET layers lists a layer twice: {layers}")
            object.__setattr__(self, "layers", layers)

    def on_epoch_end(self, model: Any, epoch: int, epochs: int) -> dict[str, Any]:
        if epoch >= epochs or epoch % self.every != 0:
            return {}
        layers = None if self.layers is None else list(self.layers)
        steps = model._net.evolve_set(self.zeta, layers)
        return {"set_regrown": int(sum(p + n for p, n in steps))}
