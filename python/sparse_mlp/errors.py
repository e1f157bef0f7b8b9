"""The exceptions sparse_mlp raises.

Bad input (arrays, hyper-parameters, files) raises :class:`InvalidInputError`,
which is also a :class:`ValueError`; every error of the package derives from
:class:`SparseMLPError`.
"""

from __future__ import annotations


class SparseMLPError(Exception):
    """Base class of every error raised by sparse_mlp."""


class InvalidInputError(SparseMLPError, ValueError):
    """An argument, array or file content is invalid; nothing was changed."""


class CheckpointError(InvalidInputError):
    """A saved model file is missing, truncated, corrupted or of another version."""


class DivergenceError(SparseMLPError, FloatingPointError):
    """The training loss became NaN or infinite.

    Attributes ``epoch`` (1-based, when known), ``batch`` (0-based within the
    epoch) and ``loss`` say where. The weights are those before the failing batch.
    """

    def __init__(
        self,
        message: str,
        batch: int | None = None,
        loss: float | None = None,
        epoch: int | None = None,
    ) -> None:
        super().__init__(message)
        self.batch = batch
        self.loss = loss
        self.epoch = epoch


class InsufficientMemoryError(SparseMLPError, MemoryError):
    """Training would need more memory than the machine has available; raised
    by ``fit`` before anything is allocated. The message gives the estimate
    (:meth:`SparseMLP.memory_estimate`) and the largest batch size that fits."""


class ParallelError(SparseMLPError):
    """A data-parallel (MPI) run stopped: a worker or the server failed, or a
    process went silent. Every rank raises it with the same reason."""
