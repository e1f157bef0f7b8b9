"""The sequential training loop: epochs in the compiled core (the GIL
released), split at the events of step strategies (neuron recycling) with
the same sample order and updates, each mini-batch at its scheduled
learning rate; then evaluation, the callbacks' ``on_evaluated``, the
topology strategies, the checkpoint and the callbacks' ``on_epoch_end``."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from .. import labels
from ..errors import DivergenceError, InvalidInputError
from ..recycling import restore_sessions, save_sessions, start_sessions
from ..strategies import EpochStrategy, StepStrategy
from .callbacks import CallbackList, TrainingRun
from .checkpoint import BOOKS, CALLBACKS, RunCheckpoint
from .data import TrainingData, prepare, validation_record
from .options import FitOptions
from .progress import ProgressBar

log = logging.getLogger("sparse_mlp")


def fit(model: Any, X: Any, y: Any, options: FitOptions, validation_data: Any = None,
        callbacks: Any = (), sample_weight: Any = None, class_weight: Any = None
        ) -> list[dict[str, Any]]:
    """Trains ``model`` as :meth:`SparseMLP.fit` documents; returns this
    run's history (the whole run's when it resumes a checkpoint)."""
    cbs = CallbackList(callbacks)
    checkpoint = None
    classes = None
    if options.checkpoint is not None:
        checkpoint = RunCheckpoint(options.checkpoint, options.plan(), options.resume, options.overwrite)
        classes = checkpoint.saved_classes(model.n_classes)  # a resumed run's labels are the saved run's
    data = prepare(model, X, y, validation_data, classes, sample_weight, class_weight)
    check_schedule(options, data)
    model._config.pop("fit", None)  # a loaded checkpoint's progress is not this run's
    progress: dict[str, Any] = {"done": 0, "first": len(model.history), "finished": False,
                                "schedule": {}}
    sessions = None
    resumed = False
    if checkpoint is not None:
        progress["data"] = data.fingerprint()
        loaded = checkpoint.load(progress["data"])
        if loaded is not None:
            saved, state = loaded
            sessions = _start_sessions(options, _Adopted(saved), data)
            if sessions:
                restore_sessions(sessions, _Adopted(saved), state.get("recycling"), {
                    k: v for k, v in saved.extra.items() if k.startswith(BOOKS)})
            cbs.load_states(state.get("callbacks"), {k[len(CALLBACKS):]: v for k, v in
                                                     saved.extra.items() if k.startswith(CALLBACKS)})
            model._adopt(saved.net, {k: v for k, v in saved.config.items() if k != "fit"},
                         saved.history, saved.epochs_trained)
            progress.update(done=int(state["done"]), first=int(state["first"]),
                            finished=bool(state.get("finished")), schedule=state.get("schedule", {}))
            resumed = True
    if sessions is None:
        sessions = _start_sessions(options, model, data)
    # (a batch is at most the data)
    model._check_memory(min(options.batch_size, data.X.shape[0]), options.optimizer)
    model._config["classes"] = labels.to_json(data.classes)
    if data.regression:
        model._config["targets"] = "values"
    return _Loop(model, data, options, sessions, checkpoint, progress, cbs, resumed).run()


def _start_sessions(options: FitOptions, model: Any, data: TrainingData) -> list[Any]:
    """The step strategies' sessions: recycling's, then a step topology's (RigL)."""
    sessions = start_sessions(options.recycling, model, data.X, data.y)
    if isinstance(options.topology, StepStrategy):
        sessions.append(options.topology.start(model, data.X, data.y))
    return sessions


def check_schedule(options: FitOptions, data: TrainingData) -> None:
    """A schedule that monitors a validation metric needs validation data."""
    monitor = options.schedule.needs()
    if monitor is not None and monitor.startswith("val_") and data.val is None:
        raise InvalidInputError(f"the learning-rate schedule monitors {monitor!r} but there is no "
                                "validation data; pass validation_data or monitor 'loss'")


def scheduled_rates(options: FitOptions, epoch: int, batches: int, samples: int,
                    state: dict[str, Any]) -> np.ndarray:
    """The learning rates of epoch ``epoch``'s mini-batches (float32)."""
    rates = np.ascontiguousarray(options.schedule.rates(epoch, batches, options.epochs, samples, state),
                                 dtype=np.float32)
    if rates.shape != (batches,) or not (np.isfinite(rates).all() and (rates > 0).all()):
        raise InvalidInputError(f"the learning-rate schedule {options.schedule!r} gave rates "
                                f"{rates[:4]}... for {batches} mini-batches; they must be positive")
    return rates


class _Adopted:
    """A saved model seen as a model by the sessions restored into it."""

    def __init__(self, saved: Any) -> None:
        self._net = saved.net
        self.sizes = list(saved.net.sizes)


class _Loop:
    def __init__(self, model: Any, data: TrainingData, options: FitOptions, sessions: list[Any],
                 checkpoint: RunCheckpoint | None, progress: dict[str, Any], callbacks: CallbackList,
                 resumed: bool) -> None:
        self.model, self.data, self.o, self.sessions = model, data, options, sessions
        self.checkpoint, self.state, self.callbacks = checkpoint, progress, callbacks
        self.strategies = [s for s in (options.pruning, options.topology) if isinstance(s, EpochStrategy)]
        self.n_batches = -(-data.X.shape[0] // options.batch_size)
        self.bar = callbacks.find(ProgressBar)
        if self.bar is None:
            self.bar = ProgressBar(options.verbose)
            callbacks.add_first(self.bar)
        self.run_info = TrainingRun(model, options, options.epochs, progress["done"],
                                    model.history[progress["first"]:], has_validation=data.val is not None,
                                    resumed=resumed, batches=self.n_batches)

    def run(self) -> list[dict[str, Any]]:
        model, o, state = self.model, self.o, self.state
        history = self.run_info.history
        try:
            self.callbacks.on_train_begin(self.run_info)
            for epoch in range(state["done"] + 1, o.epochs + 1):
                if state["finished"]:
                    break
                record = self._epoch(epoch)
                history.append(record)
                model.history.append(record)
                # The checkpoint first, so that a Ctrl-C from here on (which
                # waits for a write) leaves the epoch just done on disk.
                state.update(done=epoch, finished=epoch == o.epochs)
                if epoch % o.checkpoint_every == 0 or epoch == o.epochs:
                    self._save()
                if self.callbacks.on_epoch_end(self.run_info, record) and epoch < o.epochs:
                    log.info("a callback stopped training after epoch %d", epoch)
                    state["finished"] = True
                    self._save()
        finally:
            self.bar.close()
            for s in self.sessions:
                s.close(model)
        self.callbacks.on_train_end(self.run_info)
        recyclers = [s for s in self.sessions if hasattr(s, "summary")]
        if recyclers:
            model.recycling_summary = recyclers[0].summary()
            if history:
                history[-1]["recycling_summary"] = model.recycling_summary
        return history

    def _save(self) -> None:
        if self.checkpoint is None:
            return
        books, arrays = save_sessions(self.sessions, self.model)
        self.state["callbacks"], states = self.callbacks.states()
        arrays = {**arrays, **{CALLBACKS + k: a for k, a in states.items()}}
        self.checkpoint.write(self.model, self.state, books if self.sessions else None, arrays)

    def _epoch(self, epoch: int) -> dict[str, Any]:
        """One epoch: training (split at step strategies' events), then
        evaluation and the topology strategies. Returns the epoch's record."""
        model, o = self.model, self.o
        t0 = time.perf_counter()
        events: list[dict[str, Any]] = []
        rates = scheduled_rates(o, epoch, self.n_batches, self.data.X.shape[0], self.state["schedule"])
        try:
            stats = self._train(epoch, rates, events)
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
        model.epochs_trained += 1
        t1 = time.perf_counter()
        record: dict[str, Any] = {"epoch": model.epochs_trained, "loss": stats["loss"]}
        if not self.data.regression:
            record["accuracy"] = stats["accuracy"]
        record.update(validation_record(model, self.data))
        record["learning_rate"] = float(rates[0])
        record["n_connections"] = model.n_connections
        record["layer_connections"] = [int(n) for n in model._net.layer_nnz]
        record["n_neurons"] = int(sum(model.sizes[1:-1]))
        o.schedule.update(self.state["schedule"], record)
        self.run_info.epoch = epoch
        self.callbacks.on_evaluated(self.run_info, record)
        t2 = time.perf_counter()
        for strategy in self.strategies:
            record.update(strategy.on_epoch_end(model, epoch, o.epochs))
        t3 = time.perf_counter()
        record.update(seconds=t3 - t0, train_seconds=t1 - t0, eval_seconds=t2 - t1,
                      topology_seconds=t3 - t2)
        for s in self.sessions:
            if hasattr(s, "epoch_record"):
                record.update(s.epoch_record())
        if any(hasattr(s, "summary") for s in self.sessions):
            n_hidden = len(model.sizes) - 2
            recycled = [0] * n_hidden
            for e in events:
                for h, k in zip(e["layers"], e["recycled"]):
                    if h < n_hidden:
                        recycled[h] += k
            record.update(recycled=recycled, recycle_events=events)
        return record

    def _train(self, epoch: int, rates: np.ndarray, events: list[dict[str, Any]]) -> dict[str, Any]:
        """One epoch's training, in stretches of mini-batches between the
        step strategies' events; the same sample order and updates as one
        ``train_epoch`` call."""
        net, X, y, o = self.model._net, self.data.X, self.data.y, self.o
        weights = {"sample_weight": self.data.weights}
        if not self.sessions:
            return net.train_epoch(X, y, o.batch_size, shuffle=o.shuffle, **o.core_args(), rates=rates,
                                   progress=self.bar.batches(epoch), **weights)
        order = net.epoch_order(X.shape[0], o.shuffle)
        n_batches = self.n_batches
        step = int(net.run_state[2])
        done, loss_sum, correct = 0, 0.0, 0.0
        while done < n_batches:
            due = [d for d in (s.next_event(step) for s in self.sessions) if d is not None]
            stretch = n_batches - done if not due else min(n_batches - done, min(due) - step)
            part = order[done * o.batch_size:(done + stretch) * o.batch_size]
            options: dict[str, Any] = {}
            for s in self.sessions:
                options.update(s.train_options())
            try:
                stats = net.train_epoch(X, y, o.batch_size, order=part, **o.core_args(), **options,
                                        rates=rates[done:done + stretch], **weights,
                                        progress=self.bar.batches(epoch, done))
            except DivergenceError as err:
                err.batch = (err.batch or 0) + done
                raise
            loss_sum += stats["loss"] * stats["samples"]
            correct += stats["accuracy"] * stats["samples"]
            done += stretch
            step += stretch
            for s in self.sessions:
                if s.next_event(step - stretch) == step:
                    record = s.event(step, epoch, float(rates[done - 1]))
                    if record is not None:
                        events.append(record)
        n = X.shape[0]
        return {"loss": loss_sum / n, "accuracy": correct / n, "samples": n, "batches": n_batches}
