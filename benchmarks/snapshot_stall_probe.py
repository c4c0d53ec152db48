"""Where the stalls come from while a snapshot is written:
`python -m benchmarks.snapshot_stall_probe N [rounds]`.

Builds the scale bench's synthetic index of N documents once (benchmarks/scale_search_bench.py's
Corpus, with semantic expansion, no approximate vector index) and keeps its snapshot under
/tmp/snapshot-stall-probe-N; later runs load it. Each round then writes a snapshot while one
thread puts documents one at a time and another searches (default path), as the scale bench
does, and a fourth thread sleeps 0.5 ms at a time and notes how late it wakes (how long it
waited for the interpreter lock). Printed per round: the longest search and write, the
longest wait of the sleeper, the snapshot's steps (time to make each section's value, time to
write it) and, for the longest stalls, which snapshot step ran meanwhile.
PROBE_MODES=as-is,interval alternates rounds with the interpreter's switch interval at its
default and at 1 ms. PROBE_ANN=1 builds the faiss IVF index after loading and saves it at
every snapshot.

Each round first runs the same threads for PROBE_BASELINE_S (3 s) with no snapshot: the
stalls the machine makes by itself in the same run, printed as "[no snapshot]".

Last session, at 1M (load 8): longest search 287-351 ms, write 200-240 ms, view frozen in
65 ms; the waits came from sharing the GIL with the snapshot's Python work on the keyword
metadata (terms and suggestion table as JSON, every posting list decoded or counted). This
session (posting lists read from recorded sizes, terms and suggestion table as arrays and
text, every long loop paced by snapshot.Pacer, lengths and concept weights not copied under
the write lock), 1M documents at load 2.4-2.6: longest search 91-98 ms against 39-41 ms with no
snapshot in the same run, longest write 228-232 ms (the freeze, 282 ms that run; other writes
113-168 ms) against 37-41 ms; a later run after the freeze stopped copying lengths and concept
weights: freeze 65 ms, longest write 135-203 ms against 18-67 ms (its searches stalled 0.4-1.4 s
with no snapshot at all while the writing thread ran 6x faster than in the earlier runs; not
explained). At 200k (load 5): searches 52-55 ms, writes 60-83 ms while the snapshot ran, the
same as with no snapshot (64-139 / 26-59 ms); before this session's changes in the same
conditions 94-141 / 127-147 ms.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks import scale_search_bench as bench
from search_service import snapshot as snap_module
from search_service.durable_index import DurableIndex
from search_service.engine import EngineParams, SearchIndex
from search_service.gc_control import collector_paused
from search_service.semantic import ConceptSpace
from search_service.vector_index import AnnParams

PARAMS = EngineParams(ann=AnnParams(threshold=1 << 62))
WRITES = 20_000
# Each round first runs its threads this long with no snapshot (PROBE_BASELINE_S).
BASELINE_S = float(os.environ.get("PROBE_BASELINE_S", "3"))
_CURRENT: list[Any] = []  # the round's Timeline, for the timed freeze parts


class Timeline:
    def __init__(self) -> None:
        self.steps: list[tuple[str, float, float]] = []  # (what, start, end)
        self.late: list[tuple[float, float]] = []  # (woke at, how late)


def _instrument(timeline: Timeline) -> Any:
    original = snap_module._write_section

    def write_section(f: Any, name: str, value: Any) -> None:
        if callable(value):
            t = time.perf_counter()
            value = value()
            timeline.steps.append((f"make {name}", t, time.perf_counter()))
        t = time.perf_counter()
        original(f, name, value)
        timeline.steps.append((f"write {name}", t, time.perf_counter()))

    snap_module._write_section = write_section
    return original


def _open(n: int) -> tuple[DurableIndex, Any, Any, list[str], bench.Corpus]:
    names, embeddings, client, server = bench._label_embeddings()
    corpus = bench.Corpus()
    work = Path(f"/tmp/snapshot-stall-probe-{n}")
    if not (work / "index.snap").exists():
        shutil.rmtree(work, ignore_errors=True)
        index = SearchIndex(PARAMS)
        index.attach_semantic(ConceptSpace(names, embeddings), client.embed)
        with collector_paused():
            for start in range(0, n, bench.BATCH):
                index.extend(corpus.batch(start, min(bench.BATCH, n - start)))
        durable = DurableIndex.open(work, PARAMS, snapshot_every=1 << 62)
        durable._index = index
        durable._unsaved = 1
        durable.close()
        corpus = bench.Corpus()
    else:
        for start in range(0, n, bench.BATCH):  # the same random stream as the build
            corpus.batch(start, min(bench.BATCH, n - start))
    t = time.perf_counter()
    durable = DurableIndex.open(
        work, PARAMS, snapshot_every=1 << 62, snapshot_interval_s=float("inf")
    )
    durable.attach_semantic(names, embeddings, client.embed)
    print(f"opened {len(durable):,} documents in {time.perf_counter() - t:.1f} s", flush=True)
    if os.environ.get("PROBE_ANN") == "1":  # with faiss IVF, saved at every snapshot
        t = time.perf_counter()
        durable._index.vectors.build_ann()
        print(f"approximate vector index built in {time.perf_counter() - t:.0f} s", flush=True)
    queries = corpus.queries(bench.QUERIES)
    for q in queries:
        durable._index.query_embedding(q)
    return durable, client, server, queries, corpus


def _time_freeze(durable: DurableIndex, timeline: Timeline) -> None:
    """Time the parts of the frozen view (each part's frozen_state), as steps."""
    index = durable._index
    parts = {
        "freeze documents": (index._docs, "frozen_columns"),
        "freeze keywords": (index.keywords, "frozen_state"),
        "freeze vectors": (index.vectors, "frozen_state"),
        "freeze concepts": (index.concepts, "frozen_state"),
        "save the approximate vector index": (index.vectors, "save_ann"),
    }
    for what, (obj, name) in parts.items():
        if obj is None or name in vars(obj):
            continue
        method = getattr(obj, name)

        def timed(*args: Any, _m: Any = method, _w: str = what) -> Any:
            t = time.perf_counter()
            out = _m(*args)
            _CURRENT[-1].steps.append((_w, t, time.perf_counter()))
            return out

        setattr(obj, name, timed)


def round_(
    durable: DurableIndex, queries: list[str], writes: list[Any], mode: str, baseline_s: float = 0
) -> None:
    """mode (PROBE_MODES, comma-separated, alternated by round): "as-is", or "interval" (the
    interpreter's switch interval at 1 ms instead of 5 while the snapshot is written).
    baseline_s: no snapshot, the writing, searching and sleeping threads run this long alone
    (the stalls the machine's load makes by itself, in the same run)."""
    timeline = Timeline()
    t0 = time.perf_counter()
    _CURRENT.append(timeline)
    original = _instrument(timeline)
    _time_freeze(durable, timeline)
    done = threading.Event()
    searches: list[tuple[float, float]] = []
    puts: list[tuple[float, float]] = []

    def snap() -> None:
        if baseline_s:  # the same threads with no snapshot: the machine's own stalls
            done.wait(baseline_s)
            timeline.steps.append(("no snapshot", t0, time.perf_counter()))
            done.set()
            return
        durable._index.vectors.ann_saved = None  # saved again (PROBE_ANN=1)
        t = time.perf_counter()
        durable._unsaved = max(durable._unsaved, 1)
        interval = sys.getswitchinterval()
        if mode == "interval":
            sys.setswitchinterval(0.001)
        try:
            durable.snapshot()
        finally:
            sys.setswitchinterval(interval)
        timeline.steps.append(("whole snapshot", t, time.perf_counter()))
        done.set()

    def write() -> None:
        for doc in writes:
            if done.is_set():
                return
            t = time.perf_counter()
            durable.put(doc)
            puts.append((t, time.perf_counter()))

    def sleeper() -> None:
        while not done.is_set():
            t = time.perf_counter()
            time.sleep(0.0005)
            woke = time.perf_counter()
            timeline.late.append((woke, woke - t - 0.0005))

    threads = [threading.Thread(target=f) for f in (snap, write, sleeper)]
    cpu = time.process_time()
    for th in threads:
        th.start()
    i = 0
    while not done.is_set():
        t = time.perf_counter()
        durable.search(queries[i % len(queries)], limit=bench.TOP)
        searches.append((t, time.perf_counter()))
        i += 1
    for th in threads:
        th.join()
    snap_module._write_section = original
    cpu = time.process_time() - cpu

    def longest(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
        return sorted(spans, key=lambda s: s[0] - s[1])[:3]

    whole = timeline.steps[-1][2] - timeline.steps[-1][1]
    if baseline_s:
        print(
            f"[no snapshot] {whole:.2f} s (process CPU {cpu:.1f} s); {len(searches)} searches, "
            "longest "
            + ", ".join(f"{(b - a) * 1000:.0f}" for a, b in longest(searches))
            + f" ms; {len(puts)} writes, longest "
            + ", ".join(f"{(b - a) * 1000:.0f}" for a, b in longest(puts))
            + " ms; sleeper's longest waits "
            + ", ".join(
                f"{w * 1000:.0f}" for _, w in sorted(timeline.late, key=lambda x: -x[1])[:5]
            )
            + f" ms; load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        return
    print(
        f"[{mode}] snapshot {whole:.2f} s (process CPU {cpu:.1f} s, freeze "
        f"{durable.longest_freeze_s * 1000:.0f} ms); {len(searches)} searches, longest "
        + ", ".join(f"{(b - a) * 1000:.0f}" for a, b in longest(searches))
        + f" ms; {len(puts)} writes, longest "
        + ", ".join(f"{(b - a) * 1000:.0f}" for a, b in longest(puts))
        + " ms; sleeper's longest waits "
        + ", ".join(f"{w * 1000:.0f}" for _, w in sorted(timeline.late, key=lambda x: -x[1])[:5])
        + f" ms; load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    start = timeline.steps[-1][1]
    for what, a, b in timeline.steps[:-1]:
        if b - a > 0.01:
            print(f"    {what:40} {(a - start) * 1000:7.0f} +{(b - a) * 1000:6.0f} ms")
    for kind, spans in (("search", searches), ("write", puts)):
        for a, b in longest(spans):
            during = [w for w, s, e in timeline.steps[:-1] if s < b and e > a]
            waits = [w for t, w in timeline.late if a <= t <= b and w > 0.01]
            print(
                f"    {kind} at {(a - start) * 1000:.0f} ms took {(b - a) * 1000:.0f} ms; "
                f"sleeper waits in it {[round(w * 1000) for w in waits][:6]} ms; during "
                f"{during[:4]}"
            )


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    durable, client, server, queries, corpus = _open(n)
    extra = corpus.batch(n, WRITES * rounds)
    modes = os.environ.get("PROBE_MODES", "as-is").split(",")
    for r in range(rounds):
        part = extra[r * WRITES : (r + 1) * WRITES]
        round_(durable, queries, part[: WRITES // 2], "as-is", baseline_s=BASELINE_S)
        round_(durable, queries, part[WRITES // 2 :], modes[r % len(modes)])
    durable._unsaved = 0
    durable.close()
    client.close()
    server.stop(grace=None)


if __name__ == "__main__":
    main()
