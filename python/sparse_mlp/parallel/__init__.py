"""WASAP-SGD and WASSP-SGD: data-parallel sparse training over MPI (SPEC §6).

Run the same script on ``K + 1`` processes, e.g. ``mpiexec -n 3 python
train.py``: rank 0 is the parameter server, ranks 1..K are workers. Every rank
builds the model and loads the data; the server's model is the one trained
(it is broadcast to the workers explicitly), each worker trains on a fixed
shard of the data, and every rank returns the same averaged model.

>>> import sparse_mlp as sm                                   # doctest: +SKIP
>>> model = sm.SparseMLP([500, 400, 100, 400, 2], seed=1)     # doctest: +SKIP
>>> history = sm.parallel.WASAP(phase2_fraction=0.3).fit(     # doctest: +SKIP
...     model, X, y, epochs=100, batch_size=32, learning_rate=0.01)

Phase 1 (asynchronous): a worker computes the gradient of one mini-batch on
its replica and sends it; the server applies it in place with momentum SGD as
soon as it arrives and answers with the current values. Every server epoch
(one pass worth of updates over the whole data) the server runs the topology
step (Importance Pruning when due, SET) and bumps the topology version; a
gradient computed on an older topology is moved onto the new one by
connection (``_core.remap_values``), and the worker gets the new index
arrays with its next answer. Only float32 value arrays travel otherwise.

Phase 2 (local, the last ``phase2_fraction`` of the epochs): each worker
trains its replica alone on its shard with local SET, then sends it; the
server averages the replicas over the union of their connections and prunes
each layer back to its target size, per sign (``_core.union_average``).

``sync=True`` gives WASSP-SGD: the server waits for one gradient from every
worker, averages them and applies the mean with the learning rate times K,
reached by a linear warm-up over ``warmup_epochs`` epochs (Goyal et al. 2017).

The server receives the next gradient on a thread while it applies one.
``overlap=True`` lets each worker compute its next gradient while the previous
one travels (one more step of staleness); ``transport="bfloat16"`` halves the
bytes of phase 1's gradients and values. The guide's "Across machines" section
has the recipe for a cluster; tests/test_hosts.py runs it on network
namespaces of one machine.

All arrays travel with buffer-based ``Send``/``Recv`` in chunks of at most
``chunk_mb`` MiB (no pickles, no 2 GiB limit). Waiting ranks poll with short
sleeps instead of spinning, so a server and K workers can share few cores.
A worker that raises stops every rank with :class:`ParallelError`; a rank
that goes silent for ``timeout`` seconds makes the waiting rank print the
reason and abort the whole MPI job (a killed process makes ``mpiexec`` end the
job itself). Either way ``mpiexec`` exits non-zero in bounded time.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import _core, labels
from .._validation import number, positive_int
from ..errors import InsufficientMemoryError, InvalidInputError, ParallelError, SparseMLPError
from ..memory import available_bytes, format_bytes
from ..topology import RigL
from ..training.callbacks import CallbackList
from ..training.checkpoint import BOOKS, RunCheckpoint
from ..training.data import TrainingData, prepare
from ..training.loop import check_schedule
from ..training.options import DEFAULT_TOPOLOGY, FitOptions
from .server import Server
from .transport import GRAD, PARAMS, PROGRESS, SERVER, TAG_HEADER, TAG_REPLY, VALUE_TYPES, _Link, _mpi
from .worker import Worker

log = logging.getLogger("sparse_mlp.parallel")


@dataclass
class WASAP:
    """Weight Averaging Sparse Asynchronous Parallel SGD (SPEC §6).

    Parameters
    ----------
    phase2_fraction : float
        Share of the epochs trained locally by each worker at the end, then
        averaged (0 to 1; default 0.3).
    sync : bool
        ``True`` gives WASSP-SGD (synchronous averaged steps, learning rate × K).
    warmup_epochs : int
        Epochs of the linear learning-rate warm-up of the synchronous variant.
    comm : mpi4py communicator, optional
        Default ``MPI.COMM_WORLD``; rank 0 is the server. Needs at least 2 ranks.
    threads : int, optional
        Rayon threads per rank; default the cores of the node divided by the
        ranks on it (at least 1).
    chunk_mb : float
        Largest single MPI message, in MiB (default 64).
    timeout : float or None
        Seconds a rank waits for a message before aborting the job (default
        600; ``None`` waits forever). Phase 2 sends a heartbeat every local
        epoch, so this must exceed a worker's local epoch.
    overlap : bool
        ``True``: workers compute their next gradient while the previous one
        travels and its answer comes back, so they wait less, but each
        gradient is one more step stale (with two workers the mean staleness
        goes from 1 to 3). Measured with momentum 0.9, that costs accuracy (the
        README's scaling section): an option for slow links, off by default.
        The server receives the next gradient while it applies one either way.
    transport : {"float32", "bfloat16"}
        How gradients and parameter values travel in phase 1. ``"bfloat16"``
        rounds them to bfloat16 on the way (half the bytes); the server's
        weights, momentum and sums stay float32. Models (topology changes,
        the local phase, replicas) always travel in full.
    """

    phase2_fraction: float = 0.3
    sync: bool = False
    warmup_epochs: int = 5
    comm: Any = None
    threads: int | None = None
    chunk_mb: float = 64.0
    timeout: float | None = 600.0
    overlap: bool = False
    transport: str = "float32"

    def __post_init__(self) -> None:
        self.phase2_fraction = number("phase2_fraction", self.phase2_fraction, 0.0, 1.0)
        if self.transport not in VALUE_TYPES:
            raise InvalidInputError(f"transport must be one of {', '.join(map(repr, VALUE_TYPES))}, "
                                    f"got {self.transport!r}")
        for name in ("sync", "overlap"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise InvalidInputError(f"{name} must be True or False, got {getattr(self, name)!r}")
        self.warmup_epochs = int(number("warmup_epochs", self.warmup_epochs, 0, math.inf))
        if self.threads is not None:
            self.threads = positive_int("threads", self.threads)
        number("chunk_mb", self.chunk_mb, 0.0, math.inf, low_open=True, high_open=True)
        if self.timeout is not None:
            number("timeout", self.timeout, 0.0, math.inf, low_open=True)

    def fit(
        self,
        model: Any,
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
        verbose: int = 1,
        checkpoint: str | os.PathLike | None = None,
        resume: bool = False,
        callbacks: Sequence[Any] = (),
        overwrite: bool = False,
        bias_decay: bool = True,
        optimizer: Any = None,
        sample_weight: Any = None,
        class_weight: Any = None,
    ) -> list[dict[str, Any]]:
        """Trains ``model`` on every rank of the communicator; call it on all of them.

        ``X``, ``y`` (the whole training set, the same on every rank; each
        worker uses its shard) and the hyper-parameters are those of
        :meth:`SparseMLP.fit`. ``validation_data`` is evaluated by the server
        after each server epoch and on the averaged model. ``pruning`` runs on
        the server in phase 1 only (replicas must keep the same neurons to be
        averaged).

        ``checkpoint``: a path the server writes the model to (atomically)
        after every server epoch of phase 1 and at the end. With ``resume``,
        the server continues the run saved there instead of starting afresh;
        the options, the trainer's settings and the data must be the saved
        run's. An existing file there is never replaced by a new run unless
        ``overwrite=True``.

        ``callbacks``: called on the server with each record as soon as it
        exists (e.g. ``sm.MetricsLogger``, for live metrics files), as
        :class:`sparse_mlp.training.callbacks.Callback` hooks or functions
        ``f(model, record)``. A distributed run cannot be stopped by a
        callback, so a request to stop is ignored; a callback that raises
        stops every rank with a :class:`ParallelError`.

        Returns the history (one record per server epoch and a last one for
        the average), the same on every rank; ``model`` becomes the averaged
        model on every rank. Raises :class:`ParallelError` on every rank when
        any of them fails.
        """
        try:
            options: FitOptions | Exception = FitOptions(
                epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, momentum=momentum,
                weight_decay=weight_decay, nesterov=nesterov, bias_decay=bias_decay, topology=topology,
                pruning=pruning, verbose=verbose, checkpoint=checkpoint, resume=resume,
                overwrite=overwrite, optimizer=optimizer)
        except Exception as e:  # raised on every rank together, below
            options = e
        return self.fit_with(model, X, y, options, validation_data, callbacks, sample_weight,
                             class_weight)

    def fit_with(self, model: Any, X: Any, y: Any, options: FitOptions | Exception,
                 validation_data: Any = None, callbacks: Any = (), sample_weight: Any = None,
                 class_weight: Any = None) -> list[dict[str, Any]]:
        """:meth:`fit` with its options as one object (or the error making
        them raised, which every rank then raises together)."""
        MPI = _mpi()
        comm = self.comm if self.comm is not None else MPI.COMM_WORLD
        size = comm.Get_size()
        if size < 2:
            raise InvalidInputError(
                "WASAP needs at least 2 MPI processes (a server and a worker); "
                "run it as `mpiexec -n K+1 python script.py` for K workers"
            )
        chunk = max(1, int(self.chunk_mb * 2**20) // 8)
        # A rank that failed before calling fit (or never calls it) would leave
        # the others in the first collective forever: wait for all, bounded.
        _Link(comm, chunk, self.timeout).wait(
            comm.Ibarrier(), "every rank to call WASAP.fit (one failed before, or is stuck)")
        # The run talks on a communicator of its own, so that no message of an
        # earlier run (or of the user's) is taken for one of its own.
        comm = comm.Dup()
        started, clean = [False], False
        try:
            failed = options if isinstance(options, Exception) else None
            history = self._run(comm, chunk, started, model, X, y, None if failed else options, failed,
                                validation_data, callbacks, (sample_weight, class_weight))
            comm.Barrier()
            clean = not comm.allreduce(comm.Iprobe(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG),
                                       op=MPI.LOR)
            return history
        finally:
            if clean or not started[0]:  # (refusals happen before any message is sent)
                comm.Free()
            else:
                # A run that failed can leave messages in flight on it (a
                # worker's last gradient when another one failed). Freed, its
                # context could be given to a later run's communicator, which
                # would receive them: it is kept, unused, instead.
                _RETIRED.append(comm)

    def _plan(self, options: FitOptions) -> dict[str, Any]:
        """What every rank, and a resumed run, must share: the options and
        the protocol's settings (a different chunk size would garble messages)."""
        plan = dict(options.plan(), phase2_fraction=self.phase2_fraction, sync=bool(self.sync),
                    warmup_epochs=self.warmup_epochs, chunk_mb=float(self.chunk_mb))
        # (absent from runs saved before they existed, which did not overlap nor round)
        if self.overlap:
            plan["overlap"] = True
        if self.transport != "float32":
            plan["transport"] = self.transport
        return plan

    def _run(self, comm: Any, chunk: int, started: list[bool], model: Any, X: Any, y: Any,
             options: FitOptions | None, failed: Exception | None, validation_data: Any,
             callbacks: Any, weights: tuple[Any, Any]) -> list[dict[str, Any]]:
        MPI = _mpi()
        rank = comm.Get_rank()
        link = _Link(comm, chunk, self.timeout, self.transport)
        threads = self.threads or _default_threads(comm)
        # Everyone validates its own inputs; then all agree or all raise (an
        # error of one rank must not leave the others waiting in a collective).
        problem, error, data, state, plan, ckpt, cbs = None, failed, None, None, None, None, None
        try:
            if failed is not None:
                raise failed
            assert options is not None
            if options.recycling is not None:
                raise InvalidInputError("WASAP does not take recycling")
            if isinstance(options.topology, RigL) and options.topology.mode != "candidates":
                raise InvalidInputError("WASAP takes RigL in candidate mode only: the workers send "
                                        "their candidates' gradient sums, not their batches")
            _core.set_num_threads(threads)
            cbs = CallbackList(callbacks)
            plan = self._plan(options)
            if rank == SERVER and options.checkpoint is not None:
                ckpt = RunCheckpoint(options.checkpoint, plan, options.resume, options.overwrite)
            classes = ckpt.saved_classes(model.n_classes) if ckpt is not None else None
            data = prepare(model, X, y, validation_data if rank == SERVER else None, classes, *weights)
            if rank == SERVER:
                check_schedule(options, data)
            if rank == SERVER:
                state = self._start(model, options, data, ckpt)
        except Exception as e:
            problem, error = f"rank {rank}: {e}", e
        problems = [p for p in comm.allgather(problem) if p]
        if problems:
            if error is not None and not isinstance(error, SparseMLPError):
                raise error  # this rank's own TypeError (or bug), as it was
            raise InvalidInputError("; ".join(problems))
        assert options is not None and data is not None and plan is not None and cbs is not None
        plans = comm.allgather(plan)
        differ = sorted(k for k in plans[0] if len({repr(p.get(k)) for p in plans}) > 1)
        if differ:
            raise InvalidInputError(
                "the ranks were given different options; every rank must call fit with the same "
                "ones: " + "; ".join(f"{k}: " + ", ".join(f"rank {r} {p.get(k)!r}"
                                                           for r, p in enumerate(plans))
                                     for k in differ))
        fingerprints = comm.allgather((data.fingerprint(), labels.to_json(data.classes)))
        if len({repr(f) for f in fingerprints}) != 1:
            raise InvalidInputError(
                "the ranks were given different training data (shape, content or labels); every "
                f"rank must pass the same X and y: {[f[0] for f in fingerprints]}")
        hosts = comm.gather((MPI.Get_processor_name(), available_bytes()), root=SERVER)
        batch = min(options.batch_size, data.y.size)  # a batch is at most the data, as in fit
        short = _memory_problem(model, batch, data, hosts, options.optimizer) if rank == SERVER else None
        short = comm.bcast(short, root=SERVER)
        if short:
            raise InsufficientMemoryError(short)
        state = comm.bcast(state, root=SERVER)
        model._config["classes"] = labels.to_json(data.classes)
        started[0] = True  # messages from here on
        net = link.bcast_model(model._net if rank == SERVER else None, momentum=False)
        if state["finished"]:  # a resumed run that had finished: nothing to train
            pass
        elif rank == SERVER:
            Server(self, link, model, data, options, state, ckpt, cbs).run()
        else:
            model._adopt(net, model._config, model.history, model.epochs_trained)
            Worker(self, link, model, data, options, state).run()
        final = link.bcast_model(model._net if rank == SERVER else None, momentum=False)
        # every rank ends with the server's model, history and epoch count
        first, whole, trained = comm.bcast(
            (state["first"], model.history if rank == SERVER else None, model.epochs_trained),
            root=SERVER)
        if rank != SERVER:
            model._adopt(final, model._config, whole, trained)
        return model.history[first:]

    def _start(self, model: Any, options: FitOptions, data: TrainingData,
               ckpt: RunCheckpoint | None) -> dict[str, Any]:
        """Where the run starts (on the server): a fresh run, or the one
        saved in the checkpoint, which the model then takes over."""
        phase1 = options.epochs - round(self.phase2_fraction * options.epochs)
        state = {"epochs": options.epochs, "phase1": phase1, "done": 0, "finished": False,
                 "seed": model.seed, "first": len(model.history), "data": data.fingerprint(),
                 "schedule": {}}
        resumed = ckpt.load(state["data"]) if ckpt is not None else None
        self.resumed_books = None
        if resumed is not None:
            saved, progress = resumed
            books = progress.get("recycling")
            if isinstance(books, list) and len(books) == 1:  # RigL's: its window and kept growth
                prefix = BOOKS + "0."
                self.resumed_books = (books[0], {k[len(prefix):]: v for k, v in saved.extra.items()
                                                 if k.startswith(prefix)})
            model._adopt(saved.net, {k: v for k, v in saved.config.items() if k != "fit"},
                         saved.history, saved.epochs_trained)
            state.update({k: progress[k] for k in ("done", "phase1", "finished", "seed", "first",
                                                   "schedule", "rate") if k in progress})
        return state


def check_together(check: Any, timeout: float | None = 600.0, comm: Any = None) -> None:
    """Runs ``check()`` on the server rank and raises its error on every rank.

    For checks only the server can make (its output files) before a
    distributed run: a rank that raised alone would leave the others waiting
    for it. Every rank must call this; it waits for all of them at most
    ``timeout`` seconds (then aborts the job, as WASAP does)."""
    MPI = _mpi()
    comm = comm if comm is not None else MPI.COMM_WORLD
    problem = None
    if comm.Get_rank() == SERVER:
        try:
            check()
        except (SparseMLPError, OSError) as e:
            problem = str(e)
    _Link(comm, 1, timeout).wait(comm.Ibarrier(), "every rank to start (one failed before, or is stuck)")
    problem = comm.bcast(problem, root=SERVER)
    if problem is not None:
        raise InvalidInputError(problem)


def WASSP(**kwargs: Any) -> WASAP:
    """The synchronous variant: ``WASAP(sync=True, ...)``."""
    return WASAP(sync=True, **kwargs)


def _memory_needs(model: Any, batch_size: int, data: TrainingData, n_workers: int,
                  optimizer: Any = None) -> tuple[int, int]:
    """Bytes the server and each worker will allocate (beyond the user's
    model and data, which exist already): the worker's replica, training
    buffers and data shard, the packed parameter and gradient arrays both
    keep, a model message in flight, and the server's K replicas for the
    average plus the union of the largest layer."""
    est = model.memory_estimate(batch_size, optimizer)
    nnz, neurons = model.n_connections, sum(model.sizes)
    message = 16 * nnz + 16 * neurons   # int64 indices and float32 values + momentum
    packed = 2 * 4 * (nnz + neurons)    # parameters and one gradient, float32
    replica = 12 * nnz + 12 * neurons   # int64 indices and float32 values, no momentum
    union = 12 * n_workers * max(model._net.layer_nnz)
    shard = (data.X.nbytes + data.y.nbytes) // n_workers
    worker = est["training_total"] + message + packed + shard
    server = message + packed + n_workers * replica + union
    if data.val is not None:
        server += est["inference_buffers"]
    return server, worker


def _memory_problem(model: Any, batch_size: int, data: TrainingData,
                    hosts: list[tuple[str, int | None]], optimizer: Any = None) -> str | None:
    """Why the run would not fit in the memory of one of the hosts, or None.
    Ranks on the same host share its memory, so their needs add up."""
    server, worker = _memory_needs(model, batch_size, data, len(hosts) - 1, optimizer)
    needs: dict[str, list] = {}
    for rank, (host, available) in enumerate(hosts):
        entry = needs.setdefault(host, [0, available, []])
        entry[0] += server if rank == SERVER else worker
        entry[2].append(rank)
        if available is not None and (entry[1] is None or available < entry[1]):
            entry[1] = available
    for host, (need, available, ranks) in needs.items():
        if available is not None and need > available:
            return (
                f"WASAP with {len(hosts) - 1} workers needs {format_bytes(need)} on host {host} "
                f"(ranks {', '.join(map(str, ranks))}; the server {format_bytes(server)}, each "
                f"worker {format_bytes(worker)} at batch_size={batch_size}) but "
                f"{format_bytes(available)} is available: run fewer ranks per host, a smaller "
                "batch or a smaller model"
            )
    return None


# Communicators of failed runs (see WASAP.fit).
_RETIRED: list[Any] = []


def _default_threads(comm) -> int:
    MPI = _mpi()
    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        on_node = local.Get_size()
    finally:
        local.Free()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // on_node)


__all__ = ["WASAP", "WASSP", "check_together", "GRAD", "PARAMS", "PROGRESS", "TAG_HEADER", "TAG_REPLY",
           "ParallelError"]
