"""The write that grows the int8 vector rows: `python -m benchmarks.vector_growth_bench N`.

Fills a VectorIndex (1280-d, no approximate index) with N vectors a batch at a time, then
times single writes as the durable index makes them (reserve room before its search lock, then
add) across the next `WRITES` documents, and prints the longest and median write (wall and
this thread's CPU) and where the longest fell. With rows in one array (before chunks) the
write that doubles it copies every row; run this against an older checkout of search_service
(PYTHONPATH) for the figure before. With 10k batches that array holds 10k x 2^k rows
(320000, 1280000), so the first write past such an N is the one that doubles it.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

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


if __name__ == "__main__":
    for arg in sys.argv[1:] or ["320000"]:
        run(int(arg))
