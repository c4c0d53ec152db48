"""Searches and writes while the index compacts in the background, at scale:
`python -m benchmarks.compaction_probe N`.

Opens the scale bench's synthetic index of N documents (benchmarks/snapshot_stall_probe.py's
snapshot under /tmp/snapshot-stall-probe-N, or else one built the same way and kept under
/tmp/compaction-probe-built-N; copied to /tmp/compaction-probe-N so the two probes can run side
by side, each directory being locked by the process that serves it). Then, with a thread
re-putting documents one at a time (each a changed image: one more dead document number) and
the main thread searching (default path):

1. "no compaction": COMPACTION_PROBE_BASELINE_S (10 s) of that alone;
2. images are removed, one at a time, until the index finds compaction due (dead document
   numbers over 30%, engine.SearchIndex.needs_compaction) and starts it in its background
   thread; the same writer and searches then run until the compaction ends.

Printed per phase: searches p50 / p99 / longest, writes per second; for the compaction its
wall time, and the process's resident memory before it, at its peak (sampled every 20 ms) and
after it. The load average is printed so a figure can be read with the machine's state.
Nothing is written back: the copied directory is deleted at the end.

The memory guard (compaction_memory): when it runs at the compaction's start the probe prints
its sentence beside VmRSS and RssAnon, and at the end its estimate against the peak growth of
RssAnon and VmRSS since then (sampled every 20 ms) and against the estimate before
(VmRSS x live / numbered). COMPACTION_PROBE_COLD=1 opens the index as after a restart: no
warm-up, no searches before the removals, and the snapshot dropped from the page cache once
open (posix_fadvise), so its mapped pages are neither resident nor cached.

Runs with the guard's figures (2 cores, load 2.4-4.8; estimates at factor 1, see
compaction_memory._COMPACT_MEMORY_FACTOR): 100k warm: RssAnon 846 MB + 165 MB mapped, 71,229
live of 101,757, estimate 708 MB (VmRSS x live / numbered: 806 MB), peak growth RssAnon
+488 MB, VmRSS +488 MB. 100k cold: 717 + 165 MB (33 MB of it resident), 69,999 of 100,000,
617 MB (before: 621 MB), RssAnon +502 MB, VmRSS +601 MB. 300k cold: 1076 + 494 MB, 209,999 of
300,000, 1099 MB (before: 918 MB), RssAnon +981 MB, VmRSS +1276 MB; compaction 97.5 s. That
run built its index first in the same process (RssAnon 656 MB before the open, 365-370 MB
otherwise): a run on the kept index would be cleaner.

First run, 1M documents (2 cores, other benchmarks and tests running: load 2-4 before, 6-8
during): opened in 6.7 s (3.6 GB resident); with no compaction searches p50 8.4 / p99 32.7 ms,
longest 47 ms, 101 writes/s. Removing 299,295 images made compaction due (56 s); it ran 374.5 s
in the background while searches went on at p50 16.0 / p99 97.1 ms, longest 552 ms, 49
writes/s; resident memory 4.0 GB before, 6.7 GB at the peak (+2.7 GB: the fresh index of the
700k live documents is built beside the old one), 4.6 GB after. (The writer's re-puts in that
run all fell on removed images, so they were new documents and left no dead numbers.)
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks import scale_search_bench as bench
from benchmarks import snapshot_stall_probe as stall
from search_service import durable_index as durable_module
from search_service.compaction_memory import CompactionMemory
from search_service.dir_lock import LOCK_NAME
from search_service.durable_index import SNAPSHOT_NAME, DurableIndex
from search_service.engine import SearchIndex
from search_service.gc_control import collector_paused
from search_service.semantic import ConceptSpace

BASELINE_S = float(os.environ.get("COMPACTION_PROBE_BASELINE_S", "10"))
# A safety stop: the compaction phase ends after this long even if the compaction has not.
LIMIT_S = float(os.environ.get("COMPACTION_PROBE_LIMIT_S", "1800"))
# 1: the index as right after a restart: no warm-up, no searches before the compaction, and
# the snapshot's pages dropped from the page cache once it is open (posix_fadvise DONTNEED:
# pages this process has not touched are then neither resident in it nor cached).
COLD = os.environ.get("COMPACTION_PROBE_COLD", "0") == "1"


def _status_mb(*names: str) -> tuple[float, ...]:
    """Fields of /proc/self/status (VmRSS, RssAnon, RssFile), MB."""
    found = dict.fromkeys(names, 0.0)
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in found:
                found[key] = int(value.split()[0]) / 1024
    return tuple(found[n] for n in names)


def _rss_mb() -> float:
    return _status_mb("VmRSS")[0]


def _memory() -> str:
    rss, anon, file = _status_mb("VmRSS", "RssAnon", "RssFile")
    return f"VmRSS {rss:.0f} MB (RssAnon {anon:.0f}, RssFile {file:.0f})"


def _drop_cached(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _summary(latencies: list[float]) -> str:
    if not latencies:
        return "no searches"
    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return (
        f"{len(ms)} searches, p50 {statistics.median(ms):.1f} ms, p99 {p99:.1f} ms, "
        f"longest {ms[-1]:.0f} ms"
    )


def _copy_index(n: int) -> Path:
    """A private copy of the stall probe's index of n documents; built (and kept for later
    runs) under /tmp/compaction-probe-built-N when that probe has none."""
    source = Path(f"/tmp/snapshot-stall-probe-{n}")
    if not (source / "index.snap").exists():
        source = Path(f"/tmp/compaction-probe-built-{n}")
    if not (source / "index.snap").exists():
        print(f"building the index of {n:,} documents in {source} (minutes at 1M)", flush=True)
        shutil.rmtree(source, ignore_errors=True)
        names, embeddings, client, server = bench._label_embeddings()
        index = SearchIndex(stall.PARAMS)
        index.attach_semantic(ConceptSpace(names, embeddings), client.embed)
        corpus = bench.Corpus()
        with collector_paused():
            for start in range(0, n, bench.BATCH):
                index.extend(corpus.batch(start, min(bench.BATCH, n - start)))
                if (start // bench.BATCH) % 100 == 0:
                    print(f"  {start:,} documents", flush=True)
        durable = DurableIndex.open(source, stall.PARAMS, snapshot_every=1 << 62)
        durable._index = index
        durable._unsaved = 1
        durable.close()
        client.close()
        server.stop(grace=None)
    work = Path(f"/tmp/compaction-probe-{n}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    for path in source.iterdir():
        if path.is_file() and path.name != LOCK_NAME:
            shutil.copy2(path, work / path.name)
    return work


def _watch_the_guard() -> list[tuple[CompactionMemory | None, float, float]]:
    """The memory guard's figures each time it runs (durable_index's compaction_memory,
    wrapped), with VmRSS and RssAnon (MB) read just before."""
    seen: list[tuple[CompactionMemory | None, float, float]] = []
    guard = durable_module.compaction_memory

    def watched(*args: Any, **kwargs: Any) -> CompactionMemory | None:
        rss, anon = _status_mb("VmRSS", "RssAnon")
        memory = guard(*args, **kwargs)
        seen.append((memory, rss, anon))
        print(
            f"  the memory guard at the compaction's start: VmRSS {rss:.0f} MB, RssAnon "
            f"{anon:.0f} MB; "
            + (memory.describe() if memory is not None else "nothing to read (no /proc)"),
            flush=True,
        )
        return memory

    durable_module.compaction_memory = watched  # type: ignore[assignment]
    return seen


def run(n: int) -> None:
    work = _copy_index(n)
    names, embeddings, client, server = bench._label_embeddings()
    print(f"before opening the index: {_memory()}", flush=True)
    t = time.perf_counter()
    durable = DurableIndex.open(
        work, stall.PARAMS, snapshot_every=1 << 62, snapshot_interval_s=float("inf")
    )
    durable.attach_semantic(names, embeddings, client.embed)
    if COLD:
        _drop_cached(work / SNAPSHOT_NAME)
    else:
        durable.warm()
    corpus = bench.Corpus()
    queries = corpus.queries(bench.QUERIES)
    for q in queries:
        durable._index.query_embedding(q)
    live = len(durable)
    print(
        f"opened {live:,} documents in {time.perf_counter() - t:.1f} s "
        f"({'cold: not warmed, snapshot dropped from the page cache' if COLD else 'warmed'}); "
        f"{_memory()}; snapshot {(work / SNAPSHOT_NAME).stat().st_size / 2**20:.0f} MB",
        flush=True,
    )
    guarded = _watch_the_guard()
    # Re-puts: image k again with another document's contents (a changed, re-analysed image).
    fresh = stall._docs(corpus, n, 20_000)
    reputs = [stall._as_image(d, k * 7 % live) for k, d in enumerate(fresh)]
    ids = [f"img-{k:08d}" for k in range(live)]

    def phase(name: str, until: threading.Event, limit_s: float) -> tuple[float, int]:
        searches: list[float] = []
        writes = [0]
        stop = threading.Event()

        def writer() -> None:
            at = writes[0]
            while not stop.is_set():
                durable.put(reputs[at % len(reputs)])
                at += 1
                writes[0] += 1

        th = threading.Thread(target=writer, name="writer")
        started = time.perf_counter()
        th.start()
        i = 0
        while not until.is_set() and time.perf_counter() - started < limit_s:
            s = time.perf_counter()
            durable.search(queries[i % len(queries)], limit=bench.TOP)
            searches.append(time.perf_counter() - s)
            i += 1
        stop.set()
        th.join()
        took = time.perf_counter() - started
        print(
            f"  {name}: {took:.1f} s, {_summary(searches)}, writes {writes[0] / took:.0f}/s "
            f"(load {_load()})",
            flush=True,
        )
        return took, writes[0]

    if not COLD:
        phase("no compaction", threading.Event(), BASELINE_S)

    rss_before = _rss_mb()
    t = time.perf_counter()
    removed = 0
    while not durable._compacting and removed < live:
        durable.remove(ids[removed])  # False for an image not there: counts the same
        removed += 1
        if removed % 50_000 == 0:
            print(f"  removed {removed:,} images", flush=True)
    if not durable._compacting:
        print("compaction never became due", flush=True)
        return
    print(
        f"  compaction due after removing {removed:,} images ({time.perf_counter() - t:.1f} s); "
        f"{len(durable):,} live",
        flush=True,
    )
    ended = threading.Event()
    peak = [rss_before]
    # VmRSS and RssAnon at their highest since the guard ran (the compaction's start).
    peaks = [0.0, 0.0]

    def watch() -> None:
        started = time.perf_counter()
        while True:
            rss, anon = _status_mb("VmRSS", "RssAnon")
            peak[0] = max(peak[0], rss)
            peaks[0], peaks[1] = max(peaks[0], rss), max(peaks[1], anon)
            if durable.wait_for_compaction(0.02):
                print(
                    f"  compaction ended after {time.perf_counter() - started:.1f} s "
                    f"(compactions {durable.compactions}, failures {durable.compaction_failures})",
                    flush=True,
                )
                ended.set()
                return

    watcher = threading.Thread(target=watch, name="watch")
    watcher.start()
    phase("during the compaction", ended, LIMIT_S)
    watcher.join()
    print(
        f"  resident memory: {rss_before:.0f} MB before, peak {peak[0]:.0f} MB during "
        f"(+{peak[0] - rss_before:.0f}), {_rss_mb():.0f} MB after; dead numbers left "
        f"{durable._index.numbered - len(durable):,}",
        flush=True,
    )
    for memory, rss, anon in guarded[:1]:  # the compaction's own guard
        if memory is None:
            print("  the guard read nothing (no /proc)", flush=True)
            continue
        share = memory.live / memory.numbered
        print(
            f"  at the compaction's start: VmRSS {rss:.0f} MB, RssAnon {anon:.0f} MB, "
            f"{memory.mapped_bytes / 2**20:.0f} MB mapped from the snapshot; "
            f"{memory.live:,} live / {memory.numbered:,} numbered\n"
            f"  the guard's estimate {memory.needed_bytes / 2**20:.0f} MB "
            f"(VmRSS x live / numbered, the estimate before: {rss * share:.0f} MB); "
            f"measured peak growth: RssAnon +{peaks[1] - anon:.0f} MB, "
            f"VmRSS +{peaks[0] - rss:.0f} MB",
            flush=True,
        )
    phase("after the compaction", threading.Event(), BASELINE_S)
    durable._unsaved = 0
    durable.close()
    client.close()
    server.stop(grace=None)
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    run(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)


if __name__ == "__main__":
    main()
