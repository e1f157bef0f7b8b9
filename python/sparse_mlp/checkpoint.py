"""Checkpoints of a training run: the plan a resumed run must match, the
fingerprint of its training data, and atomic file writes.

A checkpoint is an ordinary model file (:meth:`SparseMLP.save`) whose
configuration also holds ``fit``: the run's options as JSON, how many of its
epochs are done, where its history starts and the data fingerprint. The
weights, momentum, random state and step counter are part of every model file,
so a run resumed from a checkpoint continues exactly as if it had not stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import signal
import stat
import tempfile
import threading
import zipfile
from collections.abc import Iterable, Iterator
from typing import Any, Callable

import numpy as np

from .errors import InvalidInputError
from .recycling import ContinualBackprop, MidpointLoss, NeuronRecycling, ReDo
from .topology import SET, ImportancePruning

# The strategies a checkpoint can name; a custom object cannot be rebuilt.
STRATEGIES: dict[str, type] = {
    cls.__name__: cls
    for cls in (SET, ImportancePruning, NeuronRecycling, ReDo, ContinualBackprop, MidpointLoss)
}


def encode_strategy(strategy: Any, role: str) -> Any:
    """A strategy (or list of them, or None) as JSON-compatible data."""
    if strategy is None:
        return None
    if isinstance(strategy, (list, tuple)):
        return [encode_strategy(s, role) for s in strategy]
    name = type(strategy).__name__
    if STRATEGIES.get(name) is not type(strategy):
        raise InvalidInputError(
            f"a checkpointed run can only use the built-in strategies ({', '.join(STRATEGIES)}); "
            f"{role}={strategy!r} cannot be saved in a checkpoint"
        )
    return {"type": name, **json.loads(json.dumps(dataclasses.asdict(strategy)))}


def decode_strategy(data: Any) -> Any:
    """The inverse of :func:`encode_strategy`."""
    if data is None:
        return None
    if isinstance(data, list):
        return [decode_strategy(d) for d in data]
    if not isinstance(data, dict) or data.get("type") not in STRATEGIES:
        raise InvalidInputError(f"unknown strategy in checkpoint: {data!r}")
    fields = {k: v for k, v in data.items() if k != "type"}
    cls = STRATEGIES[data["type"]]
    for f in dataclasses.fields(cls):
        if isinstance(fields.get(f.name), list):
            fields[f.name] = tuple(fields[f.name])
    return cls(**fields)


def fingerprint(X: np.ndarray, y: np.ndarray) -> str:
    """A digest of the training data, so a run is not resumed on other data."""
    h = hashlib.blake2b(digest_size=16)
    for a in (X, y):
        h.update(repr((a.dtype.str, a.shape)).encode())
        h.update(memoryview(np.ascontiguousarray(a)).cast("B"))
    return h.hexdigest()


def plan_differences(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """The options of a resumed run that differ from the saved run's."""
    return [f"{k}: saved {saved.get(k)!r}, given {wanted.get(k)!r}"
            for k in sorted(set(saved) | set(wanted)) if saved.get(k) != wanted.get(k)]


def check_writable(path: str, what: str = "the file") -> None:
    """Raises :class:`InvalidInputError` when ``path`` cannot be written as a
    file: it is a directory, or its directory does not exist (or is a file).
    Called before work whose result would be written there, so a mistyped
    path is reported before training rather than after."""
    if os.path.isdir(path):
        raise InvalidInputError(f"{what} {path} is a directory; give a file name")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise InvalidInputError(f"cannot write {what} {path}: {directory} is not a directory")


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Ctrl-C during the block takes effect when it ends: a write that has
    begun is finished (a file is never half-written, and the file of the last
    completed epoch is the one a Ctrl-C leaves). Only in the main thread, and
    only where Python's own handler is installed."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    caught: list[Any] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def _umask() -> int:
    """The process's umask, read without changing it (Linux), else by setting and restoring it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str, write: Callable[[Any], None]) -> None:
    """Writes through a temporary file in the same directory, fsyncs it and
    renames it over ``path``: readers see the old file or the new one. A
    temporary file of ``path`` left by a writer that was killed is removed
    first (one writer per path). A path that cannot be a file raises
    :class:`InvalidInputError`; other failures (permissions, a full disk)
    raise ``OSError``, and the file at ``path`` is left as it was.

    The file gets the mode of the one it replaces, or a new file's usual mode
    (0666 less the umask), as with ``open``. Ctrl-C waits for the write."""
    with deferred_interrupt():
        _atomic_write(path, write)


def _atomic_write(path: str, write: Callable[[Any], None]) -> None:
    check_writable(path)
    directory = os.path.dirname(os.path.abspath(path))
    prefix = f".{os.path.basename(path)}.sparse_mlp-"
    for name in os.listdir(directory):
        if name.startswith(prefix) and name.endswith(".tmp"):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=".tmp")
    try:
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError:
            mode = 0o666 & ~_umask()
        os.fchmod(fd, mode)  # mkstemp makes it 0600, which the rename would keep
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass  # directories cannot be fsynced everywhere; the rename is done


def write_npz(f: Any, arrays: Iterable[tuple[str, np.ndarray]]) -> None:
    """Writes ``(name, array)`` pairs as an uncompressed ``.npz`` archive
    (what ``np.load`` reads), consuming ``arrays`` lazily: unlike
    ``np.savez``, the arrays need not all exist at once. Nothing is pickled."""
    with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, a in arrays:
            with zf.open(name + ".npy", "w", force_zip64=True) as out:
                np.lib.format.write_array(out, np.ascontiguousarray(a), allow_pickle=False)
            del a  # not held while the next array is made
