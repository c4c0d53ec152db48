"""The search compaction's memory guard: what a compaction of the index would need (it builds
the fresh index of the live documents beside the old one) against the memory the machine or
the process's cgroup v2 still has. Reads /proc and cgroup files through paths a test can pass
(MemoryFiles); no gRPC, no index."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# A compaction builds the fresh index of the live documents beside the old one, so for a while
# the process holds both. Its estimate: the process's resident memory x live / numbered
# documents x this factor. Measured with benchmarks/compaction_probe.py at 1M documents
# (700k live): 4.0 GB resident before, 6.7 GB at the peak: +2.7 GB = 0.96 x (4.0 GB x 0.7),
# rounded up to 1. Resident memory is VmRSS (anonymous and file pages), as the probe measured
# it: much of a loaded index is mapped from its snapshot (file pages), and the fresh index holds
# the same data in anonymous memory. At 100k documents (70k live; this session, load 2) the
# estimate is 816 MB for +435 MB measured (anonymous memory): the process's fixed part
# (interpreter, libraries) weighs more in a small index, and the estimate errs high there.
_COMPACT_MEMORY_FACTOR = 1.0
# Memory left free after a compaction's estimate (the DurableIndex default; the service reads
# SEARCH_COMPACTION_MEMORY_HEADROOM_MB): a compaction that would leave less is postponed.
DEFAULT_COMPACTION_MEMORY_HEADROOM_BYTES = 512 * 2**20


@dataclass(frozen=True)
class MemoryFiles:
    """Where the compaction's memory guard reads: the real /proc and cgroup v2 files by default;
    a test passes files of its own."""

    status: Path = Path("/proc/self/status")
    meminfo: Path = Path("/proc/meminfo")
    cgroup: Path = Path("/proc/self/cgroup")
    cgroup_root: Path = Path("/sys/fs/cgroup")


# The real files, the default everywhere.
PROC_FILES = MemoryFiles()


@dataclass(frozen=True)
class AvailableMemory:
    bytes: int
    # Where the figure comes from: "MemAvailable in /proc/meminfo", or the cgroup whose limit
    # leaves less: "cgroup /x: memory.max 6.0 GB - 4.1 GB in use".
    source: str


@dataclass(frozen=True)
class CompactionMemory:
    """What a compaction of `live` of `numbered` documents would need, against what is free."""

    live: int
    numbered: int
    resident_bytes: int
    needed_bytes: int
    headroom_bytes: int
    available: AvailableMemory | None  # None: nothing to read it from (no /proc)

    @property
    def fits(self) -> bool:
        """True when the estimate and the headroom fit in what is available (or when the
        available memory cannot be read: the guard then does not stop a compaction)."""
        return (
            self.available is None
            or self.needed_bytes + self.headroom_bytes <= self.available.bytes
        )

    def describe(self) -> str:
        available = (
            f"{_size(self.available.bytes)} available ({self.available.source})"
            if self.available is not None
            else "available memory unknown"
        )
        return (
            f"it needs about {_size(self.needed_bytes)} (the process's {_size(self.resident_bytes)}"
            f" resident x {self.live:,} live / {self.numbered:,} numbered documents) and "
            f"{_size(self.headroom_bytes)} headroom, {available}"
        )


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


def resident_bytes(files: MemoryFiles = PROC_FILES) -> int | None:
    """The process's resident memory (VmRSS in /proc/self/status), None when unreadable."""
    kib = _field_kib(files.status, "VmRSS")
    return None if kib is None else kib * 1024


def available_memory(files: MemoryFiles = PROC_FILES) -> AvailableMemory | None:
    """The memory a compaction may still take: the least of the system's MemAvailable and, for
    the process's cgroup v2 and each cgroup above it with a limit, memory.max less what it
    uses (memory.current, less its inactive file pages, which the kernel reclaims first).
    None when none of these can be read."""
    found: list[AvailableMemory] = []
    kib = _field_kib(files.meminfo, "MemAvailable")
    if kib is not None:
        found.append(AvailableMemory(kib * 1024, f"MemAvailable in {files.meminfo}"))
    found.extend(_cgroup_available(files))
    return min(found, key=lambda a: a.bytes) if found else None


def compaction_memory(
    live: int, numbered: int, headroom_bytes: int, files: MemoryFiles = PROC_FILES
) -> CompactionMemory | None:
    """The memory guard's figures for compacting `live` of `numbered` documents (see
    _COMPACT_MEMORY_FACTOR); None when the process's resident memory cannot be read."""
    resident = resident_bytes(files)
    if resident is None:
        return None
    needed = int(resident * _COMPACT_MEMORY_FACTOR * live / max(1, numbered))
    return CompactionMemory(
        live, numbered, resident, needed, headroom_bytes, available_memory(files)
    )


def _field_kib(path: Path, name: str) -> int | None:
    """The value of a "<name>: <n> kB" line of a /proc file, None when missing."""
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == name:
            try:
                return int(value.split()[0])
            except (IndexError, ValueError):
                return None
    return None


def _cgroup_available(files: MemoryFiles) -> list[AvailableMemory]:
    """For the process's cgroup v2 (the "0::<path>" line of /proc/self/cgroup) and each one
    above it: memory.max less the memory in use, where memory.max is a number ("max": no
    limit; the root cgroup has no such file)."""
    try:
        lines = files.cgroup.read_text().splitlines()
    except OSError:
        return []
    path = next((line[3:] for line in lines if line.startswith("0::")), None)
    if path is None:
        return []
    found = []
    parts = [p for p in path.strip().split("/") if p]
    for depth in range(len(parts), -1, -1):
        relative = "/".join(parts[:depth])
        directory = files.cgroup_root / relative if relative else files.cgroup_root
        try:
            limit_text = (directory / "memory.max").read_text().strip()
            if limit_text == "max":
                continue
            limit = int(limit_text)
            current = int((directory / "memory.current").read_text().strip())
        except (OSError, ValueError):
            continue
        inactive_file = 0
        try:
            for line in (directory / "memory.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "inactive_file":
                    inactive_file = int(value)
        except (OSError, ValueError):
            pass
        in_use = max(0, current - inactive_file)
        found.append(
            AvailableMemory(
                max(0, limit - in_use),
                f"cgroup /{relative}: memory.max {_size(limit)} - {_size(in_use)} in use",
            )
        )
    return found
