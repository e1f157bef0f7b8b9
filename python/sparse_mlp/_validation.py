"""Conversion and checks of user arrays at the API boundary."""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InvalidInputError


def checked_sparse(w: Any, name: str) -> Any:
    """Sparse matrix ``w`` after checking its index arrays: scipy's C++
    conversions trust them, and an index out of range (a matrix whose
    arrays were edited by hand) makes them write out of bounds."""
    try:
        if w.format in ("csr", "csc", "bsr"):
            # (check_format skips its full check when indptr[-1] is not positive)
            ptr = np.asarray(w.indptr)
            if ptr.size == 0 or ptr[0] != 0 or (np.diff(ptr) < 0).any() or \
                    ptr[-1] != len(w.indices) or len(w.indices) != len(w.data):
                raise ValueError("its indptr is not a non-decreasing sequence from 0 to the "
                                 "number of stored values")
            w.check_format(full_check=True)
            return w
        coo = w.tocoo()
        for axis, index in enumerate((coo.row, coo.col)):
            if index.size and (index.min() < 0 or index.max() >= coo.shape[axis]):
                raise ValueError(f"an index on axis {axis} is outside the shape {coo.shape}")
        return coo
    except ValueError as e:
        raise InvalidInputError(f"{name} is not a valid sparse matrix: {e}") from None


def as_features(X: Any, n_features: int | None = None, name: str = "X") -> np.ndarray:
    """``X`` as a C-contiguous float32 (n_samples, n_features) array, checked
    for shape and for NaN/inf. Copies only when the dtype or layout requires."""
    if hasattr(X, "toarray") and hasattr(X, "nnz"):  # scipy.sparse
        X = checked_sparse(X, name).toarray()
    try:
        arr = np.asarray(X)
    except Exception as e:  # ragged lists and the like
        raise InvalidInputError(f"{name} cannot be read as a numeric array: {e}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        hint = ""
        if arr.ndim == 1 and n_features is not None and arr.size == n_features:
            hint = f" (one sample of {n_features} features? use {name}.reshape(1, -1))"
        elif arr.ndim == 1 and n_features == 1:
            hint = f" (samples of one feature? use {name}.reshape(-1, 1))"
        elif arr.ndim == 1:
            hint = (f" (a model of {n_features} features takes an array of shape (n_samples, "
                    f"{n_features}))" if n_features else "")
        raise InvalidInputError(
            f"{name} must be 2-D (n_samples, n_features), got shape {arr.shape}{hint}"
        )
    if arr.shape[0] == 0:
        raise InvalidInputError(f"{name} has no samples (shape {arr.shape})")
    if n_features is not None and arr.shape[1] != n_features:
        raise InvalidInputError(
            f"{name} has {arr.shape[1]} features but the model expects {n_features}"
        )
    with np.errstate(over="ignore"):  # values beyond float32 become inf, reported below
        out = np.ascontiguousarray(arr, dtype=np.float32)
    # In blocks of about 16 MB: a memory-mapped X larger than memory is read
    # once, and no temporary of X's size is made. A float32 C-contiguous X
    # (memory-mapped or not) is used as it is, without a copy.
    step = max(1, (1 << 24) // max(1, out.strides[0]))
    for start in range(0, out.shape[0], step):
        block = out[start:start + step]
        finite = np.isfinite(block)
        if not finite.all():
            r, c = np.argwhere(~finite)[0]
            what = ("NaN" if np.isnan(block[r, c])
                    else "an infinite value (or one too large for float32)")
            raise InvalidInputError(f"{name} contains {what} at row {start + r + 1}, column {c + 1} "
                                    f"({name}[{start + r}, {c}])")
    return out


def as_labels(y: Any, n_samples: int, n_classes: int, name: str = "y") -> np.ndarray:
    """``y`` as int64 class indices in ``0..n_classes-1``, one per sample."""
    try:
        arr = np.asarray(y)
    except Exception as e:
        raise InvalidInputError(f"{name} cannot be read as an array: {e}") from None
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        hint = " (one-hot labels? pass y.argmax(axis=1))" if arr.ndim == 2 else ""
        raise InvalidInputError(f"{name} must be 1-D integer class labels, got shape {arr.shape}{hint}")
    if arr.shape[0] != n_samples:
        raise InvalidInputError(f"X has {n_samples} samples but {name} has {arr.shape[0]} labels")
    if arr.dtype.kind == "b":
        arr = arr.astype(np.int64)
    elif arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or not np.array_equal(arr, np.round(arr)):
            raise InvalidInputError(f"{name} must hold integer class labels 0..{n_classes - 1}")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer class labels, got dtype {arr.dtype}")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= n_classes:
        raise InvalidInputError(
            f"{name} holds labels from {lo} to {hi}, but the model has {n_classes} classes "
            f"(labels must be 0..{n_classes - 1})"
        )
    return np.ascontiguousarray(arr, dtype=np.int64)


def positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidInputError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def seed_value(value: Any, allow_none: bool = False) -> int | None:
    """A random seed: an integer in [0, 2**64) (or None when allowed: fresh entropy)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < 2**64:
        raise InvalidInputError(f"seed must be an integer in [0, 2**64), got {value!r}")
    return int(value)


def verbosity(value: Any) -> int:
    """``verbose``: an integer (0 silent, 1 progress, 2 a line per epoch)."""
    if not isinstance(value, (int, np.integer)):
        raise InvalidInputError(f"verbose must be an integer (0, 1 or 2), got {value!r}")
    return int(value)


def number(name: str, value: Any, low: float, high: float, *, high_open: bool = False,
           low_open: bool = False) -> float:
    """A finite float in the given range."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a number, got {value!r}") from None
    ok = np.isfinite(v) and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not ok:
        lb = "(" if low_open else "["
        rb = ")" if high_open else "]"
        raise InvalidInputError(f"{name} must be in {lb}{low:g}, {high:g}{rb}, got {value!r}")
    return v


def nonnegative_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InvalidInputError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def choice(name: str, value: Any, options: tuple[str, ...]) -> str:
    if value not in options:
        raise InvalidInputError(f"{name} must be one of {options}, got {value!r}")
    return str(value)


PRECISIONS = ("float32", "bfloat16")


def check_precision(precision: Any) -> str:
    """A model's precision, ``"float32"`` or ``"bfloat16"``; anything else is an InvalidInputError."""
    if precision not in PRECISIONS:
        raise InvalidInputError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return str(precision)
