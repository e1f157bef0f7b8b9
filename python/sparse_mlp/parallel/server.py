"""The parameter server of WASAP-SGD (rank 0): applies the workers'
gradients as they come (phase 1), runs the topology strategies once per
server epoch, gathers the replicas trained locally (phase 2) and averages
them. Its records go through the same callbacks as the sequential loop's."""

from __future__ import annotations

import logging
import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from .. import _core, _netstate, schedules
from ..errors import InvalidInputError, ParallelError
from ..strategies import EpochStrategy
from ..topology import RigL, RigLSession
from ..training.callbacks import CallbackList, TrainingRun
from ..training.checkpoint import BOOKS, RunCheckpoint
from ..training.data import TrainingData, validation_record
from ..training.loop import scheduled_rates
from ..training.options import FitOptions
from ..training.progress import ProgressBar
from .transport import (
    DONE,
    FAILED,
    FINAL,
    GRAD,
    LOCAL,
    MODEL,
    PARAMS,
    PROGRESS,
    STOP,
    TAG_HEADER,
    TAG_REPLY,
    _Link,
    _mpi,
    overlap_possible,
)

log = logging.getLogger("sparse_mlp.parallel")


class Packing:
    """Where each layer's values and bias sit in the packed parameter array,
    and the index arrays of that topology (to remap stale gradients)."""

    def __init__(self, net: _core.Network) -> None:
        self.sizes = list(net.sizes)
        self.topology = []
        self.spans = []
        off = 0
        for i in range(len(self.sizes) - 1):
            st = net.layer_state(i)
            nnz, n_out = st["row_idx"].size, self.sizes[i + 1]
            self.topology.append((st["col_ptr"], st["row_idx"]))
            self.spans.append((off, off + nnz, off + nnz + n_out))
            off += nnz + n_out
        self.length = off

    def remap(self, g: np.ndarray, old: Packing, out: np.ndarray) -> int:
        """Moves gradient ``g`` packed for ``old`` onto this topology (by
        connection; a layer whose shape changed loses everything). Returns the
        number of dropped entries."""
        dropped = 0
        shapes = list(zip(self.sizes[:-1], self.sizes[1:]))
        old_shapes = list(zip(old.sizes[:-1], old.sizes[1:]))
        for (a, b, c), (oa, ob, oc), (ptr, rows), (optr, orows), shape, old_shape in zip(
                self.spans, old.spans, self.topology, old.topology, shapes, old_shapes):
            if shape != old_shape:
                out[a:c] = 0.0
                dropped += oc - oa
                continue
            out[a:b], lost = _core.remap_values(optr, orows, g[oa:ob], ptr, rows)
            out[b:c] = g[ob:oc]
            dropped += lost
        return dropped


class Server:
    def __init__(self, trainer: Any, link: _Link, model: Any, data: TrainingData,
                 options: FitOptions, state: dict, checkpoint: RunCheckpoint | None,
                 callbacks: CallbackList) -> None:
        self.t, self.link, self.model, self.data, self.o = trainer, link, model, data, options
        self.state, self.checkpoint, self.callbacks = state, checkpoint, callbacks
        self.K = link.comm.Get_size() - 1
        self.workers = list(range(1, self.K + 1))
        self.version = 0  # parameter version: updates applied
        self.packing = Packing(model._net)
        self.packings = {self._topo(): self.packing}
        self.worker_topo = dict.fromkeys(self.workers, self._topo())
        self.worker_prev_topo = dict(self.worker_topo)
        self.params = np.empty(self.packing.length, np.float32)
        self.local: set[int] = set()  # workers in phase 2
        self.awaiting: set[int] = set()  # workers whose message has no answer yet
        self.last_report = time.perf_counter()
        self.run_info = TrainingRun(model, options, state["epochs"], state["done"],
                                    model.history[state["first"]:], has_validation=data.val is not None,
                                    resumed=state["done"] > 0, restorable=False)
        self.progress = callbacks.find(ProgressBar)
        if self.progress is None:
            self.progress = ProgressBar(options.verbose)
            callbacks.add_first(self.progress)
        # WASSP-SGD: the mean of K gradients at K times the rate, reached by a warm-up
        self.schedule = (schedules.Warmup(options.schedule, self.K, trainer.warmup_epochs)
                         if trainer.sync else options.schedule)
        self.o = options.replace(learning_rate=self.schedule)
        self.state.setdefault("schedule", {})
        # With overlap, a thread receives the next gradient while this one is applied.
        self.pool = (ThreadPoolExecutor(1, thread_name_prefix="wasap-receive")
                     if overlap_possible() else None)
        self.incoming: Future | None = None
        self.expected = 0  # phase-1 gradient messages still to receive
        self.idle_seconds = 0.0  # time the server had nothing to do but wait
        # RigL: the server's window gathers the workers' candidate sums; its
        # steps are the server's updates
        self.rigl = None
        if isinstance(options.topology, RigL):
            self.rigl = RigLSession(options.topology, model, step=self._step(0), seed=state["seed"])
            books = getattr(trainer, "resumed_books", None)
            if books is not None:
                self.rigl.restore(*books)
        self.window_topo = self._topo()  # the topology the open window's candidates come from

    def _topo(self) -> int:
        return self.model._net.run_state[3]

    def _step(self, u: int) -> int:
        """The server's training step after update ``u`` of the current epoch."""
        return self.state["done"] * self._updates_per_epoch() + u

    def _rigl_books(self) -> tuple[list[dict[str, Any]] | None, dict[str, np.ndarray] | None]:
        """RigL's books for a checkpoint, as the sequential loop saves a session's."""
        if self.rigl is None:
            return None, None
        data, arrays = self.rigl.books()
        return [data], {f"{BOOKS}0.{k}": v for k, v in arrays.items()}

    def _publish(self, record: dict[str, Any], save: bool = False) -> None:
        """Adds a record to the histories, writes the checkpoint (with
        ``save``) and hands the record to the callbacks."""
        self.run_info.history.append(record)
        self.model.history.append(record)
        if save and self.checkpoint is not None:
            self.checkpoint.write(self.model, self.state, *self._rigl_books())
        try:
            stop = self.callbacks.on_epoch_end(self.run_info, record)
        except Exception as e:
            raise ParallelError(f"the server's callback failed: {type(e).__name__}: {e}") from e
        if stop:
            log.warning("a callback asked to stop; a WASAP run cannot stop early, so training goes on")

    def run(self) -> list[dict[str, Any]]:
        try:
            self.callbacks.on_train_begin(self.run_info)
            if not self.state["finished"]:
                per_update = self.K if self.t.sync else 1
                self.expected = ((self.state["phase1"] - self.state["done"]) * self._updates_per_epoch()
                                 * per_update)
                while self.state["done"] < self.state["phase1"]:
                    self._server_epoch()
                self._local_phase()
            self.callbacks.on_train_end(self.run_info)
        except ParallelError as e:
            self._stop_all(str(e))
            raise
        except Exception as e:  # e.g. a checkpoint that cannot be written (a full disk)
            reason = f"the server failed: {type(e).__name__}: {e}"
            self._stop_all(reason)
            raise ParallelError(reason) from e
        finally:
            self.progress.close()
            if self.pool is not None:
                self.pool.shutdown(wait=False)
        for w in self.workers:
            self.link.send_header(w, TAG_REPLY, DONE)
        return self.run_info.history

    # ---- phase 1

    def _updates_per_epoch(self) -> int:
        per_update = self.o.batch_size * (self.K if self.t.sync else 1)
        return max(1, math.ceil(self.data.y.size / per_update))

    def _server_epoch(self) -> None:
        t0 = time.perf_counter()
        sent0, recv0, wait0 = self.link.sent, self.link.received, self.idle_seconds
        epoch = self.state["done"] + 1
        n_updates = self._updates_per_epoch()
        acc = {"loss": 0.0, "correct": 0, "samples": 0, "staleness": [], "dropped": 0}
        rates = scheduled_rates(self.o, epoch, n_updates, self.data.y.shape[0], self.state["schedule"])
        self.state["rate"] = float(rates[-1])
        for u in range(n_updates):
            last = u == n_updates - 1
            lr = float(rates[u])
            if self.t.sync:
                grads = sorted(self._receive_gradient(acc) for _ in self.workers)
                total = np.zeros(self.packing.length, np.float64)
                for _, g in grads:  # in worker order, so the sum does not depend on timing
                    total += g
                self._apply((total / self.K).astype(np.float32), lr, [w for w, _ in grads])
                self._rigl_event(u + 1, epoch, lr, acc)
                if last:
                    record = self._end_of_epoch(epoch, acc, n_updates, float(rates[0]))
                for w, _ in grads:
                    self._reply(w)
            else:
                w, g = self._receive_gradient(acc)
                self._apply(g, lr, [w])
                self._rigl_event(u + 1, epoch, lr, acc)
                if last:
                    record = self._end_of_epoch(epoch, acc, n_updates, float(rates[0]))
                self._reply(w)
        record.update(bytes_sent=self.link.sent - sent0, bytes_received=self.link.received - recv0,
                      server_wait_seconds=self.idle_seconds - wait0,
                      seconds=time.perf_counter() - t0)
        record["samples_per_second"] = acc["samples"] / record["seconds"]
        self._publish(record, save=True)

    def _rigl_event(self, u: int, epoch: int, lr: float, acc: dict) -> None:
        """RigL's window opening or update when one is due after update ``u``."""
        step = self._step(u)
        if self.rigl is None or self.rigl.next_event(step - 1) != step:
            return
        t = time.perf_counter()
        opened = self.rigl.window_step
        self.rigl.event(step, epoch, lr)
        if self.rigl.window_step != opened:
            self.window_topo = self._topo()
        self._new_packing()
        acc["rigl_seconds"] = acc.get("rigl_seconds", 0.0) + time.perf_counter() - t

    def _new_packing(self) -> None:
        """A packing for the current topology, if it changed."""
        if self._topo() not in self.packings:
            self.packing = Packing(self.model._net)
            self.packings[self._topo()] = self.packing
            self.params = np.empty(self.packing.length, np.float32)

    def _receive_grad(self, src: int, hdr: np.ndarray) -> tuple[Packing, np.ndarray, np.ndarray | None]:
        """A gradient's values after its header, and RigL's candidate sums
        when the worker sent some."""
        packing = self.packings[int(hdr[1])]
        g = self.link.recv_values(packing.length, src)
        n_sums = int(hdr[7])
        sums = self.link.recv(np.empty(n_sums, np.float32), src) if n_sums else None
        return packing, g, sums

    def _receive_message(self) -> tuple[int, np.ndarray, Packing | None, np.ndarray | None,
                                        np.ndarray | None]:
        """The next phase-1 message from any worker: its source and header,
        and for a gradient its topology's packing, its values and RigL sums."""
        src, hdr = self.link.recv_header(_mpi().ANY_SOURCE, TAG_HEADER)
        if int(hdr[0]) != GRAD:
            return src, hdr, None, None, None
        return (src, hdr, *self._receive_grad(src, hdr))

    def _take_message(self) -> tuple[int, np.ndarray, Packing | None, np.ndarray | None,
                                     np.ndarray | None]:
        """The message received meanwhile by the overlap thread, or the next one."""
        t = time.perf_counter()
        if self.incoming is not None:
            message, self.incoming = self.incoming.result(), None
        else:
            message = self._receive_message()
        self.idle_seconds += time.perf_counter() - t
        return message

    def _prefetch(self) -> None:
        """Starts receiving the next gradient while this one is applied, if
        one is due and some worker is computing one (not waiting for an answer)."""
        computing = len(self.awaiting) + len(self.local) < self.K
        if self.pool is not None and self.expected > 0 and computing:
            self.incoming = self.pool.submit(self._receive_message)

    def _receive_gradient(self, acc: dict) -> tuple[int, np.ndarray]:
        """The next gradient from any worker, on the current topology."""
        src, hdr, packing, g, sums = self._take_message()
        kind = int(hdr[0])
        if kind == FAILED:
            raise self._failed(src, hdr)
        if kind != GRAD:
            raise ParallelError(f"worker {src} sent message kind {kind} during phase 1")
        assert packing is not None and g is not None
        self.awaiting.add(src)  # (first: a failure below must still answer it with the stop)
        topo, pulled, samples, loss_sum, correct = int(hdr[1]), int(hdr[2]), *hdr[3:6].tolist()
        if sums is not None:
            self._take_sums(sums, int(hdr[6]), topo, acc)
        if topo != self._topo():
            fresh = np.empty(self.packing.length, np.float32)
            acc["dropped"] += self.packing.remap(g, packing, fresh)
            g = fresh
        acc["loss"] += loss_sum
        acc["correct"] += int(correct)
        acc["samples"] += int(samples)
        acc["staleness"].append(self.version - pulled)
        self.expected -= 1
        self._prefetch()
        return src, g

    def _take_sums(self, sums: np.ndarray, window: int, topo: int, acc: dict) -> None:
        """Adds a worker's candidate sums to the server's window when they
        come from the same window opened on the same topology (pruning may
        have changed it since); else drops them."""
        same = (self.rigl is not None and window != 0 and window == self.rigl.window_step
                and topo == self._topo() == self.window_topo)
        if same:
            try:
                self.model._net.rigl_add_sums(sums, 1)
            except InvalidInputError:  # (not the same candidates after all)
                same = False
        if same:
            acc["rigl_batches"] = acc.get("rigl_batches", 0) + 1
        else:
            acc["rigl_sums_dropped"] = acc.get("rigl_sums_dropped", 0) + 1

    def _failed(self, src: int, hdr: np.ndarray) -> ParallelError:
        self.awaiting.add(src)
        return ParallelError(f"worker {src} failed: {self.link.recv_text(src, hdr)}")

    def _apply(self, g: np.ndarray, lr: float, workers: list[int]) -> None:
        try:
            self.model._net.apply_packed_gradient(g, **dict(self.o.core_args(), learning_rate=lr))
        except InvalidInputError as e:
            who = ", ".join(map(str, workers))
            raise ParallelError(
                f"training diverged: the gradient from worker {who} at server update "
                f"{self.version + 1} was refused ({e}). Lower the learning rate or check the data."
            ) from None
        self.version += 1

    def _reply(self, w: int) -> None:
        self.awaiting.discard(w)
        window = 0 if self.rigl is None else self.rigl.window_step
        if self.worker_topo[w] != self._topo():
            self.link.send_model(w, MODEL, self.model._net, False, self.version, 0, 0, window)
            # an overlapping worker's next gradient was computed on the topology it had
            self.worker_prev_topo[w] = self.worker_topo[w]
            self.worker_topo[w] = self._topo()
            live = set(self.worker_topo.values()) | set(self.worker_prev_topo.values()) | {self._topo()}
            self.packings = {v: p for v, p in self.packings.items() if v in live}
        else:
            self.model._net.pack_params(self.params)
            self.link.send_header(w, TAG_REPLY, PARAMS, self.version, window)
            self.link.send_values(self.params, w)

    def _end_of_epoch(self, epoch: int, acc: dict, n_updates: int, lr: float) -> dict[str, Any]:
        """Evaluation, then the topology step (pruning, SET) on the server's model."""
        samples = max(acc["samples"], 1)
        stale = acc["staleness"]
        record: dict[str, Any] = {
            "epoch": self.model.epochs_trained + 1, "phase": 1, "loss": acc["loss"] / samples}
        if not self.data.regression:
            record["accuracy"] = acc["correct"] / samples
        record.update({
            "updates": n_updates, "learning_rate": lr,
            "mean_staleness": float(np.mean(stale)) if stale else 0.0,
            "max_staleness": int(max(stale, default=0)), "dropped_gradient_entries": acc["dropped"],
        })
        record.update(validation_record(self.model, self.data))
        record["n_connections"] = self.model.n_connections
        record["n_neurons"] = int(sum(self.model.sizes[1:-1]))
        self.schedule.update(self.state["schedule"], record)
        self.run_info.epoch = epoch
        try:
            self.callbacks.on_evaluated(self.run_info, record)
        except Exception as e:
            raise ParallelError(f"the server's callback failed: {type(e).__name__}: {e}") from e
        t = time.perf_counter()
        for strategy in (self.o.pruning, self.o.topology):
            if isinstance(strategy, EpochStrategy):
                record.update(strategy.on_epoch_end(self.model, epoch, self.state["epochs"]))
        record["topology_seconds"] = time.perf_counter() - t
        if self.rigl is not None:
            record.update(self.rigl.epoch_record(), rigl_seconds=acc.get("rigl_seconds", 0.0),
                          rigl_batches=acc.get("rigl_batches", 0),
                          rigl_sums_dropped=acc.get("rigl_sums_dropped", 0))
        record["topology_version"] = self._topo()
        self._new_packing()
        self.model.epochs_trained += 1
        self.state["done"] = epoch
        return record

    # ---- phase 2

    def _local_phase(self) -> None:
        """Answers each worker's next gradient with the model (with momentum)
        and the number of local epochs, gathers the workers' reports after
        each local epoch and their replicas, and averages them. A fast worker
        can report (or even finish) before a slow one has sent its last
        gradient, so one loop takes every kind of message as it comes."""
        t0 = time.perf_counter()
        local_epochs = self.state["epochs"] - self.state["phase1"]
        pending = set(self.workers)  # not yet sent into the local phase
        reports: dict[int, list] = {}
        replicas: dict[int, list[dict[str, Any]]] = {}
        comm_share: list[float] = []
        self.last_report = t0
        while pending or len(replicas) < self.K:
            src, hdr = self.link.recv_header(_mpi().ANY_SOURCE, TAG_HEADER)
            kind = int(hdr[0])
            if kind == FAILED:
                raise self._failed(src, hdr)
            if kind == GRAD and src in pending:
                self._receive_grad(src, hdr)
                self.link.send_model(src, LOCAL, self.model._net, True, self.version, local_epochs,
                                     self.state.get("rate", self.schedule.base()))
                pending.discard(src)
                self.local.add(src)
            elif kind == PROGRESS and src in self.local:
                reports.setdefault(int(hdr[1]), []).append(hdr[2:5].copy())
                if len(reports[int(hdr[1])]) == self.K:
                    self._local_record(int(hdr[1]), reports.pop(int(hdr[1])), local_epochs)
            elif kind == FINAL and src in self.local and src not in replicas:
                comm_share.append(float(hdr[5]))
                # kept as received (indices and values), not built into a network
                replicas[src] = self.link.recv_layers(src, hdr)
            else:
                raise ParallelError(f"worker {src} sent message kind {kind} during phase 2")
        self._average([replicas[w] for w in self.workers], comm_share, time.perf_counter() - t0)

    def _local_record(self, local_epoch: int, reports: list, local_epochs: int) -> None:
        loss, correct, samples = np.sum(reports, axis=0).tolist()
        self.model.epochs_trained += 1
        now = time.perf_counter()
        record = {"epoch": self.model.epochs_trained, "phase": 2, "local_epoch": local_epoch,
                  "loss": loss / max(samples, 1)}
        if not self.data.regression:
            record["accuracy"] = correct / max(samples, 1)
        record.update(n_connections=self.model.n_connections, seconds=now - self.last_report)
        self.last_report = now
        self.run_info.epoch = self.state["phase1"] + local_epoch
        self._publish(record)

    def _average(self, replicas: list[list[dict[str, Any]]], comm_share: list[float],
                 seconds: float) -> None:
        """Union average per layer, pruned back to the server model's nnz (SPEC §6.5)."""
        net = self.model._net
        sizes = list(net.sizes)
        layers, union = [], []
        for i, target in enumerate(net.layer_nnz):
            states = [r[i] for r in replicas]
            (ptr, rows, vals), n_union = _core.union_average(
                [(s["col_ptr"], s["row_idx"], s["values"]) for s in states], sizes[i], target)
            bias = np.mean([s["bias"] for s in states], axis=0, dtype=np.float64).astype(np.float32)
            layers.append({"col_ptr": ptr, "row_idx": rows, "values": vals, "bias": bias})
            union.append(int(n_union))
        meta = _netstate.describe(net)
        averaged = _netstate.build(dict(meta, topology_version=meta["topology_version"] + 1), layers)
        self.model._net = averaged
        record: dict[str, Any] = {"epoch": self.model.epochs_trained, "phase": "average",
                                  "union_connections": union, "n_connections": self.model.n_connections,
                                  "local_phase_seconds": seconds,
                                  "worker_comm_share_phase1": float(np.mean(comm_share))}
        record.update(validation_record(self.model, self.data, averaged))
        self.state["finished"] = True
        self.run_info.epoch = self.state["epochs"]
        self._publish(record, save=True)
        if self.o.verbose > 0:
            val = f", val_acc {record['val_accuracy']:.4f}" if "val_accuracy" in record else ""
            print(f"averaged {self.K} replicas over {sum(union)} connections, pruned to "
                  f"{self.model.n_connections}{val}", flush=True)

    # ---- failure

    def _stop_all(self, reason: str) -> None:
        """Tells every worker to stop with ``reason``, so each raises too. A
        worker in phase 1 that is computing gets it as the answer to its next
        message; one in phase 2 finds it after its current local epoch."""
        log.error("stopping every rank: %s", reason)
        if self.incoming is not None:  # a worker's message the overlap thread is receiving
            src, hdr, *_ = self.incoming.result()
            self.incoming = None
            if int(hdr[0]) == FAILED:
                self.link.recv_text(src, hdr)
            self.awaiting.add(src)
        for w in self.workers:
            if w not in self.awaiting and w not in self.local:
                _, hdr = self.link.recv_header(w, TAG_HEADER)
                if int(hdr[0]) == GRAD:
                    self._receive_grad(w, hdr)
                elif int(hdr[0]) == FAILED:
                    self.link.recv_text(w, hdr)
            self.link.send_text(w, TAG_REPLY, STOP, reason)
