"""The search compaction's memory guard: what a compaction of the index would need (it builds
the fresh index of the live documents beside the old one) against the memory the machine or
the process's cgroup v2 still has. Reads /proc and cgroup files through paths a test can pass
(MemoryFiles); no gRPC, no index."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# A compaction builds the fresh index of the live documents beside the old one, and the fresh
# one holds all of its data in anonymous memory (rows, chunks, posting lists), while much of a
# loaded index is mapped read-only from its snapshot file (vector rows and factors, document
# columns: snapshot.MAPPED_SECTIONS) and counts in resident memory only for the pages searches
# have touched. So the estimate is (the process's anonymous resident memory, RssAnon, + the
# whole size of what it maps from the index's snapshot, resident or not) x live / numbered
# documents x this factor. VmRSS x live / numbered, used before, counted the mapped pages only
# as far as they were paged in: right after a restart, or on an index searches touch sparsely,
# it said far too little (10M documents: ~10 GB anonymous + ~17 GB mapped; it could have said
# ~8 GB for a need of ~19 GB). RssAnon also holds what is not the index (interpreter,
# libraries, the concept space: 365-370 MB in the probe before it opened the index, its
# in-process embedding server included); it is not taken off, so the estimate errs high by
# that much x live / numbered, which shows on a small index only. The need it stands for is
# the growth of anonymous memory: the old index's mapped pages the compaction reads in are
# file pages the kernel can take back (MemAvailable and the cgroup figure count them free).
# Measured with benchmarks/compaction_probe.py (2 cores, load 2.4-4.8), at the compaction's
# start and its peak, estimates at factor 1: 100k documents (70k live), warmed and searched
# 10 s: RssAnon 846 MB + 165 MB mapped, 708 MB for RssAnon +488 MB (VmRSS +488). Restarted
# cold (not warmed, the snapshot dropped from the page cache; 33 MB of the 165 MB mapped
# resident): 717 + 165 MB, 617 MB for RssAnon +502 MB (VmRSS +601). 300k (210k live), cold:
# 1076 + 494 MB, 1099 MB for RssAnon +981 MB (VmRSS +1276; VmRSS x live / numbered said
# 918 MB); that run built the index in the same process first, which left ~290 MB of freed
# heap resident (RssAnon 656 MB before the index was opened, 365-370 MB in the others): the
# estimate counted it, and the fresh index may have reused it unseen. At factor 1 every
# estimate was above the growth (1.45, 1.23, 1.12 x), but only thanks to the fixed part, which
# shrinks against the index as it grows: without it the estimate was 0.93 (warm) and 0.71 of
# the growth at 100k (cold: the searches' own memory, a fixed amount, came during the
# compaction), 0.65-0.92 at 300k (the build's leftovers counted as fixed or not). 1.25 covers
# the warm ratio and the upper 300k one with some margin, not the worst reading; at 1.25 the
# three estimates are 885 / 771 MB for +488 / +502 MB at 100k and 1.34 GB for +981 MB at 300k.
_COMPACT_MEMORY_FACTOR = 1.25
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
    maps: Path = Path("/proc/self/maps")


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
    anonymous_bytes: int  # RssAnon
    mapped_bytes: int  # the index's snapshot files mapped, resident or not
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
            f"it needs about {_size(self.needed_bytes)} (the process's "
            f"{_size(self.anonymous_bytes)} anonymous + {_size(self.mapped_bytes)} mapped from "
            f"the index's snapshot, x {self.live:,} live / {self.numbered:,} numbered documents"
            f" x {_COMPACT_MEMORY_FACTOR:g}) and {_size(self.headroom_bytes)} headroom, "
            f"{available}"
        )


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


def anonymous_bytes(files: MemoryFiles = PROC_FILES) -> int | None:
    """The process's anonymous resident memory (RssAnon in /proc/self/status), None when
    unreadable."""
    kib = _field_kib(files.status, "RssAnon")
    return None if kib is None else kib * 1024


def mapped_bytes(directory: Path, files: MemoryFiles = PROC_FILES) -> int:
    """The size of this process's memory maps of files in `directory` (the index's data dir:
    its snapshot's mapped sections), whether their pages are resident or not; 0 when the maps
    cannot be read. A map of a file deleted since (a replaced snapshot a search still reads)
    is left out: it is let go once that search ends, and the index reads the new file.

    Read from /proc/self/maps rather than summed over the index's own arrays: those are
    private to VectorIndex (its chunks of rows) and DocumentStore (its base's columns), and
    the maps follow whatever the index maps from its data dir, a section mapped later too.
    /proc/self/maps (not smaps) gives each map's range without walking its pages: a few
    thousand lines to read at 10M documents."""
    try:
        text = files.maps.read_text()
    except OSError:
        return 0
    # As the kernel names it (symbolic links resolved); os.sep after it: not a sibling
    # directory whose name starts the same.
    prefix = os.path.realpath(directory) + os.sep
    total = 0
    for line in text.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 6:
            continue  # anonymous: no path
        path = fields[5]
        if not path.startswith(prefix) or path.endswith(" (deleted)"):
            continue
        start, _, end = fields[0].partition("-")
        try:
            total += int(end, 16) - int(start, 16)
        except ValueError:
            continue
    return total


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
    live: int,
    numbered: int,
    headroom_bytes: int,
    files: MemoryFiles = PROC_FILES,
    data_dir: Path | None = None,
) -> CompactionMemory | None:
    """The memory guard's figures for compacting `live` of `numbered` documents of an index
    whose snapshot is in `data_dir` (None: an index in memory only, nothing mapped); see
    _COMPACT_MEMORY_FACTOR. None when the process's anonymous memory cannot be read."""
    anonymous = anonymous_bytes(files)
    if anonymous is None:
        return None
    mapped = 0 if data_dir is None else mapped_bytes(data_dir, files)
    needed = int((anonymous + mapped) * _COMPACT_MEMORY_FACTOR * live / max(1, numbered))
    return CompactionMemory(
        live, numbered, anonymous, mapped, needed, headroom_bytes, available_memory(files)
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
