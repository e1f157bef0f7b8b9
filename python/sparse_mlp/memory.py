"""How much memory the machine has left, for ``fit``'s check before it
allocates (see :meth:`SparseMLP.memory_estimate`).

The environment variable ``SPARSE_MLP_MEMORY_LIMIT`` (bytes, or a number with
a unit: ``500M``, ``12G``, ``1.5T``; powers of 1000) caps what sparse_mlp
treats as available, e.g. to leave room for other jobs on a shared node."""

from __future__ import annotations

import os
import re

from .errors import InsufficientMemoryError, InvalidInputError

LIMIT_VARIABLE = "SPARSE_MLP_MEMORY_LIMIT"
_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def _env_limit() -> int | None:
    text = os.environ.get(LIMIT_VARIABLE, "").strip()
    if not text:
        return None
    m = re.fullmatch(r"(\d+(?:\.\d*)?)\s*([KMGT]?)B?", text, re.IGNORECASE)
    if not m:
        raise InvalidInputError(
            f"{LIMIT_VARIABLE}={text!r} is not a size: give bytes or a number with K, M, G or T"
        )
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _address_space_left() -> int | None:
    """What an address-space limit (``ulimit -v``) leaves, if one is set."""
    try:
        import resource
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):
        return None
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        with open("/proc/self/status") as f:
            size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    except (OSError, ValueError, StopIteration):
        return None
    return max(0, soft - size)


def available_bytes() -> int | None:
    """Bytes this process can still allocate without swapping: the kernel's
    ``MemAvailable`` (free memory plus reclaimable caches, which includes the
    pages of memory-mapped data), lowered by the cgroup's limit when the
    process runs in a container, by what an address-space limit (``ulimit
    -v``) leaves and by ``SPARSE_MLP_MEMORY_LIMIT`` when set. None where this
    cannot be known (not Linux, no limit set)."""
    found = [_meminfo_available(), _env_limit(), _address_space_left()]
    for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                          "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        cap, used = _read_int(limit), _read_int(usage)
        if cap is not None and used is not None and cap < 1 << 60:
            found.append(max(0, cap - used))
            break
    known = [v for v in found if v is not None]
    return min(known) if known else None


def require(needed: int, what: str) -> None:
    """Raises :class:`InsufficientMemoryError` when ``needed`` bytes are more
    than are available, before anything is allocated: ``what`` names the work."""
    available = available_bytes()
    if available is not None and needed > available:
        raise InsufficientMemoryError(
            f"{what} needs {format_bytes(needed)} but {format_bytes(available)} is available"
        )


def format_bytes(n: float) -> str:
    """``n`` bytes for people: 512 B, 3.4 MB, 17.2 GB."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


__all__ = ["LIMIT_VARIABLE", "available_bytes", "format_bytes", "require"]


# What InsufficientMemoryError's advice adds after the batch that fits, per precision.
MORE_BATCH = {"float32": ", or about twice that with precision='bfloat16'", "bfloat16": ""}
