"""Approximate vector index at scale: faiss IVF (search_service/ann.py) against exact search
and, when hnswlib is installed (it was the index before), hnswlib on the same vectors.

`python -m benchmarks.ann_bench N` (part of `make bench PART=scale`): N synthetic 1280-d unit
vectors drawn like the scale benchmark's (around one of 2000 centres), 300 held-out queries
from the same distribution. Printed: resident memory per vector of the int8 rows and of the
approximate index, its build time, query p50/p99 and recall@10 against exact float32 search
(the truth computed batch by batch, so 1M float32 vectors are never held; exact rescoring of
the candidates, scanning the default lists and twice as many), and the time to
save it and load it back (a restart). Recall on real photo features: `real_recall`, called by
the scale benchmark with its EfficientNet features.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from search_service.ann import AnnIndex
from search_service.vector_index import AnnParams, VectorIndex

DIM = 1280
CENTRES = 2000
BATCH = 50_000
QUERIES = 300
K = 10
SEED = 20261130
# hnswlib over 1280-d takes minutes per 100k vectors: compared up to this many.
HNSW_UP_TO = int(os.environ.get("SCALE_ANN_UP_TO", "200000"))


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


class Vectors:
    """Unit vectors around one of 2000 random centres (noise 1.2 per component)."""

    def __init__(self, seed: int = SEED) -> None:
        self.rng = np.random.default_rng(seed)
        self.centres = self.rng.standard_normal((CENTRES, DIM), dtype=np.float32)

    def batch(self, count: int) -> np.ndarray:
        v = self.centres[self.rng.integers(0, CENTRES, count)]
        v += 1.2 * self.rng.standard_normal((count, DIM), dtype=np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        return v


def _topk_merge(best: tuple[np.ndarray, np.ndarray], sims: np.ndarray, first: int) -> Any:
    """Keep the K best (similarity, id) per query across batches."""
    ids = np.broadcast_to(np.arange(first, first + sims.shape[1]), sims.shape)
    all_s = np.concatenate([best[0], sims], axis=1)
    all_i = np.concatenate([best[1], ids], axis=1)
    top = np.argpartition(-all_s, K - 1, axis=1)[:, :K]
    return np.take_along_axis(all_s, top, 1), np.take_along_axis(all_i, top, 1)


def _pct(samples: list[float]) -> str:
    ms = np.asarray(samples) * 1000
    return f"p50 {np.percentile(ms, 50):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms"


def run(n: int) -> None:
    print(f"\n-- approximate vector index: {n:,} vectors of {DIM}-d ({_load()}) --", flush=True)
    gen = Vectors()
    queries = gen.batch(QUERIES)
    truth = (np.full((QUERIES, K), -np.inf, np.float32), np.zeros((QUERIES, K), np.int64))
    vi = VectorIndex(DIM, AnnParams(threshold=1 << 62))
    gc.collect()
    rss0 = _rss_mb()
    for start in range(0, n, BATCH):
        x = gen.batch(min(BATCH, n - start))
        vi.add_many(start, list(x))
        truth = _topk_merge(truth, queries @ x.T, start)
        del x
    gc.collect()
    rss_rows = _rss_mb() - rss0
    truth_sets = [set(t.tolist()) for t in truth[1]]
    print(
        f"int8 rows: {rss_rows:,.0f} MB resident ({rss_rows * 2**20 / n:,.0f} B/vector; "
        f"{vi.bytes_per_vector} B of data)",
        flush=True,
    )

    rss1 = _rss_mb()
    t = time.perf_counter()
    vi.build_ann()
    build_s = time.perf_counter() - t
    gc.collect()
    ann = vi._ann
    assert ann is not None
    ann_mb = _rss_mb() - rss1
    print(
        f"faiss IVF build: {build_s:.1f} s ({n / build_s:,.0f} vectors/s), "
        f"+{ann_mb:,.0f} MB resident ({ann_mb * 2**20 / n:,.0f} B/vector; codes and ids "
        f"{ann.memory_bytes() / n:,.0f} B/vector)",
        flush=True,
    )
    everything = np.ones(n, np.bool_)
    p = vi.ann_params
    for label, exact, nprobe in (
        (f"faiss IVF, {p.nprobe} lists", False, p.nprobe),
        (f"faiss IVF, {2 * p.nprobe} lists", False, 2 * p.nprobe),
        ("exact (int8 rows)", True, p.nprobe),
    ):
        vi.ann_params = dataclasses.replace(p, nprobe=nprobe)
        lat, rec = [], []
        for q, want in zip(queries, truth_sets, strict=True):
            t = time.perf_counter()
            hits = vi.search(q, K, everything, exact=exact)
            lat.append(time.perf_counter() - t)
            rec.append(len(want & set(hits.docs.tolist())) / K)
            if exact and len(lat) >= (30 if n <= 200_000 else 10):  # seconds each at 1M
                break
        print(f"  {label:28} recall@10 {np.mean(rec):.4f}, {_pct(lat)}", flush=True)
    vi.ann_params = p

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "vectors.ann"
        t = time.perf_counter()
        vi.save_ann(path)
        save_s = time.perf_counter() - t
        size = path.stat().st_size
        t = time.perf_counter()
        loaded = AnnIndex.load(path, vi.ann_params.shape())
        load_s = time.perf_counter() - t
        assert loaded.ntotal == n
    print(
        f"  saved in {save_s:.2f} s ({size / 2**20:,.0f} MB, {size / n:,.0f} B/vector), "
        f"loaded in {load_s:.2f} s",
        flush=True,
    )
    if n <= HNSW_UP_TO:
        del ann
        vi._ann = None
        gc.collect()
        _hnswlib(vi.vectors_of(np.arange(n)), queries, truth_sets)
    print(f"({_load()})", flush=True)


def _hnswlib(rows: np.ndarray, queries: np.ndarray, truth_sets: list[set[int]]) -> None:
    """The index before: hnswlib HNSW (M 16, ef 64 to build, 96 to search) on float32 copies
    of the same int8 rows."""
    try:
        import hnswlib
    except ImportError:
        print("  (hnswlib not installed: the index before is not measured)")
        return
    n = len(rows)
    rss = _rss_mb()
    t = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=DIM)
    index.init_index(max_elements=n, ef_construction=64, M=16)
    index.set_num_threads(1)
    index.add_items(rows, np.arange(n))
    build_s = time.perf_counter() - t
    mb = _rss_mb() - rss
    index.set_ef(96)
    lat, rec = [], []
    for q, want in zip(queries, truth_sets, strict=True):
        t = time.perf_counter()
        labels, _ = index.knn_query(q, k=K)
        lat.append(time.perf_counter() - t)
        rec.append(len(want & set(labels[0].tolist())) / K)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "h.bin")
        index.save_index(path)
        t = time.perf_counter()
        hnswlib.Index(space="ip", dim=DIM).load_index(path)
        load_s = time.perf_counter() - t
    print(
        f"  before, hnswlib: build {build_s:.1f} s (one thread), +{mb:,.0f} MB "
        f"({mb * 2**20 / n:,.0f} B/vector), recall@10 {np.mean(rec):.4f}, {_pct(lat)}, "
        f"loaded in {load_s:.2f} s",
        flush=True,
    )


def real_recall(x: np.ndarray) -> None:
    """recall@10 of the approximate index (plus exact rescoring) against float32 on real
    photo features `x` (unit rows), each vector's own row left out."""
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    truth = np.argsort(-sims, axis=1)[:, :K]
    vi = VectorIndex(x.shape[1], AnnParams(threshold=len(x) // 2))
    vi.add_many(0, list(x))
    for label, exact in (("faiss IVF + rescoring", False), ("int8 exact", True)):
        rec = []
        for i, q in enumerate(x):
            allowed = np.ones(len(x), np.bool_)
            allowed[i] = False
            got = vi.search(q, K, allowed, exact=exact).docs
            rec.append(len(set(truth[i].tolist()) & set(got.tolist())) / K)
        print(f"  {label:22} recall@10 vs float32 {np.mean(rec):.4f} over {len(x)} vectors")


if __name__ == "__main__":
    run(int(sys.argv[1]) if sys.argv[1:] else 100_000)
