"""scikit-learn estimators around :class:`SparseMLP` (scikit-learn is the
optional ``sklearn`` extra): :class:`SparseMLPClassifier` and
:class:`SparseMLPRegressor`. Their parameters follow ``MLPClassifier``'s and
``MLPRegressor``'s names wherever the meaning is the same
(``hidden_layer_sizes``, ``solver``, ``alpha``, ``batch_size``,
``learning_rate``, ``learning_rate_init``, ``power_t``, ``max_iter``,
``momentum``, ``nesterovs_momentum``, ``beta_1``, ``beta_2``,
``early_stopping``, ``validation_fraction``, ``n_iter_no_change``, ``tol``,
``random_state``, ``verbose``, ``warm_start``).

>>> import numpy as np
>>> from sklearn.pipeline import make_pipeline
>>> from sklearn.preprocessing import StandardScaler
>>> from sparse_mlp import SparseMLPClassifier, SparseMLPRegressor
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(300, 8)); y = np.where(X[:, 0] - X[:, 1] > 0, "up", "down")
>>> clf = make_pipeline(StandardScaler(), SparseMLPClassifier(hidden_layer_sizes=(64,), random_state=0))
>>> clf.fit(X, y).score(X, y) > 0.9
True
>>> clf.predict(X[:2]).tolist()
['up', 'up']
>>> reg = SparseMLPRegressor(hidden_layer_sizes=(64,), solver="adam", max_iter=100, random_state=0)
>>> reg.fit(X, np.sin(X[:, 0]) + X[:, 1]).score(X, np.sin(X[:, 0]) + X[:, 1]) > 0.9
True
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from . import schedules
from .activations import AllReLU
from .callbacks import EarlyStopping
from .datasets import feature_scaling
from .model import SparseMLP
from .optimizers import SGD, Adam, AdamW
from .pruning import ImportancePruning
from .topology import SET, RigL

# The value of a deprecated parameter that was not given (scikit-learn's own convention).
_DEPRECATED = "deprecated"
_SOLVERS = {"sgd": None, "adam": Adam, "adamw": AdamW}

_PARAMETERS = """
    hidden_layer_sizes : sizes of the hidden layers (default (256, 256)).
    activation : ``"all_relu"`` (with slope ``all_relu_slope``), ``"relu"``,
        ``"tanh"``, ``"sigmoid"``.
    all_relu_slope : the All-ReLU slope α (default 0.6); see :class:`sparse_mlp.AllReLU`.
    epsilon : Erdős–Rényi sparsity of every layer (default 20). (Not Adam's
        ε, as in ``MLPClassifier``: that one is fixed at 1e-8.)
    init : as in :class:`SparseMLP`.
    dropout : of the hidden units; default (None) 0.3 for the classifier, 0 for the regressor.
    solver : ``"sgd"`` (momentum SGD), ``"adam"`` or ``"adamw"``; default (None)
        ``"sgd"`` for the classifier (the papers'), ``"adam"`` for the regressor.
    alpha : L2 penalty, as in ``MLPClassifier``: here the papers' decoupled
        weight decay ``w ← w − alpha·w`` after every step (default 2e-4);
        Adam adds it to the gradient.
    batch_size : mini-batch size, or ``"auto"`` for ``min(200, n_samples)``
        as in ``MLPClassifier`` (default 32).
    learning_rate : ``"constant"`` (default), ``"invscaling"``
        (``learning_rate_init / (t+1)^power_t``, ``t`` the samples seen),
        ``"adaptive"`` (divided by 5 each time 2 epochs fail to improve the
        monitored score by ``tol``) or a :mod:`sparse_mlp.schedules` object.
    learning_rate_init : the initial learning rate (default 0.01; 1e-3 for Adam
        when not given).
    power_t : the exponent of ``"invscaling"`` (default 0.5).
    max_iter : epochs (default 50).
    momentum, nesterovs_momentum : momentum SGD (default 0.9, without Nesterov).
    beta_1, beta_2 : Adam's moment decays (default 0.9, 0.999).
    early_stopping : hold out ``validation_fraction`` of the training data
        (stratified for classification) and stop when its score (accuracy,
        R²) has not improved by ``tol`` for ``n_iter_no_change`` epochs,
        restoring the best epoch's model. Otherwise training stops when the
        training loss has not improved by ``tol`` for ``n_iter_no_change``
        epochs, as scikit-learn does.
    zeta : the fraction of connections the topology strategy prunes and
        regrows (0: fixed topology).
    topology : ``"set"`` (default: SET after every epoch), ``"rigl"``
        (``sm.RigL(zeta)``: regrowth where the gradient is largest, every
        100 steps) or a strategy object such as ``sm.RigL(...)`` (used as
        given; ``zeta`` is then not read).
    precision : ``"float32"`` (default) or ``"bfloat16"`` activations and errors
        (weights and sums stay float32; see :class:`SparseMLP`).
    importance_pruning : None, or ``(start_epoch, every, percentile)``.
    standardize : scale features by the training data's mean and std
        inside the estimator (default True, as the paper's runs do), so
        unscaled data cannot blow up the activations.
    random_state : None, an int or a ``numpy.random.RandomState``.
    verbose : passed to ``fit``.
    warm_start : continue training the fitted model on the next ``fit``
        (same features and classes) instead of starting anew.
    epochs, weight_decay : deprecated names of ``max_iter`` and ``alpha``.
"""


class _SparseMLPEstimator(BaseEstimator):
    """What the classifier and the regressor share: the model, the training
    settings, standardization and the fit loop."""

    def __init__(
        self,
        hidden_layer_sizes: Sequence[int] = (256, 256),
        activation: str = "all_relu",
        all_relu_slope: float = 0.6,
        epsilon: float = 20.0,
        init: str = "he_uniform",
        dropout: float | None = None,
        solver: str | None = None,
        alpha: float = 2e-4,
        batch_size: int | str = 32,
        learning_rate: Any = "constant",
        learning_rate_init: float | None = None,
        power_t: float = 0.5,
        max_iter: int = 50,
        momentum: float = 0.9,
        nesterovs_momentum: bool = False,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        tol: float = 1e-4,
        zeta: float = 0.3,
        topology: Any = "set",
        importance_pruning: tuple[int, int, float] | None = None,
        standardize: bool = True,
        random_state: Any = None,
        verbose: int = 0,
        warm_start: bool = False,
        precision: str = "float32",
        epochs: Any = _DEPRECATED,
        weight_decay: Any = _DEPRECATED,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.all_relu_slope = all_relu_slope
        self.epsilon = epsilon
        self.init = init
        self.dropout = dropout
        self.precision = precision
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.zeta = zeta
        self.topology = topology
        self.importance_pruning = importance_pruning
        self.standardize = standardize
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        self.epochs = epochs
        self.weight_decay = weight_decay

    _regressor = False

    def _topology(self) -> Any:
        if not isinstance(self.topology, str):
            return self.topology  # a strategy object (FitOptions checks it)
        if self.topology not in ("set", "rigl"):
            raise ValueError(f"topology must be 'set', 'rigl' or a strategy object, got {self.topology!r}")
        if self.zeta == 0:
            return None
        return SET(self.zeta) if self.topology == "set" else RigL(self.zeta)

    def _optimizer(self) -> Any:
        solver = ("adam" if self._regressor else "sgd") if self.solver is None else self.solver
        if solver not in _SOLVERS:
            raise ValueError(f"solver must be one of {sorted(_SOLVERS)}, got {self.solver!r}")
        cls = _SOLVERS[solver]
        if cls is None:
            return SGD(momentum=self.momentum, nesterov=bool(self.nesterovs_momentum))
        return cls(beta1=self.beta_1, beta2=self.beta_2)

    def _settings(self, optimizer: Any) -> tuple[int, float, Any]:
        """(epochs, weight decay, learning rate or schedule), from the current
        names or the deprecated ones."""
        epochs, decay = self.max_iter, self.alpha
        rate = optimizer.default_learning_rate if self.learning_rate_init is None else self.learning_rate_init
        name = type(self).__name__
        if not isinstance(self.epochs, str) or self.epochs != _DEPRECATED:
            warnings.warn(f"{name}(epochs=...) is deprecated: use max_iter=... (scikit-learn's name)",
                          DeprecationWarning, stacklevel=3)
            epochs = self.epochs
        if not isinstance(self.weight_decay, str) or self.weight_decay != _DEPRECATED:
            warnings.warn(f"{name}(weight_decay=...) is deprecated: use alpha=... (scikit-learn's name "
                          "for the L2 penalty)", DeprecationWarning, stacklevel=3)
            decay = self.weight_decay
        elif isinstance(decay, (int, float, np.number)) and 0.01 <= decay < 1:
            # alpha used to be the All-ReLU slope here (0.05 to 0.75 in the papers)
            warnings.warn(f"alpha={decay} is the L2 penalty, as in scikit-learn: every step shrinks "
                          f"each weight by {decay:.0%}. The All-ReLU slope is all_relu_slope (its "
                          "name was alpha before)", UserWarning, stacklevel=3)
        schedule = self.learning_rate
        if isinstance(schedule, (int, float, np.number)) and not isinstance(schedule, bool):
            warnings.warn(f"{name}(learning_rate=<number>) is deprecated: the rate is "
                          "learning_rate_init, and learning_rate names the schedule, as in "
                          "scikit-learn", DeprecationWarning, stacklevel=3)
            return epochs, decay, float(schedule)
        if isinstance(schedule, schedules.Schedule):
            return epochs, decay, schedule
        if schedule == "constant":
            return epochs, decay, rate
        if schedule == "invscaling":
            return epochs, decay, schedules.InvScaling(rate, self.power_t)
        if schedule == "adaptive":
            return epochs, decay, schedules.ReduceOnPlateau(
                rate, monitor=self._score_key() if self.early_stopping else "loss", factor=0.2,
                patience=2, min_delta=self.tol)
        raise ValueError(f"learning_rate must be 'constant', 'invscaling', 'adaptive' or a "
                         f"sparse_mlp.schedules object, got {schedule!r}")

    def _score_key(self) -> str:
        return "val_r2" if self._regressor else "val_accuracy"

    def _scaled(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean_) / self.scale_ if self.standardize else X

    def _train(self, X: np.ndarray, targets: np.ndarray, n_outputs: int, warm: bool,
               sample_weight: Any, class_weight: Any = None) -> None:
        optimizer = self._optimizer()
        epochs, decay, rate = self._settings(optimizer)
        if not warm:
            seed = int(check_random_state(self.random_state).randint(0, 2**31 - 1)) \
                if not isinstance(self.random_state, (int, np.integer)) else int(self.random_state)
            if self.standardize:
                self.mean_, self.scale_ = feature_scaling(X)
            activation = AllReLU(self.all_relu_slope) if self.activation == "all_relu" else self.activation
            dropout = (0.0 if self._regressor else 0.3) if self.dropout is None else self.dropout
            self.model_ = SparseMLP([X.shape[1], *self.hidden_layer_sizes, n_outputs],
                                    activation=activation, epsilon=self.epsilon, init=self.init,
                                    dropout=dropout, loss="mse" if self._regressor else "cross_entropy",
                                    seed=seed, precision=self.precision)
        X = self._scaled(X)
        validation = None
        if self.early_stopping:
            split = train_test_split(
                X, targets, *([] if sample_weight is None else [np.asarray(sample_weight)]),
                test_size=self.validation_fraction, random_state=check_random_state(self.random_state),
                stratify=None if self._regressor else targets)
            X, Xv, targets, yv = split[:4]
            sample_weight = split[4] if sample_weight is not None else None
            validation = (Xv, yv)
        stop = EarlyStopping(
            monitor=self._score_key() if self.early_stopping else "loss", patience=self.n_iter_no_change,
            min_delta=self.tol, restore_best=bool(self.early_stopping))
        batch = min(200, X.shape[0]) if self.batch_size == "auto" else self.batch_size
        pruning = ImportancePruning(*self.importance_pruning) if self.importance_pruning else None
        self.history_ = self.model_.fit(
            X, targets, epochs=epochs, batch_size=batch, learning_rate=rate, optimizer=optimizer,
            weight_decay=decay, topology=self._topology(), pruning=pruning,
            verbose=self.verbose, validation_data=validation, callbacks=[stop],
            sample_weight=sample_weight, class_weight=class_weight)
        self.n_iter_ = len(self.history_)
        self.best_validation_score_ = stop.best if self.early_stopping else None
        self.loss_curve_ = [r["loss"] for r in self.history_]


class SparseMLPClassifier(ClassifierMixin, _SparseMLPEstimator):
    __doc__ = """A truly sparse MLP classifier with the scikit-learn estimator API
    (``fit``, ``predict``, ``predict_proba``, ``score``, ``get_params``,
    ``set_params``), usable in ``Pipeline`` and ``GridSearchCV``.

    Parameters
    ----------""" + _PARAMETERS + """\
    class_weight : None, ``"balanced"`` or ``{label: weight}``: weighs each
        sample's loss by its class.

    Attributes after ``fit``: ``model_`` (the :class:`SparseMLP`),
    ``classes_``, ``n_features_in_``, ``n_iter_`` (epochs of the last fit),
    ``history_``, ``loss_curve_``, ``best_validation_score_`` (with
    ``early_stopping``), and with ``standardize`` ``mean_`` and ``scale_``.
    """

    def __init__(self, hidden_layer_sizes: Sequence[int] = (256, 256), activation: str = "all_relu",
                 all_relu_slope: float = 0.6, epsilon: float = 20.0, init: str = "he_uniform",
                 dropout: float | None = None, solver: str | None = None, alpha: float = 2e-4,
                 batch_size: int | str = 32, learning_rate: Any = "constant",
                 learning_rate_init: float | None = None, power_t: float = 0.5, max_iter: int = 50,
                 momentum: float = 0.9, nesterovs_momentum: bool = False, beta_1: float = 0.9,
                 beta_2: float = 0.999, early_stopping: bool = False, validation_fraction: float = 0.1,
                 n_iter_no_change: int = 10, tol: float = 1e-4, zeta: float = 0.3,
                 topology: Any = "set",
                 importance_pruning: tuple[int, int, float] | None = None, standardize: bool = True,
                 random_state: Any = None, verbose: int = 0, warm_start: bool = False,
                 class_weight: Any = None, precision: str = "float32", epochs: Any = _DEPRECATED,
                 weight_decay: Any = _DEPRECATED) -> None:
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, all_relu_slope=all_relu_slope,
            epsilon=epsilon, init=init, dropout=dropout, solver=solver, alpha=alpha,
            batch_size=batch_size, learning_rate=learning_rate, learning_rate_init=learning_rate_init,
            power_t=power_t, max_iter=max_iter, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, beta_1=beta_1, beta_2=beta_2,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change, tol=tol, zeta=zeta, topology=topology,
            importance_pruning=importance_pruning, standardize=standardize,
            random_state=random_state, verbose=verbose, warm_start=warm_start, precision=precision,
            epochs=epochs,
            weight_decay=weight_decay)
        self.class_weight = class_weight

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> SparseMLPClassifier:
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
        class_weight = self.class_weight
        if isinstance(class_weight, dict):  # by the data's labels, as the model's output indices
            index = {str(c): i for i, c in enumerate(classes)}
            unknown = [k for k in class_weight if str(k) not in index]
            if unknown:
                raise ValueError(f"class_weight names classes not in y: {unknown}")
            class_weight = {index[str(k)]: w for k, w in class_weight.items()}
        if not warm:
            self.classes_ = classes
        self._train(X, encoded, classes.size, warm, sample_weight, class_weight)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, accept_sparse=False, dtype=[np.float32, np.float64])
        return self.model_.predict_proba(self._scaled(X)).astype(np.float64)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X: Any) -> np.ndarray:
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(axis=1)]


class SparseMLPRegressor(RegressorMixin, _SparseMLPEstimator):
    __doc__ = """A truly sparse MLP regressor with the scikit-learn estimator API
    (``fit``, ``predict``, ``score`` (R²), ``get_params``, ``set_params``):
    identity outputs trained on the mean squared error, for targets of shape
    (n,) or (n, k).

    Parameters
    ----------""" + _PARAMETERS + """
    Attributes after ``fit``: ``model_`` (the :class:`SparseMLP`),
    ``n_features_in_``, ``n_outputs_``, ``n_iter_``, ``history_``,
    ``loss_curve_``, ``best_validation_score_`` (with ``early_stopping``),
    and with ``standardize`` ``mean_`` and ``scale_``.
    """

    _regressor = True

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # targets of shape (n, k) too
        return tags

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> SparseMLPRegressor:
        warm = self.warm_start and hasattr(self, "model_")
        X, y = validate_data(self, X, y, accept_sparse=False, dtype=[np.float32, np.float64],
                             multi_output=True, y_numeric=True, reset=not warm)
        targets = np.asarray(y, dtype=np.float32)
        targets = targets.reshape(len(targets), -1)
        if warm and targets.shape[1] != self.n_outputs_:
            raise ValueError(f"warm_start: y has {targets.shape[1]} outputs, the fitted model "
                             f"{self.n_outputs_}")
        self.n_outputs_ = targets.shape[1]
        self._single = np.ndim(y) == 1
        self._train(X, targets, self.n_outputs_, warm, sample_weight)
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, accept_sparse=False, dtype=[np.float32, np.float64])
        out = self.model_.predict_proba(self._scaled(X)).astype(np.float64)
        return out[:, 0] if self._single else out
