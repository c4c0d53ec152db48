"""Top-k cosine search over L2-normalised feature vectors: exact with numpy, approximate
(usearch HNSW) once the collection passes a configurable size.

Rows are document numbers; a document without a vector, or a removed one, simply is never
allowed. The approximate index is asked for more than k and filtered, and falls back to exact
search when filters leave too few hits, so filters never make results silently short.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from usearch.index import Index

from search_service.growable import GrowableArray

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VectorHits:
    docs: npt.NDArray[np.int64]
    similarities: npt.NDArray[np.float32]
    approximate: bool


@dataclass(frozen=True)
class AnnParams:
    # Past this many vectors searches use the approximate index (unless exact is asked for).
    threshold: int = 20_000
    connectivity: int = 16
    expansion_add: int = 128
    expansion_search: int = 128
    # Storage precision inside the approximate index; exact search keeps float32.
    dtype: str = "f16"


class VectorIndex:
    def __init__(self, dim: int = 1280, ann: AnnParams | None = None) -> None:
        self.dim = dim
        self.ann_params = ann or AnnParams()
        self._vectors = GrowableArray(np.float32, (dim,))
        self._present = GrowableArray(np.bool_)
        self._ann: Index | None = None

    def __len__(self) -> int:
        return int(self._present.view().sum())

    @property
    def approximate(self) -> bool:
        return self._ann is not None

    def add(self, docno: int, vector: npt.NDArray[np.float32] | None) -> None:
        if docno != len(self._present):
            raise ValueError(f"document numbers must be dense: got {docno}")
        if vector is None:
            self._vectors.append(np.zeros(self.dim, np.float32))
            self._present.append(False)
            return
        v = np.asarray(vector, dtype=np.float32)
        if v.shape != (self.dim,):
            raise ValueError(f"feature vector must have {self.dim} values, got {v.size}")
        norm = float(np.linalg.norm(v))
        self._vectors.append(v / norm if norm > 0 else v)
        self._present.append(norm > 0)
        if self._ann is not None and norm > 0:
            self._ann.add(docno, self._vectors[docno])
        elif self._ann is None and len(self) >= self.ann_params.threshold:
            self.build_ann()

    def remove(self, docno: int) -> None:
        if docno < len(self._present) and self._present[docno]:
            self._present[docno] = False
            if self._ann is not None:
                self._ann.remove(docno)

    def vector(self, docno: int) -> npt.NDArray[np.float32] | None:
        if docno < len(self._present) and self._present[docno]:
            return np.asarray(self._vectors[docno])
        return None

    def present(self) -> npt.NDArray[np.bool_]:
        return self._present.view()

    def matrix(self) -> npt.NDArray[np.float32]:
        return self._vectors.view()

    def build_ann(self, progress: bool = False) -> None:
        """(Re)build the approximate index over every present vector."""
        p = self.ann_params
        index = Index(
            ndim=self.dim,
            metric="cos",
            dtype=p.dtype,
            connectivity=p.connectivity,
            expansion_add=p.expansion_add,
            expansion_search=p.expansion_search,
        )
        keys = np.flatnonzero(self._present.view()).astype(np.uint64)
        log.info("building approximate vector index", extra={"vectors": int(keys.size)})
        if keys.size:
            index.add(keys, self._vectors.view()[keys.astype(np.int64)], log=progress)
        self._ann = index

    def search(
        self,
        query: npt.NDArray[np.float32],
        k: int,
        allowed: npt.NDArray[np.bool_],
        exact: bool = False,
    ) -> VectorHits:
        q = np.asarray(query, dtype=np.float32)
        if q.shape != (self.dim,):
            raise ValueError(f"query vector must have {self.dim} values, got {q.size}")
        norm = float(np.linalg.norm(q))
        if norm == 0:
            raise ValueError("query vector is all zeros")
        q = q / norm
        mask = allowed[: len(self._present)] & self._present.view()
        if self._ann is not None and not exact:
            hits = self._search_ann(q, k, mask)
            if hits is not None:
                return hits
        return self._search_exact(q, k, mask)

    def _search_exact(self, q: Any, k: int, mask: Any) -> VectorHits:
        sims = self._vectors.view() @ q
        sims[~mask] = -np.inf
        k = min(k, int(mask.sum()))
        if k == 0:
            return VectorHits(np.zeros(0, np.int64), np.zeros(0, np.float32), False)
        top = np.argpartition(-sims, k - 1)[:k]
        top = top[np.argsort(-sims[top], kind="stable")]
        return VectorHits(top.astype(np.int64), sims[top].astype(np.float32), False)

    def _search_ann(self, q: Any, k: int, mask: Any) -> VectorHits | None:
        assert self._ann is not None
        available = int(mask.sum())
        for factor in (2, 16):
            count = min(k * factor + 8, len(self._ann))
            found = self._ann.search(q, count)
            keys = np.asarray(found.keys, dtype=np.int64)
            sims = 1.0 - np.asarray(found.distances, dtype=np.float32)
            keep = mask[keys]
            if keep.sum() >= min(k, available):
                keys, sims = keys[keep][:k], sims[keep][:k]
                return VectorHits(keys, sims.astype(np.float32), True)
        return None

    # ---- persistence --------------------------------------------------------------------

    def ann_bytes(self) -> bytes | None:
        blob = self._ann.save() if self._ann is not None else None
        return bytes(blob) if blob is not None else None

    @classmethod
    def restore(
        cls,
        vectors: npt.NDArray[np.float32],
        present: npt.NDArray[np.bool_],
        ann: AnnParams,
        ann_blob: bytes | None,
    ) -> VectorIndex:
        index = cls(vectors.shape[1], ann)
        index._vectors = GrowableArray.from_array(vectors)
        index._present = GrowableArray.from_array(present)
        if ann_blob is not None:
            restored = Index.restore(bytearray(ann_blob))
            if restored is not None:
                # usearch declares the setter apart from the property; mypy misses it.
                restored.expansion_search = ann.expansion_search  # type: ignore[misc]
            index._ann = restored
        if index._ann is None and len(index) >= ann.threshold:
            index.build_ann()
        return index
