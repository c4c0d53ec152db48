"""Top-k cosine search over L2-normalised feature vectors: exact with numpy, approximate
(faiss IVF, search_service/ann.py) once the collection passes a configurable size.

Rows are document numbers; a document without a vector, or a removed one, simply is never
allowed. Filters go into the approximate scan as a bitmap; it falls back to exact search when
they leave too few hits, so filters never make results silently short, and a filter that
allows few documents is answered exactly over those alone.

Vectors are kept as int8 with one float per row (1284 bytes instead of 5120 for 1280-d): the
row's components rounded to the nearest of 255 steps of its largest magnitude, and the factor
that makes the stored row unit length again, so similarities come out as cosines of the
rounded vectors. On EfficientNet features of real photos and crops of them, top-10 neighbours
found this way agree with float32's at recall@10 0.99+ (`make bench PART=scale` measures it).
These rows are the only copy: the approximate index keeps a 136-byte code per vector (PCA to
256 dimensions, 4 bits each, and the document number) to pick candidates, which are rescored
exactly against the rows, so an approximate hit has the same similarity as an exact one.

The rows live in chunks of CHUNK_ROWS that never move. Chunks held by a snapshot file are
read-only memory maps of it (after a restart, and after each snapshot the whole chunks it wrote
are swapped for maps of the new file): the kernel reads them in when they are used and may drop
them under memory pressure, so resident anonymous memory does not grow with the vectors; only
the rows added since the last snapshot are in anonymous memory. Rows are never written after
they are appended (a removal clears the row's live flag; an update is a removal and a new row),
so a mapped row never needs a private copy.
"""

from __future__ import annotations

import logging
import mmap
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from search_service.ann import AnnIndex, AnnShape
from search_service.growable import ChunkedRows, GrowableArray
from search_service.snapshot import ArrayParts, map_section, mapping_of

log = logging.getLogger(__name__)

# Rows converted to float32 at a time by exact search and index builds.
_EXACT_BLOCK = 16_384
# Candidates rescored per numpy product: past about 256 rows the product goes to BLAS's
# worker threads, which on a loaded machine made 1024 candidates take 23 ms instead of 0.3.
_RESCORE_BLOCK = 256
# Rows quantised at a time when vectors are added (float32 temporaries of 5 MB).
_QUANTISE_BLOCK = 1024
# Vector rows per chunk (21 MB of int8 rows at 1280-d): rows are added a chunk at a time and
# never moved, so no write waits for a copy of every vector.
CHUNK_ROWS = 16_384
# How the kernel reads mapped vector rows it does not hold: rescoring reads about a thousand
# random rows (1.3 KB each) per query, and the default read-around of 128 KB per fault made a
# query whose rows had been evicted read about 400 MB at 320k vectors (p50 460 ms, against
# 164 ms reading single pages). Scans of every row ask for read-ahead first (_prefetch).
MAP_ADVICE = mmap.MADV_RANDOM


@dataclass(frozen=True)
class VectorHits:
    docs: npt.NDArray[np.int64]
    similarities: npt.NDArray[np.float32]
    approximate: bool


@dataclass(frozen=True)
class AnnParams:
    # Past this many vectors searches use the approximate index (unless exact is asked for).
    threshold: int = 20_000
    # faiss IVF: PCA dimensions, at most this many lists (about 2 sqrt(n)), lists scanned per
    # query, candidates rescored exactly, code per reduced vector (see search_service/ann.py).
    pca_dims: int = 256
    max_lists: int = 2048
    nprobe: int = 48  # 32: recall@10 0.988, 48: 0.990, 64: 0.991 at 100k synthetic
    # 1024 candidates: recall@10 at 1M synthetic 0.983 (exact int8: 0.980); 256: 0.851.
    candidates: int = 1024
    codec: str = "SQ4"
    # Rebuilt (lists and PCA trained again) once it holds this many times the vectors it was
    # trained on: lists sized for 20k vectors would be long and slow at a million.
    regrow_factor: int = 4
    # A filter allowing at most this many documents (or the threshold, if lower) is answered
    # exactly over those alone: cheaper than the approximate scan plus its rescoring.
    exact_below: int = 5_000
    # Build the approximate index in a background thread when the threshold is crossed (the
    # service), so the write that crosses it does not stall every query for the build; exact
    # search answers meanwhile. Off by default: a caller that builds explicitly waits.
    build_in_background: bool = False

    def shape(self) -> AnnShape:
        return AnnShape(self.pca_dims, self.max_lists, self.nprobe, self.candidates, self.codec)


# VectorIndex.prepare_add: quantised rows, their factors, and their documents' offsets.
PreparedVectors = tuple[npt.NDArray[np.int8], npt.NDArray[np.float32], npt.NDArray[np.int64]]


class VectorIndex:
    """Vectors stored as rows in arrival order; a document without a vector takes no row."""

    def __init__(self, dim: int = 1280, ann: AnnParams | None = None) -> None:
        self.dim = dim
        self.ann_params = ann or AnnParams()
        self._row_of = GrowableArray(np.int64)  # per document number; -1 = no vector
        # Per row, quantised (see above), and the factor that makes the int8 row a unit
        # vector; in chunks that never move (growing copies nothing).
        self._vectors = ChunkedRows(np.int8, (dim,), CHUNK_ROWS)
        self._factors = ChunkedRows(np.float32, (), CHUNK_ROWS)
        self._row_doc = GrowableArray(np.int64)  # per row: its document number
        self._row_live = GrowableArray(np.bool_)  # per row: not removed
        self._live = 0
        self._ann: AnnIndex | None = None
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

    def add_many(
        self,
        first: int,
        vectors: list[npt.NDArray[np.float32] | None],
        prepared: PreparedVectors | None = None,
    ) -> None:
        """Documents first, first + 1, ... with these vectors (None: no vector), quantised in
        one go (`prepared`: prepare_add(vectors), made beforehand, outside the index lock)."""
        if first != len(self._row_of):
            raise ValueError(f"document numbers must be dense: got {first}")
        if prepared is None:
            prepared = self.prepare_add(vectors)
        q, factors, kept = prepared
        docs = first + kept
        with self._lock:
            row_of = np.full(len(vectors), -1, np.int64)
            start = len(self._row_live)
            row_of[docs - first] = start + np.arange(kept.size)
            self._row_of.extend(row_of)
            if not kept.size:
                return
            self._vectors.extend(q)
            self._factors.extend(factors)
            self._row_doc.extend(docs)
            self._row_live.extend(np.ones(kept.size, np.bool_))
            self._live += int(kept.size)
            if self._ann is not None:
                self._ann.add(docs, self._unit_rows(start + np.arange(kept.size)))
            if self._ann_due() and not self._building():
                if self.ann_params.build_in_background:
                    self._build_in_background()
                else:
                    self.build_ann()

    def prepare_add(self, vectors: list[npt.NDArray[np.float32] | None]) -> PreparedVectors:
        """The rows add_many stores for these vectors: quantised rows, their factors, and the
        offsets (in `vectors`) of the documents they belong to (a missing or all-zero vector
        takes no row). Reads nothing of the index: made before taking the index lock."""
        present = [i for i, v in enumerate(vectors) if v is not None]
        data = self._stacked([vectors[i] for i in present])
        q, factors, nonzero = self._quantised(data)
        kept = np.flatnonzero(nonzero)
        if kept.size < len(present):  # all-zero vectors: no row
            q, factors = q[kept], factors[kept]
        return q, factors, np.asarray(present, np.int64)[kept]

    def reserve(self, extra: int) -> None:
        """Room for `extra` more documents and rows, made now: the vector rows' next chunk if
        they need one (nothing copied), and room in the per-document and per-row arrays
        (doubling one copies it: 8 bytes a document, 8 MB at 1M). A writer calls this before
        taking the lock searches wait on (no other writer may add meanwhile)."""
        for arr in (self._row_of, self._row_doc, self._row_live):
            arr.reserve(extra)
        self._vectors.reserve(extra)  # a new chunk, if one is needed (nothing copied)
        self._factors.reserve(extra)

    def _stacked(self, vectors: list[Any]) -> npt.NDArray[np.float32]:
        """The vectors as rows of one float32 array (one copy, not one per vector)."""
        if not vectors:
            return np.zeros((0, self.dim), np.float32)
        try:
            data = np.stack(vectors).astype(np.float32, copy=False)
        except ValueError:  # shapes differ: name the first wrong one
            data = np.zeros((0,), np.float32)
        if data.shape != (len(vectors), self.dim):
            for v in vectors:
                size = np.asarray(v).size
                if np.shape(v) != (self.dim,):
                    raise ValueError(f"feature vector must have {self.dim} values, got {size}")
        return data

    def _quantised(
        self, data: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
        """quantise() of the rows made unit length, _QUANTISE_BLOCK rows at a time (its
        temporaries then stay small enough to be reused instead of mapped and faulted in
        afresh for every batch), and which rows are not all zeros (their outputs are junk)."""
        n = len(data)
        q = np.empty((n, self.dim), np.int8)
        factors = np.empty(n, np.float32)
        nonzero = np.empty(n, np.bool_)
        for s in range(0, n, _QUANTISE_BLOCK):
            block = data[s : s + _QUANTISE_BLOCK]
            norms = np.linalg.norm(block, axis=1)
            nonzero[s : s + len(block)] = ok = norms > 0
            norms[~ok] = 1  # all zeros: stays zeros, no NaN
            q[s : s + len(block)], factors[s : s + len(block)] = quantise(block / norms[:, None])
        return q, factors, nonzero

    def _ann_due(self) -> bool:
        """No approximate index yet at the threshold, or one trained on far fewer vectors."""
        p = self.ann_params
        if self._ann is None:
            return self._live >= p.threshold
        return self._live >= p.regrow_factor * max(self._ann.trained_on, p.threshold)

    def _building(self) -> bool:
        return self._builder is not None and self._builder.is_alive()

    def remove(self, docno: int) -> None:
        with self._lock:
            row = int(self._row_of[docno]) if docno < len(self._row_of) else -1
            if row >= 0 and self._row_live[row]:
                self._row_live[row] = False
                self._live -= 1
                if self._ann is not None:
                    self._ann.remove(docno)

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
        if rows.size > CHUNK_ROWS:  # a large gather (duplicates, index builds): most pages
            with self._scanning():
                return self._unit_rows_of(rows)
        return self._unit_rows_of(rows)

    def _unit_rows_of(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        out: npt.NDArray[np.float32] = self._vectors.take(rows).astype(np.float32)
        out *= self._factors.take(rows)[:, None]
        return out

    @property
    def bytes_per_vector(self) -> int:
        return self.dim * self._vectors.dtype.itemsize + self._factors.dtype.itemsize

    def build_ann(self) -> None:
        """(Re)build the approximate index over every live vector, in this thread."""
        with self._lock:
            rows = np.flatnonzero(self._row_live.view())
            keys = self._row_doc.view()[rows]
            self._ann = self._new_ann(keys, rows)

    def _new_ann(self, keys: npt.NDArray[np.int64], rows: npt.NDArray[np.int64]) -> AnnIndex:
        """Rows below len(self._row_live) at the call never change (rows are only appended;
        removal clears their live flag), so this may run without the lock."""
        return AnnIndex.build(
            self.dim, keys, lambda at: self._unit_rows(rows[at]), self.ann_params.shape()
        )

    def _build_in_background(self) -> None:
        """Build from the rows there are now; then, under the lock, catch up with the rows added
        and removed meanwhile and swap the index in."""
        seen = len(self._row_live)
        live_then = self._row_live.view()[:seen].copy()
        rows = np.flatnonzero(live_then)
        keys = self._row_doc.view()[rows].copy()

        def run() -> None:
            try:
                index = self._new_ann(keys, rows)
            except Exception:  # never leave the service without its search: exact answers
                log.exception("building the approximate vector index failed")
                return
            with self._lock:
                self._catch_up(index, live_then, seen)
                self._ann = index

        self._builder = threading.Thread(target=run, name="ann-build", daemon=True)
        self._builder.start()

    def _catch_up(self, index: AnnIndex, live_then: npt.NDArray[np.bool_], seen: int) -> int:
        """Into `index`, made from the rows below `seen` that were live in `live_then`: remove
        the ones removed since, add the live rows from `seen` on; the number added."""
        live_now = self._row_live.view()
        gone = np.flatnonzero(live_then[:seen] & ~live_now[:seen])
        index.remove_many(self._row_doc.view()[gone])
        added = np.flatnonzero(live_now[seen:]) + seen
        if added.size:
            index.add(self._row_doc.view()[added], self._unit_rows(added))
        return int(added.size)

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
        candidates: int | None = None,
    ) -> VectorHits:
        """The k allowed documents most similar to `query`. `candidates`: how many the
        approximate index passes on to be rescored (default AnnParams.candidates; near
        duplicates, far closer than any other neighbour, need few)."""
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
        wanted = int(np.count_nonzero(allowed))
        p = self.ann_params
        if wanted <= min(p.exact_below, p.threshold) or wanted <= 4 * k:
            exact = True  # a narrow filter: exact over the allowed documents alone is cheaper
        with self._lock:
            if self._ann is not None and not exact:
                hits = self._search_ann(q, k, None if wanted == n else allowed, candidates)
                if hits is not None:
                    return hits
        if wanted < n // 8:
            docs = np.flatnonzero(allowed)
            rows = self._row_of.view()[docs]
            keep = rows >= 0
            keep[keep] = self._row_live.view()[rows[keep]]
            return self._rescore(q, k, rows[keep], approximate=False)
        row_mask = self._row_live.view() & allowed[self._row_doc.view()]
        return self._search_exact(q, k, row_mask)

    def _search_exact(self, q: Any, k: int, row_mask: Any) -> VectorHits:
        n = len(row_mask)
        sims = np.empty(n, np.float32)
        with self._scanning():
            self._scan(q, n, sims)
        sims[~row_mask] = -np.inf
        k = min(k, int(row_mask.sum()))
        if k <= 0:
            return VectorHits(np.zeros(0, np.int64), np.zeros(0, np.float32), False)
        top = np.argpartition(-sims, k - 1)[:k]
        top = top[np.argsort(-sims[top], kind="stable")]
        docs = self._row_doc.view()[top]
        return VectorHits(docs.astype(np.int64), sims[top].astype(np.float32), False)

    def _scan(self, q: Any, n: int, sims: npt.NDArray[np.float32]) -> None:
        """sims[row] = similarity of row to q, for rows below n."""
        factors = self._factors.blocks(n)
        for (start, chunk), (_, chunk_factors) in zip(
            self._vectors.blocks(n), factors, strict=True
        ):
            for at in range(0, len(chunk), _EXACT_BLOCK):  # bounded float32 temporaries
                block = chunk[at : at + _EXACT_BLOCK].astype(np.float32)
                part = sims[start + at : start + at + len(block)]
                np.matmul(block, q, out=part)
                part *= chunk_factors[at : at + len(block)]

    def _rescore(
        self, q: Any, k: int, rows: npt.NDArray[np.int64], approximate: bool
    ) -> VectorHits:
        """The best k of these (live) rows by their exact similarity to q, best first (ties by
        row, as exact search orders them)."""
        rows = np.sort(rows)
        sims = np.empty(rows.size, np.float32)
        stored = self._vectors.take(rows)  # one gather across the chunks (int8: 1.3 MB)
        for start in range(0, rows.size, _RESCORE_BLOCK):
            part = stored[start : start + _RESCORE_BLOCK]
            sims[start : start + _RESCORE_BLOCK] = part.astype(np.float32) @ q
        sims *= self._factors.take(rows)
        k = min(k, rows.size)
        top = np.argpartition(-sims, k - 1)[:k] if k else np.zeros(0, np.int64)
        top = top[np.argsort(-sims[top], kind="stable")]
        docs = self._row_doc.view()[rows[top]].astype(np.int64)
        return VectorHits(docs, sims[top].astype(np.float32), approximate)

    def _search_ann(
        self, q: Any, k: int, allowed: npt.NDArray[np.bool_] | None, candidates: int | None
    ) -> VectorHits | None:
        """Candidates from the approximate index, rescored exactly; None when it finds fewer
        than k live allowed documents and there are more (the caller searches exactly)."""
        assert self._ann is not None
        p = self.ann_params
        count = max(p.candidates if candidates is None else candidates, 4 * k)
        for nprobe in (p.nprobe, 8 * p.nprobe):
            keys = self._ann.candidates(q, count, allowed, nprobe)
            rows = self._row_of.view()[keys]
            rows = rows[(rows >= 0)]
            rows = rows[self._row_live.view()[rows]]  # removed, not yet purged from the lists
            if rows.size >= k:
                return self._rescore(q, k, rows, approximate=True)
        return None

    # ---- persistence --------------------------------------------------------------------

    def ann_bytes(self) -> bytes | None:
        with self._lock:
            return None if self._ann is None else self._ann.to_bytes()

    def save_ann(self, path: Path) -> int | None:
        """Write the approximate index to `path` (whole or not at all); the number of rows it
        covers (every row below it was added or deliberately left out), None without one.

        Writes wait while it is written (136 bytes per vector: about 0.2 s at 1M), so the
        durable index does this only when the index has grown by a good share (and at close),
        not at every snapshot."""
        with self._lock:
            if self._ann is None:
                return None
            tmp = path.with_name(path.name + ".tmp")
            self._ann.save(tmp)
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
        (views are frozen; the vector rows as the list of their chunks, written as one array);
        which rows are live is copied."""
        return {
            "row_of": self._row_of.view(),
            "rows": self._frozen(self._vectors),
            "factors": self._frozen(self._factors),
            "row_doc": self._row_doc.view(),
            "row_live": self._row_live.view().copy(),
            "ann": None,
        }

    def _frozen(self, rows: ChunkedRows) -> ArrayParts:
        """The rows as one array section; once a snapshot holding it is in place, its whole
        chunks are swapped for views of that file (see _use_file)."""
        blocks = [b for _, b in rows.blocks()]
        whole = sum(1 for b in blocks if len(b) == rows.chunk_rows)

        def written(path: Path, name: str) -> None:
            self._use_file(rows, map_section(path, name), whole)

        return ArrayParts(blocks, rows.dtype, rows.row_shape, on_written=written)

    def _use_file(self, rows: ChunkedRows, mapped: npt.NDArray[Any], whole: int) -> None:
        """Chunks [0, whole) of `rows` become views of `mapped`, the same rows as a snapshot
        file holds them: their anonymous memory (or the mapping of the snapshot this one
        replaced) is let go once no search still reads it, so resident anonymous memory stops
        growing with the vectors, and a replaced snapshot's file is not kept open. Rows below
        a chunk's end never change once written (rows are only appended; removal clears a live
        flag), so a reader finds the same values in either array; one list item is replaced at
        a time (atomic for readers). Only the chunks whole when the snapshot was frozen: the
        last one may still take rows."""
        if rows is not self._vectors and rows is not self._factors:
            return  # replaced meanwhile (a restore or rebuild): nothing to swap
        size = rows.chunk_rows
        whole = min(whole, len(mapped) // size, len(rows.chunks))
        _advise([mapped], MAP_ADVICE)
        for i in range(whole):
            rows.chunks[i] = mapped[i * size : (i + 1) * size]

    @contextmanager
    def _scanning(self) -> Iterator[None]:
        """While every row is read in order: the kernel's read-ahead on the mapped rows
        (MADV_SEQUENTIAL), which MAP_ADVICE turns off for rescoring; a page at a time, a scan
        of evicted rows took 3-8x as long (MADV_WILLNEED first did not help)."""
        chunks = self._vectors.chunks + self._factors.chunks
        if MAP_ADVICE == mmap.MADV_NORMAL or all(mapping_of(c) is None for c in chunks):
            yield
            return
        _advise(chunks, mmap.MADV_SEQUENTIAL)
        try:
            yield
        finally:
            _advise(chunks, MAP_ADVICE)

    def mapped_chunks(self) -> int:
        """How many chunks of vector rows are views of a snapshot file."""
        return sum(1 for c in self._vectors.chunks if mapping_of(c) is not None)

    def state(self) -> dict[str, Any]:
        return {
            "row_of": self._row_of.view(),
            "rows": self._frozen(self._vectors),
            "factors": self._frozen(self._factors),
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
        if isinstance(rows, ArrayParts):  # a state() in memory, not read from a file
            rows = rows.to_array()
        if rows.ndim != 2 or rows.shape[1] != dim:
            raise ValueError(f"saved vectors do not have {dim} dimensions")
        index = cls(dim, ann)
        index._row_of = GrowableArray.from_array(state["row_of"])
        if "factors" in state:
            factors = state["factors"]
            if isinstance(factors, ArrayParts):
                factors = factors.to_array()
        else:  # a snapshot from before vectors were quantised
            rows, factors = quantise(np.asarray(rows, np.float32))
        # Whole chunks are views of the snapshot's memory, a read-only map of its file when it
        # was read from one (snapshot.MAPPED_SECTIONS): loading copies no vector.
        _advise([rows, factors], MAP_ADVICE)
        index._vectors = ChunkedRows.from_array(rows, CHUNK_ROWS)
        index._factors = ChunkedRows.from_array(np.asarray(factors, np.float32), CHUNK_ROWS)
        index._row_doc = GrowableArray.from_array(state["row_doc"])
        index._row_live = GrowableArray.from_array(state["row_live"])
        index._live = int(state["row_live"].sum())
        blob = state["ann"]
        if blob is not None:
            try:
                index._ann = AnnIndex.from_bytes(blob, ann.shape())
            except RuntimeError as exc:
                log.warning(
                    "saved approximate index is not a faiss index (hnswlib, from an older "
                    "version): building it again from the stored vectors",
                    extra={"reason": str(exc)[:200]},
                )
        elif ann_file is not None:
            index._load_ann(*ann_file)
        if index._ann is None and len(index) >= ann.threshold:
            if ann.build_in_background:  # exact search answers meanwhile
                index._build_in_background()
            else:
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
        try:
            restored = AnnIndex.load(path, self.ann_params.shape())
        except RuntimeError as exc:
            log.warning(
                "saved approximate index unreadable or not a faiss index (hnswlib, from an "
                "older version): building it again from the stored vectors",
                extra={"path": str(path), "reason": str(exc)[:200]},
            )
            return
        live = self._row_live.view()
        # Every row below `covered` that was live at the save is in the file; removing one
        # that is not is a no-op, so all rows dead now are removed.
        added = self._catch_up(restored, np.ones(covered, np.bool_), covered)
        self._ann = restored
        self.ann_saved = (path.name, covered)
        log.info(
            "approximate vector index loaded",
            extra={
                "vectors": int(live.sum()),
                "caught_up": added,
                "elapsed_s": round(time.perf_counter() - started, 2),
            },
        )


def _advise(arrays: list[npt.NDArray[Any]], advice: int) -> None:
    """madvise(advice) over each memory map these arrays are views of (once each)."""
    done: set[int] = set()
    for arr in arrays:
        mapping = mapping_of(arr)
        if mapping is not None and id(mapping) not in done:
            done.add(id(mapping))
            mapping.madvise(advice)


def quantise(
    vectors: npt.NDArray[np.float32],
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float32]]:
    """Rows as int8 (each scaled so its largest magnitude is 127) and, per row, the factor
    that turns the int8 row back into a unit vector."""
    peak = np.abs(vectors).max(axis=1, keepdims=True)
    q = np.rint(vectors * (127.0 / np.maximum(peak, 1e-30))).astype(np.int8)
    norms = np.linalg.norm(q.astype(np.float32), axis=1)
    return q, (1.0 / np.maximum(norms, 1e-12)).astype(np.float32)
