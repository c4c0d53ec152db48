"""Search benchmark: quality on a labelled set of real photos (before / after the concept
hierarchy and score fusion), our inverted index against SQLite FTS5 on the same synthetic
documents, and similar-image search (exact numpy vs the hnswlib approximate index) at
100k x 1280-d.

Quality: the 42 photos and 57 queries of tests/search_service/eval_set.py (real photos from
packages, relevance judged by looking), with the real vision service's analysis cached in
eval_analysis.json, and the real MiniLM embeddings (the vision service runs in process) for
semantic expansion. "before" is the ranking as it was: top 5 labels, no hypernyms, no EXIF
fields, reciprocal rank fusion, empty pages; "after" is the service's default.

Documents are drawn from the ImageNet label vocabulary of the vision service's class-name file
(models/imagenet_classes.json): 20 labels each (what the gateway indexes) with top-heavy
Dirichlet probabilities (popular classes drawn more often, Zipf-like), 0-3 tags from the label
words, a camera- or descriptive filename and one of 50 owners. Both engines index the same text
(labels above the 0.05 floor and their WordNet hypernyms) and rank by BM25 with the same field
weights; both return the top 20 for the same queries (one- and two-word, AND).
Feed (issue 12): how fast a fresh search index replays storage's change feed (a real storage
service in process, FEED_IMAGES real-photo variants made READY with 20 labels and a vector
each), and how searches fare while a snapshot is written, before (the snapshot held the lock
every search takes) and now (it holds only the write lock).
Run with `make bench PART=search` (`python -m benchmarks.search_bench feed` for the feed part).
"""

from __future__ import annotations

import io
import json
import os
import resource
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from search_service.concepts import load_hierarchy
from search_service.document import Document, Label
from search_service.durable_index import DurableIndex
from search_service.engine import EngineParams, SearchIndex
from search_service.gc_control import collector_paused
from search_service.snapshot import flatten, read_snapshot, unflatten, write_snapshot
from search_service.tokenizer import Tokenizer
from search_service.vector_index import AnnParams, VectorIndex

CLASSES_FILE = Path(__file__).resolve().parent.parent / "models" / "imagenet_classes.json"
SIZES = (10_000, 100_000)
QUERIES = 400
TOP = 20
VECTORS = 100_000
DIM = 1280
VECTOR_QUERIES = 200
SEED = 20261123
LABELS_PER_DOC = 20
FEED_IMAGES = 1000


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _pct(samples: list[float]) -> tuple[float, float]:
    ms = np.asarray(samples) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def load_vocabulary() -> list[tuple[str, list[str]]]:
    classes = json.loads(CLASSES_FILE.read_text())
    return [(c["name"], list(c["synonyms"])) for c in sorted(classes, key=lambda c: c["index"])]


def make_documents(n: int, vocab: list[tuple[str, list[str]]], rng) -> list[Document]:
    words = sorted({w for name, _ in vocab for w in Tokenizer().words(name) if len(w) > 3})
    popularity = 1.0 / np.arange(1, len(vocab) + 1) ** 0.8
    popularity = rng.permutation(popularity / popularity.sum())
    docs = []
    for i in range(n):
        classes = rng.choice(len(vocab), size=LABELS_PER_DOC, replace=False, p=popularity)
        probs = np.sort(rng.dirichlet(np.full(LABELS_PER_DOC, 0.1)))[::-1]
        labels = tuple(
            Label(vocab[c][0], float(p), tuple(vocab[c][1]), int(c))
            for c, p in zip(classes, probs, strict=True)
        )
        tags = tuple(rng.choice(words, size=int(rng.integers(0, 4))).tolist())
        if rng.random() < 0.5:
            filename = f"IMG_{i:06d}.jpg"
        else:
            a, b = rng.choice(words, size=2)
            filename = f"{a.title()}{b.title()}_{int(rng.integers(2000, 2026))}.jpeg"
        docs.append(
            Document(
                image_id=f"img-{i:07d}",
                filename=filename,
                owner=f"user{int(rng.integers(50))}",
                labels=labels,
                tags=tags,
            )
        )
    return docs


def make_queries(docs: list[Document], rng) -> list[str]:
    """Words users would type: label words of random documents, one or two per query."""
    tok = Tokenizer()
    queries = []
    for d in rng.choice(len(docs), size=QUERIES, replace=False):
        doc = docs[int(d)]
        words = tok.words(doc.labels[0].name) + tok.words(doc.labels[1].name)
        words = [w for w in words if len(w) > 2] or ["cat"]
        k = 1 if rng.random() < 0.6 else 2
        queries.append(" ".join(rng.choice(words, size=min(k, len(words)), replace=False)))
    return queries


# ---- our index --------------------------------------------------------------------------


def bench_ours(docs: list[Document], queries: list[str]) -> dict[str, float]:
    before = _rss_mb()
    started, cpu = time.perf_counter(), time.process_time()
    index = SearchIndex(EngineParams())
    with collector_paused():  # as DurableIndex.rebuild does
        index.extend(docs)
        index.warm()
    build_s = time.perf_counter() - started
    build_cpu_s = time.process_time() - cpu
    memory = _rss_mb() - before
    latencies, hits = [], 0
    for q in queries:
        t = time.perf_counter()
        result = index.search(q, limit=TOP, semantic=False)
        latencies.append(time.perf_counter() - t)
        hits += len(result.hits)
    p50, p99 = _pct(latencies)
    save_s, load_s, first_ms, disk_mb = _restart(index, queries[0])
    return {
        "build_s": build_s,
        "build_cpu_s": build_cpu_s,
        "memory_mb": memory,
        "p50": p50,
        "p99": p99,
        "hits": hits,
        "posting_mb": index.keywords.posting_bytes / 2**20,
        "save_s": save_s,
        "load_s": load_s,
        "first_ms": first_ms,
        "disk_mb": disk_mb,
    }


def _restart(index: SearchIndex, query: str) -> tuple[float, float, float, float]:
    """Snapshot the index, load it back as a restarted service would, time its first query."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "index.snap"
        started = time.perf_counter()
        with collector_paused():  # as DurableIndex does
            write_snapshot(path, flatten({"seq": 0, "engine": index.state()}))
        save_s = time.perf_counter() - started
        started = time.perf_counter()
        with collector_paused():
            state = unflatten(read_snapshot(path))["engine"]
            loaded = SearchIndex.from_state(state, index.params)
            loaded.warm()
        load_s = time.perf_counter() - started
        t = time.perf_counter()
        loaded.search(query, limit=TOP, semantic=False)
        first_ms = (time.perf_counter() - t) * 1000
        return save_s, load_s, first_ms, path.stat().st_size / 2**20


def bench_snapshot_pause(docs: list[Document], queries: list[str]) -> dict[str, dict[str, float]]:
    """Search latency while a snapshot is written: "before" holds the read lock for the whole
    write (as the snapshot used to), "after" is DurableIndex.snapshot as it is now."""
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        index = DurableIndex.open(Path(tmp), EngineParams(), snapshot_every=10**9)
        index.rebuild(docs)
        for mode in ("before", "after"):
            done = threading.Event()

            def snap(mode: str = mode, done: threading.Event = done) -> None:
                if mode == "before":
                    with index._lock:  # the old snapshot: every search waits for the write
                        index.snapshot()
                else:
                    index.snapshot()
                done.set()

            latencies: list[float] = []
            started = time.perf_counter()
            writer = threading.Thread(target=snap)
            writer.start()
            i = 0
            while not done.is_set():
                t = time.perf_counter()
                index.search(queries[i % len(queries)], limit=TOP, semantic=False)
                latencies.append(time.perf_counter() - t)
                i += 1
            writer.join()
            p50, p99 = _pct(latencies)
            out[mode] = {
                "snapshot_s": time.perf_counter() - started,
                "searches": len(latencies),
                "p50": p50,
                "p99": p99,
                "max": max(latencies) * 1000,
            }
        index.close()
    return out


def _thread_cpu_s(thread: threading.Thread | None) -> float:
    """CPU seconds a running thread has used (0 when it is gone or unknown)."""
    if thread is None or thread.ident is None or not thread.is_alive():
        return 0.0
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    except (OSError, AttributeError):
        return 0.0


# Feed replay settings compared in one run: storage's message growth (max_backlog_batch) and
# the consumer's gathering (max_gather); (0, 0) is the paging before either existed, (0, 4096)
# search's default.
FEED_SETTINGS: dict[str, tuple[int, int]] = {
    "256 a message, applied a message at a time": (0, 0),
    "256 a message, gathered to 4096 (default)": (0, 4096),
    "growing to 4096, gathered to 4096": (4096, 4096),
}


def bench_feed_replay(
    images: int = FEED_IMAGES,
    settings: dict[str, tuple[int, int]] = FEED_SETTINGS,
    rounds: int = 3,
) -> dict[str, dict[str, float]]:
    """Fresh indexes replaying a real storage service's change feed to its head, once per
    setting per round, interleaved so load drifts hit each alike. Per setting, the median
    round: wall seconds, the process's CPU seconds (storage's server threads included: same
    process) and the consumer thread's own CPU seconds."""
    import grpc
    from PIL import Image

    from imagerepo.common.v1 import common_pb2
    from imagerepo.storage.v1 import storage_service_pb2 as spb
    from imagerepo.storage.v1 import storage_service_pb2_grpc as sgrpc
    from search_service.feed_consumer import FeedConsumer
    from search_service.storage_feed import StorageFeed
    from storage_service.columnstore.store import ColumnStore, StoreOptions
    from storage_service.server import build_server
    from tests.support import real_photo_paths

    rng = np.random.default_rng(SEED)
    vocab = load_vocabulary()
    with Image.open(real_photo_paths()["coffee"]) as im:
        photo = im.convert("RGB").resize((160, 120))
    runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in settings}
    with tempfile.TemporaryDirectory() as tmp:
        store = ColumnStore.open(Path(tmp) / "storage", StoreOptions())
        server, port, health = build_server(store, "127.0.0.1:0")
        server.start()
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = sgrpc.StorageServiceStub(channel)
        for n in range(images):
            buf = io.BytesIO()
            photo.rotate(n * 360 / images).save(buf, "JPEG", quality=80)
            header = spb.PutImageHeader(filename=f"IMG_{n:05d}.jpg")
            reply = stub.PutImage(
                iter(
                    [spb.PutImageRequest(header=header), spb.PutImageRequest(chunk=buf.getvalue())]
                ),
                timeout=30,
            )
            picks = rng.choice(len(vocab), LABELS_PER_DOC, replace=False)
            probs = rng.dirichlet(np.full(LABELS_PER_DOC, 0.3))
            vector = rng.standard_normal(DIM).astype(np.float32)
            vector /= np.linalg.norm(vector)
            annotations = spb.Annotations(
                labels=[
                    common_pb2.Label(name=vocab[c][0], probability=float(p))
                    for c, p in zip(picks, probs, strict=True)
                ],
                feature_vector=vector.tolist(),
                status=common_pb2.ANALYSIS_STATUS_READY,
            )
            stub.UpdateAnnotations(
                spb.UpdateAnnotationsRequest(
                    image_id=reply.image.id,
                    annotations=annotations,
                    update_mask={"paths": ["labels", "feature_vector", "status"]},
                ),
                timeout=30,
            )
        # The thumbnailer's rows take seqs too, after the puts: replay once they are all in.
        head, settled = -1, stub.GetStats(spb.GetStatsRequest(), timeout=30).head_seq
        while settled != head:
            head = settled
            time.sleep(1.0)
            settled = stub.GetStats(spb.GetStatsRequest(), timeout=30).head_seq
        documents = 0
        for r in range(rounds):
            for n, (name, (backlog, gather)) in enumerate(settings.items()):
                index = DurableIndex.open(Path(tmp) / f"search-{n}-{r}", EngineParams())
                source = StorageFeed(f"127.0.0.1:{port}", max_backlog_batch=backlog)
                consumer = FeedConsumer(index, source, max_gather=gather)
                started, cpu = time.perf_counter(), time.process_time()
                consumer.start()
                feed_thread = consumer._thread
                thread_cpu = 0.0
                while index.applied_seq < head:
                    thread_cpu = _thread_cpu_s(feed_thread) or thread_cpu
                    time.sleep(0.005)
                thread_cpu = _thread_cpu_s(feed_thread) or thread_cpu
                elapsed, cpu_s = time.perf_counter() - started, time.process_time() - cpu
                documents = len(index)
                consumer.stop()
                source.close()
                index.close()
                runs[name].append((elapsed, cpu_s, thread_cpu))
        channel.close()
        server.stop(grace=None)
        store.close()
    out: dict[str, dict[str, float]] = {}
    for name, found in runs.items():
        elapsed, cpu_s, thread_cpu = sorted(found)[len(found) // 2]
        out[name] = {
            "changes": head,
            "documents": documents,
            "elapsed_s": elapsed,
            "cpu_s": cpu_s,
            "consumer_cpu_s": thread_cpu,
        }
    return out


def main_feed(images: int = FEED_IMAGES) -> None:
    results = bench_feed_replay(images)
    first = next(iter(results.values()))
    load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    print(
        f"\n-- change feed replay, {first['changes']:,} seqs ({int(first['documents'])} READY "
        f"images), median of 3 rounds, load average {load} --"
    )
    for name, r in results.items():
        ratio = (
            f" ({first['elapsed_s'] / r['elapsed_s']:.2f}x, consumer CPU "
            f"{first['consumer_cpu_s'] / r['consumer_cpu_s']:.2f}x)"
            if r is not first and r["consumer_cpu_s"]
            else ""
        )
        print(
            f"{name:44} {r['changes'] / r['elapsed_s']:5.0f} changes/s{ratio}; CPU per change: "
            f"{1e6 * r['cpu_s'] / r['changes']:.0f} us in the process (storage too), "
            f"{1e6 * r['consumer_cpu_s'] / r['changes']:.0f} us in the consumer thread"
        )


def print_snapshot_pause(n: int, pause: dict[str, dict[str, float]]) -> None:
    print(f"searches while a snapshot of {n:,} documents is written:")
    for mode, r in pause.items():
        print(
            f"  {mode:7} snapshot {r['snapshot_s']:.2f} s, "
            f"{int(r['searches'])} searches meanwhile, p50 {r['p50']:.2f} ms, "
            f"p99 {r['p99']:.2f} ms, max {r['max']:.0f} ms"
        )


# ---- SQLite FTS5 baseline ----------------------------------------------------------------


def bench_fts5(docs: list[Document], queries: list[str]) -> dict[str, float]:
    tok = Tokenizer()
    db = sqlite3.connect(":memory:")
    # Same fields, Porter stemming, unicode folding; labels as text (FTS5 has no weights per
    # term, so a label's probability cannot count, one of the things our index adds).
    db.execute(
        "CREATE VIRTUAL TABLE docs USING fts5(labels, tags, ocr_text, filename, owner, concepts,"
        " tokenize='porter unicode61')"
    )
    hierarchy = load_hierarchy()
    started, cpu = time.perf_counter(), time.process_time()
    rows = [
        (
            " ; ".join(
                f"{lb.name} {' '.join(lb.synonyms)}" for lb in d.labels if lb.probability >= 0.05
            ),
            " ".join(d.tags),
            d.ocr_text,
            " ".join(tok.filename_words(d.filename)),
            d.owner,
            " ; ".join(
                " ".join(hierarchy.phrases(cid))
                for cid, w in hierarchy.weights(d.labels).items()
                if w >= 0.05
            ),
        )
        for d in docs
    ]
    with db:
        db.executemany("INSERT INTO docs VALUES (?, ?, ?, ?, ?, ?)", rows)
    db.execute("INSERT INTO docs(docs) VALUES ('optimize')")
    build_s = time.perf_counter() - started
    build_cpu_s = time.process_time() - cpu
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    sql = (
        "SELECT rowid FROM docs WHERE docs MATCH ? "
        "ORDER BY bm25(docs, 3.0, 2.5, 1.0, 2.0, 0.5, 2.5) LIMIT ?"
    )
    latencies, hits = [], 0
    for q in queries:
        match = " ".join(f'"{w}"' for w in q.split())
        t = time.perf_counter()
        found = db.execute(sql, (match, TOP)).fetchall()
        latencies.append(time.perf_counter() - t)
        hits += len(found)
    p50, p99 = _pct(latencies)
    db.close()
    return {
        "build_s": build_s,
        "build_cpu_s": build_cpu_s,
        "memory_mb": pages * page_size / 2**20,
        "p50": p50,
        "p99": p99,
        "hits": hits,
    }


# ---- similar images ------------------------------------------------------------------------


def clustered_vectors(n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """n unit vectors around 2000 random centres (like photos of the same kinds of things),
    plus held-out queries drawn the same way. With noise 1.2 per dimension two members of a
    cluster have cosine ~0.4 and strangers ~0, close to what EfficientNet features show for
    related vs unrelated photos."""
    centres = rng.standard_normal((2000, DIM), dtype=np.float32)

    def draw(count: int) -> np.ndarray:
        out = np.empty((count, DIM), np.float32)
        for start in range(0, count, 10_000):
            m = min(10_000, count - start)
            pts = centres[rng.integers(0, len(centres), m)]
            pts += 1.2 * rng.standard_normal((m, DIM), dtype=np.float32)
            out[start : start + m] = pts / np.linalg.norm(pts, axis=1, keepdims=True)
        return out

    return draw(n), draw(VECTOR_QUERIES)


def bench_vectors(rng) -> dict[str, float]:
    data, queries = clustered_vectors(VECTORS, rng)
    index = VectorIndex(DIM, AnnParams(threshold=VECTORS + 1))  # exact until built below
    for i, v in enumerate(data):
        index.add(i, v)
    del data
    allowed = np.ones(VECTORS, np.bool_)
    exact_lat, exact_ids = [], []
    for q in queries:
        t = time.perf_counter()
        hits = index.search(q, 10, allowed, exact=True)
        exact_lat.append(time.perf_counter() - t)
        exact_ids.append(set(hits.docs.tolist()))
    before = _rss_mb()
    started = time.perf_counter()
    index.build_ann()
    build_s = time.perf_counter() - started
    ann_memory = _rss_mb() - before
    ann_lat, recall = [], []
    for q, truth in zip(queries, exact_ids, strict=True):
        t = time.perf_counter()
        hits = index.search(q, 10, allowed)
        ann_lat.append(time.perf_counter() - t)
        assert hits.approximate
        recall.append(len(truth & set(hits.docs.tolist())) / 10)
    e50, e99 = _pct(exact_lat)
    a50, a99 = _pct(ann_lat)
    return {
        "exact_p50": e50,
        "exact_p99": e99,
        "ann_p50": a50,
        "ann_p99": a99,
        "recall": float(np.mean(recall)),
        "build_s": build_s,
        "ann_memory_mb": ann_memory,
    }


# ---- quality on real photos ----------------------------------------------------------------


def bench_quality() -> None:
    from search_service.label_embeddings import compute_and_cache
    from search_service.vision_client import VisionClient
    from tests.search_service import eval_set
    from vision_service.config import VisionConfig
    from vision_service.server import build_server

    analysis = eval_set.load_analysis()
    server, port, _health = build_server(
        "127.0.0.1:0", VisionConfig(models_dir=CLASSES_FILE.parent)
    )
    server.start()
    client = VisionClient(f"127.0.0.1:{port}", 60.0)
    try:
        names, _model = client.list_labels()
        embed = client.embed
        embeddings = compute_and_cache(None, names, embed)
        print(
            f"\n-- quality: {len(eval_set.PHOTOS)} real photos, {len(eval_set.QUERIES)} "
            "queries, top 10 --"
        )
        print(f"{'':8}{'P@1':>7}{'nDCG@10':>9}{'empty':>7}   P@1 by kind")
        results = {}
        for mode in (eval_set.BEFORE, eval_set.AFTER):
            index = eval_set.build_index(analysis, mode, names, embeddings, embed)
            results[mode] = q = eval_set.evaluate(eval_set.search_keys(index))
            print(
                f"{mode:8}{q.p_at_1:7.2f}{q.ndcg_at_10:9.2f}{q.empty_share:7.2f}   "
                + "  ".join(f"{k} {v:.2f}" for k, v in _by_kind(index).items())
            )
        print("after, first hit wrong for: " + "; ".join(results[eval_set.AFTER].failures))
        _print_languages(eval_set.build_index(analysis, eval_set.AFTER, names, embeddings, embed))
    finally:
        client.close()
        server.stop(grace=None)


def _print_languages(index: SearchIndex) -> None:
    """P@1 of the English queries and of each language's translations of them."""
    from tests.search_service import eval_set

    run = eval_set.search_keys(index)
    right: dict[str, list[bool]] = {}
    for query, relevant, kind in eval_set.QUERIES:
        language = eval_set.LANGUAGE_OF.get(query, "English") if kind == "language" else "English"
        hits = run(query)
        right.setdefault(language, []).append(bool(hits) and hits[0] in relevant)
    print(
        "after, P@1 by language: "
        + ", ".join(f"{lang} {sum(v) / len(v):.2f} ({len(v)} queries)" for lang, v in right.items())
    )


def _by_kind(index: SearchIndex) -> dict[str, float]:
    from tests.search_service import eval_set

    run = eval_set.search_keys(index)
    right: dict[str, list[bool]] = {}
    for query, relevant, kind in eval_set.QUERIES:
        hits = run(query)
        right.setdefault(kind, []).append(bool(hits) and hits[0] in relevant)
    return {kind: sum(v) / len(v) for kind, v in right.items()}


def main() -> None:
    rng = np.random.default_rng(SEED)
    bench_quality()
    vocab = load_vocabulary()
    print(f"vocabulary: {len(vocab)} ImageNet classes from {CLASSES_FILE.name}")
    for n in SIZES:
        docs = make_documents(n, vocab, rng)
        queries = make_queries(docs, rng)
        ours = bench_ours(docs, queries)
        fts = bench_fts5(docs, queries)
        print(f"\n-- text search, {n:,} documents, {len(queries)} queries, top {TOP} --")
        print(f"{'':14}{'build s':>9}{'memory MB':>11}{'p50 ms':>9}{'p99 ms':>9}{'hits':>8}")
        for name, r in (("ours", ours), ("sqlite fts5", fts)):
            print(
                f"{name:14}{r['build_s']:9.2f}{r['memory_mb']:11.1f}"
                f"{r['p50']:9.3f}{r['p99']:9.3f}{int(r['hits']):8d}"
            )
        print(
            f"speed-up ours vs fts5 (fts5 time / ours, >1 = ours faster): "
            f"p50 {fts['p50'] / ours['p50']:.2f}x, p99 {fts['p99'] / ours['p99']:.2f}x; "
            f"build takes {ours['build_s'] / fts['build_s']:.1f}x as long (CPU "
            f"{ours['build_cpu_s']:.1f} s vs {fts['build_cpu_s']:.1f} s: "
            f"{ours['build_cpu_s'] / fts['build_cpu_s']:.1f}x; ours with hnswlib and warm-up); "
            f"compressed postings {ours['posting_mb']:.1f} MB"
        )
        print(
            f"restart: snapshot {ours['disk_mb']:.1f} MB written in {ours['save_s']:.2f} s, "
            f"loaded + warmed in {ours['load_s']:.2f} s, first query {ours['first_ms']:.2f} ms "
            f"(p50 {ours['p50']:.2f} ms)"
        )
        print_snapshot_pause(n, bench_snapshot_pause(docs, queries))
        del docs
    print(f"\n-- similar images, {VECTORS:,} x {DIM}-d, {VECTOR_QUERIES} queries, top 10 --")
    v = bench_vectors(rng)
    print(f"exact numpy   p50 {v['exact_p50']:.2f} ms  p99 {v['exact_p99']:.2f} ms")
    print(
        f"hnswlib       p50 {v['ann_p50']:.2f} ms  p99 {v['ann_p99']:.2f} ms  "
        f"recall@10 {v['recall']:.3f}  build {v['build_s']:.1f} s  +{v['ann_memory_mb']:.0f} MB"
    )
    print(f"hnswlib vs exact: p50 {v['exact_p50'] / v['ann_p50']:.1f}x faster")
    main_feed()


if __name__ == "__main__":
    if sys.argv[1:] == ["feed"]:
        rng = np.random.default_rng(SEED)
        docs = make_documents(SIZES[-1], load_vocabulary(), rng)
        print_snapshot_pause(len(docs), bench_snapshot_pause(docs, make_queries(docs, rng)))
        del docs
        main_feed()
    else:
        main()
