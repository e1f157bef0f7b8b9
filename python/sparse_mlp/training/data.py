"""The data of a training run, checked against the model once: features as
float32, labels as output indices of the model's classes, the validation
pair, and a fingerprint that tells whether two runs saw the same data."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import labels
from .._validation import as_features
from ..errors import InvalidInputError


@dataclass
class TrainingData:
    X: np.ndarray
    y: np.ndarray  # output indices
    val: tuple[np.ndarray, np.ndarray] | None
    classes: np.ndarray
    _fingerprint: str | None = field(default=None, repr=False)

    def fingerprint(self) -> str:
        """A digest of the training features and labels (computed once), so
        that a run is not resumed, nor trained in parallel, on other data."""
        if self._fingerprint is None:
            h = hashlib.blake2b(digest_size=16)
            for a in (self.X, self.y):
                h.update(repr((a.dtype.str, a.shape)).encode())
                h.update(memoryview(np.ascontiguousarray(a)).cast("B"))
            self._fingerprint = h.hexdigest()
        return self._fingerprint


def prepare(model: Any, X: Any, y: Any, validation_data: Any = None,
            classes: np.ndarray | None = None) -> TrainingData:
    """``X``, ``y`` and ``validation_data`` checked against ``model``'s shape;
    the labels become output indices of ``classes`` (default: the model's,
    else learned from ``y``). The model is not changed."""
    X = as_features(X, model.n_features)
    if classes is None:
        classes = model.classes_
    if classes is None:
        classes = labels.learn(y, model.n_classes)
    y = labels.encode(classes, y, X.shape[0])
    if validation_data is None:
        return TrainingData(X, y, None, classes)
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
        raise InvalidInputError("validation_data must be a pair (X_val, y_val)")
    Xv = as_features(validation_data[0], model.n_features, name="X_val")
    return TrainingData(X, y, (Xv, labels.encode(classes, validation_data[1], Xv.shape[0], "y_val")),
                        classes)
