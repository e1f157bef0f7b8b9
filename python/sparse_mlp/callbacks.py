"""Training callbacks: the hooks of a run (as Keras's), and the ones most runs want.

A callback is a :class:`Callback` (or a plain function ``f(model, record)``,
whose true return value asks to stop) given to ``fit(callbacks=[...])``,
``WASAP.fit`` or the estimators. Its hooks, all optional:

- ``on_train_begin(run)``;
- ``on_evaluated(run, record)``: after the epoch's training and evaluation,
  *before* its pruning and SET step: the model is the one ``record``'s
  metrics were measured on;
- ``on_epoch_end(run, record)``: after the topology step and the
  checkpoint; returning True asks the run to stop;
- ``on_train_end(run)``: when training ended normally (not on an error);
- ``state()`` / ``load_state(data, arrays)``: what a checkpoint keeps of the
  callback so that a resumed run continues it (JSON data and numpy arrays).

``run`` is the :class:`TrainingRun`: the model, the options, the epoch just
done, the call's epochs, this run's history. A callback that raises stops
training; the model and the checkpoint are those of the last completed epoch.

The callbacks here: :class:`EarlyStopping`, :class:`ModelCheckpoint`,
:class:`TensorBoard`, :class:`ProgressBar` (what ``verbose`` gives) and
:class:`MetricsLogger` (JSON Lines and CSV files).

>>> import numpy as np, sparse_mlp as sm
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(300, 10)).astype(np.float32); y = (X[:, 0] > 0).astype(int)
>>> model = sm.SparseMLP([10, 32, 2], epsilon=4, seed=0)
>>> stop = sm.callbacks.EarlyStopping(patience=3)
>>> history = model.fit(X[:200], y[:200], epochs=100, verbose=0, callbacks=[stop],
...                     validation_data=(X[200:], y[200:]))
>>> len(history) < 100 and model.evaluate(X[200:], y[200:])["loss"] == stop.best
True
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

import numpy as np

from . import _netstate, archive
from .errors import InvalidInputError
from .files import atomic_write, check_writable
from .metrics import MetricsLogger
from .schedules import improved, monitor_mode, monitored
from .training.callbacks import Callback, FunctionCallback, TrainingRun
from .training.progress import ProgressBar

__all__ = ["Callback", "FunctionCallback", "TrainingRun", "EarlyStopping", "ModelCheckpoint",
           "TensorBoard", "ProgressBar", "MetricsLogger"]

log = logging.getLogger("sparse_mlp")


def _monitor(monitor: Any, mode: str) -> tuple[str, str]:
    if not isinstance(monitor, str) or not monitor:
        raise InvalidInputError(f"monitor must be a metric name such as 'val_loss', got {monitor!r}")
    return monitor, monitor_mode(monitor, mode)


def _check_monitor(run: TrainingRun, monitor: str, who: str) -> None:
    if monitor.startswith("val_") and not run.has_validation:
        raise InvalidInputError(f"{who} monitors {monitor!r} but the run has no validation data; "
                                "pass validation_data, or monitor 'loss'")


class EarlyStopping(Callback):
    """Stops training when ``monitor`` has not improved by more than
    ``min_delta`` for ``patience`` epochs. With ``restore_best``, the model
    then gets back the weights *and topology* of its best epoch as they were
    when that epoch's metrics were measured (before its pruning and SET
    step): a copy kept in memory (O(connections), like the model itself),
    so that the restored model evaluates exactly to :attr:`best`.

    ``mode``: "min", "max" or "auto" (max for accuracies and R², else min).
    After the run: :attr:`best`, :attr:`best_epoch` and :attr:`stopped_epoch`
    (0 when it did not stop). A checkpointed run resumed keeps counting (the
    copy is saved with the checkpoint)."""

    def __init__(self, monitor: str = "val_loss", mode: str = "auto", patience: int = 10,
                 min_delta: float = 0.0, restore_best: bool = True) -> None:
        self.monitor, self.mode = _monitor(monitor, mode)
        if isinstance(patience, bool) or not isinstance(patience, (int, np.integer)) or patience < 0:
            raise InvalidInputError(f"patience must be a whole number of epochs >= 0, got {patience!r}")
        if not (isinstance(min_delta, (int, float)) and math.isfinite(min_delta) and min_delta >= 0):
            raise InvalidInputError(f"min_delta must be a finite number >= 0, got {min_delta!r}")
        if not isinstance(restore_best, bool):
            raise InvalidInputError(f"restore_best must be True or False, got {restore_best!r}")
        self.patience, self.min_delta, self.restore_best = int(patience), float(min_delta), restore_best
        self._reset()

    def _reset(self) -> None:
        self.best: float | None = None
        self.best_epoch = 0
        self.stopped_epoch = 0
        self.wait = 0
        self._snapshot: tuple[dict[str, Any], list[dict[str, Any]]] | None = None

    def __repr__(self) -> str:
        return (f"EarlyStopping(monitor={self.monitor!r}, patience={self.patience}, "
                f"min_delta={self.min_delta}, restore_best={self.restore_best})")

    def on_train_begin(self, run: TrainingRun) -> None:
        _check_monitor(run, self.monitor, "EarlyStopping")
        if not run.resumed:
            self._reset()

    def on_evaluated(self, run: TrainingRun, record: dict[str, Any]) -> None:
        value = monitored(record, self.monitor, "EarlyStopping")
        if improved(value, self.best, self.mode, self.min_delta):
            self.best, self.best_epoch, self.wait = value, int(record["epoch"]), 0
            if self.restore_best:
                net = run.model._net
                self._snapshot = (_netstate.describe(net),
                                  [_netstate.layer(net, i) for i in range(len(net.sizes) - 1)])
        else:
            self.wait += 1

    def on_epoch_end(self, run: TrainingRun, record: dict[str, Any]) -> bool:
        if self.wait >= max(self.patience, 1) and self.best is not None:
            self.stopped_epoch = int(record["epoch"])
            log.info("early stopping after epoch %d: %s has not improved for %d epochs (best %.6g "
                     "at epoch %d)", self.stopped_epoch, self.monitor, self.wait, self.best,
                     self.best_epoch)
            return True
        return False

    def on_train_end(self, run: TrainingRun) -> None:
        if not self.restore_best or self._snapshot is None:
            return
        if not run.restorable:
            log.warning("EarlyStopping: a data-parallel run's model is the average of its replicas; "
                        "the best epoch's weights are not restored")
            return
        meta, layers = self._snapshot
        if self.best_epoch != run.model.epochs_trained:
            run.model._net = _netstate.build(meta, layers)
            log.info("restored the model of epoch %d (%s %.6g)", self.best_epoch, self.monitor,
                     self.best)

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        data = {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}
        arrays: dict[str, np.ndarray] = {}
        if self._snapshot is not None:
            meta, layers = self._snapshot
            data["meta"] = meta
            for i, st in enumerate(layers):
                for k, a in st.items():
                    if isinstance(a, np.ndarray):
                        arrays[f"layer{i}.{k}"] = a
        return data, arrays

    def load_state(self, data: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.best, self.best_epoch, self.wait = data["best"], int(data["best_epoch"]), int(data["wait"])
        if "meta" in data:
            n = len(data["meta"]["sizes"]) - 1
            layers = [{k.split(".", 1)[1]: a for k, a in arrays.items() if k.startswith(f"layer{i}.")}
                      for i in range(n)]
            self._snapshot = (data["meta"], layers)


class ModelCheckpoint(Callback):
    """Saves the model to ``path`` (atomically, as :meth:`SparseMLP.save`)
    after each epoch's evaluation, before its topology step: with
    ``save_best_only`` (default) only when ``monitor`` improved, so the file
    holds the best model so far. A file already at ``path`` when a new run
    starts is not replaced unless ``overwrite=True`` (a resumed run's own
    file is its to replace)."""

    def __init__(self, path: str | os.PathLike, monitor: str = "val_loss", mode: str = "auto",
                 save_best_only: bool = True, overwrite: bool = False) -> None:
        self.path = os.fspath(path)
        self.monitor, self.mode = _monitor(monitor, mode)
        self.save_best_only, self.overwrite = bool(save_best_only), bool(overwrite)
        self.best: float | None = None

    def __repr__(self) -> str:
        return f"ModelCheckpoint({self.path!r}, monitor={self.monitor!r})"

    def on_train_begin(self, run: TrainingRun) -> None:
        if self.save_best_only:
            _check_monitor(run, self.monitor, "ModelCheckpoint")
        check_writable(self.path, "the model checkpoint")
        if os.path.exists(self.path) and not (self.overwrite or run.resumed):
            raise InvalidInputError(f"{self.path} already exists ({archive.describe_run(self.path)}); "
                                    "ModelCheckpoint does not replace it: pass overwrite=True or "
                                    "another path")
        if not run.resumed:
            self.best = None

    def on_evaluated(self, run: TrainingRun, record: dict[str, Any]) -> None:
        if self.save_best_only:
            value = monitored(record, self.monitor, "ModelCheckpoint")
            if not improved(value, self.best, self.mode, 0.0):
                return
            self.best = value
        model = run.model
        history = [*model.history, record]
        atomic_write(self.path, lambda f: archive.write(f, model._net, model._config, history,
                                                        model.epochs_trained,
                                                        fmt=archive.format_of(self.path)))

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"best": self.best}, {}

    def load_state(self, data: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.best = data.get("best")


class TensorBoard(Callback):
    """Writes TensorBoard event files to ``log_dir`` with ``tensorboardX``
    (``pip install 'sparse-mlp[tensorboard]'``): per epoch the record's
    scalars (losses, accuracies, learning rate, connections per layer,
    recycled neurons per layer) and, every ``histogram_every`` epochs, a
    histogram of each layer's weights. View with ``tensorboard --logdir``."""

    def __init__(self, log_dir: str | os.PathLike, histogram_every: int = 1) -> None:
        try:
            import tensorboardX  # noqa: F401
        except ImportError:
            raise InvalidInputError("TensorBoard needs the tensorboardX package: "
                                    "pip install 'sparse-mlp[tensorboard]'") from None
        self.log_dir = os.fspath(log_dir)
        if isinstance(histogram_every, bool) or not isinstance(histogram_every, int) or histogram_every < 0:
            raise InvalidInputError(f"histogram_every must be an int >= 0, got {histogram_every!r}")
        self.histogram_every = histogram_every
        self.writer: Any = None

    def __repr__(self) -> str:
        return f"TensorBoard({self.log_dir!r})"

    def on_train_begin(self, run: TrainingRun) -> None:
        from tensorboardX import SummaryWriter
        os.makedirs(self.log_dir, exist_ok=True)
        self.writer = SummaryWriter(self.log_dir)

    def on_epoch_end(self, run: TrainingRun, record: dict[str, Any]) -> None:
        w, step = self.writer, int(record["epoch"])
        if w is None:
            return
        for key, value in record.items():
            if key == "epoch":
                continue
            if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
                group = "time" if key.endswith("seconds") else "metrics"
                w.add_scalar(f"{group}/{key}", float(value), step)
        for name in ("layer_connections", "recycled"):
            for i, v in enumerate(record.get(name) or []):
                w.add_scalar(f"{name}/layer{i}", float(v), step)
        if self.histogram_every and step % self.histogram_every == 0:
            for i in range(len(run.model.sizes) - 1):
                values = run.model._net.layer_state(i)["values"]
                if values.size:
                    w.add_histogram(f"weights/layer{i}", values, step)
        w.flush()

    def on_train_end(self, run: TrainingRun) -> None:
        self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def __del__(self) -> None:  # a run that raised still leaves whole files
        try:
            self.close()
        except Exception:
            pass
