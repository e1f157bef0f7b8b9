"""A scikit-learn classifier around :class:`SparseMLP` (scikit-learn is the
optional ``sklearn`` extra).

>>> import numpy as np
>>> from sklearn.pipeline import make_pipeline
>>> from sklearn.preprocessing import StandardScaler
>>> from sparse_mlp import SparseMLPClassifier
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(300, 8)); y = np.where(X[:, 0] - X[:, 1] > 0, "up", "down")
>>> clf = make_pipeline(StandardScaler(), SparseMLPClassifier(hidden_layer_sizes=(64,), random_state=0))
>>> clf.fit(X, y).score(X, y) > 0.9
True
>>> clf.predict(X[:2]).tolist()
['up', 'up']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .activations import AllReLU
from .datasets import feature_scaling
from .model import SparseMLP
from .topology import SET, ImportancePruning


class SparseMLPClassifier(ClassifierMixin, BaseEstimator):
    """A truly sparse MLP classifier with the scikit-learn estimator API
    (``fit``, ``predict``, ``predict_proba``, ``score``, ``get_params``,
    ``set_params``), usable in ``Pipeline`` and ``GridSearchCV``.

    Parameters
    ----------
    hidden_layer_sizes : sizes of the hidden layers.
    activation : ``"all_relu"`` (with slope ``alpha``), ``"relu"``, ``"tanh"``, ``"sigmoid"``.
    alpha : All-ReLU slope.
    epsilon : Erdős–Rényi sparsity of every layer.
    init, dropout : as in :class:`SparseMLP`.
    epochs, batch_size, learning_rate, momentum, weight_decay : as in :meth:`SparseMLP.fit`.
    zeta : SET fraction after every epoch (0: fixed topology).
    standardize : scale features by the training data's mean and std
        inside the estimator (default True, as the paper's runs do), so
        unscaled data cannot blow up the activations.
    importance_pruning : None, or ``(start_epoch, every, percentile)``.
    random_state : None, an int or a ``numpy.random.RandomState``.
    verbose : passed to ``fit``.

    Attributes after ``fit``: ``model_`` (the :class:`SparseMLP`),
    ``classes_``, ``n_features_in_``, ``history_``, and with ``standardize``
    ``mean_`` and ``scale_``.
    """

    def __init__(
        self,
        hidden_layer_sizes: Sequence[int] = (256, 256),
        activation: str = "all_relu",
        alpha: float = 0.6,
        epsilon: float = 20.0,
        init: str = "he_uniform",
        dropout: float = 0.3,
        epochs: int = 50,
        batch_size: int = 32,
        learning_rate: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 2e-4,
        zeta: float = 0.3,
        importance_pruning: tuple[int, int, float] | None = None,
        standardize: bool = True,
        random_state: Any = None,
        verbose: int = 0,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.alpha = alpha
        self.epsilon = epsilon
        self.init = init
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.zeta = zeta
        self.importance_pruning = importance_pruning
        self.standardize = standardize
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X: Any, y: Any) -> SparseMLPClassifier:
        X, y = validate_data(self, X, y, accept_sparse=False, dtype=[np.float32, np.float64])
        check_classification_targets(y)
        self.classes_, encoded = np.unique(y, return_inverse=True)
        if self.classes_.size < 2:
            raise ValueError(f"SparseMLPClassifier needs at least 2 classes in y; got 1 class "
                             f"({self.classes_[0]!r})")
        seed = int(check_random_state(self.random_state).randint(0, 2**31 - 1)) \
            if not isinstance(self.random_state, (int, np.integer)) else int(self.random_state)
        if self.standardize:
            self.mean_, self.scale_ = feature_scaling(X)
        activation = AllReLU(self.alpha) if self.activation == "all_relu" else self.activation
        self.model_ = SparseMLP([X.shape[1], *self.hidden_layer_sizes, self.classes_.size],
                                activation=activation, epsilon=self.epsilon, init=self.init,
                                dropout=self.dropout, seed=seed)
        pruning = ImportancePruning(*self.importance_pruning) if self.importance_pruning else None
        self.history_ = self.model_.fit(
            self._scaled(X), encoded, epochs=self.epochs, batch_size=self.batch_size,
            learning_rate=self.learning_rate, momentum=self.momentum, weight_decay=self.weight_decay,
            topology=SET(self.zeta) if self.zeta > 0 else None, pruning=pruning, verbose=self.verbose)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, accept_sparse=False, dtype=[np.float32, np.float64])
        return self.model_.predict_proba(self._scaled(X)).astype(np.float64)

    def _scaled(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean_) / self.scale_ if self.standardize else X

    def predict_log_proba(self, X: Any) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X: Any) -> np.ndarray:
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(axis=1)]
