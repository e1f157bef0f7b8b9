"""The data of a training run, checked against the model once: features as
float32, targets as the core takes them (class labels as output indices of
the model's classes, or float32 values for regression), per-sample weights
(``sample_weight`` times ``class_weight``), the validation pair, and a
fingerprint that tells whether two runs saw the same data."""

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
    y: np.ndarray  # output indices (int64), or float32 targets (n, outputs) for regression
    val: tuple[np.ndarray, np.ndarray] | None
    classes: np.ndarray | None  # None for regression
    weights: np.ndarray | None = None  # float32 per sample
    _fingerprint: str | None = field(default=None, repr=False)

    @property
    def regression(self) -> bool:
        return self.classes is None

    def fingerprint(self) -> str:
        """A digest of the training features, targets and weights (computed
        once), so that a run is not resumed, nor trained in parallel, on
        other data."""
        if self._fingerprint is None:
            h = hashlib.blake2b(digest_size=16)
            for a in (self.X, self.y) + ((self.weights,) if self.weights is not None else ()):
                h.update(repr((a.dtype.str, a.shape)).encode())
                h.update(memoryview(np.ascontiguousarray(a)).cast("B"))
            self._fingerprint = h.hexdigest()
        return self._fingerprint


def is_regression(model: Any, y: Any = None) -> bool:
    """Whether ``model`` learns values rather than classes: an MSE model with
    one output, one fitted on values, or given 2-D targets."""
    if model._net.loss[0] != "mse":
        return False
    if model._config.get("targets") == "values" or model.n_classes == 1:
        return True
    return y is not None and np.ndim(y) == 2 and model.classes_ is None


def targets(y: Any, n_samples: int, n_outputs: int, name: str = "y") -> np.ndarray:
    """Regression targets as a C-contiguous float32 array (n, outputs)."""
    try:
        arr = np.asarray(y, dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must hold numbers (regression targets)") from None
    if arr.ndim == 1 and n_outputs == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] != n_outputs:
        also = " or (n,)" if n_outputs == 1 else ""
        raise InvalidInputError(f"{name} has shape {arr.shape}; the model has {n_outputs} outputs, so "
                                f"targets must have shape (n, {n_outputs}){also}")
    if arr.shape[0] != n_samples:
        raise InvalidInputError(f"X has {n_samples} samples but {name} has {arr.shape[0]}")
    bad = ~np.isfinite(arr)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise InvalidInputError(f"{name} holds {arr[i, j]} at row {i + 1}, column {j + 1}")
    return np.ascontiguousarray(arr)


def sample_weights(sample_weight: Any, class_weight: Any, y: np.ndarray, classes: np.ndarray | None,
                   n_samples: int) -> np.ndarray | None:
    """The weight of each sample: ``sample_weight`` (finite, not negative,
    one per sample) times the weight ``class_weight`` gives its class
    ("balanced": ``n / (classes present · count)``, as scikit-learn; a dict
    by the data's own labels, others 1). None when neither is given."""
    w = None
    if sample_weight is not None:
        try:
            w = np.asarray(sample_weight, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidInputError("sample_weight must be numbers, one per sample") from None
        if w.ndim != 1 or w.shape[0] != n_samples:
            raise InvalidInputError(f"sample_weight has shape {w.shape}; it needs one weight per "
                                    f"sample ({n_samples},)")
        bad = ~(np.isfinite(w) & (w >= 0))
        if bad.any():
            i = int(np.argmax(bad))
            raise InvalidInputError(f"sample_weight holds {w[i]} at sample {i}; weights must be "
                                    "finite and not negative")
    if class_weight is not None:
        if classes is None:
            raise InvalidInputError("class_weight is for classification; a regression model takes "
                                    "sample_weight")
        per_class = np.ones(classes.size)
        if isinstance(class_weight, str):
            if class_weight != "balanced":
                raise InvalidInputError(f"class_weight must be None, 'balanced' or a dict "
                                        f"{{label: weight}}, got {class_weight!r}")
            counts = np.bincount(y, minlength=classes.size)
            present = counts > 0
            per_class[present] = n_samples / (present.sum() * counts[present])
        elif isinstance(class_weight, dict):
            for label, weight in class_weight.items():
                hits = np.flatnonzero(classes.astype(str) == str(label))
                if hits.size == 0:
                    raise InvalidInputError(f"class_weight names class {label!r}, which is not one of "
                                            f"the model's classes ({labels.describe(classes)})")
                if not (isinstance(weight, (int, float, np.number)) and np.isfinite(weight)
                        and weight >= 0):
                    raise InvalidInputError(f"class_weight for class {label!r} is {weight!r}; weights "
                                            "must be finite numbers >= 0")
                per_class[hits[0]] = float(weight)
        else:
            raise InvalidInputError(f"class_weight must be None, 'balanced' or a dict {{label: weight}}, "
                                    f"got {class_weight!r}")
        cw = per_class[y]
        w = cw if w is None else w * cw
    if w is None:
        return None
    if not (w > 0).any():
        raise InvalidInputError("the sample weights are all zero: there is nothing to train on")
    return w.astype(np.float32)


def prepare(model: Any, X: Any, y: Any, validation_data: Any = None,
            classes: np.ndarray | None = None, sample_weight: Any = None,
            class_weight: Any = None) -> TrainingData:
    """``X``, ``y``, the weights and ``validation_data`` checked against
    ``model``'s shape; class labels become output indices of ``classes``
    (default: the model's, else learned from ``y``), regression targets
    float32 values. The model is not changed."""
    X = as_features(X, model.n_features)
    n = X.shape[0]
    if is_regression(model, y):
        y = targets(y, n, model.n_classes)
        classes = None
    else:
        if classes is None:
            classes = model.classes_
        if classes is None:
            classes = labels.learn(y, model.n_classes)
        y = labels.encode(classes, y, n)
    weights = sample_weights(sample_weight, class_weight, y, classes, n)
    if validation_data is None:
        return TrainingData(X, y, None, classes, weights)
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
        raise InvalidInputError("validation_data must be a pair (X_val, y_val)")
    Xv = as_features(validation_data[0], model.n_features, name="X_val")
    yv = (targets(validation_data[1], Xv.shape[0], model.n_classes, "y_val") if classes is None
          else labels.encode(classes, validation_data[1], Xv.shape[0], "y_val"))
    return TrainingData(X, y, (Xv, yv), classes, weights)


def regression_metrics(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """MSE, MAE and R² (the mean over outputs, as scikit-learn's
    ``r2_score``; an output whose targets are constant counts 1 when
    predicted exactly, else 0)."""
    pred, y = pred.astype(np.float64), y.astype(np.float64)
    err = pred - y
    ss_res = (err ** 2).sum(axis=0)
    ss_tot = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1),
                      np.where(ss_res == 0, 1.0, 0.0))
    return {"mse": float((err ** 2).mean()), "mae": float(np.abs(err).mean()), "r2": float(r2.mean())}


def validation_record(model: Any, data: TrainingData, net: Any = None) -> dict[str, float]:
    """The validation metrics of an epoch's record: ``val_loss`` and
    ``val_accuracy``, or for regression ``val_loss`` (the MSE), ``val_mae``
    and ``val_r2``."""
    if data.val is None:
        return {}
    net = model._net if net is None else net
    Xv, yv = data.val
    loss, accuracy = net.evaluate(Xv, yv)
    if not data.regression:
        return {"val_loss": loss, "val_accuracy": accuracy}
    m = regression_metrics(net.predict_proba(Xv), yv)
    return {"val_loss": loss, "val_mae": m["mae"], "val_r2": m["r2"]}
