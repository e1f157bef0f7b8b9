"""The truly sparse multilayer perceptron."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import secrets
import sys
import time
import zipfile
from collections.abc import Iterator, Sequence
from typing import Any, Callable, Optional

import numpy as np

from . import _core, labels
from ._validation import as_features, checked_sparse, number, positive_int, seed_value, verbosity
from .activations import ActivationLike, AllReLU, resolve
from .checkpoint import (
    atomic_write,
    check_writable,
    encode_strategy,
    fingerprint,
    plan_differences,
    write_npz,
)
from .errors import (
    CheckpointError,
    DivergenceError,
    InsufficientMemoryError,
    InvalidInputError,
    SparseMLPError,
)
from .formats import UNREADABLE_ARCHIVE, describe_file
from .memory import available_bytes, format_bytes, require
from .recycling import restore_runs, save_runs, start_runs
from .topology import SET, ImportancePruning

log = logging.getLogger("sparse_mlp")

FORMAT = "sparse_mlp.model"
FORMAT_VERSION = 1
_LAYER_ARRAYS = ("col_ptr", "row_idx", "values", "momentum", "bias", "bias_momentum")
# dtypes a model file's index arrays may have (earlier files stored int64 row indices)
_ARCHIVE_DTYPES = {"col_ptr": (np.int64,), "row_idx": (np.uint32, np.int64)}
_INITS = tuple(_core.INIT_NAMES)
_OUTPUTS = {"cross_entropy": ("softmax",), "mse": ("identity", "sigmoid")}

Callback = Callable[["SparseMLP", dict], Optional[bool]]

# Defaults are immutable (frozen dataclasses), so sharing them is safe.
DEFAULT_ACTIVATION = AllReLU(0.6)
DEFAULT_TOPOLOGY = SET()


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


# A training set holds fewer than 2**32 samples (the core's 32-bit sample
# indices), so larger batches or chunks are the whole data.
MAX_BATCH = 2**32 - 1


def _batch_size(value: Any) -> int:
    return min(positive_int("batch_size", value), MAX_BATCH)


def _check_build(sizes: Sequence[int], nnz: Sequence[int], what: str) -> None:
    """Refuses a network the machine cannot hold, before the core allocates
    it: its parameters plus the largest layer again (initialization and
    conversions build one layer at a time)."""
    per_layer = [_core.parameter_bytes([a, b], [k]) for a, b, k in zip(sizes[:-1], sizes[1:], nnz)]
    require(sum(per_layer) + max(per_layer, default=0),
            f"{what} ({'-'.join(map(str, sizes))}, {sum(nnz)} connections)")


def layer_sizes(sizes: Any) -> list[int]:
    """``sizes`` checked: at least two layers, each of 1 to ``MAX_INDEX``
    (2**32 - 1) neurons."""
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) or len(sizes) < 2:
        raise InvalidInputError(
            f"sizes must list at least the input and output sizes, e.g. [784, 1000, 10]; got {sizes!r}"
        )
    sizes = [positive_int(f"sizes[{i}]", s) for i, s in enumerate(sizes)]
    for i, s in enumerate(sizes):
        if s > _core.MAX_INDEX:
            raise InvalidInputError(f"sizes[{i}] is {s}; a layer has at most {_core.MAX_INDEX} "
                                    "neurons")
    return sizes


def connection_counts(
    sizes: Sequence[int],
    epsilon: float | None = None,
    density: float | None = None,
    distribution: str = "erk",
) -> list[int]:
    """Connections per layer.

    With ``epsilon`` (Erdős–Rényi, SPEC §2): ``round(min(1, ε(n_in+n_out)/(n_in·n_out))·n_in·n_out)``.
    With a global ``density``: ``"uniform"`` gives every layer that density;
    ``"erk"`` (Erdős–Rényi-Kernel, as in RigL) gives layer ``l`` a density
    proportional to ``(n_in+n_out)/(n_in·n_out)``, capped at 1, scaled so the
    whole network has ``density`` of its dense parameter count.

    Every layer must get at least one connection; a density or ε so small
    that one gets none is refused.

    >>> connection_counts([784, 1000, 10], epsilon=20)
    [35680, 10000]
    """
    sizes = layer_sizes(sizes)
    counts = _connection_counts(sizes, epsilon, density, distribution)
    for i, k in enumerate(counts):
        if k < 1:
            what = f"density {density}" if density is not None else f"epsilon {epsilon}"
            raise InvalidInputError(f"with {what}, layer {i} ({sizes[i]}x{sizes[i + 1]}) gets no "
                                    "connections; use a larger value")
    return counts


def _connection_counts(sizes: Sequence[int], epsilon: float | None, density: float | None,
                       distribution: str) -> list[int]:
    pairs = list(zip(sizes[:-1], sizes[1:]))
    if density is None:
        eps = number("epsilon", 20.0 if epsilon is None else epsilon, 0.0, math.inf, low_open=True)
        return [_core.er_nnz(eps, a, b) for a, b in pairs]
    if epsilon is not None:
        raise InvalidInputError("give either epsilon or density, not both")
    d = number("density", density, 0.0, 1.0, low_open=True)
    caps = [a * b for a, b in pairs]
    if distribution == "uniform":
        return [min(cap, round(d * cap)) for cap in caps]
    if distribution != "erk":
        raise InvalidInputError(f"distribution must be 'erk' or 'uniform', got {distribution!r}")
    raw = [(a + b) / (a * b) for a, b in pairs]
    dense: set[int] = set()
    target = d * sum(caps)
    while True:
        free = [i for i in range(len(caps)) if i not in dense]
        budget = target - sum(caps[i] for i in dense)
        scale = budget / sum(raw[i] * caps[i] for i in free) if free else 0.0
        over = [i for i in free if scale * raw[i] >= 1.0]
        if not over:
            break
        dense.update(over)
    return [caps[i] if i in dense else min(caps[i], round(scale * raw[i] * caps[i]))
            for i in range(len(caps))]


def check_training(learning_rate: float, momentum: float, weight_decay: float,
                   topology: Any, pruning: Any) -> None:
    """The SGD hyper-parameters and topology strategies any trainer takes."""
    number("learning_rate", learning_rate, 0.0, math.inf, low_open=True, high_open=True)
    number("momentum", momentum, 0.0, 1.0, high_open=True)
    number("weight_decay", weight_decay, 0.0, 1.0, high_open=True)
    if topology is not None and not hasattr(topology, "on_epoch_end"):
        raise InvalidInputError(f"topology must be sm.SET(...) or None, got {topology!r}")
    if pruning is not None and not hasattr(pruning, "on_epoch_end"):
        raise InvalidInputError(f"pruning must be sm.ImportancePruning(...) or None, got {pruning!r}")


class Layer:
    """A read-only view of one sparse layer of a :class:`SparseMLP`.

    Arrays returned are copies; changing them does not change the model.
    """

    def __init__(self, model: SparseMLP, index: int) -> None:
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
    ) -> None:
        sizes = layer_sizes(sizes)
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
        _check_build(sizes, counts, "building the model")
        self._net = _core.Network(
            sizes, counts, specs, loss, output_activation, dropout, init, int(seed)
        )
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
        learning_rate: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 2e-4,
        nesterov: bool = False,
        topology: SET | None = DEFAULT_TOPOLOGY,
        pruning: ImportancePruning | None = None,
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
    ) -> list[dict[str, Any]]:
        """Trains with momentum SGD for ``epochs`` epochs.

        The epoch loop runs in the compiled core with the GIL released. After
        each epoch: evaluation on ``validation_data``, then ``pruning``, then
        ``topology`` (SET; ``None`` keeps the topology fixed), then each
        callback ``cb(model, record)``; a callback returning True stops training.

        Returns the history of this call: one dict per epoch with ``epoch``,
        ``loss`` and ``accuracy`` (running means over the epoch's batches, with
        dropout), ``val_loss``, ``val_accuracy``, ``n_connections`` and
        ``n_neurons`` (of the evaluated model), ``seconds`` (whole epoch) and
        its parts ``train_seconds``, ``eval_seconds``, ``topology_seconds``,
        plus what the strategies report (``set_regrown``, ``pruned_neurons``).
        ``model.history`` accumulates over calls.

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
        epochs = positive_int("epochs", epochs)
        batch_size = _batch_size(batch_size)
        verbose = verbosity(verbose)
        check_training(learning_rate, momentum, weight_decay, topology, pruning)
        if callable(callbacks):
            callbacks = [callbacks]
        if not all(isinstance(v, (bool, np.bool_)) for v in (shuffle, nesterov, bias_decay)):
            raise InvalidInputError("shuffle, nesterov and bias_decay must be True or False")
        checkpoint_every = positive_int("checkpoint_every", checkpoint_every)
        if resume and checkpoint is None:
            raise InvalidInputError("resume=True needs the checkpoint path to resume from")
        if not isinstance(overwrite, (bool, np.bool_)) or not isinstance(resume, (bool, np.bool_)):
            raise InvalidInputError("resume and overwrite must be True or False")
        saved_classes = None
        if checkpoint is not None:
            checkpoint = os.fspath(checkpoint)
            check_writable(checkpoint, "the checkpoint")
            if os.path.exists(checkpoint):
                if resume:  # the run's labels are the saved run's
                    meta = read_meta(checkpoint)
                    saved_classes = labels.from_json(meta.get("config", {}).get("classes"),
                                                     meta["sizes"][-1])
                elif not overwrite:
                    raise InvalidInputError(
                        f"{checkpoint} already exists ({describe_run(checkpoint)}); a new run "
                        "does not replace it: pass resume=True to continue the run saved there, "
                        "overwrite=True to replace it, or another checkpoint path")
        X, y, val, classes = self._training_data(X, y, validation_data, saved_classes)
        plan: dict[str, Any] = {
            "epochs": epochs, "batch_size": batch_size, "learning_rate": float(learning_rate),
            "momentum": float(momentum), "weight_decay": float(weight_decay),
            "nesterov": bool(nesterov), "shuffle": bool(shuffle),
        }
        if not bias_decay:  # (plans of earlier checkpoints have no key: decay on)
            plan["bias_decay"] = False
        self._config.pop("fit", None)  # a loaded checkpoint's progress is not this run's
        state: dict[str, Any] = {"done": 0, "first": len(self.history)}
        runs: list[Any] | None = None
        if checkpoint is not None:
            plan.update(topology=encode_strategy(topology, "topology"),
                        pruning=encode_strategy(pruning, "pruning"),
                        recycling=encode_strategy(recycling, "recycling"))
            state.update(plan=plan, data=fingerprint(X, y), every=checkpoint_every)
            if resume and os.path.exists(checkpoint):
                state, runs = self._resume_from(checkpoint, state, recycling, X, y)
        strategies = [s for s in (pruning, topology) if s is not None]
        if runs is None:
            runs = start_runs(recycling, self, X, y)
        self._check_memory(min(batch_size, X.shape[0]))  # a batch is at most the data
        self._config["classes"] = labels.to_json(classes)
        progress = _Progress(verbose, epochs, state["done"], -(-X.shape[0] // batch_size))
        run: list[dict[str, Any]] = self.history[state["first"]:]
        sgd = (learning_rate, momentum, weight_decay, nesterov, bool(bias_decay))
        try:
            for epoch in range(state["done"] + 1, epochs + 1):
                if state.get("finished"):
                    break
                record = self._fit_epoch(X, y, val, batch_size, sgd, shuffle, runs, strategies,
                                         epoch, epochs, progress)
                run.append(record)
                self.history.append(record)
                # The checkpoint first, so that a Ctrl-C from here on (which
                # waits for a write) leaves the epoch just done on disk.
                state.update(done=epoch, finished=epoch == epochs)
                due = checkpoint is not None and (epoch % checkpoint_every == 0 or epoch == epochs)
                if due:
                    self._save_checkpoint(checkpoint, state, runs)
                progress.report(epoch, record)
                if any(cb(self, record) for cb in callbacks) and epoch < epochs:
                    log.info("a callback stopped training after epoch %d", epoch)
                    state["finished"] = True
                    if checkpoint is not None:
                        self._save_checkpoint(checkpoint, state, runs)
        finally:
            progress.close()
            for r in runs:
                r.close(self)
        recyclers = [r for r in runs if hasattr(r, "summary")]
        if recyclers:
            self.recycling_summary = recyclers[0].summary()
            if run:
                run[-1]["recycling_summary"] = self.recycling_summary
        return run

    def _save_checkpoint(self, path: str, state: dict[str, Any], runs: list[Any]) -> None:
        """Writes the model with the run's progress and the recycling books."""
        books, arrays = save_runs(runs, self)
        self._config["fit"] = dict(state, recycling=books) if runs else state
        try:
            atomic_write(path, lambda f: self._write_archive(f, arrays))
        except OSError as e:
            e.add_note(f"sparse_mlp: writing the checkpoint {path} failed after epoch "
                       f"{state['done']}; the file there is as it was before")
            raise
        finally:
            del self._config["fit"]

    def _resume_from(self, path: str, wanted: dict[str, Any], recycling: Any, X: np.ndarray,
                     y: np.ndarray) -> tuple[dict[str, Any], list[Any]]:
        """Adopts the training state saved in checkpoint ``path`` after checking
        that it is a run with the same options and data, and that its
        recycling books are sound (the model is untouched until then).
        Returns the run's progress and its recycling runs, restored."""
        books: dict[str, np.ndarray] = {}
        saved = SparseMLP._read_archive(path, path, books)
        state = saved._config.get("fit")
        if not isinstance(state, dict):
            raise CheckpointError(f"{path} is a model file but not a checkpoint of fit()")
        diff = plan_differences(state.get("plan", {}), wanted["plan"])
        if diff:
            raise InvalidInputError(f"{path} holds a run with other options; resume it with the "
                                    f"same ones ({'; '.join(diff)})")
        if state.get("data") != wanted["data"]:
            raise InvalidInputError(f"{path} holds a run on other training data; resume it "
                                    "with the same X and y")
        runs = start_runs(recycling, saved, X, y)
        if runs:
            restore_runs(runs, saved, state.get("recycling"), books)
        config = {k: v for k, v in saved._config.items() if k != "fit"}
        self._adopt(saved._net, config, saved.history, saved.epochs_trained)
        log.info("resuming the run saved in %s after epoch %d of %d", path, state["done"],
                 state["plan"]["epochs"])
        progress = {**wanted, "done": int(state["done"]), "first": int(state["first"]),
                    "finished": bool(state.get("finished"))}
        return progress, runs

    def _fit_epoch(self, X: np.ndarray, y: np.ndarray, val: Any, batch_size: int,
                   sgd: tuple[float, float, float, bool, bool], shuffle: bool, runs: list[Any],
                   strategies: list[Any], epoch: int, epochs: int,
                   progress: _Progress) -> dict[str, Any]:
        """One epoch of ``fit``: training (split at recycling events), then
        evaluation and the topology strategies. Returns the epoch's record."""
        t0 = time.perf_counter()
        events: list[dict[str, Any]] = []
        try:
            if runs:
                stats = self._train_with_events(X, y, batch_size, sgd, shuffle, runs, epoch, events,
                                                progress)
            else:
                stats = self._net.train_epoch(X, y, batch_size, *sgd[:4], shuffle, bias_decay=sgd[4],
                                              progress=progress.batches(epoch))
        except DivergenceError as err:
                raise DivergenceError(
                    f"training diverged at epoch {epoch}, batch {err.batch}: the loss became "
                    f"{err.loss}. Lower the learning rate or check the data.",
                    batch=err.batch, loss=err.loss, epoch=epoch,
                ) from None
        except KeyboardInterrupt:
            log.warning("training interrupted during epoch %d; the model keeps the weights "
                        "of the last completed mini-batch", epoch)
            raise
        self.epochs_trained += 1
        t1 = time.perf_counter()
        record: dict[str, Any] = {
            "epoch": self.epochs_trained,
            "loss": stats["loss"],
            "accuracy": stats["accuracy"],
        }
        if val is not None:
            record["val_loss"], record["val_accuracy"] = self._net.evaluate(*val)
        record["n_connections"] = self.n_connections
        record["layer_connections"] = [int(n) for n in self._net.layer_nnz]
        record["n_neurons"] = int(sum(self.sizes[1:-1]))
        t2 = time.perf_counter()
        for strategy in strategies:
            record.update(strategy.on_epoch_end(self, epoch, epochs))
        t3 = time.perf_counter()
        record.update(seconds=t3 - t0, train_seconds=t1 - t0, eval_seconds=t2 - t1,
                      topology_seconds=t3 - t2)
        if any(hasattr(r, "summary") for r in runs):
            n_hidden = len(self.sizes) - 2
            recycled = [0] * n_hidden
            for e in events:
                for h, k in zip(e["layers"], e["recycled"]):
                    if h < n_hidden:
                        recycled[h] += k
            record.update(recycled=recycled, recycle_events=events)
        return record

    def _train_with_events(self, X: np.ndarray, y: np.ndarray, batch_size: int,
                           sgd: tuple[float, float, float, bool, bool], shuffle: bool, runs: list[Any],
                           epoch: int, events: list[dict[str, Any]],
                           progress: _Progress) -> dict[str, Any]:
        """One epoch in stretches of mini-batches between recycling events;
        the same sample order and updates as one ``train_epoch`` call."""
        order = self._net.epoch_order(X.shape[0], shuffle)
        n_batches = -(-X.shape[0] // batch_size)
        options: dict[str, Any] = {}
        for r in runs:
            options.update(r.train_options())
        step = int(self._net.run_state[2])
        done, loss_sum, correct = 0, 0.0, 0.0
        while done < n_batches:
            due = [d for d in (r.next_event(step) for r in runs) if d is not None]
            stretch = n_batches - done if not due else min(n_batches - done, min(due) - step)
            part = order[done * batch_size:(done + stretch) * batch_size]
            try:
                stats = self._net.train_epoch(X, y, batch_size, *sgd[:4], order=part, bias_decay=sgd[4],
                                              **options,
                                              progress=progress.batches(epoch, done))
            except DivergenceError as err:
                err.batch = (err.batch or 0) + done
                raise
            loss_sum += stats["loss"] * stats["samples"]
            correct += stats["accuracy"] * stats["samples"]
            done += stretch
            step += stretch
            for r in runs:
                if r.next_event(step - stretch) == step:
                    record = r.event(step, epoch)
                    if record is not None:
                        events.append(record)
        n = X.shape[0]
        return {"loss": loss_sum / n, "accuracy": correct / n, "samples": n, "batches": n_batches}

    def _training_data(self, X: Any, y: Any, validation_data: Any, classes: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None,
                                  np.ndarray]:
        """(X, y, (X_val, y_val) or None, classes), checked against the model's
        shape; the labels become output indices of ``classes`` (by default the
        model's, else learned from ``y``). The model is not changed."""
        X = as_features(X, self.n_features)
        if classes is None:
            classes = self.classes_
        if classes is None:
            classes = labels.learn(y, self.n_classes)
        y = labels.encode(classes, y, X.shape[0])
        if validation_data is None:
            return X, y, None, classes
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise InvalidInputError("validation_data must be a pair (X_val, y_val)")
        Xv = as_features(validation_data[0], self.n_features, name="X_val")
        return X, y, (Xv, labels.encode(classes, validation_data[1], Xv.shape[0], "y_val")), classes

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

    def predict(self, X: Any, batch_size: int | None = None) -> np.ndarray:
        """Predicted labels, shape (n_samples,): ``classes_[k]`` for the most
        probable output ``k`` (the output index before any class is known)."""
        return self._output_labels()[self.predict_proba(X, batch_size).argmax(axis=1)]

    def evaluate(self, X: Any, y: Any, batch_size: int | None = None) -> dict[str, float]:
        """Mean loss and accuracy on (X, y), without dropout (chunks as in
        :meth:`predict_proba`)."""
        X = as_features(X, self.n_features)
        y = labels.encode(self._output_labels(), y, X.shape[0])
        loss, acc = self._net.evaluate(X, y, self._inference_batch(batch_size))
        if not math.isfinite(loss):
            _check_finite_output(self._net.predict_proba(X, self._inference_batch(batch_size)), X)
        return {"loss": loss, "accuracy": acc}

    def _inference_batch(self, batch_size: int | None) -> int:
        if batch_size is None:
            return self._net.inference_batch()
        return _batch_size(batch_size)

    def memory_estimate(self, batch_size: int = 32) -> dict[str, int]:
        """Bytes that training this model with mini-batches of ``batch_size``
        needs, computed without allocating anything:

        - ``parameters``: every layer's connections (value, momentum,
          gradient, row index and the transposed view's two indices: 24 bytes
          each), biases and column/row pointers;
        - ``training_buffers``: activations of every layer, derivative factors
          of the hidden layers and two error blocks, for ``batch_size`` samples;
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
        est = {
            "parameters": sum(net.layer_bytes),
            "training_buffers": net.training_bytes(batch_size),
            "topology_change": max(net.layer_bytes),
        }
        est["training_total"] = sum(est.values())
        est["inference_buffers"] = net.inference_bytes(net.inference_batch())
        est["inference_total"] = est["parameters"] + est["inference_buffers"]
        return est

    def _check_memory(self, batch_size: int) -> None:
        """Raises InsufficientMemoryError when training would not fit."""
        available = available_bytes()
        if available is None:
            return
        est = self.memory_estimate(batch_size)
        allocated = self._net.memory_bytes  # parameters and any buffers already there
        more = est["training_total"] - allocated
        if more <= available:
            return
        per_sample = self._net.training_bytes(1)
        fits = (available + allocated - (est["training_total"] - est["training_buffers"])) // per_sample
        advice = (f"batch_size={fits} would fit" if fits >= 1 else
                  "the model itself does not fit: use fewer neurons or connections")
        raise InsufficientMemoryError(
            f"training {'-'.join(map(str, self.sizes))} ({self.n_connections} connections) with "
            f"batch_size={batch_size} needs {format_bytes(est['training_total'])}: "
            f"{format_bytes(est['parameters'])} of parameters, "
            f"{format_bytes(est['training_buffers'])} of training buffers, "
            f"{format_bytes(est['topology_change'])} for SET; that is {format_bytes(more)} "
            f"more than now, but only {format_bytes(available)} is available. {advice}.")

    def score(self, X: Any, y: Any) -> float:
        """Accuracy on (X, y)."""
        return self.evaluate(X, y)["accuracy"]

    # ------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike) -> None:
        """Writes the model and its training state (momentum, random state,
        history) to ``path`` as a numpy ``.npz`` archive without pickled
        objects. The file is replaced atomically: it is never half-written."""
        atomic_write(os.fspath(path), self._write_archive)

    def _write_archive(self, f: Any, extra: dict[str, np.ndarray] | None = None) -> None:
        """Writes the ``.npz`` archive one array at a time, fetching each layer
        from the core only when it is written: saving holds one layer's copy
        at a time, not the model's (a checkpoint of a 100M-connection model
        taken while training's buffers are allocated must not double it).
        Row indices are stored as uint32, as the core holds them."""
        seed, rng_state, step, topology_version = self._net.run_state
        loss, output = self._net.loss
        meta = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "sizes": self.sizes,
            "activations": [list(a) for a in self._net.activations],
            "loss": loss,
            "output_activation": output,
            "dropout": float(self._net.dropout),
            "init": self._net.init,
            "seed": seed,
            "step": step,
            "topology_version": topology_version,
            "epochs_trained": self.epochs_trained,
            "config": self._config,
            "history": self.history,
        }
        text = json.dumps(meta, default=_json_scalar)

        def arrays() -> Iterator[tuple[str, np.ndarray]]:
            yield from (extra or {}).items()
            for i in range(len(self.sizes) - 1):
                st = self._net.layer_state(i)
                st["row_idx"] = st["row_idx"].astype(np.uint32)
                for k in _LAYER_ARRAYS:
                    yield f"layer{i}.{k}", st[k]
                del st
            yield "meta", np.frombuffer(text.encode(), dtype=np.uint8)
            yield "rng_state", np.array(rng_state, dtype=np.uint64)

        write_npz(f, arrays())

    @classmethod
    def load(cls, path: str | os.PathLike) -> SparseMLP:
        """Reads a model written by :meth:`save`; raises :class:`CheckpointError`
        for missing, truncated, corrupted or incompatible files."""
        path = os.fspath(path)
        if not os.path.exists(path):
            raise CheckpointError(f"no model file at {path}")
        return cls._read_archive(path, path)

    @classmethod
    def _read_archive(cls, source: Any, path: str,
                      books: dict[str, np.ndarray] | None = None) -> SparseMLP:
        """The model in archive ``source``; with ``books``, also collects the
        recycling arrays a checkpoint holds into it."""
        with _archive(source, path) as z:
            meta = _meta_of(z, path)
            n_layers = len(meta["sizes"]) - 1
            layers = []
            for i in range(n_layers):
                st: dict[str, Any] = {"n_in": meta["sizes"][i], "n_out": meta["sizes"][i + 1]}
                for k in _LAYER_ARRAYS:
                    a = z[f"layer{i}.{k}"]
                    want = _ARCHIVE_DTYPES.get(k, (np.float32,))
                    if a.dtype not in want or a.ndim != 1:
                        raise CheckpointError(f"{path}: layer {i} array {k} has dtype "
                                              f"{a.dtype} and {a.ndim} dimensions")
                    st[k] = a
                layers.append(st)
            rng = z["rng_state"]
            if rng.dtype != np.uint64 or rng.shape != (4,):
                raise CheckpointError(f"{path}: rng_state must be 4 uint64 values")
            rng_state = [int(v) for v in rng]
            if books is not None:
                books.update({k: z[k] for k in z.files if k.startswith("recycling.")})
        try:
            _check_build(meta["sizes"], [st["row_idx"].size for st in layers], f"loading {path}")
            net = _core.Network.from_state(
                layers,
                [(str(k), float(s)) for k, s in meta["activations"]],
                meta["loss"], meta["output_activation"], float(meta["dropout"]), meta["init"],
                int(meta["seed"]), rng_state, int(meta["step"]), int(meta["topology_version"]),
            )
        except (InvalidInputError, TypeError, ValueError, KeyError, OverflowError) as e:
            raise CheckpointError(f"{path} holds an invalid model: {e}") from None
        config, history, trained = (meta.get("config", {}), meta.get("history", []),
                                    meta.get("epochs_trained", 0))
        if (not isinstance(config, dict) or not isinstance(history, list)
                or not all(isinstance(r, dict) for r in history)
                or not isinstance(trained, int) or trained < 0):
            raise CheckpointError(f"{path} holds a malformed configuration or history")
        try:
            labels.from_json(config.get("classes"), meta["sizes"][-1])
        except InvalidInputError as e:
            raise CheckpointError(f"{path}: {e}") from None
        return cls._from_net(net, config, history, trained)

    def __getstate__(self) -> dict[str, Any]:
        """Pickling (for ``copy.deepcopy``, joblib, scikit-learn) goes through
        the same archive as :meth:`save`; nothing but arrays is stored."""
        buffer = io.BytesIO()
        self._write_archive(buffer)
        return {"archive": buffer.getvalue(), "recycling_summary": self.recycling_summary}

    def __setstate__(self, state: dict[str, Any]) -> None:
        other = type(self)._read_archive(io.BytesIO(state["archive"]), "<pickled model>")
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
        _check_build(sizes, [w.nnz for w in weights], "importing the weights")
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
            layers.append({"n_in": w.shape[0], "n_out": w.shape[1],
                           "col_ptr": csc.indptr.astype(np.int64), "row_idx": csc.indices.astype(np.int64),
                           "values": csc.data, "momentum": np.zeros_like(csc.data), "bias": bias,
                           "bias_momentum": np.zeros_like(bias)})
        # A model of the same sizes checks the other arguments and gives the
        # activation specs; its weights are then replaced.
        if loss == "cross_entropy" and sizes[-1] < 2:
            raise InvalidInputError(f"cross_entropy needs at least 2 output classes, got {sizes[-1]}")
        template = cls([1] * (len(sizes) - 1) + [2], activation=activation, epsilon=1.0, init=init,
                       dropout=dropout, loss=loss, output_activation=output_activation, seed=seed)
        net_loss, output = template._net.loss
        try:
            net = _core.Network.from_state(
                layers, [(str(k), float(v)) for k, v in template._net.activations], net_loss, output,
                float(template._net.dropout), template._net.init, template.seed, [1, 2, 3, 4], 0, 0)
        except (TypeError, ValueError) as e:
            raise InvalidInputError(f"cannot build a model from these matrices: {e}") from None
        net.reseed(template.seed)
        return cls._from_net(net, dict(template._config, epsilon=None, imported=True), [], 0)

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
        rows.append(f"total connections {self.n_connections}, memory {self.memory_bytes / 1e6:.2f} MB")
        return "\n".join(rows)

    def __repr__(self) -> str:
        return (f"SparseMLP(sizes={self.sizes}, n_connections={self.n_connections}, "
                f"epochs_trained={self.epochs_trained})")


@contextlib.contextmanager
def _archive(source: Any, path: str) -> Iterator[Any]:
    """``np.load`` of a model archive, its failures as :class:`CheckpointError`
    that say what the file is instead (never numpy's advice on pickles)."""
    try:
        with np.load(source, allow_pickle=False) as z:
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ValueError("not an archive")
            yield z
    except CheckpointError:
        raise
    except UNREADABLE_ARCHIVE as e:
        if isinstance(source, str) and not zipfile.is_zipfile(source):
            raise CheckpointError(f"{path} is not a sparse_mlp model file: it is "
                                  f"{describe_file(source)}; expected an .npz archive written by "
                                  "SparseMLP.save or `sparse-mlp train --save`") from None
        detail = "" if "pickle" in str(e) else f" ({e})"
        raise CheckpointError(f"{path} is a damaged or truncated model file{detail}") from None


def _meta_of(z: Any, path: str) -> dict[str, Any]:
    """The checked metadata of an open model archive."""
    if "meta" not in z.files:
        raise CheckpointError(f"{path} is not a sparse_mlp model file: it is {describe_file(path)}, "
                              "without a model's metadata")
    raw = z["meta"]
    if raw.dtype != np.uint8 or raw.ndim != 1:
        # (bytes() of a crafted integer would allocate that many bytes)
        raise CheckpointError(f"{path}: its metadata is not a byte string")
    try:
        meta = json.loads(raw.tobytes().decode())
    except (UnicodeDecodeError, ValueError):
        raise CheckpointError(f"{path}: its metadata is not JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a sparse_mlp model file (its metadata is another program's)")
    if meta.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format version {meta.get('version')!r}; this version of "
            f"sparse_mlp reads version {FORMAT_VERSION}"
        )
    if not isinstance(meta.get("sizes"), list) or len(meta["sizes"]) < 2:
        raise CheckpointError(f"{path}: its metadata has no layer sizes")
    return meta


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of a model file (sizes, configuration, history, a
    checkpoint's progress under ``config["fit"]``), without reading its arrays."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"no model file at {path}")
    with _archive(path, path) as z:
        return _meta_of(z, path)


def describe_run(path: str | os.PathLike) -> str:
    """What a file that is in the way holds, in a few words: a checkpoint's
    progress, a model's epochs, or what kind of file it is."""
    try:
        meta = read_meta(path)
    except CheckpointError:
        return describe_file(os.fspath(path))
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    progress = config.get("fit") or config.get("wasap")
    if isinstance(progress, dict) and "done" in progress:
        total = progress.get("plan", progress).get("epochs", "?")
        state = "finished" if progress.get("finished") else "unfinished"
        return f"the checkpoint of a run at epoch {progress['done']} of {total}, {state}"
    return f"a model trained for {meta.get('epochs_trained', 0)} epochs"


def _json_scalar(value: Any) -> Any:
    """numpy scalars and arrays that callbacks may leave in history records."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a model file")


class _Progress:
    """Progress of ``fit``. verbose 1: when stdout is a terminal, a tqdm bar
    over the run's mini-batches (moving during an epoch; the last epoch's
    loss, accuracy and nnz beside it), otherwise the first, the last and at
    most one line per second in between; verbose 2: a line per epoch; 0:
    nothing."""

    def __init__(self, verbose: int, epochs: int, done: int = 0, n_batches: int = 1) -> None:
        self.verbose = int(verbose)
        self.epochs = epochs
        self.n_batches = n_batches
        self.last = -math.inf
        self.bar = None
        if self.verbose == 1 and done < epochs and _is_terminal(sys.stdout):
            try:
                from tqdm.auto import tqdm
            except ImportError:  # pragma: no cover - tqdm is a dependency
                return
            self.bar = tqdm(total=epochs * n_batches, initial=done * n_batches, unit="batch",
                            desc=self._epoch(done + 1), file=sys.stdout, dynamic_ncols=True,
                            leave=True)

    def _epoch(self, epoch: int) -> str:
        return f"epoch {min(epoch, self.epochs)}/{self.epochs}"

    def batches(self, epoch: int, offset: int = 0) -> Callable[[int], None] | None:
        """The callback the compiled core calls during an epoch (about every
        50 ms) with the mini-batches it has done since ``offset``; None when
        there is no bar to move."""
        bar = self.bar
        if bar is None:
            return None
        base = (epoch - 1) * self.n_batches + offset

        def moved(done: int) -> None:
            bar.update(base + done - bar.n)
        return moved

    def report(self, epoch: int, r: dict[str, Any]) -> None:
        if self.verbose <= 0:
            return
        if self.bar is not None:
            fields = {"loss": f"{r['loss']:.4f}", "acc": f"{r['accuracy']:.4f}"}
            if "val_accuracy" in r:
                fields["val_acc"] = f"{r['val_accuracy']:.4f}"
            fields["nnz"] = str(r["n_connections"])
            self.bar.set_postfix(fields, refresh=False)
            self.bar.set_description(self._epoch(epoch + 1), refresh=False)
            self.bar.update(epoch * self.n_batches - self.bar.n)
            return
        now = time.monotonic()
        if self.verbose == 1 and 1 < epoch < self.epochs and now - self.last < 1.0:
            return
        self.last = now
        print(format_record(r, epoch, self.epochs), file=sys.stdout, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def format_record(r: dict[str, Any], epoch: int | None = None, epochs: int | None = None) -> str:
    """One line of an epoch's record: loss, accuracy, nnz, time."""
    epoch = r["epoch"] if epoch is None else epoch
    width = len(str(epochs or epoch))
    parts = [f"epoch {epoch:>{width}}" + (f"/{epochs}" if epochs else ""),
             f"loss {r['loss']:.4f}", f"acc {r['accuracy']:.4f}"]
    if "val_loss" in r:
        parts += [f"val_loss {r['val_loss']:.4f}", f"val_acc {r['val_accuracy']:.4f}"]
    parts += [f"nnz {r['n_connections']}", f"{r['seconds']:.2f}s"]
    if r.get("pruned_neurons"):
        parts.append(f"pruned {r['pruned_neurons']}")
    return "  ".join(parts)


__all__ = ["SparseMLP", "Layer", "connection_counts", "SparseMLPError"]
