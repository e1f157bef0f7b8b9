"""A worker of WASAP-SGD (ranks 1..K): gradients of its shard's mini-batches
for the server (phase 1), then local training of its replica (phase 2)."""

from __future__ import annotations

import math
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import numpy as np

from .. import _core, schedules
from ..errors import DivergenceError, ParallelError
from ..topology import RigL
from ..training import loop
from ..training.data import TrainingData
from ..training.options import FitOptions
from .transport import (
    FAILED,
    FINAL,
    GRAD,
    LOCAL,
    MODEL,
    PARAMS,
    PROGRESS,
    SERVER,
    STOP,
    TAG_HEADER,
    TAG_REPLY,
    _Link,
    overlap_possible,
)


def shard(data: TrainingData, worker: int, n_workers: int, seed: int
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Worker ``worker``'s fixed part (1-based), from a permutation all ranks
    agree on: features, targets and sample weights (None without)."""
    perm = np.random.default_rng([seed, 0x5AA9]).permutation(data.y.shape[0])
    mine = np.sort(np.array_split(perm, n_workers)[worker - 1])
    weights = None if data.weights is None else np.ascontiguousarray(data.weights[mine])
    return np.ascontiguousarray(data.X[mine]), np.ascontiguousarray(data.y[mine]), weights


class Worker:
    def __init__(self, trainer: Any, link: _Link, replica: Any, data: TrainingData,
                 options: FitOptions, state: dict) -> None:
        self.t, self.link, self.model, self.o = trainer, link, replica, options
        self.rank = link.rank
        self.K = link.comm.Get_size() - 1
        self.run_seed = state["seed"]
        self._reseed(self.model._net)
        self.X, self.y, self.w = shard(data, self.rank, self.K, state["seed"])
        self.data = data
        self.phase1 = state["phase1"]
        self.rng = np.random.default_rng([self.run_seed, self.rank])
        self.compute_seconds = 0.0
        self.wait_seconds = 0.0  # phase 1: time the worker could not compute for want of an answer
        self.overlap = trainer.overlap and overlap_possible()
        # RigL: the server names the open window in its answers; the worker
        # opens the same one (same keys, same topology) and sends its sums
        self.rigl = options.topology if isinstance(options.topology, RigL) else None

    def _reseed(self, net: _core.Network) -> None:
        """Replicas draw their own dropout masks and SET positions: the seed
        mixes the run's seed, this worker's rank and the topology version."""
        keys = [self.run_seed, self.rank, net.run_state[3]]
        net.reseed(int(np.random.SeedSequence(keys).generate_state(1, np.uint64)[0]))

    def run(self) -> None:
        try:
            local_epochs = self._phase1()
            self._phase2(local_epochs)
        except ParallelError:
            raise
        except Exception as e:  # report it, so that every rank stops with the reason
            reason = f"{type(e).__name__}: {e}"
            self.link.send_text(SERVER, TAG_HEADER, FAILED, reason)
            _, hdr = self.link.recv_header(SERVER, TAG_REPLY)
            self.link.recv_text(SERVER, hdr)
            raise ParallelError(f"worker {self.rank} failed: {reason}") from e

    def _batches(self):
        b = self.o.batch_size
        while True:
            order = self.rng.permutation(self.y.shape[0])
            for i in range(0, order.size, b):
                idx = order[i:i + b]
                yield self.X[idx], self.y[idx], None if self.w is None else self.w[idx]

    def _follow_window(self, net: _core.Network, step: int) -> None:
        """Opens RigL's window for the update at ``step`` as the server has
        (0: none open), on this worker's topology: the server takes the sums
        only from a worker on its own topology."""
        if self.rigl is None:
            return
        window = net.rigl_window()
        if step == 0:
            if window is not None:
                net.set_rigl_window(None)
        elif window is None or int(window[0]) != step:
            self.rigl.open_window(net, step, self.run_seed)

    def _exchange(self, grad: np.ndarray, fields: tuple, params: np.ndarray,
                  sums: np.ndarray | None = None) -> tuple[int, np.ndarray, Any]:
        """Sends one gradient (``fields``: its header) with RigL's candidate
        sums when a window is open, and receives the server's answer: (kind,
        header, the answer's payload)."""
        self.link.send_header(SERVER, TAG_HEADER, GRAD, *fields)
        self.link.send_values(grad, SERVER)
        if sums is not None and sums.size:
            self.link.send(sums, SERVER)
        _, hdr = self.link.recv_header(SERVER, TAG_REPLY)
        kind = int(hdr[0])
        if kind == PARAMS:
            return kind, hdr, self.link.recv_values_into(params, SERVER)
        if kind in (MODEL, LOCAL):
            return kind, hdr, self.link.recv_payload(SERVER, hdr)
        if kind == STOP:
            return kind, hdr, self.link.recv_text(SERVER, hdr)
        raise ParallelError(f"the server answered a gradient with message kind {kind}")

    def _phase1(self) -> int:
        """Gradients to the server until it starts the local phase; returns its epochs.

        With overlap, the exchange of one gradient (sending it, receiving the
        answer) runs on a thread while the next mini-batch's gradient is
        computed on the values known before that answer: one more step of
        staleness (recorded by the server), and the worker waits only for
        what the computation did not cover."""
        net = self.model._net
        grads = [np.empty(net.packed_len, np.float32) for _ in range(2)]
        params = np.empty(net.packed_len, np.float32)  # reused until the topology changes
        topo, pulled = net.run_state[3], 0
        pool = ThreadPoolExecutor(1, thread_name_prefix="wasap-exchange") if self.overlap else None
        in_flight: Future | None = None
        try:
            for k, (xb, yb, wb) in enumerate(self._batches()):
                grad = grads[k % 2]
                t = time.perf_counter()
                loss_sum, correct = net.gradient_step(xb, yb, grad, sample_weight=wb)
                window = net.rigl_window() if self.rigl is not None else None
                sums = None if window is None else net.rigl_take_sums()
                self.compute_seconds += time.perf_counter() - t
                if not math.isfinite(loss_sum):
                    raise DivergenceError(f"the loss of its mini-batch {k} became {loss_sum}; lower the "
                                          "learning rate or check the data")
                fields = (topo, pulled, yb.shape[0], loss_sum, correct, 0 if window is None else window[0],
                          0 if sums is None else sums.size)
                t = time.perf_counter()
                if pool is None:
                    answer = self._exchange(grad, fields, params, sums)
                elif in_flight is None:  # the first gradient: nothing to wait for yet
                    answer = None
                else:
                    answer, in_flight = in_flight.result(), None
                self.wait_seconds += time.perf_counter() - t
                if answer is not None:
                    kind, hdr, payload = answer
                    if kind == PARAMS:
                        pulled = int(hdr[1])
                        net.unpack_params(payload)
                        self._follow_window(net, int(hdr[2]))
                    elif kind == STOP:
                        raise ParallelError(payload)
                    else:  # MODEL or LOCAL
                        net = self.link.build_model(payload)
                        self._reseed(net)
                        self.model._adopt(net, self.model._config, self.model.history,
                                          self.model.epochs_trained)
                        grads = [np.empty(net.packed_len, np.float32) for _ in range(2)]
                        params = np.empty(net.packed_len, np.float32)
                        topo, pulled = net.run_state[3], int(hdr[4])
                        self._follow_window(net, int(hdr[7]))
                        if kind == LOCAL:  # (a gradient computed meanwhile is not sent)
                            self.rate = float(hdr[6])  # the server's rate when the local phase began
                            return int(hdr[5])
                if pool is not None:
                    in_flight = pool.submit(self._exchange, grad, fields, params, sums)
        finally:
            if in_flight is not None:  # a failure here: let the exchange end before reporting it
                wait([in_flight])
            if pool is not None:
                pool.shutdown()
        raise AssertionError("unreachable")

    def _phase2(self, local_epochs: int) -> None:
        """Local training with SET on the shard; a heartbeat to the server
        after each epoch (where a stop order is noticed); then the replica
        goes to the server, and the worker waits for the average."""
        waited = self.wait_seconds
        phase1_share = waited / max(waited + self.compute_seconds, 1e-12)
        done = 0

        def report(model: Any, record: dict) -> bool:
            nonlocal done
            done += 1
            n = self.y.shape[0]
            self.link.send_header(SERVER, TAG_HEADER, PROGRESS, done, record["loss"] * n,
                                  record.get("accuracy", 0.0) * n, n)
            if self.link.comm.Iprobe(source=SERVER, tag=TAG_REPLY):
                _, hdr = self.link.recv_header(SERVER, TAG_REPLY)
                raise ParallelError(self.link.recv_text(SERVER, hdr))
            return False

        if local_epochs > 0:  # the run's own options: local SET, no pruning, no checkpoint
            # the schedule goes on where the server's phase left it
            rate = schedules.Shifted(self.o.schedule, self.phase1, self.o.epochs, {"rate": self.rate})
            local = self.o.replace(epochs=local_epochs, pruning=None, verbose=0, checkpoint=None,
                                   resume=False, learning_rate=rate)
            y = self.y if self.data.regression else self.model._output_labels()[self.y]
            loop.fit(self.model, self.X, y, local, callbacks=[report], sample_weight=self.w)
        self.link.send_model(SERVER, FINAL, self.model._net, False, 0, phase1_share)
        # The others may train for a while yet: wait without the silence limit.
        timeout, self.link.timeout = self.link.timeout, None
        _, hdr = self.link.recv_header(SERVER, TAG_REPLY)
        self.link.timeout = timeout
        if int(hdr[0]) == STOP:
            raise ParallelError(self.link.recv_text(SERVER, hdr))
