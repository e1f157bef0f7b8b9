"""How much memory the machine has left, for ``fit``'s check before it
allocates (see :meth:`SparseMLP.memory_estimate`)."""

from __future__ import annotations


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


def available_bytes() -> int | None:
    """Bytes this process can still allocate without swapping: the kernel's
    ``MemAvailable`` (free memory plus reclaimable caches, which includes the
    pages of memory-mapped data), lowered by the cgroup's limit when the
    process runs in a container. None where this cannot be known (not Linux)."""
    found = [_meminfo_available()]
    for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                          "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        cap, used = _read_int(limit), _read_int(usage)
        if cap is not None and used is not None and cap < 1 << 60:
            found.append(max(0, cap - used))
            break
    known = [v for v in found if v is not None]
    return min(known) if known else None


def format_bytes(n: float) -> str:
    """``n`` bytes for people: 512 B, 3.4 MB, 17.2 GB."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


__all__ = ["available_bytes", "format_bytes"]
