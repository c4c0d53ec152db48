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

from benchmarks import scale_search_bench as bench
from benchmarks import snapshot_stall_probe as stall
from search_service.dir_lock import LOCK_NAME
from search_service.durable_index import DurableIndex
from search_service.engine import SearchIndex
from search_service.gc_control import collector_paused
from search_service.semantic import ConceptSpace

BASELINE_S = float(os.environ.get("COMPACTION_PROBE_BASELINE_S", "10"))
# A safety stop: the compaction phase ends after this long even if the compaction has not.
LIMIT_S = float(os.environ.get("COMPACTION_PROBE_LIMIT_S", "1800"))


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


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


def run(n: int) -> None:
    work = _copy_index(n)
    names, embeddings, client, server = bench._label_embeddings()
    t = time.perf_counter()
    durable = DurableIndex.open(
        work, stall.PARAMS, snapshot_every=1 << 62, snapshot_interval_s=float("inf")
    )
    durable.attach_semantic(names, embeddings, client.embed)
    durable.warm()
    corpus = bench.Corpus()
    queries = corpus.queries(bench.QUERIES)
    for q in queries:
        durable._index.query_embedding(q)
    live = len(durable)
    print(
        f"opened {live:,} documents in {time.perf_counter() - t:.1f} s; "
        f"{_rss_mb():.0f} MB resident",
        flush=True,
    )
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

    def watch() -> None:
        started = time.perf_counter()
        while True:
            peak[0] = max(peak[0], _rss_mb())
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
