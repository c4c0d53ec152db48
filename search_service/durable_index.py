"""The search index made durable and safe to share between threads.

On disk (SEARCH_DATA_DIR):
    index.snap     the whole index (snapshot.py format), replaced atomically
    journal.log    changes since that snapshot (journal.py), fsynced per change

Start = read the snapshot, replay the journal, warm caches. A snapshot is taken every
`snapshot_every` changes, after a Rebuild and at shutdown. A snapshot in another format
version (or a damaged one) is not misread: the index starts empty and logs that a Rebuild is
needed. With no data dir the index lives in memory only (tests, the contract check).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search_service import dir_lock
from search_service.document import Document
from search_service.engine import (
    Duplicates,
    EngineParams,
    Filters,
    SearchIndex,
    SearchResult,
    SimilarResult,
    TextEmbedder,
)
from search_service.errors import IndexFormatError, InvalidDocumentError
from search_service.gc_control import collector_paused
from search_service.journal import Journal, replay
from search_service.semantic import ConceptSpace
from search_service.snapshot import flatten, read_snapshot, unflatten, write_snapshot

log = logging.getLogger(__name__)

SNAPSHOT_NAME = "index.snap"
JOURNAL_NAME = "journal.log"
_PROGRESS_EVERY = 10_000
_SKIPPED_REPORTED = 20


@dataclass(frozen=True)
class RebuildResult:
    indexed: int
    skipped_count: int
    # The first few skipped documents, "<image id>: <why>".
    skipped: list[str]


@dataclass(frozen=True)
class Stats:
    document_count: int
    term_count: int
    posting_bytes: int
    index_disk_bytes: int
    vector_count: int
    approximate_index: bool
    vector_backend: str
    load_time_s: float
    semantic_ready: bool


class DurableIndex:
    def __init__(
        self,
        data_dir: Path | None,
        params: EngineParams | None = None,
        snapshot_every: int = 1000,
    ) -> None:
        self.data_dir = data_dir
        self.params = params or EngineParams()
        self.snapshot_every = snapshot_every
        self._lock = threading.RLock()
        self._index = SearchIndex(self.params)
        self._seq = 0
        self._journal: Journal | None = None
        self._semantic: tuple[list[str], Any, TextEmbedder] | None = None
        self.load_time_s = 0.0
        self.needs_rebuild = False
        # One list per Rebuild in progress: the writes the live index took meanwhile, replayed
        # onto the fresh index before it is swapped in so that none is lost.
        self._writes_during_rebuild: list[list[Document | str]] = []
        self._lock_key: Path | None = None

    @classmethod
    def open(
        cls,
        data_dir: Path | None,
        params: EngineParams | None = None,
        snapshot_every: int = 1000,
    ) -> DurableIndex:
        """Load the snapshot and replay the journal in `data_dir` (created if missing).

        Raises DataDirLockedError when another process serves `data_dir`.
        """
        durable = cls(data_dir, params, snapshot_every)
        started = time.perf_counter()
        if data_dir is not None:
            data_dir.mkdir(parents=True, exist_ok=True)
            durable._lock_key = dir_lock.acquire(data_dir)
            with collector_paused():
                durable._load(data_dir)
            durable._journal = Journal(data_dir / JOURNAL_NAME)
        durable.load_time_s = time.perf_counter() - started
        log.info(
            "index loaded",
            extra={"documents": len(durable._index), "load_time_s": round(durable.load_time_s, 3)},
        )
        return durable

    def _load(self, data_dir: Path) -> None:
        path = data_dir / SNAPSHOT_NAME
        if path.exists():
            try:
                state = unflatten(read_snapshot(path))
                self._index = SearchIndex.from_state(state["engine"], self.params)
                self._seq = int(state["seq"])
            except (IndexFormatError, ValueError, KeyError) as exc:
                log.error(
                    "saved index unusable, starting empty: run Rebuild to recreate it",
                    extra={"reason": str(exc), "path": str(path)},
                )
                self._index = SearchIndex(self.params)
                self.needs_rebuild = True
                # The journal belongs to the unusable snapshot: keep it aside, do not replay.
                journal = data_dir / JOURNAL_NAME
                if journal.exists():
                    journal.replace(data_dir / (JOURNAL_NAME + ".orphaned"))
                return
        replayed = 0
        for entry in replay(data_dir / JOURNAL_NAME, self._seq):
            if entry.doc is not None:
                self._index.put(entry.doc)
            else:
                self._index.remove(entry.removed_id)
            self._seq = entry.seq
            replayed += 1
        if replayed:
            log.info("journal replayed", extra={"entries": replayed})

    # ---- semantic expansion -----------------------------------------------------------------

    def attach_semantic(
        self, label_names: list[str], embeddings: Any, embedder: TextEmbedder
    ) -> None:
        with self._lock:
            self._semantic = (label_names, embeddings, embedder)
            self._index.restore_semantic(ConceptSpace(label_names, embeddings), embedder)

    @property
    def semantic_ready(self) -> bool:
        return self._index.semantic_ready

    # ---- writes -----------------------------------------------------------------------------

    def put(self, doc: Document) -> None:
        with self._lock:
            self._index.validate(doc)
            self._seq += 1
            if self._journal is not None:
                self._journal.append_put(self._seq, doc)
            self._index.put(doc)
            for writes in self._writes_during_rebuild:
                writes.append(doc)
            self._after_change()

    def remove(self, image_id: str) -> bool:
        with self._lock:
            if image_id not in self._index:
                return False
            self._seq += 1
            if self._journal is not None:
                self._journal.append_remove(self._seq, image_id)
            self._index.remove(image_id)
            for writes in self._writes_during_rebuild:
                writes.append(image_id)
            self._after_change()
            return True

    def _after_change(self) -> None:
        if self._index.needs_compaction():
            log.info("compacting index", extra={"live_documents": len(self._index)})
            self._index = self._index.compacted()
        if self._journal is not None and self._journal.entries >= self.snapshot_every:
            self.snapshot()

    def rebuild(self, docs: Iterable[Document | InvalidDocumentError]) -> RebuildResult:
        """Replace the whole index with `docs`; the old one serves until the new one is whole.

        Puts and removes that reach the index while the documents stream in are applied to the
        fresh index too, after the streamed documents (they are the newer word on those images).
        A bad document (or an error standing in for one the caller could not read) is skipped,
        logged and reported; it never fails the rebuild.
        """
        started = time.perf_counter()
        fresh = SearchIndex(self.params)
        if self._semantic is not None:
            names, embeddings, embedder = self._semantic
            fresh.attach_semantic(ConceptSpace(names, embeddings), embedder)
        count = 0
        skipped: list[str] = []
        writes: list[Document | str] = []
        with self._lock:
            self._writes_during_rebuild.append(writes)
        try:
            with collector_paused():
                for doc in docs:
                    try:
                        if isinstance(doc, InvalidDocumentError):
                            raise doc
                        fresh.put(doc)
                    except InvalidDocumentError as exc:
                        why = str(exc)
                        if isinstance(doc, Document) and not why.startswith(doc.image_id):
                            why = f"{doc.image_id}: {why}"
                        skipped.append(why)
                        log.warning("rebuild skipped a bad document", extra={"reason": why})
                        continue
                    count += 1
                    if count % _PROGRESS_EVERY == 0:
                        log.info("rebuild progress", extra={"indexed": count})
                fresh.warm()
            with self._lock:
                for write in writes:
                    if isinstance(write, str):
                        fresh.remove(write)
                    else:
                        fresh.put(write)
                self._index = fresh
                self._seq += 1
                self.needs_rebuild = False
                self.snapshot()
        finally:
            with self._lock:
                self._writes_during_rebuild = [
                    w for w in self._writes_during_rebuild if w is not writes
                ]
        log.info(
            "rebuild done",
            extra={
                "indexed": count,
                "writes_during_rebuild": len(writes),
                "skipped": len(skipped),
                "elapsed_s": round(time.perf_counter() - started, 3),
            },
        )
        return RebuildResult(count, len(skipped), skipped[:_SKIPPED_REPORTED])

    def snapshot(self) -> None:
        """Write the whole index to disk and empty the journal."""
        if self.data_dir is None:
            return
        with self._lock:
            started = time.perf_counter()
            with collector_paused():
                state = {"seq": self._seq, "engine": self._index.state()}
                size = write_snapshot(self.data_dir / SNAPSHOT_NAME, flatten(state))
                del state
            if self._journal is not None:
                self._journal.reset()
            log.info(
                "snapshot written",
                extra={
                    "documents": len(self._index),
                    "bytes": size,
                    "elapsed_s": round(time.perf_counter() - started, 3),
                },
            )

    def close(self) -> None:
        with self._lock:
            if self._journal is not None:
                if self._journal.entries:
                    self.snapshot()
                self._journal.close()
                self._journal = None
            if self._lock_key is not None:
                dir_lock.release(self._lock_key)
                self._lock_key = None

    # ---- reads ------------------------------------------------------------------------------

    def search(
        self,
        query: str,
        filters: Filters | None = None,
        limit: int = 20,
        offset: int = 0,
        semantic: bool = True,
        sort: str = "relevance",
    ) -> SearchResult:
        # Outside the lock: this may wait on the vision service.
        embedding = None
        if semantic and not self._index.is_date_query(query):
            embedding = self._index.query_embedding(query)
        with self._lock:
            # semantic only with an embedding in hand: never a second try at a failing vision.
            return self._index.search(
                query, filters, limit, offset, embedding is not None, embedding, sort
            )

    def similar(
        self,
        image_id: str = "",
        vector: Any = None,
        k: int = 10,
        filters: Filters | None = None,
        exact: bool = False,
    ) -> SimilarResult:
        with self._lock:
            return self._index.similar(image_id, vector, k, filters, exact)

    def duplicates(self, near_threshold: float = 0.0, image_id: str = "") -> Duplicates:
        with self._lock:
            return self._index.duplicates(near_threshold, image_id)

    def suggest(self, prefix: str, limit: int = 10) -> list[tuple[str, int, str]]:
        with self._lock:
            return self._index.suggest(prefix, limit)

    def get(self, image_id: str) -> Document:
        with self._lock:
            return self._index.get(image_id)

    def __len__(self) -> int:
        return len(self._index)

    def warm(self) -> None:
        with self._lock:
            self._index.warm()

    def stats(self) -> Stats:
        with self._lock:
            index = self._index
            disk = 0
            if self.data_dir is not None:
                for name in (SNAPSHOT_NAME, JOURNAL_NAME):
                    path = self.data_dir / name
                    disk += path.stat().st_size if path.exists() else 0
            approximate = index.vectors.approximate
            return Stats(
                document_count=len(index),
                term_count=index.keywords.term_count,
                posting_bytes=index.keywords.posting_bytes,
                index_disk_bytes=disk,
                vector_count=len(index.vectors),
                approximate_index=approximate,
                vector_backend="hnswlib" if approximate else "exact",
                load_time_s=self.load_time_s,
                semantic_ready=index.semantic_ready,
            )
