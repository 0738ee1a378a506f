"""The window's memory guard: how much memory there is, and how much a window will take.

"Available" is the smallest of the kernel's ``MemAvailable``, the cgroup's ``memory.max`` less
its usage, and ``RLIMIT_AS`` less the process's address space: whichever bites first kills
the kernel. A window's size is estimated from its plan (offsets planned × bytes per record
measured on the first batch read × the frames' growth over the raw bytes), so an oversized
window stops after one batch instead of at the end.
"""

from __future__ import annotations

import resource
from pathlib import Path

from .errors import WindowTooLargeError

#: Peak resident memory of a window per byte of record values: the values as Python
#: ``bytes`` while reading, decoding buffers, then the frames. Measured on 400,000 sandbox
#: Machine Insights records (482 bytes each): peak RSS +2.4 GB = 13.3 per value byte, for
#: 0.9 GB of final frames.
GROWTH = 14.0
#: Address space per resident byte at that peak (allocator arenas, thread stacks): VmSize
#: grew 3.7 GB where RSS grew 2.4 GB. RLIMIT_AS counts address space.
ADDRESS_SPACE_PER_RESIDENT = 1.5
#: Per record besides its value: the bytes object, key, offset and timestamp ints, list slots.
PER_RECORD = 200


def available_bytes() -> int:
    """The smallest of MemAvailable, cgroup memory.max − usage and RLIMIT_AS − address space."""
    limits = [_mem_available(), _cgroup_room(), _rlimit_room()]
    return min(x for x in limits if x is not None) if any(
        x is not None for x in limits) else 1 << 62


def default_max_bytes() -> int:
    return available_bytes() // 2


def estimate(planned: int, sample_records: int, sample_bytes: int) -> int:
    """Peak bytes of a window of ``planned`` records, from a sample of records read."""
    per = (sample_bytes / sample_records) if sample_records else 0.0
    return int(planned * (per * GROWTH + PER_RECORD))


def check(topic: str, planned: int, sample_records: int, sample_bytes: int,
          limit: int) -> None:
    need = estimate(planned, sample_records, sample_bytes)
    if need > limit:
        raise WindowTooLargeError(
            f"the window would take about {_gb(need)} of memory ({planned:,} records at "
            f"~{sample_bytes // max(1, sample_records):,} bytes each), more than its limit "
            f"of {_gb(limit)} (max_bytes; by default half the memory available). Ways out: a "
            "shorter window, machines=, the archive (history()), or Spark; or pass a larger "
            "max_bytes=", estimate_bytes=need, limit_bytes=limit, records=planned, topic=topic,
        )


def _gb(n: int) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


def _mem_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _cgroup_room() -> int | None:
    try:
        rel = Path("/proc/self/cgroup").read_text().strip().split("::")[-1]
        base = Path("/sys/fs/cgroup") / rel.lstrip("/")
        limit = (base / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int((base / "memory.current").read_text())
    except (OSError, ValueError):
        return None


def _rlimit_room() -> int | None:
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                room = soft - int(line.split()[1]) * 1024
                return int(room / ADDRESS_SPACE_PER_RESIDENT)
    except OSError:
        return None
    return None
