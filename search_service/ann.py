"""The approximate nearest-neighbour index over the feature vectors: faiss IVF with compact
codes, a candidate generator only.

It holds no copy of the vectors: each one is reduced by PCA to `pca_dims` dimensions and stored
as a 4-bit scalar-quantised code (128 bytes at 256 dims) plus its document number (8 bytes) in
the inverted list of its nearest of `nlist` centroids. A query scans its `nprobe` nearest lists
and returns the best `candidates`; VectorIndex rescores those exactly against its int8 rows, so
similarities and order are the exact search's for every candidate found. Unit vectors under L2
distance rank as under cosine, and PCA keeps L2 distances (it centres the data, which would
skew inner products).

IVF rather than HNSW: faiss's HNSW cannot remove vectors and needs the full vectors (or large
codes) to build a good graph; IVF lists support remove_ids, add needs no graph search, and the
saved file is small enough to load in well under a second at 1M vectors. Filters go into the
scan as a bitmap selector, so a filtered query is not answered short.

faiss runs on one OpenMP thread here (set per calling thread, as OpenMP keeps the setting per
thread): the service shares two cores with others, and OpenMP's spinning workers made queries
30x slower under load.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

# Vectors encoded per faiss call while building (bounded float32 temporaries).
_ADD_BATCH = 50_000
_TRAIN_PER_LIST = 40
_MAX_TRAIN = 100_000


@dataclass(frozen=True)
class AnnShape:
    pca_dims: int = 256
    # Centroids: about 2 sqrt(n) at build time, a power of two, at most this many.
    max_lists: int = 2048
    nprobe: int = 48
    candidates: int = 1024
    codec: str = "SQ4"
    threads: int = 1


def lists_for(n: int, max_lists: int) -> int:
    """Inverted lists for n vectors: about 2 sqrt(n), a power of two, with at least 40
    training vectors each."""
    want = max(1, min(max_lists, int(2 * math.sqrt(max(n, 1))), n // _TRAIN_PER_LIST))
    return 1 << int(math.log2(want))


class AnnIndex:
    """faiss index over (document number, unit vector); see the module docstring."""

    def __init__(self, index: Any, shape: AnnShape, trained_on: int) -> None:
        self._index = index
        self._ivf = faiss.extract_index_ivf(index)
        self.shape = shape
        self.trained_on = trained_on
        self._pending: list[int] = []  # removed document numbers not yet purged from the lists

    @classmethod
    def build(
        cls,
        dim: int,
        keys: npt.NDArray[np.int64],
        rows_of: Callable[[npt.NDArray[np.int64]], npt.NDArray[np.float32]],
        shape: AnnShape,
    ) -> AnnIndex:
        """Train on a sample and add every vector: rows_of(positions) gives the unit vectors
        of keys[positions]. Logs progress; long at a million vectors (minutes on one core)."""
        _threads(shape.threads)
        n = int(keys.size)
        started = time.perf_counter()
        nlist = lists_for(n, shape.max_lists)
        take = min(n, max(_TRAIN_PER_LIST * nlist, 10_000), _MAX_TRAIN)
        # PCA needs a sample of several times its output dimensions (a small collection's
        # index keeps them all: it is small, and trained again once it has grown).
        reduce = shape.pca_dims < dim and take >= 4 * shape.pca_dims
        spec = f"IVF{nlist},{shape.codec}"
        if reduce:
            spec = f"PCA{shape.pca_dims}," + spec
        index = faiss.index_factory(dim, spec, faiss.METRIC_L2)
        ivf = faiss.extract_index_ivf(index)
        ivf.cp.niter = 10
        picks = np.sort(np.random.default_rng(0).choice(n, take, replace=False))
        sample = np.concatenate(
            [rows_of(picks[s : s + _ADD_BATCH]) for s in range(0, take, _ADD_BATCH)]
        )
        log.info(
            "training approximate vector index",
            extra={"vectors": n, "lists": nlist, "sample": take, "spec": spec},
        )
        index.train(sample)
        del sample
        out = cls(index, shape, n)
        for start in range(0, n, _ADD_BATCH):
            stop = min(n, start + _ADD_BATCH)
            out.add(keys[start:stop], rows_of(np.arange(start, stop)))
            if n > _ADD_BATCH:
                log.info(
                    "approximate vector index: vectors added",
                    extra={"done": stop, "total": n},
                )
        log.info(
            "approximate vector index built",
            extra={"vectors": n, "elapsed_s": round(time.perf_counter() - started, 2)},
        )
        return out

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    def add(self, keys: npt.NDArray[np.int64], rows: npt.NDArray[np.float32]) -> None:
        _threads(self.shape.threads)
        self._index.add_with_ids(
            np.ascontiguousarray(rows, np.float32), np.ascontiguousarray(keys, np.int64)
        )

    def remove(self, key: int) -> None:
        """Forget `key`. Purging an IVF list entry reads every list, so removals are gathered
        and purged together once they are 1% of the index (callers filter removed keys out of
        the candidates meanwhile)."""
        self._pending.append(key)
        if len(self._pending) >= max(1024, self.ntotal // 100):
            self.purge()

    def remove_many(self, keys: npt.NDArray[np.int64]) -> None:
        """Forget these keys now (one pass over the lists)."""
        self._pending.extend(np.asarray(keys, np.int64).tolist())
        self.purge()

    def purge(self) -> None:
        if self._pending:
            _threads(self.shape.threads)
            self._index.remove_ids(faiss.IDSelectorBatch(np.asarray(self._pending, np.int64)))
            self._pending = []

    def candidates(
        self,
        query: npt.NDArray[np.float32],
        count: int,
        allowed: npt.NDArray[np.bool_] | None,
        nprobe: int,
    ) -> npt.NDArray[np.int64]:
        """Up to `count` keys near `query`, best first by the codes' estimate; only keys set
        in `allowed` (indexed by key; None: all)."""
        _threads(self.shape.threads)
        bitmap = None
        params = faiss.SearchParametersIVF()
        params.nprobe = min(nprobe, int(self._ivf.nlist))
        if allowed is not None:
            bitmap = np.packbits(allowed, bitorder="little")
            params.sel = faiss.IDSelectorBitmap(allowed.size, faiss.swig_ptr(bitmap))
        _, labels = self._index.search(query[None, :], count, params=params)
        del bitmap  # the selector points into it until the search is over
        found = labels[0]
        return found[found >= 0].astype(np.int64)

    def save(self, path: Path) -> None:
        self.purge()
        faiss.write_index(self._index, str(path))

    def to_bytes(self) -> bytes:
        self.purge()
        return bytes(faiss.serialize_index(self._index))

    @classmethod
    def load(cls, path: Path, shape: AnnShape) -> AnnIndex:
        """RuntimeError if the file is not a faiss IVF index (an hnswlib file from before)."""
        _threads(shape.threads)
        index = faiss.read_index(str(path))
        return cls._checked(index, shape)

    @classmethod
    def from_bytes(cls, blob: bytes, shape: AnnShape) -> AnnIndex:
        _threads(shape.threads)
        index = faiss.deserialize_index(np.frombuffer(blob, np.uint8))
        return cls._checked(index, shape)

    @classmethod
    def _checked(cls, index: Any, shape: AnnShape) -> AnnIndex:
        try:
            faiss.extract_index_ivf(index)
        except RuntimeError as exc:
            raise RuntimeError(f"not an IVF index: {exc}") from exc
        return cls(index, shape, int(index.ntotal))

    def memory_bytes(self) -> int:
        """Codes and ids held in the inverted lists."""
        ivf = self._ivf
        return int(ivf.ntotal) * (int(ivf.code_size) + 8)


def _threads(n: int) -> None:
    faiss.omp_set_num_threads(n)
