"""Scale benchmark, search half: an index of N synthetic documents against SQLite FTS5 built
from the same rows in the same run (`make bench PART=scale N=1000000`, after the storage
half; alone: `python -m benchmarks.scale_search_bench N`).

Documents: 20 ImageNet labels each (the vision service's class list, popular classes drawn
more often, top-heavy Dirichlet probabilities), 0-3 tags, a camera or descriptive filename, one
of 200 owners, OCR-ish text on a third of them, and a 1280-d feature vector drawn around one of
2000 centres. They are made in batches of 10,000; each batch goes into our index and into an
FTS5 table (same fields, Porter stemming, the labels' hypernyms as text) one after the other,
so both builds see the same machine load.

Printed: resident memory per document (ours; FTS5's database size), build time against FTS5
(ours: the whole write path of put_many, i.e. keyword postings, document store, int8 vectors,
concept weights and per-class postings, filter columns; the faiss index is built and timed
apart by ann_bench;
FTS5: making its rows, with the labels' hypernyms, and inserting them; wall and CPU time, per
document too, and ours without the int8 vector store, which FTS5 has no counterpart of). Both
index the same text: labels at probability 0.05 or more with their synonyms, their hypernyms,
tags, OCR text, filename words and the owner. Ours also keeps every label with its exact
probability (the document store), each document's top-20 concept weights and per-class
postings (semantic expansion), the suggestion counts, the filter columns and the int8
vectors; FTS5 keeps its column text. Each batch of 10,000 goes to each side in one call
(put_many; executemany in one transaction); the feed path puts at most 256 at a time,
keyword and default-path (semantic expansion on, query embeddings cached as the service caches
them) query p50/p99 against FTS5 and against the full-scan semantic expansion it replaced, the
longest search and write stalls while a snapshot is written (the old way, under the write
lock, against the frozen view written off the lock), restart time (load the snapshot, first
query), and recall@10 of the int8 vectors against float32 on real photo features. The index
part runs in a fresh process so its resident memory is its own.
"""

from __future__ import annotations

import ctypes
import gc
import io
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import ann_bench
from benchmarks.vector_growth_bench import status_mb
from search_service.concepts import load_hierarchy
from search_service.document import Document, Label
from search_service.durable_index import DurableIndex
from search_service.engine import EngineParams, SearchIndex
from search_service.gc_control import collector_paused
from search_service.semantic import ConceptSpace, SemanticHits
from search_service.snapshot import flatten, write_snapshot
from search_service.tokenizer import Tokenizer
from search_service.vector_index import AnnParams, quantise

CLASSES_FILE = Path(__file__).resolve().parent.parent / "models" / "imagenet_classes.json"
BATCH = 10_000
DIM = 1280
LABELS_PER_DOC = 20
OWNERS = 200
QUERIES = 300
TOP = 20
SEED = 20261130
# The approximate vector index (faiss IVF) is built (and timed) up to this many documents.
ANN_UP_TO = int(os.environ.get("SCALE_ANN_UP_TO", "2000000"))
OCR_WORDS = [
    "open",
    "sale",
    "menu",
    "coffee",
    "exit",
    "street",
    "station",
    "platform",
    "welcome",
    "hotel",
    "price",
    "euro",
    "total",
    "receipt",
    "parking",
    "tickets",
    "museum",
    "library",
    "entrance",
    "closed",
    "monday",
    "sunday",
    "table",
    "bus",
    "stop",
    "airport",
    "gate",
    "departure",
    "arrival",
    "pharmacy",
    "bakery",
    "market",
    "fresh",
    "fish",
    "bread",
    "wine",
    "beer",
]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _pct(samples: list[float]) -> tuple[float, float]:
    ms = np.asarray(samples) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} {five:.1f} {fifteen:.1f}"


# ---- documents -------------------------------------------------------------------------------


class Corpus:
    """Deterministic synthetic documents, made a batch at a time."""

    def __init__(self, seed: int = SEED) -> None:
        classes = json.loads(CLASSES_FILE.read_text())
        classes.sort(key=lambda c: c["index"])
        self.names = [c["name"] for c in classes]
        self.synonyms = [tuple(c["synonyms"]) for c in classes]
        self.rng = np.random.default_rng(seed)
        popularity = 1.0 / np.arange(1, len(classes) + 1) ** 0.8
        self.log_pop = np.log(self.rng.permutation(popularity / popularity.sum()))
        tok = Tokenizer()
        self.words = sorted({w for n in self.names for w in tok.words(n) if len(w) > 3})
        self.centres = self.rng.standard_normal((2000, DIM), dtype=np.float32)

    def batch(self, start: int, count: int) -> list[Document]:
        rng = self.rng
        # 20 distinct classes per document, drawn by popularity (Gumbel top-k).
        keys = self.log_pop[None, :] - np.log(-np.log(rng.random((count, len(self.names)))))
        picks = np.argpartition(-keys, LABELS_PER_DOC, axis=1)[:, :LABELS_PER_DOC]
        probs = -np.sort(-rng.dirichlet(np.full(LABELS_PER_DOC, 0.1), count), axis=1)
        vectors = self.centres[rng.integers(0, len(self.centres), count)]
        vectors += 1.2 * rng.standard_normal((count, DIM), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        docs = []
        for i in range(count):
            labels = tuple(
                Label(self.names[c], round(float(p), 5), self.synonyms[c], int(c))
                for c, p in zip(picks[i].tolist(), probs[i].tolist(), strict=True)
            )
            n = start + i
            tags = tuple(rng.choice(self.words, size=int(rng.integers(0, 4))).tolist())
            if n % 2:
                filename = f"IMG_{n:07d}.jpg"
            else:
                a, b = rng.choice(self.words, size=2)
                filename = f"{a.title()}{b.title()}_{2000 + n % 26}.jpeg"
            ocr = ""
            if n % 3 == 0:
                ocr = " ".join(rng.choice(OCR_WORDS, size=int(rng.integers(3, 12))).tolist())
            docs.append(
                Document(
                    image_id=f"img-{n:08d}",
                    filename=filename,
                    owner=f"user{n % OWNERS}",
                    labels=labels,
                    tags=tags,
                    ocr_text=ocr,
                    feature_vector=vectors[i],
                    sha256=f"{n:064x}",
                )
            )
        return docs

    def queries(self, count: int) -> list[str]:
        """One- and two-word queries from label words, some OCR words."""
        tok = Tokenizer()
        out = []
        for _ in range(count):
            if self.rng.random() < 0.1:
                out.append(str(self.rng.choice(OCR_WORDS)))
                continue
            c = int(np.argmax(self.log_pop - np.log(-np.log(self.rng.random(len(self.names))))))
            words = [w for w in tok.words(self.names[c]) if len(w) > 2] or ["cat"]
            k = 1 if self.rng.random() < 0.6 else 2
            out.append(" ".join(self.rng.choice(words, size=min(k, len(words)), replace=False)))
        return out


# ---- FTS5 -------------------------------------------------------------------------------------


class Fts5:
    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE VIRTUAL TABLE docs USING fts5(labels, tags, ocr_text, filename, owner, "
            "concepts, tokenize='porter unicode61')"
        )
        self.hierarchy = load_hierarchy()
        self.tok = Tokenizer()
        self.path = path
        # CPU time spent making rows (labels' hypernyms, filename words) and inserting them.
        self.rows_cpu = self.insert_cpu = 0.0

    def add(self, docs: list[Document]) -> None:
        hierarchy = self.hierarchy
        started = time.process_time()
        rows = [
            (
                " ; ".join(
                    f"{lb.name} {' '.join(lb.synonyms)}"
                    for lb in d.labels
                    if lb.probability >= 0.05
                ),
                " ".join(d.tags),
                d.ocr_text,
                " ".join(self.tok.filename_words(d.filename)),
                d.owner,
                " ; ".join(
                    " ".join(hierarchy.phrases(cid))
                    for cid, w in hierarchy.weights(d.labels).items()
                    if w >= 0.05
                ),
            )
            for d in docs
        ]
        made = time.process_time()
        self.rows_cpu += made - started
        with self.db:
            self.db.executemany("INSERT INTO docs VALUES (?, ?, ?, ?, ?, ?)", rows)
        self.insert_cpu += time.process_time() - made

    def optimise(self) -> None:
        with self.db:
            self.db.execute("INSERT INTO docs(docs) VALUES ('optimize')")

    def search(self, query: str) -> list[int]:
        match = " ".join(f'"{w}"' for w in query.split())
        return [
            r[0]
            for r in self.db.execute(
                "SELECT rowid FROM docs WHERE docs MATCH ? "
                "ORDER BY bm25(docs, 3.0, 2.5, 1.0, 2.0, 0.5, 2.5) LIMIT ?",
                (match, TOP),
            )
        ]

    def size_mb(self) -> float:
        return sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*")) / 2**20


# ---- semantic expansion: the full scan it replaced (the "before") -----------------------------


class FullScanConcepts(ConceptSpace):
    """Semantic expansion as it was: every document scored for every query."""

    def search(self, *args: Any, **kwargs: Any) -> SemanticHits:
        return super().search(*args, **dict(kwargs, exhaustive=True))


def _label_embeddings() -> tuple[list[str], np.ndarray, Any, Any]:
    """The real label embeddings and a query embedder: the vision service in process."""
    from search_service.label_embeddings import compute_and_cache
    from search_service.vision_client import VisionClient
    from vision_service.config import VisionConfig
    from vision_service.server import build_server

    server, port, _health = build_server(
        "127.0.0.1:0", VisionConfig(models_dir=CLASSES_FILE.parent)
    )
    server.start()
    client = VisionClient(f"127.0.0.1:{port}", 120.0)
    names, _model = client.list_labels()
    embeddings = compute_and_cache(None, names, client.embed)
    return names, embeddings, client, server


# ---- the measurements -------------------------------------------------------------------------


def run(n: int) -> None:
    """Build N documents into our index and FTS5, measure, print."""
    print(f"\n-- search at scale: {n:,} documents ({_load()}) --", flush=True)
    names, embeddings, client, server = _label_embeddings()
    corpus = Corpus()
    work = Path(tempfile.mkdtemp(prefix="scale-search-"))
    fts = Fts5(work / "fts5.db")
    with_ann = n <= ANN_UP_TO
    params = EngineParams(ann=AnnParams(threshold=1 << 62))  # vector index built below, timed
    index = SearchIndex(params)
    index.attach_semantic(ConceptSpace(names, embeddings), client.embed)
    # The int8 vector store's share of our build (FTS5 stores no vectors): wall and CPU.
    vector_time = [0.0, 0.0]
    add_vectors = index.vectors.add_many

    def timed_vectors(first: int, vectors: list[Any]) -> None:
        t, c = time.perf_counter(), time.process_time()
        try:
            add_vectors(first, vectors)
        finally:
            vector_time[0] += time.perf_counter() - t
            vector_time[1] += time.process_time() - c

    index.vectors.add_many = timed_vectors  # type: ignore[method-assign]
    gc.collect()
    rss_before = _rss_mb()
    ours_s = fts_s = ours_cpu = fts_cpu = 0.0
    started = time.perf_counter()
    with collector_paused():
        for start in range(0, n, BATCH):
            docs = corpus.batch(start, min(BATCH, n - start))
            t, c = time.perf_counter(), time.process_time()
            index.put_many(docs)  # the batch in one call, as FTS5 gets it in one executemany
            ours_s += time.perf_counter() - t
            ours_cpu += time.process_time() - c
            t, c = time.perf_counter(), time.process_time()
            fts.add(docs)
            fts_s += time.perf_counter() - t
            fts_cpu += time.process_time() - c
            del docs
            done = min(n, start + BATCH)
            if done % (BATCH * 10) == 0 or done == n:
                print(
                    f"  built {done:,}/{n:,}: ours {done / ours_s:,.0f} docs/s, "
                    f"fts5 {done / fts_s:,.0f} docs/s, {_rss_mb() - rss_before:,.0f} MB "
                    f"({time.perf_counter() - started:.0f} s)",
                    flush=True,
                )
        t, c = time.perf_counter(), time.process_time()
        fts.optimise()
        fts_s += time.perf_counter() - t
        fts_cpu += time.process_time() - c
    gc.collect()
    rss_index = _rss_mb() - rss_before
    ann_s = ann_mb = 0.0
    if with_ann:
        print("  building the approximate vector index (faiss IVF) ...", flush=True)
        t = time.perf_counter()
        index.vectors.build_ann()
        ann_s = time.perf_counter() - t
        ann_mb = _rss_mb() - rss_before - rss_index
    index.vectors.add_many = add_vectors  # type: ignore[method-assign]
    vec_s, vec_cpu = vector_time
    vec_bytes = index.vectors.bytes_per_vector
    postings = index.keywords.posting_bytes
    print(
        f"build: ours {ours_s:.1f} s ({n / ours_s:,.0f} docs/s) vs FTS5 {fts_s:.1f} s "
        f"({n / fts_s:,.0f} docs/s): ours takes {ours_s / fts_s:.2f}x FTS5's time; CPU "
        f"{ours_cpu:.1f} s vs {fts_cpu:.1f} s ({ours_cpu / fts_cpu:.2f}x; wall time counts the "
        f"other load of the machine too)"
        + (f"; vector index {ann_s:.0f} s more" if with_ann else "; no vector index at this size")
    )
    print(
        f"  per document: ours {ours_s / n * 1e6:.1f} us wall, {ours_cpu / n * 1e6:.1f} us CPU "
        f"(the int8 vector store {vec_s / n * 1e6:.1f} / {vec_cpu / n * 1e6:.1f} of it); FTS5 "
        f"{fts_s / n * 1e6:.1f} us wall, {fts_cpu / n * 1e6:.1f} us CPU (making its rows "
        f"{fts.rows_cpu / n * 1e6:.1f}, inserting {fts.insert_cpu / n * 1e6:.1f}, the rest "
        f"optimising). Without the vector "
        f"store (FTS5 keeps no vectors): {(ours_s - vec_s) / fts_s:.2f}x FTS5's time, CPU "
        f"{(ours_cpu - vec_cpu) / fts_cpu:.2f}x"
    )
    print(
        f"memory: {rss_index:,.0f} MB resident for the index without its vector index "
        f"({rss_index * 2**20 / n:,.0f} B/document: vectors {vec_bytes} B int8 "
        f"(float32: {DIM * 4}), postings {postings / n:,.0f} B)"
        + (
            f", faiss IVF +{ann_mb:,.0f} MB ({ann_mb * 2**20 / n:,.0f} B/document)"
            if with_ann
            else ""
        )
        + f"; FTS5 database {fts.size_mb():,.0f} MB on disk"
    )

    queries = corpus.queries(QUERIES)
    for q in queries:  # query embeddings cached, as the service caches them
        index.query_embedding(q)
    _queries(index, fts, queries)
    if os.environ.get("SCALE_SNAPSHOTS", "1") == "1":  # 0: queries only
        _snapshot_and_restart(index, corpus, queries, work, n)
    client.close()
    server.stop(grace=None)
    fts.db.close()
    for p in work.glob("*"):
        p.unlink()
    work.rmdir()
    print(f"({_load()})")


def _queries(index: SearchIndex, fts: Fts5, queries: list[str]) -> None:
    full_scan = FullScanConcepts.__new__(FullScanConcepts)
    assert index.concepts is not None
    full_scan.__dict__ = index.concepts.__dict__  # the same data, searched the old way
    postings_concepts = index.concepts
    lat: dict[str, list[float]] = {k: [] for k in ("keyword", "default", "full scan", "fts5")}
    hits = {k: 0 for k in lat}
    for i, q in enumerate(queries):  # interleaved, so load swings hit every side alike
        embedding = index.query_embedding(q)
        for kind in (
            ("keyword", "default", "full scan", "fts5")
            if i % 2
            else ("fts5", "full scan", "default", "keyword")
        ):
            t = time.perf_counter()
            if kind == "fts5":
                found = len(fts.search(q))
            else:
                index.concepts = full_scan if kind == "full scan" else postings_concepts
                found = len(
                    index.search(
                        q,
                        limit=TOP,
                        semantic=kind != "keyword",
                        embedding=None if kind == "keyword" else embedding,
                    ).hits
                )
            lat[kind].append(time.perf_counter() - t)
            hits[kind] += found
    index.concepts = postings_concepts
    print(f"queries ({len(queries)}, top {TOP}, in process):")
    for kind, samples in lat.items():
        p50, p99 = _pct(samples)
        print(f"  {kind:10} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  hits {hits[kind]:,}")
    k50, k99 = _pct(lat["keyword"])
    d50, d99 = _pct(lat["default"])
    s50, s99 = _pct(lat["full scan"])
    f50, f99 = _pct(lat["fts5"])
    print(
        f"  keyword vs FTS5: p50 {f50 / k50:.1f}x, p99 {f99 / k99:.1f}x faster; default path "
        f"vs the full scan: p50 {s50 / d50:.1f}x, p99 {s99 / d99:.1f}x faster"
    )


def _snapshot_and_restart(
    index: SearchIndex, corpus: Corpus, queries: list[str], work: Path, n: int
) -> None:
    durable = DurableIndex.open(
        work, index.params, snapshot_every=1 << 62, snapshot_interval_s=float("inf")
    )
    durable._index = index
    modes = (
        ("none", "no snapshot: the same threads for 5 s, the machine's own stalls"),
        ("before", "the old way, under the write lock"),
        ("after", "frozen view, saving the vector index too"),
        ("after", "frozen view, vector index saved"),
    )
    extra = corpus.batch(n, 4 * 20_000)
    for i, (mode, how) in enumerate(modes):
        stalls = _during_snapshot(
            durable,
            queries,
            extra[i * 20_000 : (i + 1) * 20_000],
            old_way=mode == "before",
            no_snapshot_s=5.0 if mode == "none" else 0.0,
        )
        print(
            f"snapshot {mode:6} ({how}): {stalls['snapshot_s']:.1f} s; "
            f"{stalls['searches']} searches meanwhile, longest {stalls['search_max_ms']:,.0f} ms"
            f"; {stalls['writes']} writes, longest {stalls['write_max_ms']:,.0f} ms"
            + (
                f"; view frozen in {durable.longest_freeze_s * 1000:.0f} ms"
                if mode == "after"
                else ""
            ),
            flush=True,
        )
    durable._unsaved = 1
    durable.close()
    size = (work / "index.snap").stat().st_size / 2**20
    del durable, index
    gc.collect()
    started, cpu = time.perf_counter(), time.process_time()
    reopened = DurableIndex.open(work, EngineParams(ann=AnnParams(threshold=1 << 62)))
    load_s = time.perf_counter() - started
    load_cpu = time.process_time() - cpu
    t = time.perf_counter()
    reopened.search(queries[0], semantic=False)
    first = (time.perf_counter() - t) * 1000
    print(
        f"restart: {size:,.0f} MB snapshot loaded in {load_s:.1f} s (CPU {load_cpu:.1f} s) "
        f"({len(reopened):,} documents), first query {first:.1f} ms"
    )
    t = time.perf_counter()
    reopened.warm()  # as the service does before serving: it builds the write path's tables
    warm_s = time.perf_counter() - t
    later = corpus.batch(n + 4 * 20_000, 2)
    t = time.perf_counter()
    reopened.put(later[0])
    first_write = (time.perf_counter() - t) * 1000
    t = time.perf_counter()
    reopened.put(later[1])
    second_write = (time.perf_counter() - t) * 1000
    print(
        f"  warm {warm_s:.1f} s; then the first write {first_write:.1f} ms, the second "
        f"{second_write:.1f} ms"
    )
    reopened._unsaved = 0
    reopened.close()


def _during_snapshot(
    durable: DurableIndex,
    queries: list[str],
    writes: list[Document],
    old_way: bool,
    no_snapshot_s: float = 0.0,
) -> dict[str, float]:
    done = threading.Event()
    counts = {"searches": 0, "writes": 0}
    worst = {"search": 0.0, "write": 0.0}
    snap_cpu = [0.0]

    def snap() -> None:
        cpu = time.thread_time()
        try:
            _snap()
        finally:
            snap_cpu[0] = time.thread_time() - cpu

    def _snap() -> None:
        if no_snapshot_s:
            time.sleep(no_snapshot_s)
        elif old_way:  # as before: the whole state built and written under the write lock
            with durable._write_lock, collector_paused():
                state = {"seq": durable.applied_seq, "engine": durable._index.state()}
                assert durable.data_dir is not None
                write_snapshot(durable.data_dir / "index.snap", flatten(state))
        else:
            durable.snapshot()
        done.set()

    def write() -> None:
        for doc in writes:
            if done.is_set():
                return
            t = time.perf_counter()
            durable.put(doc)
            worst["write"] = max(worst["write"], time.perf_counter() - t)
            counts["writes"] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=snap), threading.Thread(target=write)]
    for th in threads:
        th.start()
    i = 0
    while not done.is_set():
        t = time.perf_counter()
        durable.search(queries[i % len(queries)], limit=TOP)
        worst["search"] = max(worst["search"], time.perf_counter() - t)
        counts["searches"] += 1
        i += 1
    for th in threads:
        th.join()
    return {
        "snapshot_s": time.perf_counter() - started,
        "snapshot_cpu_s": snap_cpu[0],
        "searches": counts["searches"],
        "writes": counts["writes"],
        "search_max_ms": worst["search"] * 1000,
        "write_max_ms": worst["write"] * 1000,
    }


# ---- the document store folded onto the snapshot file ------------------------------------------


def docs_bench(n: int) -> None:
    """`python -m benchmarks.scale_search_bench --docs N`: the document store kept as rows
    after a snapshot (as before) against folded onto the snapshot file (doc_store.py), in the
    same process: N documents of this bench (no concept space, no faiss index), then three
    snapshots each written while a thread searches and one writes: rows kept (the fold off),
    the first fold, and one of the folded store; RssAnon per document after each; then two
    restarts in fresh processes, the document columns read into memory (as before) or mapped."""
    from search_service import doc_store

    print(f"\n-- document store folded onto the snapshot: {n:,} documents ({_load()}) --")
    work = Path(tempfile.mkdtemp(prefix="scale-docs-"))
    params = EngineParams(ann=AnnParams(threshold=1 << 62))
    corpus = Corpus()
    index = SearchIndex(params)
    gc.collect()
    base = status_mb()
    t = time.perf_counter()
    with collector_paused():
        for start in range(0, n, BATCH):
            index.put_many(corpus.batch(start, min(BATCH, n - start)))
            if (start + BATCH) % (10 * BATCH) == 0:
                print(
                    f"  built {start + BATCH:,}/{n:,} ({time.perf_counter() - t:.0f} s)", flush=True
                )
    gc.collect()
    built = status_mb()
    print(
        f"built in {time.perf_counter() - t:.0f} s: RssAnon "
        f"{(built['RssAnon'] - base['RssAnon']) * 2**20 / n:,.0f} B/document",
        flush=True,
    )
    durable = DurableIndex.open(
        work, params, snapshot_every=1 << 62, snapshot_interval_s=float("inf")
    )
    durable._index = index
    queries = corpus.queries(QUERIES)
    writes = 5_000
    rows = ("rows", False, "the store kept as rows (the fold off, as before)")
    folded = ("folded", True, "the store folded: its base's arrays written as they are")
    rounds = (
        ("none", False, "no snapshot, 5 s: the machine's own stalls"),
        rows,
        rows,
        ("fold", True, "the first fold (rows turned into columns, then mapped)"),
        folded,
        folded,
        folded,
    )
    extra = corpus.batch(n, len(rounds) * writes)
    for i, (name, fold, how) in enumerate(rounds):
        doc_store.FOLD_AFTER_SNAPSHOT = fold
        gc.collect()
        before = status_mb()
        stalls = _during_snapshot(
            durable,
            queries,
            extra[i * writes : (i + 1) * writes],
            old_way=False,
            no_snapshot_s=5.0 if name == "none" else 0.0,
        )
        gc.collect()
        after = status_mb()
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # what the allocator holds but could give back
        trimmed = status_mb()
        docs = durable._index._docs
        print(
            f"snapshot {name:6} ({how}): {stalls['snapshot_s']:.2f} s (CPU "
            f"{stalls['snapshot_cpu_s']:.2f} s); {stalls['searches']} searches, longest "
            f"{stalls['search_max_ms']:,.0f} ms; {stalls['writes']} writes, longest "
            f"{stalls['write_max_ms']:,.0f} ms; freeze {durable.longest_freeze_s * 1000:.0f} ms; "
            f"RssAnon {after['RssAnon'] - before['RssAnon']:+,.0f} MB, now "
            f"{(after['RssAnon'] - base['RssAnon']) * 2**20 / len(docs):,.0f} B/document "
            f"({(trimmed['RssAnon'] - base['RssAnon']) * 2**20 / len(docs):,.0f} after "
            f"malloc_trim); {docs.mapped_count:,} documents mapped; {_load()}",
            flush=True,
        )
        durable.longest_freeze_s = 0.0
    durable._unsaved = 1
    durable.close()
    size = (work / "index.snap").stat().st_size / 2**20
    print(f"snapshot file {size:,.0f} MB", flush=True)
    del durable, index
    gc.collect()
    for mode in ("copied", "mapped", "copied", "mapped"):
        subprocess.run(
            [sys.executable, "-m", "benchmarks.scale_search_bench", "--docs-restart", str(work)]
            + [mode],
            check=True,
        )
    for p in work.glob("*"):
        p.unlink()
    work.rmdir()


def docs_restart(work: Path, mode: str) -> None:
    """Open the durable index in `work` with the document columns read into memory (copied) or
    mapped; print restart time, RssAnon per document, the first query and a snapshot written
    while a thread searches and one writes."""
    from search_service import snapshot

    if mode == "copied":
        snapshot.MAPPED_SECTIONS = frozenset(
            s for s in snapshot.MAPPED_SECTIONS if not s.startswith("engine.doc_columns.")
        )
    gc.collect()
    base = status_mb()
    t, c = time.perf_counter(), time.process_time()
    # No snapshot of its own (as in docs_bench): with the defaults (every 1000 changes) the
    # write that made the 1000th change ran a whole snapshot itself (put -> maybe_snapshot),
    # after waiting for the one measured here, and was counted as a 3.5-5.5 s write at 1M.
    durable = DurableIndex.open(
        work,
        EngineParams(ann=AnnParams(threshold=1 << 62)),
        snapshot_every=1 << 62,
        snapshot_interval_s=float("inf"),
    )
    load_s, load_cpu = time.perf_counter() - t, time.process_time() - c
    gc.collect()
    opened = status_mb()
    n = len(durable._index._docs)
    corpus = Corpus(seed=5)
    queries = corpus.queries(QUERIES)
    t = time.perf_counter()
    durable.search(queries[0], limit=TOP, semantic=False)
    first_ms = (time.perf_counter() - t) * 1000
    lat = []
    for q in queries:
        t = time.perf_counter()
        hits = durable.search(q, limit=TOP, semantic=False).hits
        for hit in hits[:5]:  # read the documents of a page, as the servicer does
            durable.get(hit.image_id)
        lat.append(time.perf_counter() - t)
    p50, p99 = _pct(lat)
    durable.warm()
    stalls = _during_snapshot(durable, queries, corpus.batch(n + 10**6, 5_000), old_way=False)
    gc.collect()
    print(
        f"restart, document columns {mode}: {load_s:.2f} s (CPU {load_cpu:.2f} s), RssAnon "
        f"{(opened['RssAnon'] - base['RssAnon']) * 2**20 / n:,.0f} B/document, RssFile "
        f"+{opened['RssFile'] - base['RssFile']:,.0f} MB; first query {first_ms:.1f} ms, "
        f"keyword query + 5 documents read p50 {p50:.2f} ms p99 {p99:.2f} ms; snapshot after it "
        f"{stalls['snapshot_s']:.2f} s (CPU {stalls['snapshot_cpu_s']:.2f} s), longest search "
        f"{stalls['search_max_ms']:,.0f} ms, {stalls['writes']} writes, longest "
        f"{stalls['write_max_ms']:,.0f} ms (view "
        f"frozen in {durable.longest_freeze_s * 1000:,.0f} ms); RssAnon "
        f"now {(status_mb()['RssAnon'] - base['RssAnon']) * 2**20 / n:,.0f} B/document; "
        f"{_load()}",
        flush=True,
    )
    durable._unsaved = 0
    durable.close()


# ---- compact vectors on real photo features ---------------------------------------------------


def vector_recall(augmentations: int = 24) -> None:
    """recall@10 of int8 (and float16) vectors against float32, on EfficientNet features of
    real photos (scikit-image, scikit-learn, Debian wallpapers) and random crops, flips,
    rotations and tone changes of each (so every photo has close neighbours to rank)."""
    import grpc
    from PIL import Image, ImageEnhance

    from imagerepo.vision.v1 import vision_service_pb2 as vision_pb
    from imagerepo.vision.v1 import vision_service_pb2_grpc as vision_grpc
    from tests.search_service import eval_set
    from tests.support import real_photo_paths
    from vision_service.config import VisionConfig
    from vision_service.server import build_server

    paths = list(real_photo_paths().values())
    paths += [eval_set.photo_path(p) for p in eval_set.PHOTOS if eval_set.photo_path(p).exists()]
    paths = list(dict.fromkeys(paths))
    rng = np.random.default_rng(SEED)
    server, port, _health = build_server(
        "127.0.0.1:0", VisionConfig(models_dir=CLASSES_FILE.parent)
    )
    server.start()
    features = []
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = vision_grpc.VisionServiceStub(channel)
        for i, path in enumerate(paths):
            with Image.open(path) as im:
                photo = im.convert("RGB")
                photo.thumbnail((640, 640))
            for a in range(augmentations):
                w, h = photo.size
                s = rng.uniform(0.5, 1.0)
                cw, ch = int(w * s), int(h * s)
                left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
                img = photo.crop((left, top, left + cw, top + ch))
                if a % 2:
                    img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                img = img.rotate(float(rng.uniform(-12, 12)))
                img = ImageEnhance.Brightness(img).enhance(float(rng.uniform(0.7, 1.3)))
                img = ImageEnhance.Contrast(img).enhance(float(rng.uniform(0.7, 1.3)))
                buf = io.BytesIO()
                img.save(buf, "JPEG", quality=int(rng.integers(60, 95)))
                reply = stub.Analyze(
                    vision_pb.AnalyzeRequest(
                        image_data=buf.getvalue(), tasks=[vision_pb.ANALYSIS_TASK_FEATURES]
                    ),
                    timeout=120,
                )
                features.append(np.asarray(reply.feature_vector, np.float32))
            print(f"  features: {i + 1}/{len(paths)} photos", flush=True)
    server.stop(grace=None)
    x = np.stack(features)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q8, f8 = quantise(x)
    x8 = q8.astype(np.float32) * f8[:, None]
    x16 = x.astype(np.float16).astype(np.float32)

    def top10(data: np.ndarray) -> np.ndarray:
        sims = data @ data.T
        np.fill_diagonal(sims, -np.inf)
        return np.argsort(-sims, axis=1)[:, :10]

    truth = top10(x)
    for name, data, size in (("int8 + scale", x8, DIM + 4), ("float16", x16, DIM * 2)):
        got = top10(data)
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth, got, strict=True)])
        err = np.abs((data @ x.T) - (x @ x.T)).max()
        print(
            f"  {name:13} recall@10 vs float32 {recall:.4f} over {len(x)} vectors "
            f"({len(paths)} photos x {augmentations} variants), largest cosine error {err:.4f}, "
            f"{size} B/vector (float32 {DIM * 4})"
        )
    ann_bench.real_recall(x)


def main() -> None:
    """`make bench PART=scale`: the search half for N (env, default 100000), in a fresh
    process, then the compact-vector recall."""
    n = int(os.environ.get("N", "100000"))
    subprocess.run([sys.executable, "-m", "benchmarks.scale_search_bench", str(n)], check=True)
    subprocess.run([sys.executable, "-m", "benchmarks.ann_bench", str(n)], check=True)
    print("\n-- compact vectors: recall@10 against float32 on real photo features --", flush=True)
    vector_recall()


if __name__ == "__main__":
    if sys.argv[1:] == ["recall"]:
        vector_recall()
    elif sys.argv[1:2] == ["--docs"]:
        for arg in sys.argv[2:] or ["100000"]:
            docs_bench(int(arg))
    elif sys.argv[1:2] == ["--docs-restart"]:
        docs_restart(Path(sys.argv[2]), sys.argv[3])
    elif sys.argv[1:]:
        run(int(sys.argv[1]))
    else:
        main()
