"""Top-k cosine search over L2-normalised feature vectors: exact with numpy, approximate
(hnswlib HNSW) once the collection passes a configurable size.

hnswlib rather than usearch: usearch's compiled module crashes the process (SIGSEGV) when
onnxruntime is imported after it, and the vision models share processes with this index in
tests and tools.

Rows are document numbers; a document without a vector, or a removed one, simply is never
allowed. The approximate index is asked for more than k and filtered, and falls back to exact
search when filters leave too few hits, so filters never make results silently short.

Vectors are kept as int8 with one float per row (1284 bytes instead of 5120 for 1280-d): the
row's components rounded to the nearest of 255 steps of its largest magnitude, and the factor
that makes the stored row unit length again, so similarities come out as cosines of the
rounded vectors. On EfficientNet features of real photos and crops of them, top-10 neighbours
found this way agree with float32's at recall@10 0.99+ (`make bench PART=scale` measures it).
The approximate index (hnswlib) keeps its own float32 copy.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hnswlib
import numpy as np
import numpy.typing as npt

from search_service.growable import GrowableArray

log = logging.getLogger(__name__)

# Rows converted to float32 at a time by exact search and index builds.
_EXACT_BLOCK = 16_384
_ANN_ADD_BATCH = 50_000


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
    expansion_add: int = 64
    expansion_search: int = 96
    # Build the approximate index in a background thread when the threshold is crossed (the
    # service), so the write that crosses it does not stall every query for the build; exact
    # search answers meanwhile. Off by default: a caller that builds explicitly waits.
    build_in_background: bool = False


class VectorIndex:
    """Vectors stored as rows in arrival order; a document without a vector takes no row."""

    def __init__(self, dim: int = 1280, ann: AnnParams | None = None) -> None:
        self.dim = dim
        self.ann_params = ann or AnnParams()
        self._row_of = GrowableArray(np.int64)  # per document number; -1 = no vector
        self._vectors = GrowableArray(np.int8, (dim,))  # per row, quantised (see above)
        self._factors = GrowableArray(np.float32)  # per row: int8 row x factor = unit vector
        self._row_doc = GrowableArray(np.int64)  # per row: its document number
        self._row_live = GrowableArray(np.bool_)  # per row: not removed
        self._live = 0
        self._ann: hnswlib.Index | None = None
        # Guards _ann against the background builder swapping it in mid-call.
        self._lock = threading.RLock()
        self._builder: threading.Thread | None = None
        # The file the approximate index was last saved to and the rows it covered then.
        self.ann_saved: tuple[str, int] | None = None

    def __len__(self) -> int:
        return self._live

    @property
    def approximate(self) -> bool:
        return self._ann is not None

    def add(self, docno: int, vector: npt.NDArray[np.float32] | None) -> None:
        self.add_many(docno, [vector])

    def add_many(self, first: int, vectors: list[npt.NDArray[np.float32] | None]) -> None:
        """Documents first, first + 1, ... with these vectors (None: no vector), quantised in
        one go."""
        if first != len(self._row_of):
            raise ValueError(f"document numbers must be dense: got {first}")
        present = [i for i, v in enumerate(vectors) if v is not None]
        data = np.zeros((len(present), self.dim), np.float32)
        for j, i in enumerate(present):
            v = np.asarray(vectors[i], dtype=np.float32)
            if v.shape != (self.dim,):
                raise ValueError(f"feature vector must have {self.dim} values, got {v.size}")
            data[j] = v
        norms = np.linalg.norm(data, axis=1)
        kept = np.flatnonzero(norms > 0)
        docs = first + np.asarray(present, np.int64)[kept]
        with self._lock:
            row_of = np.full(len(vectors), -1, np.int64)
            start = len(self._row_live)
            row_of[docs - first] = start + np.arange(kept.size)
            self._row_of.extend(row_of)
            if not kept.size:
                return
            q, factors = quantise(data[kept] / norms[kept, None])
            self._vectors.extend(q)
            self._factors.extend(factors)
            self._row_doc.extend(docs)
            self._row_live.extend(np.ones(kept.size, np.bool_))
            self._live += int(kept.size)
            if self._ann is not None:
                _ann_add(self._ann, docs, self._unit_rows(start + np.arange(kept.size)))
            elif self._live >= self.ann_params.threshold and self._builder is None:
                if self.ann_params.build_in_background:
                    self._build_in_background()
                else:
                    self.build_ann()

    def remove(self, docno: int) -> None:
        with self._lock:
            row = int(self._row_of[docno]) if docno < len(self._row_of) else -1
            if row >= 0 and self._row_live[row]:
                self._row_live[row] = False
                self._live -= 1
                if self._ann is not None:
                    self._ann.mark_deleted(docno)

    def vector(self, docno: int) -> npt.NDArray[np.float32] | None:
        row = int(self._row_of[docno]) if docno < len(self._row_of) else -1
        if row >= 0 and self._row_live[row]:
            return self._unit_rows(np.asarray([row]))[0]
        return None

    def present(self) -> npt.NDArray[np.bool_]:
        """Per document number: has a live vector."""
        rows = self._row_of.view()
        out = rows >= 0
        out[out] = self._row_live.view()[rows[out]]
        return out

    def vectors_of(self, docs: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """Rows of the given document numbers (which must have vectors)."""
        return self._unit_rows(self._row_of.view()[docs])

    def _unit_rows(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """Stored rows as float32 unit vectors."""
        out: npt.NDArray[np.float32] = self._vectors.view()[rows].astype(np.float32)
        out *= self._factors.view()[rows][:, None]
        return out

    @property
    def bytes_per_vector(self) -> int:
        return self.dim * self._vectors.view().itemsize + self._factors.view().itemsize

    def build_ann(self) -> None:
        """(Re)build the approximate index over every live vector, in this thread."""
        with self._lock:
            rows = np.flatnonzero(self._row_live.view())
            keys = self._row_doc.view()[rows]
            self._ann = self._new_ann(keys, rows)

    def _new_ann(self, keys: npt.NDArray[np.int64], rows: npt.NDArray[np.int64]) -> Any:
        p = self.ann_params
        log.info("building approximate vector index", extra={"vectors": int(keys.size)})
        started = time.perf_counter()
        index = hnswlib.Index(space="ip", dim=self.dim)
        index.init_index(
            max_elements=max(1024, 2 * keys.size),
            ef_construction=p.expansion_add,
            M=p.connectivity,
            allow_replace_deleted=True,
        )
        index.set_ef(p.expansion_search)
        for start in range(0, keys.size, _ANN_ADD_BATCH):
            part = rows[start : start + _ANN_ADD_BATCH]
            _ann_add(index, keys[start : start + _ANN_ADD_BATCH], self._unit_rows(part))
        log.info(
            "approximate vector index built",
            extra={"vectors": int(keys.size), "elapsed_s": round(time.perf_counter() - started, 2)},
        )
        return index

    def _build_in_background(self) -> None:
        """Build from the rows there are now; then, under the lock, catch up with the rows added
        and removed meanwhile and swap the index in."""
        seen = len(self._row_live)
        live_then = self._row_live.view()[:seen].copy()
        rows = np.flatnonzero(live_then)
        keys = self._row_doc.view()[rows].copy()

        def run() -> None:
            index = self._new_ann(keys, rows)  # rows below `seen` never change
            with self._lock:
                live_now = self._row_live.view()
                for row in np.flatnonzero(live_then & ~live_now[:seen]):
                    index.mark_deleted(int(self._row_doc[row]))
                added = np.flatnonzero(live_now[seen:]) + seen
                if added.size:
                    _ann_add(index, self._row_doc.view()[added], self._unit_rows(added))
                self._ann = index

        self._builder = threading.Thread(target=run, name="ann-build", daemon=True)
        self._builder.start()

    def wait_for_ann(self, timeout_s: float | None = None) -> bool:
        """Wait for a background build; True once the approximate index is in use."""
        builder = self._builder
        if builder is not None:
            builder.join(timeout_s)
        return self._ann is not None

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
        n = len(self._row_of)
        if allowed.size < n:  # numbers past the mask's end are not allowed
            allowed = np.concatenate([allowed, np.zeros(n - allowed.size, np.bool_)])
        allowed = allowed[:n]
        with self._lock:
            if self._ann is not None and not exact:
                hits = self._search_ann(q, k, allowed & self.present())
                if hits is not None:
                    return hits
        row_mask = self._row_live.view() & allowed[self._row_doc.view()]
        return self._search_exact(q, k, row_mask)

    def _search_exact(self, q: Any, k: int, row_mask: Any) -> VectorHits:
        stored = self._vectors.view()
        sims = np.empty(len(stored), np.float32)
        for start in range(0, len(stored), _EXACT_BLOCK):  # bounded float32 temporaries
            block = stored[start : start + _EXACT_BLOCK].astype(np.float32)
            sims[start : start + _EXACT_BLOCK] = block @ q
        sims *= self._factors.view()
        sims[~row_mask] = -np.inf
        k = min(k, int(row_mask.sum()))
        if k <= 0:
            return VectorHits(np.zeros(0, np.int64), np.zeros(0, np.float32), False)
        top = np.argpartition(-sims, k - 1)[:k]
        top = top[np.argsort(-sims[top], kind="stable")]
        docs = self._row_doc.view()[top]
        return VectorHits(docs.astype(np.int64), sims[top].astype(np.float32), False)

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
        with self._lock, tempfile.TemporaryDirectory() as tmp:
            if self._ann is None:
                return None
            path = os.path.join(tmp, "ann.bin")
            self._ann.save_index(path)
            with open(path, "rb") as f:
                return f.read()

    def save_ann(self, path: Path) -> int | None:
        """Write the approximate index to `path` (whole or not at all); the number of rows it
        covers (every row below it was added or deliberately left out), None without one.

        hnswlib holds the GIL while it writes (about 0.1 s per 100k rows of 1280-d), so the
        durable index does this only when the index has grown by a good share (and at close),
        not at every snapshot."""
        with self._lock:
            if self._ann is None:
                return None
            tmp = path.with_name(path.name + ".tmp")
            self._ann.save_index(str(tmp))
            rows = len(self._row_live)
        with tmp.open("rb+") as f:
            os.fsync(f.fileno())
        tmp.replace(path)
        self.ann_saved = (path.name, rows)
        return rows

    def rows(self) -> int:
        return len(self._row_live)

    def frozen_state(self) -> dict[str, Any]:
        """state() as of now without the approximate index (saved apart, see save_ann), cheap
        to take under the writers' lock: rows, their documents and vectors only grow at the end
        (views are frozen); which rows are live is copied."""
        return {
            "row_of": self._row_of.view(),
            "rows": self._vectors.view(),
            "factors": self._factors.view(),
            "row_doc": self._row_doc.view(),
            "row_live": self._row_live.view().copy(),
            "ann": None,
        }

    def state(self) -> dict[str, Any]:
        return {
            "row_of": self._row_of.view(),
            "rows": self._vectors.view(),
            "factors": self._factors.view(),
            "row_doc": self._row_doc.view(),
            "row_live": self._row_live.view(),
            "ann": self.ann_bytes(),
        }

    @classmethod
    def restore(
        cls,
        state: dict[str, Any],
        dim: int,
        ann: AnnParams,
        ann_file: tuple[Path, int] | None = None,
    ) -> VectorIndex:
        """From state(); `ann_file` (path, rows it covers) is an approximate index saved apart,
        loaded and caught up with the rows after it (added) and the rows removed since."""
        rows = state["rows"]
        if rows.ndim != 2 or rows.shape[1] != dim:
            raise ValueError(f"saved vectors do not have {dim} dimensions")
        index = cls(dim, ann)
        index._row_of = GrowableArray.from_array(state["row_of"])
        if "factors" in state:
            index._vectors = GrowableArray.from_array(rows)
            index._factors = GrowableArray.from_array(state["factors"])
        else:  # a snapshot from before vectors were quantised
            q, factors = quantise(np.asarray(rows, np.float32))
            index._vectors = GrowableArray.from_array(q)
            index._factors = GrowableArray.from_array(factors)
        index._row_doc = GrowableArray.from_array(state["row_doc"])
        index._row_live = GrowableArray.from_array(state["row_live"])
        index._live = int(state["row_live"].sum())
        blob = state["ann"]
        if blob is not None:
            restored = hnswlib.Index(space="ip", dim=dim)
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "ann.bin")
                with open(path, "wb") as f:
                    f.write(blob)
                restored.load_index(path, allow_replace_deleted=True)
            restored.set_ef(ann.expansion_search)
            index._ann = restored
        elif ann_file is not None:
            index._load_ann(*ann_file)
        if index._ann is None and len(index) >= ann.threshold:
            index.build_ann()
        return index

    def _load_ann(self, path: Path, covered: int) -> None:
        if not path.exists() or covered > len(self._row_live):
            log.warning(
                "saved approximate index missing or ahead of the snapshot, rebuilding",
                extra={"path": str(path)},
            )
            return
        started = time.perf_counter()
        restored = hnswlib.Index(space="ip", dim=self.dim)
        try:
            restored.load_index(str(path), allow_replace_deleted=True)
        except RuntimeError as exc:
            log.warning(
                "saved approximate index unreadable, rebuilding",
                extra={"path": str(path), "reason": str(exc)},
            )
            return
        restored.set_ef(self.ann_params.expansion_search)
        live = self._row_live.view()
        for row in np.flatnonzero(~live[:covered]).tolist():
            with contextlib.suppress(RuntimeError):  # never added, or deleted before the save
                restored.mark_deleted(int(self._row_doc[row]))
        added = np.flatnonzero(live[covered:]) + covered
        if added.size:
            _ann_add(restored, self._row_doc.view()[added], self._unit_rows(added))
        self._ann = restored
        self.ann_saved = (path.name, covered)
        log.info(
            "approximate vector index loaded",
            extra={
                "vectors": int(live.sum()),
                "caught_up": int(added.size),
                "elapsed_s": round(time.perf_counter() - started, 2),
            },
        )


def quantise(
    vectors: npt.NDArray[np.float32],
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float32]]:
    """Rows as int8 (each scaled so its largest magnitude is 127) and, per row, the factor
    that turns the int8 row back into a unit vector."""
    peak = np.abs(vectors).max(axis=1, keepdims=True)
    q = np.rint(vectors * (127.0 / np.maximum(peak, 1e-30))).astype(np.int8)
    norms = np.linalg.norm(q.astype(np.float32), axis=1)
    return q, (1.0 / np.maximum(norms, 1e-12)).astype(np.float32)


def _ann_add(index: Any, keys: npt.NDArray[np.int64], rows: npt.NDArray[np.float32]) -> None:
    needed = index.element_count + len(keys)
    if needed > index.max_elements:
        index.resize_index(max(2 * index.max_elements, needed))
    index.add_items(rows, keys, replace_deleted=True)
