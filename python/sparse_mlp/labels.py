"""Class labels: a model keeps the data's own labels (numbers or strings), as
scikit-learn's classifiers keep ``classes_``.

Output ``k`` of a model stands for ``classes[k]``. The classes are given at
construction (``SparseMLP(..., classes=...)``) or learned by the first ``fit``:

- integer labels that all lie in ``0..n_outputs-1`` name the outputs
  directly: the classes are ``0..n_outputs-1`` (a batch without some class
  is fine);
- any other labels (strings, ``-1/+1``, ``1..k``, ...) must have exactly
  ``n_outputs`` distinct values, which become the classes in sorted order.

Later fits, resumes, ``evaluate`` and validation data accept only those labels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InvalidInputError


def _as_label_array(y: Any, name: str) -> np.ndarray:
    """``y`` as a 1-D array of numbers or strings (``str``, not bytes or objects)."""
    try:
        arr = np.asarray(y)
    except Exception as e:  # ragged lists and the like
        raise InvalidInputError(f"{name} cannot be read as an array: {e}") from None
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        hint = " (one-hot labels? pass y.argmax(axis=1))" if arr.ndim == 2 else ""
        raise InvalidInputError(f"{name} must be a 1-D array of class labels, got shape {arr.shape}{hint}")
    if arr.dtype.kind == "S":
        arr = np.char.decode(arr, "utf-8", errors="replace")
    elif arr.dtype.kind == "O":
        if all(isinstance(v, str) for v in arr):
            arr = arr.astype(str)
        else:
            try:
                arr = arr.astype(np.float64)
            except (TypeError, ValueError):
                raise TypeError(f"{name} must hold class labels (numbers or strings), not "
                                f"{type(next(v for v in arr if not isinstance(v, str))).__name__} "
                                "objects") from None
    if arr.dtype.kind not in "biufU":
        raise TypeError(f"{name} must hold class labels (numbers or strings), got dtype {arr.dtype}")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise InvalidInputError(f"{name} contains NaN or infinite labels")
        if np.array_equal(arr, np.round(arr)) and np.abs(arr).max(initial=0) < 2**53:
            arr = arr.astype(np.int64)  # 1.0 is the class 1 (and prints as 1)
    if arr.dtype.kind == "b":
        arr = arr.astype(np.int64)
    return arr


def learn(y: Any, n_outputs: int, name: str = "y") -> np.ndarray:
    """The classes of a model with ``n_outputs`` outputs first fitted on ``y``."""
    arr = _as_label_array(y, name)
    if arr.size == 0:
        raise InvalidInputError(f"{name} holds no labels")
    if arr.dtype.kind in "iu" and arr.min() >= 0 and arr.max() < n_outputs:
        return np.arange(n_outputs, dtype=np.int64)
    found = np.unique(arr)
    if found.size != n_outputs:
        shown = found[:10].tolist() + (["..."] if found.size > 10 else [])
        raise InvalidInputError(
            f"{name} holds {found.size} distinct labels {shown} but the model has {n_outputs} "
            f"outputs; make the last layer {found.size} wide, or give the model its classes "
            "(SparseMLP(..., classes=[...]))"
        )
    return found


def check_classes(classes: Any, n_outputs: int) -> np.ndarray:
    """``classes`` given at construction: ``n_outputs`` distinct labels."""
    arr = _as_label_array(classes, "classes")
    if arr.size != n_outputs:
        raise InvalidInputError(f"classes lists {arr.size} labels but the model has {n_outputs} outputs")
    if np.unique(arr).size != arr.size:
        raise InvalidInputError(f"classes lists a label twice: {arr.tolist()}")
    return arr


def encode(classes: np.ndarray, y: Any, n_samples: int | None = None, name: str = "y") -> np.ndarray:
    """``y`` as int64 output indices: the position of each label in ``classes``."""
    arr = _as_label_array(y, name)
    if n_samples is not None and arr.shape[0] != n_samples:
        raise InvalidInputError(f"X has {n_samples} samples but {name} has {arr.shape[0]} labels")
    numeric = classes.dtype.kind in "iuf"
    if numeric != (arr.dtype.kind in "iuf"):
        kind = "numbers" if numeric else "strings"
        raise InvalidInputError(f"{name} holds {'strings' if numeric else 'numbers'} but the model's "
                                f"classes are {kind}: {describe(classes)}")
    order = np.argsort(classes, kind="stable")
    ranked = classes[order]
    pos = np.clip(np.searchsorted(ranked, arr), 0, ranked.size - 1)
    bad = ranked[pos] != arr
    if bad.any():
        i = int(np.argmax(bad))
        raise InvalidInputError(f"{name} holds the label {arr[i].item()!r} (row {i + 1}), which is not "
                                f"one of the model's classes {describe(classes)}")
    return np.ascontiguousarray(order[pos], dtype=np.int64)


def describe(classes: np.ndarray) -> str:
    items = [v.item() for v in classes[:10]]
    return str(items)[:-1] + (", ...]" if classes.size > 10 else "]")


def to_json(classes: np.ndarray | None) -> list | None:
    return None if classes is None else [v.item() for v in classes]


def from_json(data: Any, n_outputs: int) -> np.ndarray | None:
    """Classes stored in a model file (checked like ``classes=``)."""
    if data is None:
        return None
    if not isinstance(data, list) or not all(isinstance(v, (int, float, str)) and not isinstance(v, bool)
                                             for v in data):
        raise InvalidInputError(f"the stored classes must be a list of numbers or strings, got {data!r}")
    return check_classes(data, n_outputs)


def text(value: Any) -> str:
    """A label as a command line prints it: ``-1``, not ``-1.0``."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
