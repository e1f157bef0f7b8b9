"""A scikit-learn classifier around :class:`SparseMLP` (scikit-learn is the
optional ``sklearn`` extra). Its parameters follow ``MLPClassifier``'s names
wherever the meaning is the same (``hidden_layer_sizes``, ``alpha``,
``batch_size``, ``learning_rate``, ``learning_rate_init``, ``max_iter``,
``momentum``, ``nesterovs_momentum``, ``random_state``, ``verbose``,
``warm_start``).

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

import warnings
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
from .pruning import ImportancePruning
from .topology import SET

# The value of a deprecated parameter that was not given (scikit-learn's own convention).
_DEPRECATED = "deprecated"


class SparseMLPClassifier(ClassifierMixin, BaseEstimator):
    """A truly sparse MLP classifier with the scikit-learn estimator API
    (``fit``, ``predict``, ``predict_proba``, ``score``, ``get_params``,
    ``set_params``), usable in ``Pipeline`` and ``GridSearchCV``.

    Parameters
    ----------
    hidden_layer_sizes : sizes of the hidden layers (default (256, 256)).
    activation : ``"all_relu"`` (with slope ``all_relu_slope``), ``"relu"``,
        ``"tanh"``, ``"sigmoid"``.
    all_relu_slope : the All-ReLU slope α (default 0.6); see :class:`sparse_mlp.AllReLU`.
    epsilon : Erdős–Rényi sparsity of every layer (default 20).
    init, dropout : as in :class:`SparseMLP`.
    alpha : L2 penalty, as in ``MLPClassifier``: here the papers' decoupled
        weight decay ``w ← w − alpha·w`` after every step (default 2e-4).
    batch_size : mini-batch size, or ``"auto"`` for ``min(200, n_samples)``
        as in ``MLPClassifier`` (default 32).
    learning_rate : ``"constant"`` (the only schedule so far).
    learning_rate_init : the learning rate (default 0.01).
    max_iter : epochs (default 50).
    momentum, nesterovs_momentum : momentum SGD (default 0.9, without Nesterov).
    zeta : SET fraction after every epoch (0: fixed topology).
    importance_pruning : None, or ``(start_epoch, every, percentile)``.
    standardize : scale features by the training data's mean and std
        inside the estimator (default True, as the paper's runs do), so
        unscaled data cannot blow up the activations.
    random_state : None, an int or a ``numpy.random.RandomState``.
    verbose : passed to ``fit``.
    warm_start : continue training the fitted model on the next ``fit``
        (same features and classes) instead of starting anew.
    epochs, weight_decay : deprecated names of ``max_iter`` and ``alpha``.

    Attributes after ``fit``: ``model_`` (the :class:`SparseMLP`),
    ``classes_``, ``n_features_in_``, ``n_iter_`` (epochs of the last fit),
    ``history_``, and with ``standardize`` ``mean_`` and ``scale_``.
    """

    def __init__(
        self,
        hidden_layer_sizes: Sequence[int] = (256, 256),
        activation: str = "all_relu",
        all_relu_slope: float = 0.6,
        epsilon: float = 20.0,
        init: str = "he_uniform",
        dropout: float = 0.3,
        alpha: float = 2e-4,
        batch_size: int | str = 32,
        learning_rate: str = "constant",
        learning_rate_init: float = 0.01,
        max_iter: int = 50,
        momentum: float = 0.9,
        nesterovs_momentum: bool = False,
        zeta: float = 0.3,
        importance_pruning: tuple[int, int, float] | None = None,
        standardize: bool = True,
        random_state: Any = None,
        verbose: int = 0,
        warm_start: bool = False,
        epochs: Any = _DEPRECATED,
        weight_decay: Any = _DEPRECATED,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.all_relu_slope = all_relu_slope
        self.epsilon = epsilon
        self.init = init
        self.dropout = dropout
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.zeta = zeta
        self.importance_pruning = importance_pruning
        self.standardize = standardize
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        self.epochs = epochs
        self.weight_decay = weight_decay

    def _settings(self) -> tuple[int, float, float]:
        """(epochs, weight decay, learning rate), from the current names or the deprecated ones."""
        epochs, decay, rate = self.max_iter, self.alpha, self.learning_rate_init
        if not isinstance(self.epochs, str) or self.epochs != _DEPRECATED:
            warnings.warn("SparseMLPClassifier(epochs=...) is deprecated: use max_iter=... "
                          "(scikit-learn's name)", DeprecationWarning, stacklevel=3)
            epochs = self.epochs
        if not isinstance(self.weight_decay, str) or self.weight_decay != _DEPRECATED:
            warnings.warn("SparseMLPClassifier(weight_decay=...) is deprecated: use alpha=... "
                          "(scikit-learn's name for the L2 penalty)", DeprecationWarning, stacklevel=3)
            decay = self.weight_decay
        elif isinstance(decay, (int, float, np.number)) and 0.01 <= decay < 1:
            # alpha used to be the All-ReLU slope here (0.05 to 0.75 in the papers)
            warnings.warn(f"alpha={decay} is the L2 penalty, as in scikit-learn: every step shrinks "
                          f"each weight by {decay:.0%}. The All-ReLU slope is all_relu_slope (its "
                          "name was alpha before)", UserWarning, stacklevel=3)
        numeric = (int, float, np.number)
        if isinstance(self.learning_rate, numeric) and not isinstance(self.learning_rate, bool):
            warnings.warn("SparseMLPClassifier(learning_rate=<number>) is deprecated: the rate is "
                          "learning_rate_init, and learning_rate names the schedule, as in "
                          "scikit-learn", DeprecationWarning, stacklevel=3)
            rate = float(self.learning_rate)
        elif self.learning_rate != "constant":
            raise ValueError(
                f"learning_rate={self.learning_rate!r} is not supported yet: only 'constant' "
                "(scikit-learn's 'invscaling' and 'adaptive' come with learning-rate schedules)")
        return epochs, decay, rate

    def fit(self, X: Any, y: Any) -> SparseMLPClassifier:
        epochs, decay, rate = self._settings()
        warm = self.warm_start and hasattr(self, "model_")
        X, y = validate_data(self, X, y, accept_sparse=False, dtype=[np.float32, np.float64],
                             reset=not warm)
        check_classification_targets(y)
        classes, encoded = np.unique(y, return_inverse=True)
        if warm and not np.array_equal(classes, self.classes_):
            raise ValueError(f"warm_start: y has the classes {classes.tolist()}, but the fitted model "
                             f"has {self.classes_.tolist()}")
        if classes.size < 2:
            raise ValueError(f"SparseMLPClassifier needs at least 2 classes in y; got 1 class "
                             f"({classes[0]!r})")
        if not warm:
            self.classes_ = classes
            seed = int(check_random_state(self.random_state).randint(0, 2**31 - 1)) \
                if not isinstance(self.random_state, (int, np.integer)) else int(self.random_state)
            if self.standardize:
                self.mean_, self.scale_ = feature_scaling(X)
            activation = AllReLU(self.all_relu_slope) if self.activation == "all_relu" else self.activation
            self.model_ = SparseMLP([X.shape[1], *self.hidden_layer_sizes, self.classes_.size],
                                    activation=activation, epsilon=self.epsilon, init=self.init,
                                    dropout=self.dropout, seed=seed)
        batch = min(200, X.shape[0]) if self.batch_size == "auto" else self.batch_size
        pruning = ImportancePruning(*self.importance_pruning) if self.importance_pruning else None
        self.history_ = self.model_.fit(
            self._scaled(X), encoded, epochs=epochs, batch_size=batch, learning_rate=rate,
            momentum=self.momentum, nesterov=bool(self.nesterovs_momentum), weight_decay=decay,
            topology=SET(self.zeta) if self.zeta > 0 else None, pruning=pruning, verbose=self.verbose)
        self.n_iter_ = len(self.history_)
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
