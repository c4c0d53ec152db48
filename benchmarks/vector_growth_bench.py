"""The write that grows the int8 vector rows: `python -m benchmarks.vector_growth_bench N`.

Fills a VectorIndex (1280-d, no approximate index) with N vectors a batch at a time, then
times single writes as the durable index makes them (reserve room before its search lock, then
add) across the next `WRITES` documents, and prints the longest and median write (wall and
this thread's CPU) and where the longest fell. With rows in one array (before chunks) the
write that doubles it copies every row; run this against an older checkout of search_service
(PYTHONPATH) for the figure before. With 10k batches that array holds 10k x 2^k rows
(320000, 1280000), so the first write past such an N is the one that doubles it.

`python -m benchmarks.vector_growth_bench --mapped N [N ...]`: memory of the vector rows
in anonymous memory or mapped from the snapshot file. Builds N synthetic documents of the scale
bench (benchmarks/scale_search_bench.py: labels, text, 1280-d vectors; no concept space) with
their faiss index, prints RssAnon/RssFile (/proc/self/status) of the build and where its bytes
go per document, writes the snapshot as the durable index does, then restarts from it in three
fresh processes: the vector rows (and since the document store maps its columns, those
too) read into memory (snapshot.MAPPED_SECTIONS off, as before),
mapped from the file (MADV_RANDOM, the default), and mapped with the kernel's default
read-around (MADV_NORMAL). Each prints its restart time, RssAnon/RssFile growth, and similar-image
p50 with the file's pages in the page cache (warm) and evicted before each query (cold:
madvise(MADV_DONTNEED) on the mappings, then posix_fadvise(POSIX_FADV_DONTNEED) on the file),
and one exact scan of every row, warm and evicted.
"""

from __future__ import annotations

import gc
import mmap
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from search_service import snapshot, vector_index
from search_service.snapshot import mapping_of
from search_service.vector_index import AnnParams, VectorIndex

DIM = 1280
BATCH = 10_000
WRITES = 20_000


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run(n: int) -> None:
    rng = np.random.default_rng(7)
    pool = rng.standard_normal((BATCH, DIM)).astype(np.float32)
    vectors = VectorIndex(DIM, AnnParams(threshold=1 << 62))
    started = time.perf_counter()
    for start in range(0, n, BATCH):
        count = min(BATCH, n - start)
        vectors.add_many(start, list(pool[:count]))
    fill_s = time.perf_counter() - started
    walls, cpus = [], []
    for i in range(WRITES):
        v = pool[i % BATCH]
        t, c = time.perf_counter(), time.thread_time()
        vectors.reserve(1)
        vectors.add(n + i, v)
        cpus.append(time.thread_time() - c)
        walls.append(time.perf_counter() - t)
    worst = int(np.argmax(walls))
    load = os.getloadavg()
    print(
        f"{n:,} vectors (filled in {fill_s:.1f} s), then {WRITES:,} single writes: longest "
        f"{walls[worst] * 1000:.1f} ms wall / {cpus[worst] * 1000:.1f} ms CPU (write "
        f"{worst + 1}), median {np.median(walls) * 1e6:.0f} us; longest CPU "
        f"{max(cpus) * 1000:.1f} ms; resident {_rss_mb():,.0f} MB; load "
        f"{load[0]:.1f} {load[1]:.1f}",
        flush=True,
    )


def status_mb() -> dict[str, float]:
    """RssAnon and RssFile of this process, MB."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key = line.split(":")[0]
            if key in ("RssAnon", "RssFile"):
                out[key] = int(line.split()[1]) / 1024
    return out


def _deep_bytes(root: Any, seen: set[int]) -> tuple[int, int]:
    """(anonymous, mapped) bytes reachable from `root` not yet in `seen`: numpy arrays by the
    memory they own (views count their base once), other objects by sys.getsizeof."""
    anon = mapped = 0
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, type):
            continue
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            if obj.base is None:
                anon += obj.nbytes
            elif mapping_of(obj) is not None:
                mapped += obj.nbytes if id(mapping_of(obj)) not in seen else 0
                seen.add(id(mapping_of(obj)))
            else:
                base = obj.base
                stack.append(base.obj if isinstance(base, memoryview) else base)
            continue
        if isinstance(obj, mmap.mmap):  # an anonymous one (chunks in memory)
            anon += len(obj)
            continue
        anon += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return anon, mapped


def _breakdown(index: Any, n: int) -> str:
    """Bytes per document of the index's parts (reachable objects, each counted once)."""
    seen: set[int] = set()
    vectors = index.vectors
    rows = (vectors._vectors, vectors._factors)
    parts = {
        "vector rows + factors": rows,
        "vector per-document/row arrays": (
            vectors._row_of,
            vectors._row_doc,
            vectors._row_live,
        ),
        "doc store (DocumentStore)": index._docs,
        "keyword index (InvertedIndex)": index.keywords,
        "id -> number dict": index._ids,
        "the rest of SearchIndex": index,
    }
    out = []
    for name, obj in parts.items():
        if name == "the rest of SearchIndex":
            seen.add(id(vectors))  # its parts are counted above; faiss below
            seen.add(id(vectors._ann))
        anon, mapped = _deep_bytes(obj, seen)
        out.append(
            f"{name} {anon / n:,.0f} B" + (f" (+{mapped / n:,.0f} B mapped)" if mapped else "")
        )
    ann = vectors._ann
    if ann is not None:
        out.append(f"faiss (its serialised size) {len(ann.to_bytes()) / n:,.0f} B")
    return "; ".join(out)


def _attributes(obj: Any, n: int, seen: set[int], depth: int = 2, top: int = 8) -> str:
    """Bytes per document of `obj`'s attributes (and of the parts of those over 40 B, to
    `depth`), largest first."""
    items: list[tuple[str, Any]] = []
    if isinstance(obj, dict):
        items = [(str(k), v) for k, v in obj.items()]
    elif hasattr(obj, "__dict__"):
        items = list(vars(obj).items())
    sized = []
    for name, value in items:
        inner = _attributes(value, n, set(seen), depth - 1, 4) if depth > 1 else ""
        anon, mapped = _deep_bytes(value, seen)
        if anon + mapped:
            sized.append((anon + mapped, name, inner))
    sized.sort(reverse=True)
    out = []
    for size, name, inner in sized[:top]:
        per = size / n
        out.append(f"{name} {per:,.0f}" + (f" [{inner}]" if inner and per > 40 else ""))
    return ", ".join(out)


def _similar_queries(index: Any, count: int) -> list[Any]:
    rng = np.random.default_rng(11)
    docs = rng.integers(0, len(index._docs), count)
    out = []
    for d in docs.tolist():
        v = index.vectors.vector(int(d))
        if v is not None:
            out.append(v + 0.3 * rng.standard_normal(v.size).astype(np.float32) / 36)
    return out


def mapped_build(n: int) -> None:
    """Build n documents, snapshot them, restart twice in fresh processes (see above)."""
    from benchmarks.scale_search_bench import BATCH, Corpus
    from search_service.durable_index import DurableIndex
    from search_service.engine import EngineParams, SearchIndex
    from search_service.gc_control import collector_paused

    load = os.getloadavg()
    print(f"\n-- vectors mapped from the snapshot: {n:,} documents (load {load[0]:.1f}) --")
    work = Path(tempfile.mkdtemp(prefix="vector-mmap-"))
    params = EngineParams(ann=AnnParams(threshold=1 << 62))
    gc.collect()
    base = status_mb()
    corpus = Corpus()
    index = SearchIndex(params)
    started = time.perf_counter()
    with collector_paused():
        for start in range(0, n, BATCH):
            index.put_many(corpus.batch(start, min(BATCH, n - start)))
    build_s = time.perf_counter() - started
    t = time.perf_counter()
    index.vectors.build_ann()
    ann_s = time.perf_counter() - t
    gc.collect()
    built = status_mb()
    anon = built["RssAnon"] - base["RssAnon"]
    print(
        f"built in {build_s:.0f} s (+ faiss {ann_s:.0f} s): RssAnon +{anon:,.0f} MB "
        f"({anon * 2**20 / n:,.0f} B/document with faiss), "
        f"RssFile +{built['RssFile'] - base['RssFile']:,.0f} MB",
        flush=True,
    )
    print("per document:", _breakdown(index, n), flush=True)
    durable = DurableIndex.open(work, EngineParams(ann=AnnParams(threshold=20_000)))
    durable._index = index
    durable._unsaved = 1
    t = time.perf_counter()
    durable.close()  # snapshot + the faiss index saved apart, as at shutdown
    size = (work / "index.snap").stat().st_size / 2**20
    print(f"snapshot {size:,.0f} MB written in {time.perf_counter() - t:.1f} s", flush=True)
    del durable, index
    gc.collect()
    for mode in ("copied", "mapped", "mapped-normal"):
        subprocess.run(
            [sys.executable, "-m", "benchmarks.vector_growth_bench", "--restart", str(work), mode],
            check=True,
        )


def _mappings(index: Any) -> list[mmap.mmap]:
    maps = {}
    for rows in (index.vectors._vectors, index.vectors._factors):
        for c in rows.chunks:
            m = mapping_of(c)
            if m is not None:
                maps[id(m)] = m
    return list(maps.values())


def _evict(index: Any, path: Path) -> None:
    for m in _mappings(index):
        m.madvise(mmap.MADV_DONTNEED)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _cached_mb(path: Path) -> str:
    try:
        out = subprocess.run(
            ["fincore", "-b", "-n", "-o", "RES", str(path)], capture_output=True, text=True
        )
        return f"{int(out.stdout.split()[0]) / 2**20:,.0f} MB"
    except (OSError, ValueError, IndexError):
        return "?"


def restart(work: Path, mode: str) -> None:
    """Open the durable index in `work` with the vector rows copied or mapped; print memory,
    restart time, warm and cold similar-image p50."""
    from search_service.durable_index import DurableIndex
    from search_service.engine import EngineParams

    if mode == "copied":
        snapshot.MAPPED_SECTIONS = frozenset()
    if mode == "mapped-normal":  # the kernel's default read-around on a fault
        vector_index.MAP_ADVICE = mmap.MADV_NORMAL
    gc.collect()
    path = work / "index.snap"
    base = status_mb()
    t, c = time.perf_counter(), time.process_time()
    durable = DurableIndex.open(work, EngineParams(ann=AnnParams(threshold=20_000)))
    load_s, load_cpu = time.perf_counter() - t, time.process_time() - c
    gc.collect()
    opened = status_mb()
    index = durable._index
    n = len(index)
    queries = _similar_queries(index, 300)
    for q in queries[:50]:
        index.similar(vector=q, k=10)
    index.vectors.search(queries[0], 10, index.vectors.present(), exact=True)  # every row
    warm, warm_cpu = [], []
    for q in queries[50:250]:
        t, c = time.perf_counter(), time.thread_time()
        index.similar(vector=q, k=10)
        warm_cpu.append(time.thread_time() - c)
        warm.append(time.perf_counter() - t)
    used = status_mb()
    cached_warm = _cached_mb(path)
    scans = []  # exact search over every row: warm, then (mapped) evicted first
    for cold_scan in (False, True) if mode != "copied" else (False,):
        if cold_scan:
            _evict(index, path)
        t = time.perf_counter()
        index.vectors.search(queries[1], 10, index.vectors.present(), exact=True)
        scans.append(f"{'cold' if cold_scan else 'warm'} {time.perf_counter() - t:.2f} s")
    cold, cold_cpu = [], []
    cached = ""
    if mode != "copied":
        for q in queries[250:300]:
            _evict(index, path)
            t, c = time.perf_counter(), time.thread_time()
            index.similar(vector=q, k=10)
            cold_cpu.append(time.thread_time() - c)
            cold.append(time.perf_counter() - t)
        cached = _cached_mb(path)
    load = os.getloadavg()
    anon = opened["RssAnon"] - base["RssAnon"]
    print(
        f"restart, vector rows {mode}: {load_s:.2f} s (CPU {load_cpu:.2f} s); RssAnon "
        f"+{anon:,.0f} MB ({anon * 2**20 / n:,.0f} B/document), RssFile "
        f"+{opened['RssFile'] - base['RssFile']:,.0f} MB after the load, "
        f"+{used['RssFile'] - base['RssFile']:,.0f} MB after 250 similar queries "
        f"({index.vectors.mapped_chunks()} of {len(index.vectors._vectors.chunks)} chunks "
        f"mapped; file in page cache {cached_warm}); similar p50 warm "
        f"{np.median(warm) * 1000:.2f} ms (CPU {np.median(warm_cpu) * 1000:.2f} ms)"
        + (
            f", cold {np.median(cold) * 1000:.2f} ms (CPU {np.median(cold_cpu) * 1000:.2f} ms;"
            f" p90 {np.percentile(cold, 90) * 1000:.1f} ms; cache after eviction and one query"
            f" {cached})"
            if cold
            else ""
        )
        + f"; exact scan {', '.join(scans)}; load {load[0]:.1f}",
        flush=True,
    )
    if mode == "mapped":  # rows added after the restart: anonymous until a snapshot holds them
        from benchmarks.scale_search_bench import Corpus

        added = Corpus(seed=99).batch(n, 2 * vector_index.CHUNK_ROWS)
        before_adds = status_mb()["RssAnon"]
        with durable._write_lock, durable._lock:
            index.vectors.reserve(len(added))
            index.put_many(added)
        del added
        gc.collect()
        after_adds = status_mb()["RssAnon"]
        t = time.perf_counter()
        durable.snapshot()
        snap_s = time.perf_counter() - t
        gc.collect()
        print(
            f"  {2 * vector_index.CHUNK_ROWS:,} documents added: RssAnon "
            f"+{after_adds - before_adds:,.0f} MB; the next snapshot ({snap_s:.1f} s) maps their "
            f"rows: RssAnon {status_mb()['RssAnon'] - after_adds:+,.0f} MB, "
            f"{index.vectors.mapped_chunks()} chunks mapped",
            flush=True,
        )
        seen: set[int] = set()
        print(f"  doc store B/document: {_attributes(index._docs, n, seen)}", flush=True)
        print(f"  keyword index B/document: {_attributes(index.keywords, n, seen)}", flush=True)
    durable.close()


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--restart"]:
        restart(Path(args[1]), args[2])
    elif args[:1] == ["--mapped"]:
        for arg in args[1:] or ["100000"]:
            mapped_build(int(arg))
    else:
        for arg in args or ["320000"]:
            run(int(arg))
