"""A read-only view of one layer of a model."""

from __future__ import annotations

from typing import Any

import numpy as np


class Layer:
    """A read-only view of one sparse layer of a :class:`SparseMLP`.

    Arrays returned are copies; changing them does not change the model.
    """

    def __init__(self, model: Any, index: int) -> None:
        self._model = model
        self.index = index

    def _state(self) -> dict:
        return self._model._net.layer_state(self.index)

    @property
    def shape(self) -> tuple[int, int]:
        """(n_in, n_out)."""
        sizes = self._model.sizes
        return (sizes[self.index], sizes[self.index + 1])

    @property
    def nnz(self) -> int:
        return self._model._net.layer_nnz[self.index]

    @property
    def density(self) -> float:
        n_in, n_out = self.shape
        return self.nnz / (n_in * n_out)

    @property
    def bias(self) -> np.ndarray:
        return self._state()["bias"]

    def to_scipy(self):
        """The weights as a ``scipy.sparse.csr_matrix`` of shape (n_in, n_out), float32."""
        from scipy import sparse

        st = self._state()
        csc = sparse.csc_matrix((st["values"], st["row_idx"], st["col_ptr"]), shape=self.shape)
        return csc.tocsr()

    def importance(self) -> np.ndarray:
        """Strength of each output neuron: the sum of its absolute incoming weights."""
        st = self._state()
        counts = np.diff(st["col_ptr"])
        cols = np.repeat(np.arange(self.shape[1]), counts)
        return np.bincount(cols, weights=np.abs(st["values"]), minlength=self.shape[1])

    def __repr__(self) -> str:
        n_in, n_out = self.shape
        return f"Layer({self.index}: {n_in} -> {n_out}, nnz={self.nnz}, density={self.density:.4f})"
