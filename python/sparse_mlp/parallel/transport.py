"""The messages of WASAP-SGD: buffer-based MPI sends of numpy arrays in
chunks (no pickles, no 2 GiB limit), polling waits bounded by a timeout
(a blocking MPI wait spins a core), and whole networks as one message."""

from __future__ import annotations

import json
import logging
import math
import signal
import sys
import threading
import time
from typing import Any

import numpy as np

from .. import _core, _netstate
from ..errors import ParallelError

log = logging.getLogger("sparse_mlp.parallel")


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError:
        raise ImportError(
            "sparse_mlp.parallel needs mpi4py and an MPI runtime: pip install 'sparse_mlp[mpi]'"
        ) from None
    return MPI


SERVER = 0
TAG_HEADER = 11  # worker -> server: what follows
TAG_REPLY = 12  # server -> worker: what follows
TAG_DATA = 13  # arrays after a header, either way
ABORT_GRACE = 10.0  # seconds a rank waits for MPI_Abort before it exits by itself
HEADER_LEN = 8  # float64 fields: kind, then up to 7 numbers (all exact below 2**53)

# worker -> server
GRAD, PROGRESS, FINAL, FAILED = 1, 2, 3, 4
# server -> worker
PARAMS, MODEL, LOCAL, STOP, DONE = 1, 2, 3, 4, 5


# ---------------------------------------------------------------- transport


def overlap_possible() -> bool:
    """Whether MPI lets a second thread communicate beside the main one
    (mpi4py asks for MPI_THREAD_MULTIPLE unless told otherwise)."""
    MPI = _mpi()
    if MPI.Query_thread() >= MPI.THREAD_MULTIPLE:
        return True
    log.warning("MPI was initialised without MPI_THREAD_MULTIPLE: communication does not overlap "
                "computation")
    return False


def to_bfloat16(a: np.ndarray) -> np.ndarray:
    """float32 values rounded to bfloat16, as their upper 16 bits: the core's
    rounding of bfloat16 activations (nearest, ties to even)."""
    return _core.to_bfloat16(np.ascontiguousarray(a, np.float32).reshape(-1))


def from_bfloat16(b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """bfloat16 bits widened (exactly) into float32 ``out``."""
    _core.from_bfloat16(b, out)
    return out


VALUE_TYPES = ("float32", "bfloat16")


def _exit_unless_aborted() -> None:
    """Ends this process ABORT_GRACE seconds from now unless MPI_Abort has
    ended it by then. Abort asks the launcher to end the job; on a host whose
    link is down the launcher cannot be reached, and Abort never returns (nor
    releases the interpreter, so a Python timer could not run): the kernel's
    alarm signal, left to its default action, ends the process instead."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
    # (from another thread the disposition stays as it is: the default unless
    # the program chose a handler, which then runs when Abort returns)
    signal.alarm(math.ceil(ABORT_GRACE))


class _Link:
    """Buffer-based messages between the ranks, in chunks, with polling waits
    (a blocking MPI wait spins a core) bounded by a timeout, and byte counts."""

    def __init__(self, comm, chunk_elems: int, timeout: float | None, values: str = "float32") -> None:
        self.MPI = _mpi()
        self.values = values  # how gradients and parameter values travel
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
        _exit_unless_aborted()
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

    # Gradients and parameter values: float32, or rounded to bfloat16 on the way.

    def send_values(self, a: np.ndarray, dest: int) -> None:
        self.send(to_bfloat16(a) if self.values == "bfloat16" else a, dest)

    def recv_values_into(self, out: np.ndarray, source: int) -> np.ndarray:
        if self.values == "bfloat16":
            return from_bfloat16(self.recv(np.empty(out.size, np.uint16), source), out)
        return self.recv(out, source)

    def recv_values(self, n: int, source: int) -> np.ndarray:
        return self.recv_values_into(np.empty(n, np.float32), source)

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

    def send_model(self, dest: int, kind: int, net: _core.Network, momentum: bool, *fields: float) -> None:
        meta, idx, vals = _netstate.pack(net, momentum)
        text = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        self.send_header(dest, TAG_REPLY if self.rank == SERVER else TAG_HEADER, kind,
                         text.size, idx.size, vals.size, *fields)
        for a in (text, idx, vals):
            self.send(a, dest)

    def build_model(self, payload: tuple[dict, np.ndarray, np.ndarray]) -> _core.Network:
        """The network of a model message received by :meth:`recv_payload`."""
        return _netstate.build(*self._layers(*payload))

    def recv_payload(self, source: int, hdr: np.ndarray) -> tuple[dict, np.ndarray, np.ndarray]:
        """A model message as sent: its metadata and its two flat arrays."""
        n_text, n_idx, n_vals = (int(v) for v in hdr[1:4])
        text = self.recv(np.empty(n_text, np.uint8), source)
        idx = self.recv(np.empty(n_idx, np.int64), source)
        vals = self.recv(np.empty(n_vals, np.float32), source)
        return json.loads(bytes(text).decode()), idx, vals

    def recv_layers(self, source: int, hdr: np.ndarray) -> list[dict[str, Any]]:
        """A model message's layers, as views into its arrays (not built into a network)."""
        return self._layers(*self.recv_payload(source, hdr))[1]

    @staticmethod
    def _layers(meta: dict, idx: np.ndarray, vals: np.ndarray) -> tuple[dict, list[dict[str, Any]]]:
        try:
            return meta, _netstate.unpack(meta, idx, vals)
        except (KeyError, TypeError, ValueError) as e:
            raise ParallelError(f"a model message is malformed: {e}") from None

    def bcast_model(self, net: _core.Network | None, momentum: bool) -> _core.Network:
        """The server's network on every rank; the server gets ``net`` itself."""
        if self.rank == SERVER:
            assert net is not None
            meta, idx, vals = _netstate.pack(net, momentum)
            sizes = (idx.size, vals.size)
        else:
            meta, sizes = None, None
        meta, sizes = self.comm.bcast((meta, sizes), root=SERVER)
        if self.rank != SERVER:
            idx, vals = np.empty(sizes[0], np.int64), np.empty(sizes[1], np.float32)
        self.bcast(idx)
        self.bcast(vals)
        if self.rank == SERVER:
            assert net is not None
            return net
        return _netstate.build(*self._layers(meta, idx, vals))
