"""Files written safely: atomic replacement, the umask, Ctrl-C deferred
during a write, and ``.npz`` archives written one array at a time."""

from __future__ import annotations

import contextlib
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
