"""The truly sparse multilayer perceptron: the model (its network, labels,
inference, memory, files). Training is :mod:`sparse_mlp.training`'s; files
are :mod:`sparse_mlp.archive`'s."""

from __future__ import annotations

import io
import math
import os
import secrets
from collections.abc import Sequence
from typing import Any, Callable, Optional

import numpy as np

from . import _core, _netstate, archive, interop_scipy, labels, optimizers
from ._validation import as_features, number, seed_value
from ._validation import check_precision as _check_precision
from .activations import ActivationLike, AllReLU, resolve
from .errors import CheckpointError, InsufficientMemoryError, InvalidInputError, SparseMLPError
from .files import atomic_write
from .layer import Layer
from .memory import MORE_BATCH, available_bytes, format_bytes
from .shape import connection_counts, layer_sizes
from .training import loop
from .training.data import is_regression, regression_metrics, sample_weights, targets
from .training.options import DEFAULT_TOPOLOGY, FitOptions
from .training.options import batch_size as _batch_size

_INITS = tuple(_core.NAMES["init"])
_OUTPUTS = {loss: tuple(outputs) for loss, outputs in _core.NAMES["loss"].items()}

Callback = Callable[["SparseMLP", dict], Optional[bool]]

# Defaults are immutable (frozen dataclasses), so sharing them is safe.
DEFAULT_ACTIVATION = AllReLU(0.6)


def _check_finite_output(p: np.ndarray, X: np.ndarray) -> None:
    """Finite inputs can still overflow float32 inside the network (features
    of 1e30); the caller gets an error rather than NaN probabilities."""
    bad = ~np.isfinite(p).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise InvalidInputError(
            f"the model's output for row {i + 1} of X is not finite: its features (largest magnitude "
            f"{float(np.max(np.abs(X[i]))):.3g}) overflow float32 inside the network; scale the data"
        )


class SparseMLP:
    """A multilayer perceptron whose layers store and compute only the
    connections that exist.

    Parameters
    ----------
    sizes : list of int
        Neurons per layer, input first, classes last, e.g. ``[784, 1000, 1000, 10]``.
    activation : str, Activation or list
        Hidden activation(s): ``sm.AllReLU(alpha)`` (default, alpha 0.6),
        ``"relu"``, ``"tanh"``, ``"sigmoid"``, ``sm.LeakyReLU(slope)``, or one per hidden layer.
    epsilon : float
        Erdős–Rényi sparsity: layer ``l`` gets about ``ε·(n_in+n_out)`` connections
        (default 20). Layers where that exceeds ``n_in·n_out`` are dense.
    density, distribution :
        Alternatively a global density spread by ``"erk"`` or ``"uniform"``.
    init : ``"he_uniform"`` (default, U(±√(6/n_in))), ``"xavier"`` (U(±√(6/(n_in+n_out)))),
        ``"normal"`` (N(0, 0.1²)), or ``"he_uniform_sparse"`` / ``"xavier_sparse"``:
        the same scaled by the connections a neuron really has (``nnz/n_out``
        in, ``nnz/n_in`` out) rather than the layer's width; at ε 20 a
        784-1000 layer's neurons have about 36 inputs, not 784. The
        distribution also draws SET's regrown weights.
    dropout : float
        Dropout probability of hidden units during training (default 0.3).
    loss : ``"cross_entropy"`` (softmax output, default) or ``"mse"``.
    output_activation : for ``"mse"``: ``"identity"`` (default) or ``"sigmoid"``.
    precision : ``"float32"`` (default) or ``"bfloat16"``: what activations, their
        derivatives and the back-propagated errors are stored as. Weights, optimizer
        state and every sum stay float32; bfloat16 halves the activation memory and
        the bytes the kernels read. Settable later (``model.precision = "float32"``).
    seed : int, optional
        Seeds initialization, shuffling, dropout and SET. Same seed, same
        result, whatever the number of threads.
    classes : sequence, optional
        The label each output stands for (numbers or strings), as
        ``classes_`` after a fit. By default the first :meth:`fit` learns
        them from ``y``: integer labels within ``0..sizes[-1]-1`` name the
        outputs directly; other labels (``-1/+1``, ``1..k``, strings) must
        have ``sizes[-1]`` distinct values, taken in sorted order.

    Examples
    --------
    >>> import numpy as np, sparse_mlp as sm
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 20)).astype(np.float32)
    >>> y = (X[:, 0] > 0).astype(int)
    >>> model = sm.SparseMLP([20, 64, 2], epsilon=5, seed=0)
    >>> history = model.fit(X, y, epochs=5, batch_size=32, verbose=0)
    >>> model.predict(X[:3]).shape
    (3,)
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activation: ActivationLike | Sequence[ActivationLike] = DEFAULT_ACTIVATION,
        epsilon: float | None = None,
        density: float | None = None,
        distribution: str = "erk",
        init: str = "he_uniform",
        dropout: float = 0.3,
        loss: str = "cross_entropy",
        output_activation: str | None = None,
        seed: int | None = None,
        classes: Sequence[Any] | None = None,
        precision: str = "float32",
    ) -> None:
        sizes = layer_sizes(sizes)
        _check_precision(precision)
        if init not in _INITS:
            raise InvalidInputError(f"init must be one of {_INITS}, got {init!r}")
        if loss not in _OUTPUTS:
            raise InvalidInputError(f"loss must be one of {tuple(_OUTPUTS)}, got {loss!r}")
        output_activation = output_activation or _OUTPUTS[loss][0]
        if output_activation not in _OUTPUTS[loss]:
            raise InvalidInputError(
                f"loss {loss!r} takes output_activation in {_OUTPUTS[loss]}, got {output_activation!r}"
            )
        if loss == "cross_entropy" and sizes[-1] < 2:
            raise InvalidInputError(f"cross_entropy needs at least 2 output classes, got {sizes[-1]}")
        dropout = number("dropout", dropout, 0.0, 1.0, high_open=True)
        chosen = None if classes is None else labels.check_classes(classes, sizes[-1])
        seed = secrets.randbits(63) if seed is None else seed_value(seed)
        specs = resolve(activation, len(sizes) - 2)
        counts = connection_counts(sizes, epsilon, density, distribution)
        archive.check_fits(sizes, counts, "building the model")
        self._net = _core.Network(
            sizes, counts, specs, loss, output_activation, dropout, init, int(seed)
        )
        self._net.set_precision(precision)
        self._config: dict[str, Any] = {
            "activation": repr(activation),
            "epsilon": 20.0 if epsilon is None and density is None else epsilon,
            "density": density,
            "distribution": distribution,
            "classes": labels.to_json(chosen),
        }
        self.history: list[dict[str, Any]] = []
        self.epochs_trained = 0
        self.recycling_summary: dict[str, Any] | None = None

    # ------------------------------------------------------------ properties

    @property
    def sizes(self) -> list[int]:
        """Current neurons per layer (hidden layers shrink under Importance Pruning)."""
        return list(self._net.sizes)

    @property
    def n_features(self) -> int:
        return self.sizes[0]

    @property
    def n_classes(self) -> int:
        return self.sizes[-1]

    @property
    def classes_(self) -> np.ndarray | None:
        """The label of each output (given at construction or learned by the
        first :meth:`fit`), or None before either."""
        stored = self._config.get("classes")
        return None if stored is None else np.asarray(stored)

    def _output_labels(self) -> np.ndarray:
        """``classes_``, or the output indices when there are none yet."""
        classes = self.classes_
        return np.arange(self.n_classes, dtype=np.int64) if classes is None else classes

    @property
    def n_connections(self) -> int:
        """Total number of connections (weights) over all layers."""
        return self._net.n_connections

    @property
    def layers(self) -> list[Layer]:
        return [Layer(self, i) for i in range(len(self.sizes) - 1)]

    @property
    def seed(self) -> int:
        return self._net.run_state[0]

    @property
    def precision(self) -> str:
        """``"float32"`` or ``"bfloat16"``: what activations and errors are stored as."""
        return self._net.precision

    @precision.setter
    def precision(self, precision: str) -> None:
        self._net.set_precision(_check_precision(precision))

    @property
    def memory_bytes(self) -> int:
        """Bytes of weights, indices, optimizer state and work buffers."""
        return self._net.memory_bytes

    # ------------------------------------------------------------ training

    def fit(
        self,
        X: Any,
        y: Any,
        epochs: int = 10,
        batch_size: int = 32,
        learning_rate: Any = None,
        momentum: float = 0.9,
        weight_decay: float = 2e-4,
        nesterov: bool = False,
        topology: Any = DEFAULT_TOPOLOGY,
        pruning: Any = None,
        validation_data: tuple[Any, Any] | None = None,
        shuffle: bool = True,
        verbose: int = 1,
        callbacks: Sequence[Callback] = (),
        recycling: Any = None,
        checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int = 1,
        resume: bool = False,
        overwrite: bool = False,
        bias_decay: bool = True,
        optimizer: Any = None,
        sample_weight: Any = None,
        class_weight: Any = None,
    ) -> list[dict[str, Any]]:
        """Trains for ``epochs`` epochs (momentum SGD unless ``optimizer`` says otherwise).

        The epoch loop runs in the compiled core with the GIL released. After
        each epoch: evaluation on ``validation_data``, then ``pruning``, then
        ``topology`` (SET; ``sm.RigL`` acts between mini-batches; ``None``: fixed), then each
        callback ``cb(model, record)``; a callback returning True stops training.

        Returns the history of this call: one dict per epoch with ``epoch``,
        ``loss`` and ``accuracy`` (running means over the epoch's batches, with
        dropout), ``val_loss``, ``val_accuracy``, ``n_connections`` and
        ``n_neurons`` (of the evaluated model), ``seconds`` (whole epoch) and
        its parts ``train_seconds``, ``eval_seconds``, ``topology_seconds``,
        plus what the strategies report (``set_regrown``, ``rigl_regrown``, ``pruned_neurons``)
        and ``learning_rate`` (the rate of the epoch's first mini-batch).
        A regression model's records have no accuracies but ``val_mae`` and
        ``val_r2``. ``model.history`` accumulates over calls.

        ``optimizer``: ``sm.SGD(momentum, nesterov)`` (the default, built from
        ``momentum`` and ``nesterov``), ``sm.Adam(...)``, ``sm.AdamW(...)``
        or one of their names (see :mod:`sparse_mlp.optimizers`).
        ``learning_rate``: a number or a schedule (:mod:`sparse_mlp.schedules`:
        ``Step``, ``Cosine``, ``ReduceOnPlateau``, ...) applied per mini-batch;
        default 0.01 for SGD, 1e-3 for Adam.

        ``sample_weight`` (one finite weight >= 0 per sample) and
        ``class_weight`` (``"balanced"`` or ``{label: weight}``) weigh each
        sample's loss, in its gradient and in the reported loss.

        ``callbacks``: :mod:`sparse_mlp.callbacks` objects (``EarlyStopping``,
        ``ModelCheckpoint``, ``TensorBoard``, ``MetricsLogger``, ...) or
        functions ``f(model, record)``.

        Regression: a model with ``loss="mse"`` learns values when ``y`` is
        2-D (``(n, outputs)``) or the model has one output; ``predict``
        then returns values and ``evaluate`` the MSE, MAE and R².

        ``recycling``: a neuron recycling strategy (``sm.NeuronRecycling``,
        ``sm.ReDo``, ``sm.ContinualBackprop``), an ``sm.MidpointLoss``, or a
        list of one of each (see :mod:`sparse_mlp.recycling`). Its events run
        between mini-batches; each epoch's record then has ``recycled`` (per
        hidden layer) and ``recycle_events``, and ``model.recycling_summary``
        (also in the last record) holds the run's recycle-count and
        magnitude histograms.

        ``checkpoint``: a file the full training state is written to
        (atomically) every ``checkpoint_every`` epochs and at the end: weights,
        topology, momentum, random state, epoch and history, with this call's
        options and a fingerprint of ``X`` and ``y``. With ``resume=True`` and
        an existing checkpoint file, the model takes over the saved state and
        trains the epochs still missing; the options and data must be the
        ones of the saved run (an error names what differs). The result is
        bit-identical to a run that was never stopped, and the returned
        history covers the whole run; with ``recycling``, the checkpoint also
        holds the strategy's books and pending interpolations. A new run
        (``resume=False``) never replaces an existing file at ``checkpoint``:
        it raises :class:`InvalidInputError` unless ``overwrite=True``.

        ``y`` holds the data's own labels (numbers or strings); see
        ``classes_``. Validation labels must be among them.

        ``verbose``: 0 silent; 1 a progress bar on a terminal (tqdm), else a
        line per epoch at most once a second; 2 a line per epoch.

        ``bias_decay``: the weight decay applies to the biases too (the
        papers' choice, default); False decays only the weights.

        Ctrl-C stops between two mini-batches; the model stays usable and
        ``KeyboardInterrupt`` propagates. A checkpoint write that has begun
        finishes first, so the checkpoint holds the last completed epoch. A NaN/inf loss raises
        :class:`DivergenceError` naming the epoch and batch; the checkpoint
        file keeps the last completed epoch.

        >>> import os, tempfile
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(100, 8)).astype(np.float32); y = (X[:, 0] > 0).astype(int)
        >>> path = os.path.join(tempfile.mkdtemp(), "run.npz")
        >>> a = SparseMLP([8, 16, 2], epsilon=4, seed=0)
        >>> _ = a.fit(X, y, epochs=3, verbose=0, checkpoint=path, checkpoint_every=2)
        >>> b = SparseMLP([8, 16, 2], epsilon=4, seed=0)   # e.g. a new process
        >>> _ = b.fit(X, y, epochs=3, verbose=0, checkpoint=path, resume=True)
        >>> b.epochs_trained
        3
        """
        options = FitOptions(
            epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, momentum=momentum,
            weight_decay=weight_decay, nesterov=nesterov, bias_decay=bias_decay, shuffle=shuffle,
            topology=topology, pruning=pruning, recycling=recycling, verbose=verbose,
            checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume,
            overwrite=overwrite, optimizer=optimizer)
        return loop.fit(self, X, y, options, validation_data, callbacks, sample_weight, class_weight)

    # ------------------------------------------------------------ inference

    def predict_proba(self, X: Any, batch_size: int | None = None) -> np.ndarray:
        """Class probabilities, shape (n_samples, n_classes) (outputs for MSE).

        The samples go through in chunks of ``batch_size``, each chunk's
        layers computed on all threads; ``X`` may be memory-mapped. The
        default chunk is as many samples as fit in 256 MB of buffers (at
        least 32, at most 1024), or the training batch when this model has
        trained in this process, whose buffers inference then reuses."""
        X = as_features(X, self.n_features)
        p = self._net.predict_proba(X, self._inference_batch(batch_size))
        _check_finite_output(p, X)
        return p

    @property
    def is_regressor(self) -> bool:
        """Whether the model learns values (``loss="mse"`` fitted on values,
        or with one output) rather than classes."""
        return is_regression(self)

    def predict(self, X: Any, batch_size: int | None = None) -> np.ndarray:
        """Predicted labels, shape (n_samples,): ``classes_[k]`` for the most
        probable output ``k`` (the output index before any class is known).
        A regression model's values: shape (n_samples,) for one output, else
        (n_samples, outputs)."""
        p = self.predict_proba(X, batch_size)
        if self.is_regressor:
            return p[:, 0] if p.shape[1] == 1 else p
        return self._output_labels()[p.argmax(axis=1)]

    def evaluate(self, X: Any, y: Any, batch_size: int | None = None,
                 sample_weight: Any = None) -> dict[str, float]:
        """Mean loss and accuracy on (X, y), without dropout (chunks as in
        :meth:`predict_proba`); with ``sample_weight``, the weighted mean
        loss. A regression model reports ``loss`` (the MSE), ``mse``,
        ``mae`` and ``r2``."""
        X = as_features(X, self.n_features)
        batch = self._inference_batch(batch_size)
        regression = is_regression(self, y)
        if regression:
            y = targets(y, X.shape[0], self.n_classes)
        else:
            y = labels.encode(self._output_labels(), y, X.shape[0])
        w = sample_weights(sample_weight, None, y, None, X.shape[0])
        loss, acc = self._net.evaluate(X, y, batch, sample_weight=w)
        if not math.isfinite(loss):
            _check_finite_output(self._net.predict_proba(X, batch), X)
        if regression:
            return {"loss": loss, **regression_metrics(self._net.predict_proba(X, batch), y)}
        return {"loss": loss, "accuracy": acc}

    def _inference_batch(self, batch_size: int | None) -> int:
        if batch_size is None:
            return self._net.inference_batch()
        return _batch_size(batch_size)

    def memory_estimate(self, batch_size: int = 32, optimizer: Any = None) -> dict[str, int]:
        """Bytes that training this model with mini-batches of ``batch_size``
        (and ``optimizer``, default SGD) needs, computed without allocating
        anything:

        - ``parameters``: every layer's connections (value, momentum,
          gradient, row index and the transposed view's two indices: 24 bytes
          each; Adam's second moment adds 4), biases and column/row pointers;
        - ``training_buffers``: activations of every layer, derivative factors
          of the hidden layers and two error blocks, for ``batch_size`` samples
          (2 bytes each in bfloat16 :attr:`precision`, 4 in float32);
        - ``topology_change``: SET rebuilds one layer at a time, the largest;
        - ``training_total``: what training needs, the sum of these three. The
          training data are not included (a memory-mapped ``X`` is read
          through the page cache); evaluation during training runs in the
          training buffers;
        - ``inference_buffers``: what :meth:`predict_proba` allocates on a
          model that has not trained in this process;
        - ``inference_total``: what inference needs, ``parameters`` plus
          ``inference_buffers``.

        ``fit`` compares this with the memory the machine has available and
        refuses (:class:`InsufficientMemoryError`) before allocating.

        >>> model = SparseMLP([784, 1000, 10], epsilon=20, seed=0)
        >>> est = model.memory_estimate(batch_size=128)
        >>> est["training_buffers"] == 4 * 128 * (784 + 1000 + 10 + 1000 + 2 * 1000 + 1)
        True
        """
        batch_size = _batch_size(batch_size)
        net = self._net
        kept = net.optimizer_state[0] != "sgd"  # second moments the layers hold now
        wanted = isinstance(optimizers.optimizer(optimizer), optimizers.Adam)
        second = [4 * (nnz + n_out) for nnz, n_out in zip(net.layer_nnz, net.sizes[1:])]
        layer_bytes = [b + (s if wanted and not kept else -s if kept and not wanted else 0)
                       for b, s in zip(net.layer_bytes, second)]
        est = {
            "parameters": sum(layer_bytes),
            "training_buffers": net.training_bytes(batch_size),
            "topology_change": max(layer_bytes),
        }
        est["training_total"] = sum(est.values())
        est["inference_buffers"] = net.inference_bytes(net.inference_batch())
        est["inference_total"] = est["parameters"] + est["inference_buffers"]
        return est

    def _check_memory(self, batch_size: int, optimizer: Any = None) -> None:
        """Raises InsufficientMemoryError when training would not fit."""
        available = available_bytes()
        if available is None:
            return
        est = self.memory_estimate(batch_size, optimizer)
        allocated = self._net.memory_bytes  # parameters and any buffers already there
        more = est["training_total"] - allocated
        if more <= available:
            return
        per_sample = self._net.training_bytes(1)
        fits = (available + allocated - (est["training_total"] - est["training_buffers"])) // per_sample
        advice = (f"batch_size={fits} would fit{MORE_BATCH[self.precision]}" if fits >= 1 else
                  "the model itself does not fit: use fewer neurons or connections")
        raise InsufficientMemoryError(
            f"training {'-'.join(map(str, self.sizes))} ({self.n_connections} connections) with "
            f"batch_size={batch_size} needs {format_bytes(est['training_total'])}: "
            f"{format_bytes(est['parameters'])} of parameters, "
            f"{format_bytes(est['training_buffers'])} of training buffers, "
            f"{format_bytes(est['topology_change'])} for SET; that is {format_bytes(more)} "
            f"more than now, but only {format_bytes(available)} is available. {advice}.")

    def score(self, X: Any, y: Any) -> float:
        """Accuracy on (X, y); R² for a regression model."""
        result = self.evaluate(X, y)
        return result["r2"] if self.is_regressor else result["accuracy"]

    # ------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike) -> None:
        """Writes the model and its training state (momentum, random state,
        history) to ``path``: a numpy ``.npz`` archive without pickled
        objects, or a safetensors file when ``path`` ends in ``.safetensors``
        (needs the ``safetensors`` package). The file is replaced atomically:
        it is never half-written."""
        fmt = archive.format_of(path)
        atomic_write(os.fspath(path), lambda f: self._write_archive(f, fmt))

    def _write_archive(self, f: Any, fmt: str = "npz") -> None:
        archive.write(f, self._net, self._config, self.history, self.epochs_trained, fmt=fmt)

    @classmethod
    def load(cls, path: str | os.PathLike) -> SparseMLP:
        """Reads a model written by :meth:`save` (``.npz``, or ``.safetensors``
        by the extension); raises :class:`CheckpointError` for missing,
        truncated, corrupted or incompatible files."""
        path = os.fspath(path)
        if not os.path.exists(path):
            raise CheckpointError(f"no model file at {path}")
        return cls._from_saved(archive.read(path, path), path)

    @classmethod
    def _from_saved(cls, saved: archive.Saved, path: str) -> SparseMLP:
        try:
            labels.from_json(saved.config.get("classes"), saved.net.sizes[-1])
        except InvalidInputError as e:
            raise CheckpointError(f"{path}: {e}") from None
        return cls._from_net(saved.net, saved.config, saved.history, saved.epochs_trained)

    def __getstate__(self) -> dict[str, Any]:
        """Pickling (for ``copy.deepcopy``, joblib, scikit-learn) goes through
        the same archive as :meth:`save`; nothing but arrays is stored."""
        buffer = io.BytesIO()
        self._write_archive(buffer)
        return {"archive": buffer.getvalue(), "recycling_summary": self.recycling_summary}

    def __setstate__(self, state: dict[str, Any]) -> None:
        other = type(self)._from_saved(archive.read(io.BytesIO(state["archive"]), "<pickled model>"),
                                       "<pickled model>")
        self.__dict__.update(other.__dict__)
        self.recycling_summary = state.get("recycling_summary")

    # ------------------------------------------------------------ interop

    def to_scipy(self) -> list[Any]:
        """Every layer's weights as a ``scipy.sparse.csr_matrix`` (n_in, n_out)."""
        return [layer.to_scipy() for layer in self.layers]

    @classmethod
    def from_scipy(
        cls,
        weights: Sequence[Any],
        biases: Sequence[Any] | None = None,
        activation: ActivationLike | Sequence[ActivationLike] = DEFAULT_ACTIVATION,
        init: str = "he_uniform",
        dropout: float = 0.3,
        loss: str = "cross_entropy",
        output_activation: str | None = None,
        seed: int | None = None,
    ) -> SparseMLP:
        """A model whose layer ``l`` has the connections and values of the
        scipy sparse matrix ``weights[l]`` (shape (n_in, n_out); every stored
        entry, explicit zeros included, is a connection) and the bias
        ``biases[l]`` (default zeros). Momentum starts at zero. ``init`` is
        what SET regrowth draws new weights from; the rest as in the constructor.

        >>> import scipy.sparse as sp
        >>> w1 = sp.random(6, 4, density=0.5, format="csr", random_state=0, dtype=np.float32)
        >>> w2 = sp.random(4, 3, density=0.5, format="csr", random_state=1, dtype=np.float32)
        >>> model = SparseMLP.from_scipy([w1, w2], seed=0)
        >>> model.sizes, model.n_connections == w1.nnz + w2.nnz
        ([6, 4, 3], True)
        >>> bool((model.to_scipy()[0] != w1).nnz == 0)
        True
        """
        sizes, layers = interop_scipy.checked_layers(weights, biases)
        # A model of the same sizes checks the other arguments and gives the
        # activation specs; its weights are then replaced.
        if loss == "cross_entropy" and sizes[-1] < 2:
            raise InvalidInputError(f"cross_entropy needs at least 2 output classes, got {sizes[-1]}")
        template = cls([1] * (len(sizes) - 1) + [2], activation=activation, epsilon=1.0, init=init,
                       dropout=dropout, loss=loss, output_activation=output_activation, seed=seed)
        meta = dict(_netstate.describe(template._net), sizes=sizes, rng_state=[1, 2, 3, 4], step=0,
                    topology_version=0)
        try:
            net = _netstate.build(meta, layers)
        except InvalidInputError as e:
            raise InvalidInputError(f"cannot build a model from these matrices: {e}") from None
        net.reseed(template.seed)
        return cls._from_net(net, dict(template._config, epsilon=None, imported=True), [], 0)

    def to_torch(self, device: Any = None) -> Any:
        """The model as a ``torch.nn.Module`` of sparse CSR layers in inference
        mode, returning logits (softmax gives :meth:`predict_proba`); see
        :mod:`sparse_mlp.interop_torch`. Needs ``torch``."""
        from . import interop_torch

        return interop_torch.to_torch(self, device)

    @classmethod
    def from_torch(cls, module: Any, threshold: float | None = None, **kwargs: Any) -> SparseMLP:
        """A model from a module made by :meth:`to_torch`, or from an
        ``nn.Sequential`` of ``nn.Linear`` layers (pruning masks, zeros or
        ``threshold`` give the connections) and activations; ``kwargs`` as
        for :meth:`from_scipy`. Needs ``torch``."""
        from . import interop_torch

        return interop_torch.from_torch(cls, module, threshold, **kwargs)

    @classmethod
    def _from_net(cls, net: _core.Network, config: dict, history: list,
                  epochs_trained: int) -> SparseMLP:
        model = cls.__new__(cls)
        model._adopt(net, config, history, epochs_trained)
        return model

    def _adopt(self, net: _core.Network, config: dict, history: list, epochs_trained: int) -> None:
        """Takes over another model's state (used by loading and by data-parallel training)."""
        self._net = net
        self._config = dict(config)
        self.history = list(history)
        self.epochs_trained = int(epochs_trained)
        self.recycling_summary = None

    # ------------------------------------------------------------ display

    def summary(self) -> str:
        """A table of the layers: shape, connections, density, bytes."""
        rows = [f"{'layer':>5}  {'shape':>17}  {'nnz':>10}  {'density':>8}"]
        for layer in self.layers:
            n_in, n_out = layer.shape
            rows.append(f"{layer.index:>5}  {f'{n_in} x {n_out}':>17}  {layer.nnz:>10}  "
                        f"{layer.density:>8.4f}")
        rows.append(f"total connections {self.n_connections}, memory {self.memory_bytes / 1e6:.2f} MB, "
                    f"{self.precision} activations")
        return "\n".join(rows)

    def __repr__(self) -> str:
        return (f"SparseMLP(sizes={self.sizes}, n_connections={self.n_connections}, "
                f"epochs_trained={self.epochs_trained})")


__all__ = ["SparseMLP", "Layer", "connection_counts", "SparseMLPError"]
