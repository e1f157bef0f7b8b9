"""scipy sparse matrices as a model's layers: checked and converted to the
core's CSC arrays (``SparseMLP.from_scipy``, and through it ``from_torch``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import archive
from ._validation import checked_sparse
from .errors import InvalidInputError
from .shape import layer_sizes


def checked_layers(weights: Sequence[Any],
                   biases: Sequence[Any] | None) -> tuple[list[int], list[dict[str, Any]]]:
    """The layer sizes and the per-layer arrays (``col_ptr``, ``row_idx``,
    ``values``, ``bias``) of scipy matrices ``weights[l]`` (n_in × n_out) and
    ``biases``, refusing what cannot be a network before allocating it."""
    from scipy import sparse

    weights = list(weights)
    if not weights:
        raise InvalidInputError("from_scipy needs at least one weight matrix")
    if biases is not None:
        biases = list(biases)
        if len(biases) != len(weights):
            raise InvalidInputError(f"{len(weights)} weight matrices but {len(biases)} biases")
    for i, w in enumerate(weights):
        if not sparse.issparse(w):
            raise InvalidInputError(f"weights[{i}] must be a scipy sparse matrix, got {type(w).__name__}")
        if w.dtype.kind not in "biuf":
            raise InvalidInputError(f"weights[{i}] must hold real numbers, got dtype {w.dtype}")
        if i and w.shape[0] != weights[i - 1].shape[1]:
            raise InvalidInputError(f"weights[{i}] has {w.shape[0]} rows but weights[{i - 1}] has "
                                    f"{weights[i - 1].shape[1]} columns")
        weights[i] = checked_sparse(w, f"weights[{i}]")
    # sizes and memory first: converting a matrix allocates per column
    sizes = layer_sizes([weights[0].shape[0]] + [w.shape[1] for w in weights])
    archive.check_fits(sizes, [w.nnz for w in weights], "importing the weights")
    layers = []
    for i, w in enumerate(weights):
        csc = sparse.csc_matrix(w, dtype=np.float32, copy=True)
        csc.sum_duplicates()
        csc.sort_indices()
        if not np.isfinite(csc.data).all():
            raise InvalidInputError(f"weights[{i}] contains NaN or infinite values")
        try:
            bias = np.zeros(w.shape[1], dtype=np.float32) if biases is None else \
                np.ascontiguousarray(biases[i], dtype=np.float32)
        except (TypeError, ValueError):
            bias = np.zeros(0, dtype=np.float32)  # refused below
        if bias.shape != (w.shape[1],) or not np.isfinite(bias).all():
            raise InvalidInputError(f"biases[{i}] must be {w.shape[1]} finite numbers")
        layers.append({"col_ptr": csc.indptr.astype(np.int64), "row_idx": csc.indices.astype(np.int64),
                       "values": csc.data, "bias": bias})
    return sizes, layers
