"""The search index made durable and safe to share between threads.

On disk (SEARCH_DATA_DIR):
    index.snap     the whole index (snapshot.py format) and `applied_seq`, the last storage
                   change-feed sequence number it holds; replaced atomically, so the two always
                   agree

Search follows storage's change feed (feed_consumer.py): storage is the durable history and the
snapshot is only a checkpoint of it. Start = read the snapshot; the consumer then replays the
feed from `applied_seq`. A missing, damaged or old-format snapshot is not misread: the index
starts empty at seq 0 and the feed replays everything. There is no journal of search's own.

    vectors-<n>.ann the approximate vector index (faiss IVF), saved apart and less often: the
                   snapshot names the file and the vector rows it covers; loading catches it up
                   with the rows added and removed since

A snapshot is taken every `snapshot_every` applied changes or `snapshot_interval_s` seconds
(whichever comes first, see `maybe_snapshot`), after a rebuild and at shutdown. One
background thread of the index writes the snapshots due by count or interval: `maybe_snapshot`
only asks it, so the write (or feed apply) that crossed the count returns at once and the feed
goes on applying while the snapshot is written (7-14 s at 1M documents); a request made while
one is being written leaves one more after it (if still due then). A background snapshot that
fails is logged, counted (`snapshot_failures`, `last_snapshot_error`) and raised once from the
next `maybe_snapshot` call, as the synchronous one raised to its caller before. A rebuild,
the end of a replay and `close()` (after it has stopped and joined the thread) still write
theirs synchronously. A snapshot stops
neither writes nor searches: under the write lock it only freezes a view of the index (copies
of the few arrays writes change in place, views of what only grows, the number of posting
lists, whose sizes appends made afterwards record before they change them: tens of
milliseconds at 1M documents), then writes that view to disk with no lock held while the
consumer keeps applying changes. The snapshot's own Python loops (posting lists, the
suggestion table, document rows, section pieces) let waiting threads take the interpreter
lock every millisecond (snapshot.Pacer), so a search or write waits about that long each time
it wants the lock back, not the 5 ms switch interval; and those pauses, and the ones between
the 2 MB slices it writes, wait while a search is in flight (snapshot.Foreground, at most
10 ms a pause): a search has the interpreter lock and a CPU to itself, the snapshot goes on
between searches. A forked writer process was tried and
not kept: gRPC's fork handlers run in the child and start its event engine's threads again
over the parent's descriptors (closing them made the child abort). The approximate vector
index is saved
when it has grown by a quarter (or 100k rows) since its last save and at shutdown (0.12 s for
1M vectors). With no data dir the
index lives in memory only (tests, benchmarks, the contract check), and `put`/`remove` write
to it directly.

Locks (rwlock.FairRWLock, handed over in arrival order): searches share the read side of
`_lock`, so two run at once (their numpy work releases the interpreter lock); a change to the
index holds its write side alone, and a search that arrives while a writer waits queues
behind it. A writer putting documents one at a time therefore lets a waiting search in after
each put instead of re-taking the lock at once (threading.RLock, used before, let a writing
thread starve searches: 227 ms at 1M with no snapshot running), and a stream of searches
cannot keep a writer out. A feed apply takes the write side once per _APPLY_BATCH upserts
(_APPLY_BATCH_SEARCHED while searches come in)
(and once per removal): a search waits at most one such batch. It takes the writers' lock
once per part (_APPLY_BATCH upserts): a direct write or a snapshot's freeze waits for one
part, not for the whole apply (a backlog's gathered apply is 16 parts).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search_service import dir_lock
from search_service.compaction_memory import (
    DEFAULT_COMPACTION_MEMORY_HEADROOM_BYTES,
    PROC_FILES,
    MemoryFiles,
    compaction_memory,
)
from search_service.document import Document
from search_service.engine import (
    Duplicates,
    EngineParams,
    Filters,
    PreparedPut,
    SearchIndex,
    SearchResult,
    SimilarResult,
    TextEmbedder,
)
from search_service.errors import IndexFormatError, InvalidDocumentError
from search_service.gc_control import collector_paused
from search_service.inverted_index import Analysis
from search_service.rwlock import FairRWLock
from search_service.semantic import ConceptSpace
from search_service.snapshot import (
    FOREGROUND,
    flatten,
    read_snapshot,
    unflatten,
    write_snapshot,
    yielding,
)

log = logging.getLogger(__name__)

SNAPSHOT_NAME = "index.snap"
ANN_PATTERN = "vectors-*.ann"
# Save the approximate vector index again once it holds this share (or this many) more rows.
_ANN_RESAVE_SHARE = 0.25
_ANN_RESAVE_ROWS = 100_000
_PROGRESS_EVERY = 10_000
_SKIPPED_REPORTED = 20
# Changes of the feed put into the index at once (the lock's write side is held that long,
# searches wait). Measured with benchmarks/snapshot_stall_probe.py (PROBE_FEED=1), fair lock,
# each image put twice as the feed sends it: at 1M, put_many alone takes 7 / 11.5 / 19 ms for
# 64 / 128 / 256 documents (a fixed part of about 3 ms a call); at load 6-8 the feed applied
# 4.1k / 8.2k / 12.2k changes/s with batches of 128 / 256 / 512, searches waiting at most
# 34 (one 352 ms hold aside, not explained) / 66 / 87 ms for the lock (100k at load 3:
# 64 / 128 / 256 -> 6.1k / 8.2k / 10.2k changes/s, waits 15 / 28 / 42 ms). Half the batch
# halves the feed's rate for somewhat shorter waits: 256 kept. Each part of an apply (this
# many upserts, or twice this many changes) takes the writers' lock on its own.
_APPLY_BATCH = 256
# While searches come in (one in flight, or one started in the last _SEARCHED_S), a part holds
# this many upserts instead: at 1.19M documents with a feed apply, a thread putting documents
# and a snapshot being written (stall probe, load 1.7-1.9), parts of 64 let searches wait at
# most 73 ms (p99 49) against 252 ms (p99 83) with 256, and the feed applied 1852 against 1466
# changes/s meanwhile (2730 against 4092 with no snapshot); a replay with no searches keeps 256.
_APPLY_BATCH_SEARCHED = 64
_SEARCHED_S = 1.0
# True: a feed apply holds the writers' lock from its first part to its last, so a direct
# write or a snapshot's freeze waits for the whole apply (before; for the stall probe's
# before/after in one run).
APPLY_WHOLE = False
# True: a feed part is worked out before the index lock is taken (SearchIndex.prepare_put) and
# searches wait only for its appends and counts (apply_put); False: only the replaced
# documents' analyses are (before; for the stall probe's before/after in one run).
PREPARE_PARTS = True
# A background compaction reads the live documents of the index this many document numbers at a
# time, each slice under the read side of the index lock: searches go on, but a writer waits
# for one slice, and searches that come after the waiting writer wait too (at 20k documents
# with a writer and searches, 128 / 512 a slice: searches' longest wait 49 / 91 ms).
_COMPACT_SLICE = 128
# Before a rebuild's fresh index is swapped in, the writes made meanwhile are replayed onto it
# outside the locks, round after round, until at most this many are left (or after this many
# rounds): those last ones are replayed under the locks, where searches wait for them.
_CATCH_UP_TAIL = 256
# A rebuild puts the streamed documents into the fresh index this many at a time: one by one
# costs 20x (10k documents streamed in 23 s against 1.1 s); a larger batch holds the
# interpreter lock longer in one go, and searches wait for it (during a compaction at 20k
# documents, batches of 2048 / 256: the compaction 3.4 / 6.0 s, searches' longest 294 / 77 ms).
_REBUILD_BATCH = 256
_CATCH_UP_ROUNDS = 8
# After a background compaction fails, no other starts until a backoff has passed: the
# DurableIndex's compaction_backoff_s at first, doubled after each failure in a row up to this,
# back to the first after a compaction succeeds (else every write would start a full rebuild
# that fails again).
_COMPACT_BACKOFF_MAX_S = 3600.0


def _utc(epoch_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_s))


class _CompactionStoppedError(Exception):
    """A background compaction gave up: the index is closing, or was replaced meanwhile."""


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
    applied_seq: int
    # Background snapshots that failed, and the last one's error (empty: none).
    snapshot_failures: int = 0
    last_snapshot_error: str = ""
    # Background compactions of the index that completed and that failed, and the last
    # failure's error (empty: none failed).
    compactions: int = 0
    compaction_failures: int = 0
    last_compaction_error: str = ""
    # Compactions due but not started because they would not fit in the memory available, and
    # the last such postponement as a sentence with its figures (empty: none).
    compactions_postponed: int = 0
    last_compaction_postponed: str = ""


@dataclass(frozen=True)
class FeedChange:
    """One change of storage's feed as the index applies it: `doc` set = index (upsert) it;
    `doc` None = the image is not searchable (deleted, or not READY): remove it if present."""

    seq: int
    image_id: str
    doc: Document | None = None


class DurableIndex:
    def __init__(
        self,
        data_dir: Path | None,
        params: EngineParams | None = None,
        snapshot_every: int = 1000,
        snapshot_interval_s: float = 60.0,
        compaction_backoff_s: float = 30.0,
        *,
        compaction_memory_headroom_bytes: int | None = DEFAULT_COMPACTION_MEMORY_HEADROOM_BYTES,
        memory_files: MemoryFiles = PROC_FILES,
    ) -> None:
        self.data_dir = data_dir
        self.params = params or EngineParams()
        self.snapshot_every = snapshot_every
        self.snapshot_interval_s = snapshot_interval_s
        # After a failed background compaction, the first wait before another may start
        # (doubled after each failure in a row, up to _COMPACT_BACKOFF_MAX_S).
        self.compaction_backoff_s = compaction_backoff_s
        # A compaction due starts only if its estimated memory and this much more fit in the
        # memory available (read from `memory_files`); None: no such check.
        self.compaction_memory_headroom_bytes = compaction_memory_headroom_bytes
        self.memory_files = memory_files
        # Searches share `_lock`'s read side; a change to the index (and the swap of one index
        # for another) holds its write side, and every writer (and a snapshot, which must see
        # no write half done) takes `_write_lock` first. Both hand over in arrival order
        # (rwlock.py): a writer putting documents one at a time cannot re-take them at once
        # and starve searches or a snapshot's freeze.
        self._lock = FairRWLock()
        self._write_lock = FairRWLock()
        # One snapshot at a time (it is written outside the other two).
        self._snapshot_lock = threading.Lock()
        # The longest time a snapshot held the write lock (freezing its view), seconds.
        self.longest_freeze_s = 0.0
        self._index = SearchIndex(self.params)
        # The last storage feed seq applied (0: none, replay from the start).
        self._seq = 0
        self._unsaved = 0
        # Of those, the changes the snapshot being written holds (frozen, not yet on disk).
        self._unsaved_in_snapshot = 0
        self._saved_at = time.monotonic()
        self._semantic: tuple[list[str], Any, TextEmbedder] | None = None
        self.load_time_s = 0.0
        # True when a saved index existed but could not be read (the feed replays it all).
        self.started_empty_from_unusable = False
        # One list per Rebuild in progress: the writes the live index took meanwhile, replayed
        # onto the fresh index before it is swapped in so that none is lost.
        self._writes_during_rebuild: list[list[Document | str]] = []
        self._lock_key: Path | None = None
        # The background snapshot thread (started by the first request) and its state, all
        # under `_requests`: a request pending (its by_count: see maybe_snapshot), one being
        # written, stop asked (close).
        self._requests = threading.Condition(threading.Lock())
        self._requested: bool | None = None  # None: no request; else by_count of the requests
        self._writing = False
        self._stopping = False
        self._snapshotter: threading.Thread | None = None
        # Background snapshots that failed, the last one's error, and that error until the next
        # maybe_snapshot call raises it.
        self.snapshot_failures = 0
        self.last_snapshot_error = ""
        self._failed: Exception | None = None
        # The background compaction (see _compact_if_needed): its thread, one at a time; set
        # under both index locks and `_requests`, cleared by the thread under `_requests`.
        self._compacting = False
        self._compactor: threading.Thread | None = None
        self.compactions = 0
        # Background compactions that failed (never reset); after one, none starts before
        # `_compact_retry_at` (on `_clock`, monotonic); the failures since the last success.
        self.compaction_failures = 0
        self.last_compaction_error = ""
        self._clock = time.monotonic
        self._compact_retry_at = 0.0
        self._compact_failed_in_a_row = 0
        # Compactions postponed for want of memory (never reset), the last one's sentence, and
        # the postponements since one last fitted: the wait before the next try doubles with
        # them like a failure's (also through `_compact_retry_at`), but none counts as one.
        self.compactions_postponed = 0
        self.last_compaction_postponed = ""
        self._compact_postponed_in_a_row = 0

    @classmethod
    def open(
        cls,
        data_dir: Path | None,
        params: EngineParams | None = None,
        snapshot_every: int = 1000,
        snapshot_interval_s: float = 60.0,
        compaction_backoff_s: float = 30.0,
        *,
        compaction_memory_headroom_bytes: int | None = DEFAULT_COMPACTION_MEMORY_HEADROOM_BYTES,
        memory_files: MemoryFiles = PROC_FILES,
    ) -> DurableIndex:
        """Load the snapshot in `data_dir` (created if missing).

        Raises DataDirLockedError when another process serves `data_dir`.
        """
        durable = cls(
            data_dir,
            params,
            snapshot_every,
            snapshot_interval_s,
            compaction_backoff_s,
            compaction_memory_headroom_bytes=compaction_memory_headroom_bytes,
            memory_files=memory_files,
        )
        started = time.perf_counter()
        if data_dir is not None:
            data_dir.mkdir(parents=True, exist_ok=True)
            durable._lock_key = dir_lock.acquire(data_dir)
            with collector_paused():
                durable._load(data_dir)
        durable.load_time_s = time.perf_counter() - started
        log.info(
            "index loaded",
            extra={
                "documents": len(durable._index),
                "applied_seq": durable._seq,
                "load_time_s": round(durable.load_time_s, 3),
            },
        )
        return durable

    def _load(self, data_dir: Path) -> None:
        path = data_dir / SNAPSHOT_NAME
        if not path.exists():
            return
        try:
            state = unflatten(read_snapshot(path))
            if "docs" in state["engine"]:
                log.info(
                    "snapshot in the earlier format (documents as JSON): its documents are "
                    "rebuilt one by one this once; the next snapshot is written as columns",
                    extra={"path": str(path)},
                )
            self._index = SearchIndex.from_state(state["engine"], self.params, data_dir)
            self._seq = int(state["seq"])
        except (IndexFormatError, ValueError, KeyError) as exc:
            log.error(
                "saved index unusable, starting empty: the change feed replays it from seq 0",
                extra={"reason": str(exc), "path": str(path)},
            )
            self._index = SearchIndex(self.params)
            self._seq = 0
            self.started_empty_from_unusable = True

    @property
    def applied_seq(self) -> int:
        return self._seq

    # ---- semantic expansion -----------------------------------------------------------------

    def attach_semantic(
        self, label_names: list[str], embeddings: Any, embedder: TextEmbedder
    ) -> None:
        with self._write_lock, self._lock:
            self._semantic = (label_names, embeddings, embedder)
            self._index.restore_semantic(ConceptSpace(label_names, embeddings), embedder)

    @property
    def semantic_ready(self) -> bool:
        return self._index.semantic_ready

    # ---- writes -----------------------------------------------------------------------------

    def apply(self, changes: Iterable[FeedChange]) -> list[str]:
        """Apply feed changes in order and advance `applied_seq`; returns the reasons of
        documents the index could not take (each such image is left out of the index, never
        fails the batch). Changes at or below `applied_seq` are skipped (already applied).

        The changes go in a part at a time (_APPLY_BATCH upserts, or twice that many changes
        of any kind), each part under the writers' lock on its own: a direct write, a
        snapshot's freeze or a rebuild's swap waiting for that lock goes in between two parts,
        not after the whole apply (a backlog's gathered apply of 4096 changes took 16 parts'
        time). At each part's end the index holds exactly the changes up to `applied_seq`, so
        a snapshot taken between parts is the index at its seq. `changes` is read with no lock
        held. Consecutive upserts go into the index a batch at a time (put_many)."""
        rejected: list[str] = []
        with self._write_lock if APPLY_WHOLE else contextlib.nullcontext():
            part: list[FeedChange] = []
            upserts = 0
            batch = self._apply_batch()
            for change in changes:
                part.append(change)
                upserts += change.doc is not None
                if upserts >= batch or len(part) >= 2 * batch:
                    self._apply_part(part, rejected, batch)
                    part = []
                    upserts = 0
                    batch = self._apply_batch()
            if part:
                self._apply_part(part, rejected, batch)
        return rejected

    @staticmethod
    def _apply_batch() -> int:
        """Upserts in a feed apply's next part: fewer while searches come in (a search waits
        for one part's hold of the index lock at most)."""
        if FOREGROUND.searched_within(_SEARCHED_S):
            return min(_APPLY_BATCH, _APPLY_BATCH_SEARCHED)
        return _APPLY_BATCH

    def _apply_part(
        self, changes: list[FeedChange], rejected: list[str], batch: int = _APPLY_BATCH
    ) -> None:
        """One part of apply(), under the writers' lock; the index's own lock is taken once per
        put_many batch and once per removal (a search waits for one of those at most). A batch
        is worked out before that (SearchIndex.prepare_put, under the writers' lock only, so no
        other write changes the index in between) and the lock is held for its appends and
        counts only (apply_put)."""
        with self._write_lock:
            pending: list[FeedChange] = []
            pending_ids: set[str] = set()

            def flush() -> None:
                if pending:
                    # Room in the arrays the part grows (doubling one copies it), made while
                    # searches go on.
                    if PREPARE_PARTS:
                        self._index.reserve(len(pending))
                    else:
                        self._index.vectors.reserve(len(pending))
                    # An image put twice in a batch (the feed's put, then its analysis) goes in
                    # once, as its last version: put_many takes a batch with one image twice a
                    # document at a time (17x the CPU per document).
                    latest: dict[str, Document] = {}
                    for c in pending:
                        if c.doc is not None:
                            latest.pop(c.image_id, None)
                            latest[c.image_id] = c.doc
                    docs = list(latest.values())
                    # The part worked out before searches wait for the lock (prepare_put:
                    # validated, replaced documents analysed, labels numbered, postings
                    # encoded, suggestion counts grouped, vectors quantised); under it only
                    # the appends and counts. No other write comes in between: this thread
                    # holds the writers' lock.
                    prepared: PreparedPut | Mapping[int, tuple[Document, Analysis]]
                    if PREPARE_PARTS:
                        prepared = self._index.prepare_put(docs)
                    else:  # before: only the replaced documents' analyses
                        prepared = self._index.prepare_removals(docs)
                    with self._lock:
                        self._put_many_locked(docs, prepared)
                        self._seq = max(self._seq, pending[-1].seq)
                        self._unsaved += len(pending)
                    pending.clear()
                    pending_ids.clear()

            last = self._seq
            for change in changes:
                if change.seq <= last:
                    continue
                last = change.seq
                if change.doc is not None:
                    try:
                        self._index.validate(change.doc)
                    except InvalidDocumentError as exc:
                        rejected.append(f"{change.image_id}: {exc}")
                    else:
                        pending.append(change)
                        pending_ids.add(change.image_id)
                        if len(pending) >= batch:
                            flush()
                        continue
                # Out of the index: a delete, an image not searchable (yet), a refused document.
                # Only a pending put of the same image must go in first; the feed's usual
                # put (PENDING) -> annotate (READY) pairs then still fill whole batches.
                if change.image_id in pending_ids:
                    flush()
                with self._lock:
                    self._remove_locked(change.image_id)
                    if not pending:  # else the batch's flush moves applied_seq past it
                        self._seq = change.seq
                    self._unsaved += 1
            flush()
            if last > self._seq:  # the part ended with removals after its last put
                with self._lock:
                    self._seq = last

    def advance_to(self, seq: int) -> None:
        """Record that every change up to `seq` is applied (a resync's listing holds them)."""
        with self._write_lock:
            if seq > self._seq:
                self._seq = seq
                self._unsaved += 1

    def put(self, doc: Document) -> None:
        """A direct write (an index with no feed: tests, benchmarks)."""
        with self._write_lock:
            # Room made before taking the lock searches wait on: the vector rows' next chunk
            # and the per-document arrays (doubling one copies it, a few ms at 1M).
            self._index.vectors.reserve(1)
            with self._lock:
                self._put_locked(doc)
                self._unsaved += 1
        self.maybe_snapshot()

    def remove(self, image_id: str) -> bool:
        with self._write_lock, self._lock:
            removed = self._remove_locked(image_id)
            if removed:
                self._unsaved += 1
        if removed:
            self.maybe_snapshot()
        return removed

    def _put_locked(self, doc: Document) -> None:
        self._index.validate(doc)
        self._index.put(doc)
        for writes in self._writes_during_rebuild:
            writes.append(doc)
        self._compact_if_needed()

    def _put_many_locked(
        self,
        docs: list[Document],
        prepared: PreparedPut | Mapping[int, tuple[Document, Analysis]] | None = None,
    ) -> None:
        """put_many(docs); `prepared`: their prepare_put, or (PREPARE_PARTS off) the replaced
        documents' prepare_removals."""
        if isinstance(prepared, PreparedPut):
            self._index.apply_put(prepared)
        else:
            self._index.put_many(docs, prepared)
        for writes in self._writes_during_rebuild:
            writes.extend(docs)
        self._compact_if_needed()

    def _remove_locked(self, image_id: str) -> bool:
        if image_id not in self._index:
            return False
        self._index.remove(image_id)
        for writes in self._writes_during_rebuild:
            writes.append(image_id)
        self._compact_if_needed()
        return True

    def _compact_if_needed(self) -> None:
        """Called under both locks after a write: when too many document numbers are dead,
        start a background compaction (one at a time). It rebuilds the index from its live
        documents outside the locks (`rebuild`, seq unchanged): searches and writes go on, the
        writes made meanwhile are replayed onto the compacted index before it is swapped in.
        Compacting inline (before) held both locks for the whole rebuild: tens of seconds at
        1M documents. After a compaction failed, or was postponed for want of memory (the
        thread checks that first, see _memory_allows), none starts until its backoff has
        passed."""
        if self._compacting or not self._index.needs_compaction():
            return
        with self._requests:
            if self._stopping or self._compacting or self._clock() < self._compact_retry_at:
                return
            self._compacting = True
            index = self._index
            log.info(
                "compacting index in the background",
                extra={"live_documents": len(index), "numbered": index.numbered},
            )
            self._compactor = threading.Thread(
                target=self._compact,
                args=(index, len(index), index.numbered),
                name="index-compaction",
                daemon=True,
            )
            self._compactor.start()

    def _compact(self, index: SearchIndex, live: int, numbered: int) -> None:
        try:
            if not self._memory_allows(live, numbered):
                return
            self._rebuild(self._live_documents(index), None, replaces=index)
            with self._requests:
                self.compactions += 1
                self._compact_retry_at = 0.0
                self._compact_failed_in_a_row = 0
        except _CompactionStoppedError as exc:
            log.info("background compaction stopped", extra={"reason": str(exc)})
        except Exception as exc:  # the old index serves on; a write after the backoff retries
            with self._requests:
                self.compaction_failures += 1
                self.last_compaction_error = f"{type(exc).__name__}: {exc}"
                doublings = min(self._compact_failed_in_a_row, 32)
                self._compact_failed_in_a_row += 1
                wait_s = min(self.compaction_backoff_s * 2.0**doublings, _COMPACT_BACKOFF_MAX_S)
                self._compact_retry_at = self._clock() + wait_s
            log.exception(
                "background compaction failed; the index keeps serving uncompacted, the next "
                "compaction starts no sooner than retry_in_s from now",
                extra={
                    "failures": self.compaction_failures,
                    "retry_in_s": wait_s,
                    "retry_at": time.strftime(
                        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + wait_s)
                    ),
                },
            )
        finally:
            with self._requests:
                self._compacting = False
                self._requests.notify_all()

    def _memory_allows(self, live: int, numbered: int) -> bool:
        """Whether a compaction of `live` of `numbered` documents fits in the memory available
        (its estimate and the headroom: compaction_memory). When it does not, it is postponed:
        counted, described (`last_compaction_postponed`), logged once, and none starts again
        before a backoff (as after a failure: compaction_backoff_s, doubled after each
        postponement in a row up to _COMPACT_BACKOFF_MAX_S). Building the fresh index beside
        the old one regardless would let the kernel kill the service, which would then replay,
        find compaction due again and be killed again."""
        if self.compaction_memory_headroom_bytes is None:
            return True
        memory = compaction_memory(
            live,
            numbered,
            self.compaction_memory_headroom_bytes,
            self.memory_files,
            self.data_dir,
        )
        if memory is None or memory.fits:
            with self._requests:
                self._compact_postponed_in_a_row = 0
            return True
        with self._requests:
            self.compactions_postponed += 1
            doublings = min(self._compact_postponed_in_a_row, 32)
            self._compact_postponed_in_a_row += 1
            wait_s = min(self.compaction_backoff_s * 2.0**doublings, _COMPACT_BACKOFF_MAX_S)
            self._compact_retry_at = self._clock() + wait_s
            now = time.time()
            self.last_compaction_postponed = (
                f"compaction postponed at {_utc(now)}: {memory.describe()}; "
                f"next try no sooner than {_utc(now + wait_s)} (in {wait_s:.0f} s)"
            )
            sentence = self.last_compaction_postponed
        available = memory.available
        assert available is not None  # else it fits
        log.warning(
            "background %s; the index keeps serving uncompacted",
            sentence,
            extra={
                "needed_bytes": memory.needed_bytes,
                "headroom_bytes": memory.headroom_bytes,
                "available_bytes": available.bytes,
                "limit_source": available.source,
                "postponed": self.compactions_postponed,
                "retry_in_s": wait_s,
            },
        )
        return False

    def _live_documents(self, index: SearchIndex) -> Iterator[Document]:
        """The live documents of `index` (the index being compacted), in document-number order,
        a slice at a time under the read side of the index lock. Runs inside `_rebuild`'s loop,
        so after its list of writes is in place: the documents numbered from here on are in
        that list, and so is every later put or remove of the ones read here (a row removed
        before it is read reads as None and is left out)."""
        end = index.numbered
        for start in range(0, end, _COMPACT_SLICE):
            if self._stopping:
                raise _CompactionStoppedError("the index is closing")
            with self._lock.read():
                if self._index is not index:
                    raise _CompactionStoppedError("the index was replaced meanwhile")
                docs = index.live_documents(start, min(end, start + _COMPACT_SLICE))
            yield from docs

    def wait_for_compaction(self, timeout: float | None = None) -> bool:
        """Wait until no background compaction runs; False on timeout."""
        with self._requests:
            return self._requests.wait_for(lambda: not self._compacting, timeout)

    def maybe_snapshot(self, by_count: bool = True) -> bool:
        """Ask the background thread for a snapshot when `snapshot_every` changes (unless
        `by_count` is False: during a replay, where a whole-index snapshot every N changes would
        rewrite the growing index over and over) or `snapshot_interval_s` seconds (with at least
        one change) have passed since the last one; True when one was due and asked for (it is
        written after this returns: `wait_for_snapshots`). Raises, once, the error of a
        background snapshot that failed since the last call."""
        failed, self._failed = self._failed, None
        if failed is not None:
            raise failed
        if self.data_dir is None or not self._due(by_count):
            return False
        with self._requests:
            if self._stopping:
                return False
            self._requested = by_count or bool(self._requested)
            if self._snapshotter is None:
                self._snapshotter = threading.Thread(
                    target=self._snapshot_loop, name="index-snapshot", daemon=True
                )
                self._snapshotter.start()
            self._requests.notify_all()
        return True

    def _due(self, by_count: bool) -> bool:
        # Changes the snapshot being written already holds do not count.
        unsaved = self._unsaved - self._unsaved_in_snapshot
        return unsaved > 0 and (
            (by_count and unsaved >= self.snapshot_every)
            or time.monotonic() - self._saved_at >= self.snapshot_interval_s
        )

    def wait_for_snapshots(self, timeout: float | None = None) -> bool:
        """Wait until no snapshot is asked for or being written; False on timeout."""
        with self._requests:
            return self._requests.wait_for(
                lambda: self._requested is None and not self._writing, timeout
            )

    def _snapshot_loop(self) -> None:
        while True:
            with self._requests:
                self._requests.wait_for(lambda: self._requested is not None or self._stopping)
                if self._stopping:
                    return
                by_count = bool(self._requested)
                self._requested = None
                # Asked while the last one was written: is it still due, now that that one
                # holds the changes it froze?
                self._writing = self._due(by_count)
                if not self._writing:
                    self._requests.notify_all()
                    continue
            try:
                self.snapshot()
            except Exception as exc:  # the thread goes on; the next request tries again
                self.snapshot_failures += 1
                self.last_snapshot_error = f"{type(exc).__name__}: {exc}"
                self._failed = exc
                log.exception(
                    "background snapshot failed; the index keeps serving, the next one retries",
                    extra={"failures": self.snapshot_failures, "applied_seq": self._seq},
                )
            finally:
                with self._requests:
                    self._writing = False
                    self._requests.notify_all()

    def _stop_snapshotter(self) -> None:
        """Stop the background threads: the snapshot thread after the snapshot it is writing
        (if any), a compaction at its next slice of documents (it leaves the index as it is)."""
        with self._requests:
            self._stopping = True
            self._requested = None
            threads = [self._snapshotter, self._compactor]
            self._requests.notify_all()
        for thread in threads:
            if thread is not None:
                thread.join()

    def rebuild(
        self, docs: Iterable[Document | InvalidDocumentError], seq: int | None = None
    ) -> RebuildResult:
        """Replace the whole index with `docs`; the old one serves until the new one is whole.

        `seq` (a resync from storage's listing) becomes `applied_seq`. Puts and removes that
        reach the index while the documents stream in are applied to the fresh index too,
        after the streamed documents (they are the newer word on those images). A bad document
        (or an error standing in for one the caller could not read) is skipped, logged and
        reported; it never fails the rebuild.
        """
        return self._rebuild(docs, seq)

    def _rebuild(
        self,
        docs: Iterable[Document | InvalidDocumentError],
        seq: int | None,
        replaces: SearchIndex | None = None,
    ) -> RebuildResult:
        """rebuild(); `replaces` set (a compaction of that index): the fresh index is swapped
        in only if that index is still the live one (else _CompactionStoppedError), and no
        snapshot is written here (the next one, or close(), writes it)."""
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
                # Validated one by one, put _REBUILD_BATCH at a time.
                batch: list[Document] = []
                for doc in docs:
                    try:
                        if isinstance(doc, InvalidDocumentError):
                            raise doc
                        fresh.validate(doc)
                    except InvalidDocumentError as exc:
                        self._skipped(doc, exc, skipped)
                        continue
                    batch.append(doc)
                    if len(batch) == _REBUILD_BATCH:
                        count += self._put_batch(fresh, batch, skipped)
                        batch = []
                    if (count + len(batch)) % _PROGRESS_EVERY == 0:
                        log.info("rebuild progress", extra={"indexed": count + len(batch)})
                count += self._put_batch(fresh, batch, skipped)
                # The writes made meanwhile, caught up outside the locks (more come in while
                # a round is replayed), the last few below under them.
                done = 0
                for _ in range(_CATCH_UP_ROUNDS):
                    with self._lock.read():
                        pending = writes[done:]
                    if len(pending) <= _CATCH_UP_TAIL:
                        break
                    self._replay(fresh, pending)
                    done += len(pending)
                fresh.warm()
            with self._write_lock, self._lock:
                if replaces is not None and self._index is not replaces:
                    raise _CompactionStoppedError("the index was replaced meanwhile")
                self._replay(fresh, writes[done:])
                if self._semantic is not None and fresh.concepts is None:
                    names, embeddings, embedder = self._semantic  # attached meanwhile
                    fresh.attach_semantic(ConceptSpace(names, embeddings), embedder)
                self._index = fresh
                if seq is not None:
                    self._seq = seq
                self._unsaved += 1
                self.started_empty_from_unusable = False
            if replaces is None:
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
                "applied_seq": self._seq,
                "writes_during_rebuild": len(writes),
                "skipped": len(skipped),
                "elapsed_s": round(time.perf_counter() - started, 3),
            },
        )
        return RebuildResult(count, len(skipped), skipped[:_SKIPPED_REPORTED])

    @staticmethod
    def _skipped(doc: Any, exc: InvalidDocumentError, skipped: list[str]) -> None:
        why = str(exc)
        if isinstance(doc, Document) and not why.startswith(doc.image_id):
            why = f"{doc.image_id}: {why}"
        skipped.append(why)
        log.warning("rebuild skipped a bad document", extra={"reason": why})

    @classmethod
    def _put_batch(cls, index: SearchIndex, batch: list[Document], skipped: list[str]) -> int:
        """put_many(batch) (each document validated already); should it refuse the batch,
        the documents go in one by one and the bad ones are skipped. How many went in."""
        if not batch:
            return 0
        try:
            index.put_many(batch)
            return len(batch)
        except InvalidDocumentError:
            count = 0
            for doc in batch:
                try:
                    index.put(doc)
                    count += 1
                except InvalidDocumentError as exc:
                    cls._skipped(doc, exc, skipped)
            return count

    @staticmethod
    def _replay(index: SearchIndex, writes: Sequence[Document | str]) -> None:
        """Apply `writes` (documents put, image ids removed; in order) to `index`: only each
        image's last write counts, and the puts go in a batch at a time in the order of those
        last writes (where putting them one by one would have numbered them). An image put and
        removed meanwhile is then never numbered; one the fresh index already holds (streamed
        before the write) leaves a dead number."""
        last: dict[str, Document | None] = {}
        for write in writes:
            image_id = write if isinstance(write, str) else write.image_id
            last.pop(image_id, None)
            last[image_id] = None if isinstance(write, str) else write
        for image_id, document in last.items():
            if document is None:
                index.remove(image_id)
        index.extend(d for d in last.values() if d is not None)

    def snapshot(self, final: bool = False) -> None:
        """Write the whole index and its `applied_seq` to disk, atomically, without stopping
        writes or searches (see the module docstring); `final` (shutdown) also saves the
        approximate vector index if it changed at all."""
        if self.data_dir is None:
            return
        with self._snapshot_lock:
            started = time.perf_counter()
            saved_ann = self._save_ann_if_due(final)
            with self._write_lock:
                frozen_at = time.perf_counter()
                vectors = self._index.vectors
                engine = self._index.frozen_state()
                state = {"seq": self._seq, "engine": engine}
                taken = self._unsaved
                self._unsaved_in_snapshot = taken
                ann = vectors.ann_saved
                if ann is not None:  # saved for this very index (not one replaced since)
                    engine["vectors"]["ann_file"] = ann[0]
                    engine["vectors"]["ann_rows"] = ann[1]
                freeze_s = time.perf_counter() - frozen_at
            self.longest_freeze_s = max(self.longest_freeze_s, freeze_s)
            try:
                with collector_paused(), yielding():  # pauses wait for searches in flight
                    size = write_snapshot(self.data_dir / SNAPSHOT_NAME, flatten(state))
                    del state
            finally:
                self._unsaved_in_snapshot = 0
            keep = ann[0] if ann is not None else None
            for old in self.data_dir.glob(ANN_PATTERN):
                if old.name != keep:
                    old.unlink(missing_ok=True)
            with self._write_lock:
                self._unsaved = max(0, self._unsaved - taken)
                self._saved_at = time.monotonic()
            log.info(
                "snapshot written",
                extra={
                    "documents": len(self._index),
                    "applied_seq": self._seq,
                    "bytes": size,
                    "ann_saved": saved_ann,
                    "freeze_ms": round(freeze_s * 1000, 1),
                    "elapsed_s": round(time.perf_counter() - started, 3),
                },
            )

    def _save_ann_if_due(self, final: bool) -> bool:
        """Save the approximate vector index to a new file when it has grown enough since its
        last save (any growth when `final`); the snapshot after it names the file."""
        assert self.data_dir is not None
        vectors = self._index.vectors
        if not vectors.approximate:
            return False
        rows = vectors.rows()
        saved = vectors.ann_saved
        if saved is not None:
            grown = rows - saved[1]
            due = (
                grown > 0
                if final
                else grown >= min(_ANN_RESAVE_ROWS, max(1, int(_ANN_RESAVE_SHARE * saved[1])))
            )
            if not due:
                return False
        path = self.data_dir / f"vectors-{time.time_ns()}.ann"
        return vectors.save_ann(path) is not None

    def close(self) -> None:
        # Not under the write lock: a snapshot takes its own lock first, then the write lock.
        self._stop_snapshotter()
        if self._unsaved:
            self.snapshot(final=True)
        with self._write_lock:
            self._unsaved = 0
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
        with FOREGROUND, self._lock.read():
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
        with FOREGROUND, self._lock.read():
            return self._index.similar(image_id, vector, k, filters, exact)

    def duplicates(self, near_threshold: float = 0.0, image_id: str = "") -> Duplicates:
        with self._lock.read():
            return self._index.duplicates(near_threshold, image_id)

    def suggest(self, prefix: str, limit: int = 10) -> list[tuple[str, int, str]]:
        with FOREGROUND, self._lock.read():
            return self._index.suggest(prefix, limit)

    def get(self, image_id: str) -> Document:
        with self._lock.read():
            return self._index.get(image_id)

    def __len__(self) -> int:
        return len(self._index)

    def warm(self) -> None:
        """Touch what the first query needs, and build what the first write would (label kind
        and concept tables: 0.15 s at 200k documents), before serving."""
        with self._write_lock, self._lock:
            self._index.warm()
            index = self._index
            kinds = index._docs.kinds  # the document store's label kind table (put_many's)
            index.keywords.prepare_writes(kinds)
            if index.concepts is not None:
                index.concepts.kind_classes(kinds)

    def stats(self) -> Stats:
        with self._lock.read():
            index = self._index
            disk = 0
            if self.data_dir is not None:
                path = self.data_dir / SNAPSHOT_NAME
                disk = path.stat().st_size if path.exists() else 0
            approximate = index.vectors.approximate
            return Stats(
                document_count=len(index),
                term_count=index.keywords.term_count,
                posting_bytes=index.keywords.posting_bytes,
                index_disk_bytes=disk,
                vector_count=len(index.vectors),
                approximate_index=approximate,
                vector_backend="faiss" if approximate else "exact",
                load_time_s=self.load_time_s,
                semantic_ready=index.semantic_ready,
                applied_seq=self._seq,
                snapshot_failures=self.snapshot_failures,
                last_snapshot_error=self.last_snapshot_error,
                compactions=self.compactions,
                compaction_failures=self.compaction_failures,
                last_compaction_error=self.last_compaction_error,
                compactions_postponed=self.compactions_postponed,
                last_compaction_postponed=self.last_compaction_postponed,
            )
