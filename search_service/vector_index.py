"""Top-k cosine search over L2-normalised feature vectors: exact with numpy, approximate
(hnswlib HNSW) once the collection passes a configurable size.

hnswlib rather than usearch: usearch's compiled module crashes the process (SIGSEGV) when
onnxruntime is imported after it, and the vision models share processes with this index in
tests and tools.

Rows are document numbers; a document without a vector, or a removed one, simply is never
allowed. The approximate index is asked for more than k and filtered, and falls back to exact
search when filters leave too few hits, so filters never make results silently short.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import hnswlib
import numpy as np
import numpy.typing as npt

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
    # HNSW graph degree (M), build-time and search-time candidate list sizes (ef).
    connectivity: int = 16
    expansion_add: int = 100
    expansion_search: int = 96


class VectorIndex:
    def __init__(self, dim: int = 1280, ann: AnnParams | None = None) -> None:
        self.dim = dim
        self.ann_params = ann or AnnParams()
        self._vectors = GrowableArray(np.float32, (dim,))
        self._present = GrowableArray(np.bool_)
        self._ann: hnswlib.Index | None = None

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
            self._ann_add(np.asarray([docno]), self._vectors.view()[docno : docno + 1])
        elif self._ann is None and len(self) >= self.ann_params.threshold:
            self.build_ann()

    def remove(self, docno: int) -> None:
        if docno < len(self._present) and self._present[docno]:
            self._present[docno] = False
            if self._ann is not None:
                self._ann.mark_deleted(docno)

    def vector(self, docno: int) -> npt.NDArray[np.float32] | None:
        if docno < len(self._present) and self._present[docno]:
            return np.asarray(self._vectors[docno])
        return None

    def present(self) -> npt.NDArray[np.bool_]:
        return self._present.view()

    def matrix(self) -> npt.NDArray[np.float32]:
        return self._vectors.view()

    def build_ann(self) -> None:
        """(Re)build the approximate index over every present vector."""
        p = self.ann_params
        keys = np.flatnonzero(self._present.view())
        log.info("building approximate vector index", extra={"vectors": int(keys.size)})
        index = hnswlib.Index(space="ip", dim=self.dim)
        index.init_index(
            max_elements=max(1024, 2 * keys.size),
            ef_construction=p.expansion_add,
            M=p.connectivity,
            allow_replace_deleted=True,
        )
        index.set_ef(p.expansion_search)
        self._ann = index
        if keys.size:
            self._ann_add(keys, self._vectors.view()[keys])

    def _ann_add(self, keys: npt.NDArray[np.int64], rows: npt.NDArray[np.float32]) -> None:
        assert self._ann is not None
        needed = self._ann.element_count + len(keys)
        if needed > self._ann.max_elements:
            self._ann.resize_index(max(2 * self._ann.max_elements, needed))
        self._ann.add_items(rows, keys, replace_deleted=True)

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
            count = min(k * factor + 8, len(self))
            self._ann.set_ef(max(self.ann_params.expansion_search, count))
            try:
                labels, distances = self._ann.knn_query(q, k=count)
            except RuntimeError:  # fewer reachable points than asked for
                return None
            keys = labels[0].astype(np.int64)
            # "ip" distance is 1 - inner product; vectors are unit length, so this is cosine.
            sims = 1.0 - distances[0].astype(np.float32)
            keep = mask[keys]
            if keep.sum() >= min(k, available):
                return VectorHits(keys[keep][:k], sims[keep][:k], True)
        return None

    # ---- persistence --------------------------------------------------------------------

    def ann_bytes(self) -> bytes | None:
        if self._ann is None:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "ann.bin")
            self._ann.save_index(path)
            with open(path, "rb") as f:
                return f.read()

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
            restored = hnswlib.Index(space="ip", dim=index.dim)
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "ann.bin")
                with open(path, "wb") as f:
                    f.write(ann_blob)
                restored.load_index(path, allow_replace_deleted=True)
            restored.set_ef(ann.expansion_search)
            index._ann = restored
        if index._ann is None and len(index) >= ann.threshold:
            index.build_ann()
        return index
