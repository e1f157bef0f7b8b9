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

All arrays travel with buffer-based ``Send``/``Recv`` in chunks of at most
``chunk_mb`` MiB (no pickles, no 2 GiB limit). Waiting ranks poll with short
sleeps instead of spinning, so a server and K workers can share few cores.
A worker that raises stops every rank with :class:`ParallelError`; a rank
that goes silent for ``timeout`` seconds makes the waiting rank print the
reason and abort the whole MPI job (a killed process makes ``mpiexec`` end the
job itself). Either way ``mpiexec`` exits non-zero in bounded time.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _core, labels
from ._validation import number, positive_int, verbosity
from .checkpoint import check_writable
from .errors import (
    DivergenceError,
    InsufficientMemoryError,
    InvalidInputError,
    ParallelError,
    SparseMLPError,
)
from .memory import available_bytes, format_bytes
from .model import DEFAULT_TOPOLOGY, Callback, SparseMLP, _Progress, check_training, describe_run
from .topology import SET, ImportancePruning

log = logging.getLogger("sparse_mlp.parallel")

SERVER = 0
TAG_HEADER = 11  # worker -> server: what follows
TAG_REPLY = 12  # server -> worker: what follows
TAG_DATA = 13  # arrays after a header, either way
HEADER_LEN = 8  # float64 fields: kind, then up to 7 numbers (all exact below 2**53)

# worker -> server
GRAD, PROGRESS, FINAL, FAILED = 1, 2, 3, 4
# server -> worker
PARAMS, MODEL, LOCAL, STOP, DONE = 1, 2, 3, 4, 5


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError:
        raise ImportError(
            "sparse_mlp.parallel needs mpi4py and an MPI runtime: pip install 'sparse_mlp[mpi]'"
        ) from None
    return MPI


# ---------------------------------------------------------------- transport


class _Link:
    """Buffer-based messages between the ranks, in chunks, with polling waits
    (a blocking MPI wait spins a core) bounded by a timeout, and byte counts."""

    def __init__(self, comm, chunk_elems: int, timeout: float | None) -> None:
        self.MPI = _mpi()
        self.comm = comm
        self.rank = comm.Get_rank()
        self.chunk = chunk_elems
        self.timeout = timeout
        self.sent = 0
        self.received = 0
        self.wait_seconds = 0.0

    def wait(self, req, what: str, status=None) -> None:
        if req.Test(status):
            return
        t0 = time.monotonic()
        delay = 2e-5
        while not req.Test(status):
            waited = time.monotonic() - t0
            if self.timeout is not None and waited > self.timeout:
                self.fatal(f"rank {self.rank} heard nothing for {self.timeout:g} s while waiting "
                           f"for {what}; a process is stuck or gone. Aborting the MPI job.")
            time.sleep(delay)
            delay = min(2 * delay, 1e-3)
        self.wait_seconds += time.monotonic() - t0

    def fatal(self, message: str) -> None:
        """Ends every rank of the job: for failures the ranks cannot agree on."""
        print(f"sparse_mlp.parallel: {message}", file=sys.stderr, flush=True)
        log.critical(message)
        # mpiexec forwards each rank's output asynchronously and Abort tears
        # the forwarding down: without a pause the message is sometimes lost
        time.sleep(1.0)
        self.comm.Abort(2)

    def send_header(self, dest: int, tag: int, kind: int, *fields: float) -> None:
        hdr = np.zeros(HEADER_LEN, np.float64)
        hdr[0] = kind
        hdr[1:1 + len(fields)] = fields
        self.wait(self.comm.Isend(hdr, dest=dest, tag=tag), f"rank {dest} to take a message")
        self.sent += hdr.nbytes

    def recv_header(self, source: int, tag: int) -> tuple[int, np.ndarray]:
        hdr = np.empty(HEADER_LEN, np.float64)
        status = self.MPI.Status()
        src_name = "any worker" if source == self.MPI.ANY_SOURCE else f"rank {source}"
        self.wait(self.comm.Irecv(hdr, source=source, tag=tag), f"a message from {src_name}", status)
        self.received += hdr.nbytes
        return status.Get_source(), hdr

    def send(self, a: np.ndarray, dest: int) -> None:
        flat = np.ascontiguousarray(a).reshape(-1)
        for i in range(0, max(flat.size, 1), self.chunk):
            part = flat[i:i + self.chunk]
            self.wait(self.comm.Isend(part, dest=dest, tag=TAG_DATA), f"rank {dest} to take data")
        self.sent += flat.nbytes

    def recv(self, out: np.ndarray, source: int) -> np.ndarray:
        for i in range(0, max(out.size, 1), self.chunk):
            self.wait(self.comm.Irecv(out[i:i + self.chunk], source=source, tag=TAG_DATA),
                      f"data from rank {source}")
        self.received += out.nbytes
        return out

    def bcast(self, a: np.ndarray) -> np.ndarray:
        for i in range(0, max(a.size, 1), self.chunk):
            self.comm.Bcast(a[i:i + self.chunk], root=SERVER)
        return a

    def send_text(self, dest: int, tag: int, kind: int, text: str) -> None:
        data = np.frombuffer(text.encode()[:4000], np.uint8)
        self.send_header(dest, tag, kind, data.size)
        self.send(data, dest)

    def recv_text(self, source: int, hdr: np.ndarray) -> str:
        data = self.recv(np.empty(int(hdr[1]), np.uint8), source)
        return bytes(data).decode(errors="replace")

    # The whole model: metadata, index arrays, float arrays.

    def send_model(self, dest: int, kind: int, model: SparseMLP, momentum: bool, *fields: float) -> None:
        meta, idx, vals = _model_payload(model, momentum)
        text = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        self.send_header(dest, TAG_REPLY if self.rank == SERVER else TAG_HEADER, kind,
                         text.size, idx.size, vals.size, *fields)
        for a in (text, idx, vals):
            self.send(a, dest)

    def recv_model(self, source: int, hdr: np.ndarray) -> SparseMLP:
        return _model_from_payload(*self.recv_payload(source, hdr))

    def recv_payload(self, source: int, hdr: np.ndarray) -> tuple[dict, np.ndarray, np.ndarray]:
        """A model message as sent: its metadata and its two flat arrays."""
        n_text, n_idx, n_vals = (int(v) for v in hdr[1:4])
        text = self.recv(np.empty(n_text, np.uint8), source)
        idx = self.recv(np.empty(n_idx, np.int64), source)
        vals = self.recv(np.empty(n_vals, np.float32), source)
        return json.loads(bytes(text).decode()), idx, vals

    def bcast_model(self, model: SparseMLP | None, momentum: bool) -> SparseMLP:
        """The server's model on every rank; the server gets ``model`` itself."""
        if self.rank == SERVER:
            assert model is not None
            meta, idx, vals = _model_payload(model, momentum)
            sizes = (idx.size, vals.size)
        else:
            meta, sizes = None, None
        meta, sizes = self.comm.bcast((meta, sizes), root=SERVER)
        if self.rank != SERVER:
            idx, vals = np.empty(sizes[0], np.int64), np.empty(sizes[1], np.float32)
        self.bcast(idx)
        self.bcast(vals)
        if self.rank == SERVER:
            assert model is not None
            return model
        return _model_from_payload(meta, idx, vals)


def _model_payload(model: SparseMLP, momentum: bool) -> tuple[dict, np.ndarray, np.ndarray]:
    net = model._net
    states = [net.layer_state(i) for i in range(len(net.sizes) - 1)]
    seed, rng_state, step, topology_version = net.run_state
    loss, output = net.loss
    meta = {
        "sizes": list(net.sizes), "nnz": list(net.layer_nnz),
        "activations": [list(a) for a in net.activations], "loss": loss,
        "output_activation": output, "dropout": float(net.dropout), "init": net.init,
        "seed": seed, "rng_state": list(rng_state), "step": step,
        "topology_version": topology_version, "momentum": momentum,
        "config": model._config, "epochs_trained": model.epochs_trained,
    }
    idx = np.concatenate([a for st in states for a in (st["col_ptr"], st["row_idx"])])
    keys = ("values", "bias", "momentum", "bias_momentum") if momentum else ("values", "bias")
    vals = np.concatenate([st[k] for st in states for k in keys])
    return meta, idx, vals


def _model_from_payload(meta: dict, idx: np.ndarray, vals: np.ndarray) -> SparseMLP:
    layers = _payload_layers(meta, idx, vals)
    net = _core.Network.from_state(
        layers, [(str(a), float(s)) for a, s in meta["activations"]], meta["loss"],
        meta["output_activation"], meta["dropout"], meta["init"], int(meta["seed"]),
        [int(r) for r in meta["rng_state"]], int(meta["step"]), int(meta["topology_version"]),
    )
    return SparseMLP._from_net(net, meta["config"], [], int(meta["epochs_trained"]))


def _payload_layers(meta: dict, idx: np.ndarray, vals: np.ndarray) -> list[dict[str, Any]]:
    """Each layer's state as views into a model message's arrays."""
    layers = []
    i = v = 0
    sizes, nnz = meta["sizes"], meta["nnz"]
    for n_in, n_out, k in zip(sizes[:-1], sizes[1:], nnz):
        st: dict[str, Any] = {"n_in": n_in, "n_out": n_out}
        st["col_ptr"], i = idx[i:i + n_out + 1], i + n_out + 1
        st["row_idx"], i = idx[i:i + k], i + k
        st["values"], v = vals[v:v + k], v + k
        st["bias"], v = vals[v:v + n_out], v + n_out
        if meta["momentum"]:
            st["momentum"], v = vals[v:v + k], v + k
            st["bias_momentum"], v = vals[v:v + n_out], v + n_out
        else:
            st["momentum"] = np.zeros(k, np.float32)
            st["bias_momentum"] = np.zeros(n_out, np.float32)
        layers.append(st)
    if i != idx.size or v != vals.size:
        raise ParallelError(f"a model message has {idx.size} indices and {vals.size} values; "
                            f"its metadata describes {i} and {v}")
    return layers


# ---------------------------------------------------------------- topology bookkeeping


class _Packing:
    """Where each layer's values and bias sit in the packed parameter array,
    and the index arrays of that topology (to remap stale gradients)."""

    def __init__(self, model: SparseMLP) -> None:
        net = model._net
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

    def remap(self, g: np.ndarray, old: _Packing, out: np.ndarray) -> int:
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


# ---------------------------------------------------------------- the trainer


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
    """

    phase2_fraction: float = 0.3
    sync: bool = False
    warmup_epochs: int = 5
    comm: Any = None
    threads: int | None = None
    chunk_mb: float = 64.0
    timeout: float | None = 600.0

    def __post_init__(self) -> None:
        self.phase2_fraction = number("phase2_fraction", self.phase2_fraction, 0.0, 1.0)
        if not isinstance(self.sync, (bool, np.bool_)):
            raise InvalidInputError(f"sync must be True or False, got {self.sync!r}")
        self.warmup_epochs = int(number("warmup_epochs", self.warmup_epochs, 0, math.inf))
        if self.threads is not None:
            self.threads = positive_int("threads", self.threads)
        number("chunk_mb", self.chunk_mb, 0.0, math.inf, low_open=True, high_open=True)
        if self.timeout is not None:
            number("timeout", self.timeout, 0.0, math.inf, low_open=True)

    def fit(
        self,
        model: SparseMLP,
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
        verbose: int = 1,
        checkpoint: str | os.PathLike | None = None,
        resume: bool = False,
        callbacks: Sequence[Callback] = (),
        overwrite: bool = False,
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
        the server continues the run saved there instead of starting afresh.
        An existing file there is never replaced by a new run unless
        ``overwrite=True``.

        ``callbacks``: called on the server as ``cb(model, record)`` with each
        record as soon as it exists (e.g. ``sm.MetricsLogger``, for live
        metrics files). A distributed run cannot be stopped by a callback, so
        their return values are ignored; a callback that raises stops every
        rank with a :class:`ParallelError`.

        Returns the history (one record per server epoch and a last one for
        the average), the same on every rank; ``model`` becomes the averaged
        model on every rank. Raises :class:`ParallelError` on every rank when
        any of them fails.
        """
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
            history = self._fit(comm, chunk, started, model, X, y, epochs, batch_size,
                                learning_rate, momentum, weight_decay, nesterov, topology, pruning,
                                validation_data, verbose, checkpoint, resume, callbacks, overwrite)
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

    def _fit(self, comm: Any, chunk: int, started: list[bool], model: SparseMLP, X: Any, y: Any,
             epochs: int,
             batch_size: int, learning_rate: float, momentum: float, weight_decay: float,
             nesterov: bool, topology: SET | None, pruning: ImportancePruning | None,
             validation_data: Any, verbose: int, checkpoint: str | os.PathLike | None,
             resume: bool, callbacks: Sequence[Callback], overwrite: bool) -> list[dict[str, Any]]:
        MPI = _mpi()
        rank = comm.Get_rank()
        link = _Link(comm, chunk, self.timeout)
        threads = self.threads or _default_threads(comm)
        # Everyone validates its own inputs; then all agree or all raise (an
        # error of one rank must not leave the others waiting in a collective).
        problem, error, data, state, run = None, None, None, None, None
        try:
            _core.set_num_threads(threads)
            run = _RunConfig.check(epochs, batch_size, learning_rate, momentum, weight_decay,
                                   nesterov, topology, pruning, verbose)
            if callable(callbacks):
                callbacks = [callbacks]
            data = _prepare_data(model, X, y, validation_data if rank == SERVER else None)
            if rank == SERVER:
                if checkpoint is not None:
                    check_writable(os.fspath(checkpoint), "the checkpoint")
                    _check_not_replacing(os.fspath(checkpoint), resume, overwrite)
                if checkpoint is not None and resume:
                    _resume(model, os.fspath(checkpoint))
                    saved = model.classes_
                    if saved is not None and not np.array_equal(saved, data.classes):
                        raise InvalidInputError(
                            f"the run saved in {os.fspath(checkpoint)} has the classes "
                            f"{labels.describe(saved)}; this y gives {labels.describe(data.classes)}")
                state = _run_state(model, run.epochs, self)
        except Exception as e:
            problem, error = f"rank {rank}: {e}", e
        problems = [p for p in comm.allgather(problem) if p]
        if problems:
            if error is not None and not isinstance(error, SparseMLPError):
                raise error  # this rank's own TypeError (or bug), as it was
            raise InvalidInputError("; ".join(problems))
        assert run is not None and data is not None
        options = comm.allgather(self._options(run))
        differ = sorted(k for k in options[0] if len({repr(o[k]) for o in options}) > 1)
        if differ:
            raise InvalidInputError(
                "the ranks were given different options; every rank must call fit with the same "
                "ones: " + "; ".join(f"{k}: " + ", ".join(f"rank {r} {o[k]!r}"
                                                           for r, o in enumerate(options))
                                     for k in differ))
        fingerprint = comm.allgather(data.fingerprint)
        if len(set(fingerprint)) != 1:
            raise InvalidInputError(
                "the ranks were given different training data (shape or content); every rank "
                f"must pass the same X and y: {fingerprint}"
            )
        hosts = comm.gather((MPI.Get_processor_name(), available_bytes()), root=SERVER)
        short = _memory_problem(model, run.batch_size, data, hosts) if rank == SERVER else None
        short = comm.bcast(short, root=SERVER)
        if short:
            raise InsufficientMemoryError(short)
        state = comm.bcast(state, root=SERVER)
        model._config["classes"] = labels.to_json(data.classes)
        started[0] = True  # messages from here on
        replica = link.bcast_model(model if rank == SERVER else None, momentum=False)
        if rank == SERVER:
            history = _Server(self, link, model, data, run, state,
                              None if checkpoint is None else os.fspath(checkpoint),
                              list(callbacks)).run()
        else:
            _Worker(self, link, replica, data, run, state).run()
            history = None
        final = link.bcast_model(model if rank == SERVER else None, momentum=False)
        history = comm.bcast(history, root=SERVER)
        if rank != SERVER:
            model._adopt(final._net, final._config, model.history + history, final.epochs_trained)
        return history

    def _options(self, run: _RunConfig) -> dict[str, Any]:
        """What every rank must agree on: the run's hyper-parameters and the
        protocol's settings (a different chunk size would garble messages)."""
        options = {k: getattr(run, k) for k in ("epochs", "batch_size", "learning_rate",
                                                 "momentum", "weight_decay", "nesterov")}
        options.update(topology=repr(run.topology), pruning=repr(run.pruning),
                       phase2_fraction=self.phase2_fraction, sync=bool(self.sync),
                       warmup_epochs=self.warmup_epochs, chunk_mb=float(self.chunk_mb))
        return options


def WASSP(**kwargs: Any) -> WASAP:
    """The synchronous variant: ``WASAP(sync=True, ...)``."""
    return WASAP(sync=True, **kwargs)


@dataclass(frozen=True)
class _RunConfig:
    epochs: int
    batch_size: int
    learning_rate: float
    momentum: float
    weight_decay: float
    nesterov: bool
    topology: SET | None
    pruning: ImportancePruning | None
    verbose: int

    @classmethod
    def check(cls, epochs, batch_size, learning_rate, momentum, weight_decay, nesterov,
              topology, pruning, verbose) -> _RunConfig:
        check_training(learning_rate, momentum, weight_decay, topology, pruning)
        return cls(positive_int("epochs", epochs), positive_int("batch_size", batch_size),
                   float(learning_rate), float(momentum), float(weight_decay), bool(nesterov),
                   topology, pruning, verbosity(verbose))


@dataclass
class _Data:
    X: np.ndarray
    y: np.ndarray
    val: tuple[np.ndarray, np.ndarray] | None
    fingerprint: tuple
    classes: np.ndarray

    def shard(self, worker: int, n_workers: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Worker ``worker``'s fixed part (1-based), from a permutation all ranks agree on."""
        perm = np.random.default_rng([seed, 0x5AA9]).permutation(self.y.size)
        mine = np.sort(np.array_split(perm, n_workers)[worker - 1])
        return np.ascontiguousarray(self.X[mine]), np.ascontiguousarray(self.y[mine])


def _prepare_data(model: SparseMLP, X: Any, y: Any, validation_data: Any) -> _Data:
    X, y, val, classes = model._training_data(X, y, validation_data)
    probe = X[:: max(1, X.shape[0] // 64)]
    fingerprint = (X.shape, float(np.sum(probe, dtype=np.float64)), int(y.sum()),
                   repr(labels.to_json(classes)))
    return _Data(X, y, val, fingerprint, classes)


def _memory_needs(model: SparseMLP, batch_size: int, data: _Data, n_workers: int) -> tuple[int, int]:
    """Bytes the server and each worker will allocate (beyond the user's
    model and data, which exist already): the worker's replica, training
    buffers and data shard, the packed parameter and gradient arrays both
    keep, a model message in flight, and the server's K replicas for the
    average plus the union of the largest layer."""
    est = model.memory_estimate(batch_size)
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


def _memory_problem(model: SparseMLP, batch_size: int, data: _Data,
                    hosts: list[tuple[str, int | None]]) -> str | None:
    """Why the run would not fit in the memory of one of the hosts, or None.
    Ranks on the same host share its memory, so their needs add up."""
    server, worker = _memory_needs(model, batch_size, data, len(hosts) - 1)
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


def _run_state(model: SparseMLP, epochs: int, trainer: WASAP) -> dict[str, Any]:
    """Where the run starts: a fresh run, or the one saved in a checkpoint."""
    saved = model._config.get("wasap")
    if saved and not saved.get("finished"):
        if saved["epochs"] != epochs or saved["sync"] != trainer.sync:
            raise InvalidInputError(
                f"the checkpoint belongs to a run of {saved['epochs']} epochs with sync="
                f"{saved['sync']}; resume it with the same epochs and sync"
            )
        return dict(saved)
    phase1 = epochs - round(trainer.phase2_fraction * epochs)
    return {"epochs": epochs, "phase1": phase1, "done": 0, "sync": trainer.sync,
            "finished": False, "seed": model.seed}


def _check_not_replacing(path: str, resume: bool, overwrite: bool) -> None:
    if not isinstance(overwrite, (bool, np.bool_)):
        raise InvalidInputError(f"overwrite must be True or False, got {overwrite!r}")
    if os.path.exists(path) and not resume and not overwrite:
        raise InvalidInputError(
            f"{path} already exists ({describe_run(path)}); a new run does not replace it: pass "
            "resume=True to continue the run saved there, overwrite=True to replace it, or "
            "another checkpoint path")


def _resume(model: SparseMLP, path: str) -> None:
    if not os.path.exists(path):
        log.info("no checkpoint at %s yet; starting a new run", path)
        return
    saved = SparseMLP.load(path)
    if "wasap" not in saved._config:
        raise InvalidInputError(f"{path} is a model file but not a WASAP checkpoint")
    model._adopt(saved._net, saved._config, saved.history, saved.epochs_trained)
    log.info("resuming the WASAP run saved in %s after %d server epochs", path,
             saved._config["wasap"]["done"])


# ---------------------------------------------------------------- server


class _Server:
    def __init__(self, trainer: WASAP, link: _Link, model: SparseMLP, data: _Data,
                 run: _RunConfig, state: dict, checkpoint: str | None,
                 callbacks: list[Callback]) -> None:
        self.t, self.link, self.model, self.data, self.run_cfg = trainer, link, model, data, run
        self.state, self.checkpoint, self.callbacks = state, checkpoint, callbacks
        self.K = link.comm.Get_size() - 1
        self.workers = list(range(1, self.K + 1))
        self.version = 0  # parameter version: updates applied
        self.packing = _Packing(model)
        self.packings = {self._topo(): self.packing}
        self.worker_topo = dict.fromkeys(self.workers, self._topo())
        self.params = np.empty(self.packing.length, np.float32)
        self.local: set[int] = set()  # workers in phase 2
        self.awaiting: set[int] = set()  # workers whose message has no answer yet
        self.last_report = time.perf_counter()
        self.history: list[dict[str, Any]] = []
        self.progress = _Progress(run.verbose, state["epochs"])

    def _topo(self) -> int:
        return self.model._net.run_state[3]

    def _publish(self, record: dict[str, Any]) -> None:
        """Adds a record to the histories and hands it to the callbacks."""
        self.history.append(record)
        self.model.history.append(record)
        for cb in self.callbacks:
            try:
                stop = cb(self.model, record)
            except Exception as e:
                raise ParallelError(f"the server's callback {cb!r} failed: "
                                    f"{type(e).__name__}: {e}") from e
            if stop:
                log.warning("a callback asked to stop; a WASAP run cannot stop early, "
                            "so training goes on")

    def run(self) -> list[dict[str, Any]]:
        try:
            while self.state["done"] < self.state["phase1"]:
                self._server_epoch()
            self._local_phase()
        except ParallelError as e:
            self._stop_all(str(e))
            raise
        except Exception as e:  # e.g. a checkpoint that cannot be written (a full disk)
            reason = f"the server failed: {type(e).__name__}: {e}"
            self._stop_all(reason)
            raise ParallelError(reason) from e
        for w in self.workers:
            self.link.send_header(w, TAG_REPLY, DONE)
        return self.history

    # ---- phase 1

    def _updates_per_epoch(self) -> int:
        per_update = self.run_cfg.batch_size * (self.K if self.t.sync else 1)
        return max(1, math.ceil(self.data.y.size / per_update))

    def _server_epoch(self) -> None:
        t0 = time.perf_counter()
        sent0, recv0, wait0 = self.link.sent, self.link.received, self.link.wait_seconds
        epoch = self.state["done"] + 1
        n_updates = self._updates_per_epoch()
        acc = {"loss": 0.0, "correct": 0, "samples": 0, "staleness": [], "dropped": 0}
        lr = self.run_cfg.learning_rate
        for u in range(n_updates):
            last = u == n_updates - 1
            if self.t.sync:
                lr = self._lr_sync(epoch, u, n_updates)
                grads = sorted(self._receive_gradient(acc) for _ in self.workers)
                total = np.zeros(self.packing.length, np.float64)
                for _, g in grads:  # in worker order, so the sum does not depend on timing
                    total += g
                self._apply((total / self.K).astype(np.float32), lr, [w for w, _ in grads])
                if last:
                    record = self._end_of_epoch(epoch, acc, n_updates, lr)
                for w, _ in grads:
                    self._reply(w)
            else:
                w, g = self._receive_gradient(acc)
                self._apply(g, lr, [w])
                if last:
                    record = self._end_of_epoch(epoch, acc, n_updates, lr)
                self._reply(w)
        record.update(bytes_sent=self.link.sent - sent0, bytes_received=self.link.received - recv0,
                      server_wait_seconds=self.link.wait_seconds - wait0,
                      seconds=time.perf_counter() - t0)
        record["samples_per_second"] = acc["samples"] / record["seconds"]
        self._publish(record)
        self.progress.report(epoch, record)
        self._save()

    def _lr_sync(self, epoch: int, u: int, n_updates: int) -> float:
        """Learning rate × K, reached linearly over the warm-up epochs."""
        warm = self.t.warmup_epochs
        progress = 1.0 if warm == 0 else min(1.0, (epoch - 1 + (u + 1) / n_updates) / warm)
        return self.run_cfg.learning_rate * (1 + (self.K - 1) * progress)

    def _receive_gradient(self, acc: dict) -> tuple[int, np.ndarray]:
        """The next gradient from any worker, on the current topology."""
        while True:
            src, hdr = self.link.recv_header(_mpi().ANY_SOURCE, TAG_HEADER)
            kind = int(hdr[0])
            if kind == FAILED:
                raise self._failed(src, hdr)
            if kind != GRAD:
                raise ParallelError(f"worker {src} sent message kind {kind} during phase 1")
            topo, pulled, samples, loss_sum, correct = int(hdr[1]), int(hdr[2]), *hdr[3:6].tolist()
            packing = self.packings[topo]
            g = self.link.recv(np.empty(packing.length, np.float32), src)
            if topo != self._topo():
                fresh = np.empty(self.packing.length, np.float32)
                acc["dropped"] += self.packing.remap(g, packing, fresh)
                g = fresh
            acc["loss"] += loss_sum
            acc["correct"] += int(correct)
            acc["samples"] += int(samples)
            acc["staleness"].append(self.version - pulled)
            self.awaiting.add(src)
            return src, g

    def _failed(self, src: int, hdr: np.ndarray) -> ParallelError:
        self.awaiting.add(src)
        return ParallelError(f"worker {src} failed: {self.link.recv_text(src, hdr)}")

    def _apply(self, g: np.ndarray, lr: float, workers: list[int]) -> None:
        cfg = self.run_cfg
        try:
            self.model._net.apply_packed_gradient(g, lr, cfg.momentum, cfg.weight_decay, cfg.nesterov)
        except InvalidInputError as e:
            who = ", ".join(map(str, workers))
            raise ParallelError(
                f"training diverged: the gradient from worker {who} at server update "
                f"{self.version + 1} was refused ({e}). Lower the learning rate or check the data."
            ) from None
        self.version += 1

    def _reply(self, w: int) -> None:
        self.awaiting.discard(w)
        if self.worker_topo[w] != self._topo():
            self.link.send_model(w, MODEL, self.model, False, self.version)
            self.worker_topo[w] = self._topo()
            live = set(self.worker_topo.values()) | {self._topo()}
            self.packings = {v: p for v, p in self.packings.items() if v in live}
        else:
            self.model._net.pack_params(self.params)
            self.link.send_header(w, TAG_REPLY, PARAMS, self.version)
            self.link.send(self.params, w)

    def _end_of_epoch(self, epoch: int, acc: dict, n_updates: int, lr: float) -> dict[str, Any]:
        """Evaluation, then the topology step (pruning, SET) on the server's model."""
        samples = max(acc["samples"], 1)
        stale = acc["staleness"]
        record: dict[str, Any] = {
            "epoch": self.model.epochs_trained + 1, "phase": 1,
            "loss": acc["loss"] / samples, "accuracy": acc["correct"] / samples,
            "updates": n_updates, "learning_rate": lr,
            "mean_staleness": float(np.mean(stale)) if stale else 0.0,
            "max_staleness": int(max(stale, default=0)), "dropped_gradient_entries": acc["dropped"],
        }
        if self.data.val is not None:
            record["val_loss"], record["val_accuracy"] = self.model._net.evaluate(*self.data.val)
        record["n_connections"] = self.model.n_connections
        record["n_neurons"] = int(sum(self.model.sizes[1:-1]))
        t = time.perf_counter()
        total = self.state["epochs"]
        for strategy in (self.run_cfg.pruning, self.run_cfg.topology):
            if strategy is not None:
                record.update(strategy.on_epoch_end(self.model, epoch, total))
        record["topology_seconds"] = time.perf_counter() - t
        record["topology_version"] = self._topo()
        if self._topo() not in self.packings:
            self.packing = _Packing(self.model)
            self.packings[self._topo()] = self.packing
            self.params = np.empty(self.packing.length, np.float32)
        self.model.epochs_trained += 1
        self.state["done"] = epoch
        return record

    def _save(self) -> None:
        if self.checkpoint is None:
            return
        self.model._config["wasap"] = dict(self.state)
        self.model.save(self.checkpoint)

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
                self.link.recv(np.empty(self.packings[int(hdr[1])].length, np.float32), src)
                self.link.send_model(src, LOCAL, self.model, True, self.version, local_epochs)
                pending.discard(src)
                self.local.add(src)
            elif kind == PROGRESS and src in self.local:
                reports.setdefault(int(hdr[1]), []).append(hdr[2:5].copy())
                if len(reports[int(hdr[1])]) == self.K:
                    self._local_record(int(hdr[1]), reports.pop(int(hdr[1])), local_epochs)
            elif kind == FINAL and src in self.local and src not in replicas:
                comm_share.append(float(hdr[5]))
                # kept as received (indices and values), not built into a network
                replicas[src] = _payload_layers(*self.link.recv_payload(src, hdr))
            else:
                raise ParallelError(f"worker {src} sent message kind {kind} during phase 2")
        self._average([replicas[w] for w in self.workers], comm_share, time.perf_counter() - t0)

    def _local_record(self, local_epoch: int, reports: list, local_epochs: int) -> None:
        loss, correct, samples = np.sum(reports, axis=0).tolist()
        self.model.epochs_trained += 1
        now = time.perf_counter()
        record = {"epoch": self.model.epochs_trained, "phase": 2, "local_epoch": local_epoch,
                  "loss": loss / max(samples, 1), "accuracy": correct / max(samples, 1),
                  "n_connections": self.model.n_connections, "seconds": now - self.last_report}
        self.last_report = now
        self._publish(record)
        self.progress.report(self.state["phase1"] + local_epoch, record)

    def _average(self, replicas: list[list[dict[str, Any]]], comm_share: list[float],
                 seconds: float) -> None:
        """Union average per layer, pruned back to the server model's nnz (SPEC §6.5)."""
        net = self.model._net
        layers, union = [], []
        for i, target in enumerate(net.layer_nnz):
            states = [r[i] for r in replicas]
            (ptr, rows, vals), n_union = _core.union_average(
                [(s["col_ptr"], s["row_idx"], s["values"]) for s in states],
                states[0]["n_in"], target)
            bias = np.mean([s["bias"] for s in states], axis=0, dtype=np.float64).astype(np.float32)
            layers.append({"n_in": states[0]["n_in"], "n_out": states[0]["n_out"], "col_ptr": ptr,
                           "row_idx": rows, "values": vals, "momentum": np.zeros_like(vals),
                           "bias": bias, "bias_momentum": np.zeros_like(bias)})
            union.append(int(n_union))
        seed, rng_state, step, topology_version = net.run_state
        loss, output = net.loss
        averaged = _core.Network.from_state(
            layers, net.activations, loss, output, net.dropout, net.init, seed, rng_state,
            step, topology_version + 1)
        self.model._net = averaged
        record: dict[str, Any] = {"epoch": self.model.epochs_trained, "phase": "average",
                                  "union_connections": union, "n_connections": self.model.n_connections,
                                  "local_phase_seconds": seconds,
                                  "worker_comm_share_phase1": float(np.mean(comm_share))}
        if self.data.val is not None:
            record["val_loss"], record["val_accuracy"] = averaged.evaluate(*self.data.val)
        self._publish(record)
        if self.run_cfg.verbose > 0:
            val = f", val_acc {record['val_accuracy']:.4f}" if "val_accuracy" in record else ""
            print(f"averaged {self.K} replicas over {sum(union)} connections, pruned to "
                  f"{self.model.n_connections}{val}", flush=True)
        self.state["finished"] = True
        self._save()

    # ---- failure

    def _stop_all(self, reason: str) -> None:
        """Tells every worker to stop with ``reason``, so each raises too. A
        worker in phase 1 that is computing gets it as the answer to its next
        message; one in phase 2 finds it after its current local epoch."""
        log.error("stopping every rank: %s", reason)
        for w in self.workers:
            if w not in self.awaiting and w not in self.local:
                _, hdr = self.link.recv_header(w, TAG_HEADER)
                if int(hdr[0]) == GRAD:
                    self.link.recv(np.empty(self.packings[int(hdr[1])].length, np.float32), w)
                elif int(hdr[0]) == FAILED:
                    self.link.recv_text(w, hdr)
            self.link.send_text(w, TAG_REPLY, STOP, reason)


# ---------------------------------------------------------------- worker


class _Worker:
    def __init__(self, trainer: WASAP, link: _Link, replica: SparseMLP, data: _Data,
                 run: _RunConfig, state: dict) -> None:
        self.t, self.link, self.model, self.run_cfg = trainer, link, replica, run
        self.rank = link.rank
        self.K = link.comm.Get_size() - 1
        self.run_seed = state["seed"]
        self._reseed(self.model)
        self.X, self.y = data.shard(self.rank, self.K, state["seed"])
        self.rng = np.random.default_rng([self.run_seed, self.rank])
        self.compute_seconds = 0.0

    def _reseed(self, model: SparseMLP) -> None:
        """Replicas draw their own dropout masks and SET positions: the seed
        mixes the run's seed, this worker's rank and the topology version."""
        keys = [self.run_seed, self.rank, model._net.run_state[3]]
        model._net.reseed(int(np.random.SeedSequence(keys).generate_state(1, np.uint64)[0]))

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
        b = self.run_cfg.batch_size
        while True:
            order = self.rng.permutation(self.y.size)
            for i in range(0, order.size, b):
                idx = order[i:i + b]
                yield self.X[idx], self.y[idx]

    def _phase1(self) -> int:
        """Gradients to the server until it starts the local phase; returns its epochs."""
        net = self.model._net
        grad = np.empty(net.packed_len, np.float32)
        params = np.empty_like(grad)  # reused for every answer until the topology changes
        topo, pulled = net.run_state[3], 0
        for k, (xb, yb) in enumerate(self._batches()):
            t = time.perf_counter()
            loss_sum, correct = net.gradient_step(xb, yb, grad)
            self.compute_seconds += time.perf_counter() - t
            if not math.isfinite(loss_sum):
                raise DivergenceError(f"the loss of its mini-batch {k} became {loss_sum}; lower the "
                                      "learning rate or check the data")
            self.link.send_header(SERVER, TAG_HEADER, GRAD, topo, pulled, yb.size, loss_sum, correct)
            self.link.send(grad, SERVER)
            _, hdr = self.link.recv_header(SERVER, TAG_REPLY)
            kind = int(hdr[0])
            if kind == PARAMS:
                pulled = int(hdr[1])
                net.unpack_params(self.link.recv(params, SERVER))
            elif kind in (MODEL, LOCAL):
                self.model = self.link.recv_model(SERVER, hdr)
                self._reseed(self.model)
                net = self.model._net
                grad = np.empty(net.packed_len, np.float32)
                params = np.empty_like(grad)
                topo, pulled = net.run_state[3], int(hdr[4])
                if kind == LOCAL:
                    return int(hdr[5])
            elif kind == STOP:
                raise ParallelError(self.link.recv_text(SERVER, hdr))
        raise AssertionError("unreachable")

    def _phase2(self, local_epochs: int) -> None:
        """Local training with SET on the shard; a heartbeat to the server
        after each epoch (where a stop order is noticed); then the replica
        goes to the server, and the worker waits for the average."""
        cfg = self.run_cfg
        waited = self.link.wait_seconds
        phase1_share = waited / max(waited + self.compute_seconds, 1e-12)
        done = 0

        def report(model: SparseMLP, record: dict) -> bool:
            nonlocal done
            done += 1
            n = self.y.size
            self.link.send_header(SERVER, TAG_HEADER, PROGRESS, done, record["loss"] * n,
                                  record["accuracy"] * n, n)
            if self.link.comm.Iprobe(source=SERVER, tag=TAG_REPLY):
                _, hdr = self.link.recv_header(SERVER, TAG_REPLY)
                raise ParallelError(self.link.recv_text(SERVER, hdr))
            return False

        if local_epochs > 0:  # (the shard's labels are output indices; fit takes the classes)
            self.model.fit(self.X, self.model._output_labels()[self.y], epochs=local_epochs,
                           batch_size=cfg.batch_size,
                           learning_rate=cfg.learning_rate, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay, nesterov=cfg.nesterov,
                           topology=cfg.topology, pruning=None, verbose=0, callbacks=[report])
        self.link.send_model(SERVER, FINAL, self.model, False, 0, phase1_share)
        # The others may train for a while yet: wait without the silence limit.
        timeout, self.link.timeout = self.link.timeout, None
        _, hdr = self.link.recv_header(SERVER, TAG_REPLY)
        self.link.timeout = timeout
        if int(hdr[0]) == STOP:
            raise ParallelError(self.link.recv_text(SERVER, hdr))
