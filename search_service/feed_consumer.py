"""Search as a consumer of storage's change feed: tail it and apply every change to the index.

One background thread:
    watch(after_seq=applied_seq) -> apply each batch (index.apply), snapshot when due
    storage unreachable        -> retry with exponential backoff; searches keep being served
    COMPACTED (history gone),
    or storage behind the index -> resynchronise: rebuild the index from storage's listing (its
                                  snapshot_seq becomes applied_seq), then watch from there
A change storage could not read (a damaged row) arrives marked damaged: it is applied as a
removal, logged and counted (`status().damaged_changes`, /metrics), and the feed goes on.
A new or lost index is applied_seq 0: the feed replays everything, with progress logged and in
`status()` (GetStats). Applying a change twice is harmless (a put is an upsert of the image's
current state, a delete removes what may already be gone) and the index skips seqs at or below
applied_seq, so a restart never duplicates anything.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from search_service.document import Document
from search_service.durable_index import DurableIndex
from search_service.errors import InvalidDocumentError
from search_service.storage_feed import (
    DamagedChange,
    FeedBatch,
    FeedCompactedError,
    FeedUnavailableError,
    Listing,
    joined,
)

log = logging.getLogger(__name__)

_PROGRESS_EVERY_S = 5.0
# While storage says more changes follow at once, batches are gathered up to this many changes
# and applied together (the index gets one large apply per gathered run).
DEFAULT_GATHER = 4096


class FeedSource(Protocol):
    def watch(self, after_seq: int) -> Iterator[FeedBatch]: ...

    def list_page(self, page_token: str) -> Listing: ...

    def cancel(self) -> None: ...


@dataclass(frozen=True)
class FeedStatus:
    applied_seq: int
    # The store's newest seq as last seen (0 before the first message).
    head_seq: int
    lag_seqs: int
    # True while catching up a backlog (a replay from an old or empty index, or a resync).
    replaying: bool
    # Fraction of the current replay done (1.0 when not replaying).
    replay_progress: float
    connected: bool
    last_error: str
    resyncs: int
    # Changes storage delivered marked damaged (unreadable rows) applied since the start, and
    # the last one ("seq <n> image <id>: <reason>"; "" when none).
    damaged_changes: int = 0
    last_damaged: str = ""


class FeedConsumer:
    def __init__(
        self,
        index: DurableIndex,
        source: FeedSource,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 10.0,
        replay_lag: int = 1000,
        max_gather: int = DEFAULT_GATHER,
    ) -> None:
        self._index = index
        self._source = source
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        # A lag at least this large on (re)connecting counts as a replay (logged as one).
        self._replay_lag = replay_lag
        # While storage says more changes follow at once (a backlog), batches are gathered up
        # to about this many changes and applied together; a batch that catches up with the
        # feed is applied at once, so live changes wait for nothing.
        self._max_gather = max_gather
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._head = 0
        self._replay_from: int | None = None
        self._replay_to = 0
        self._connected = False
        self._last_error = ""
        self._resyncs = 0
        self._last_progress = 0.0
        # While a resync lists storage: documents listed so far, of about how many images.
        self._resync_listed = 0
        self._resync_total = 0
        self._caught_up = threading.Event()
        self._damaged_changes = 0
        self._last_damaged: DamagedChange | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="search-feed", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._source.cancel()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def wait_caught_up(self, timeout_s: float) -> bool:
        """Block until the consumer has applied everything storage had when it last said
        (at least once since start); False on timeout."""
        return self._caught_up.wait(timeout_s)

    def status(self) -> FeedStatus:
        applied = self._index.applied_seq
        head = max(self._head, applied)
        replaying = self._replay_from is not None or self._resync_total > 0
        progress = 1.0
        if self._resync_total:
            progress = min(1.0, self._resync_listed / self._resync_total)
        elif self._replay_from is not None:
            span = max(1, self._replay_to - self._replay_from)
            progress = min(1.0, max(0.0, (applied - self._replay_from) / span))
        return FeedStatus(
            applied_seq=applied,
            head_seq=head,
            lag_seqs=head - applied,
            replaying=replaying,
            replay_progress=progress,
            connected=self._connected,
            last_error=self._last_error,
            resyncs=self._resyncs,
            damaged_changes=self._damaged_changes,
            last_damaged=_describe(self._last_damaged),
        )

    # ---- the loop ---------------------------------------------------------------------------

    def _run(self) -> None:
        pause = self._retry_initial_s
        while not self._stop.is_set():
            try:
                self._follow()
            except FeedCompactedError as exc:
                log.warning(
                    "change feed cannot continue the index: resynchronising from a listing",
                    extra={"applied_seq": self._index.applied_seq, "reason": str(exc)},
                )
                try:
                    self._resync()
                    pause = self._retry_initial_s
                    continue
                except FeedUnavailableError as exc2:
                    self._note_down(str(exc2), pause)
                except Exception:  # as below: the thread must not die
                    log.exception("resynchronisation failed; retrying")
                    self._note_down("internal error during a resync", pause)
            except FeedUnavailableError as exc:
                if self._stop.is_set():
                    break
                if self._connected:
                    pause = self._retry_initial_s
                self._note_down(str(exc), pause)
            except Exception:  # never let the thread die silently: log and retry
                log.exception("change feed consumer failed; retrying")
                self._note_down("internal error", pause)
            self._stop.wait(pause)
            pause = min(pause * 2, self._retry_max_s)
        self._index.maybe_snapshot()

    def _note_down(self, why: str, pause: float) -> None:
        if self._connected or why != self._last_error:
            log.warning(
                "storage change feed unavailable; serving from the index, retrying",
                extra={"reason": why, "retry_in_s": round(pause, 2)},
            )
        self._connected = False
        self._last_error = why

    def _follow(self) -> None:
        first = True
        gathered: list[FeedBatch] = []
        count = 0
        for batch in self._source.watch(self._index.applied_seq):
            if self._stop.is_set():
                return
            if first and self._index.applied_seq < batch.horizon_seq - 1:
                self._source.cancel()
                # after_seq=0 means "from the oldest retained change": storage does not call
                # that COMPACTED, but seqs below the horizon are gone, so it is one for us.
                raise FeedCompactedError(
                    f"history before seq {batch.horizon_seq} is compacted; "
                    f"the index has applied up to {self._index.applied_seq}"
                )
            if first and batch.head_seq < self._index.applied_seq:
                self._source.cancel()
                # A store restored from an older backup, or replaced: the index holds changes
                # storage does not know. Only a listing tells what is really there.
                raise FeedCompactedError(
                    f"storage's head seq {batch.head_seq} is behind the index's "
                    f"{self._index.applied_seq} (a restored or replaced store)"
                )
            first = False
            if not self._connected:
                self._connected = True
                self._last_error = ""
                log.info(
                    "following storage's change feed",
                    extra={"applied_seq": self._index.applied_seq, "head_seq": batch.head_seq},
                )
            self._head = max(self._head, batch.head_seq)
            if batch.more and batch.changes and count + len(batch.changes) < self._max_gather:
                gathered.append(batch)
                count += len(batch.changes)
                continue
            if gathered:
                batch = joined([*gathered, batch])
                gathered, count = [], 0
            self._begin_replay_if_behind()
            self._note_damaged(batch.damaged)
            rejected = self._index.apply(batch.changes)
            for reason in rejected:
                log.warning("change left out of the index", extra={"reason": reason})
            # While replaying a backlog: by time only (and once at its end, _report_progress).
            self._index.maybe_snapshot(by_count=self._replay_from is None)
            self._report_progress()

    def _note_damaged(self, damaged: tuple[DamagedChange, ...]) -> None:
        """Record the damaged changes of a batch about to be applied (those not applied yet:
        a replay after a restart does not count one twice)."""
        applied = self._index.applied_seq
        for change in damaged:
            if change.seq <= applied:
                continue
            self._damaged_changes += 1
            self._last_damaged = change
            log.error(
                "storage could not read a change (damaged row): the image leaves the index, "
                "the feed goes on",
                extra={"seq": change.seq, "image_id": change.image_id, "reason": change.reason},
            )

    def _begin_replay_if_behind(self) -> None:
        applied = self._index.applied_seq
        if self._replay_from is None and self._head - applied >= self._replay_lag:
            self._replay_from, self._replay_to = applied, self._head
            self._last_progress = time.monotonic()
            log.info(
                "replaying storage's change feed",
                extra={"from_seq": applied, "to_seq": self._head},
            )

    def _report_progress(self) -> None:
        applied = self._index.applied_seq
        if applied >= self._head:
            if self._replay_from is not None:
                self._index.snapshot()  # the replay's work is saved before it counts as done
                log.info(
                    "replay done",
                    extra={"applied_seq": applied, "documents": len(self._index)},
                )
                self._replay_from = None
            self._caught_up.set()
            return
        if self._replay_from is not None and time.monotonic() - self._last_progress >= (
            _PROGRESS_EVERY_S
        ):
            self._last_progress = time.monotonic()
            status = self.status()
            log.info(
                "replay progress",
                extra={
                    "applied_seq": applied,
                    "head_seq": self._head,
                    "percent": round(100 * status.replay_progress, 1),
                },
            )

    def _resync(self) -> None:
        """Rebuild the index from storage's listing, then follow from its snapshot_seq."""
        self._resyncs += 1
        first = self._source.list_page("")
        snapshot_seq = first.snapshot_seq
        self._head = max(self._head, snapshot_seq)
        self._resync_listed, self._resync_total = 0, max(1, first.total_count)
        listed = 0

        def documents() -> Iterator[Document | InvalidDocumentError]:
            nonlocal listed
            page = first
            while True:
                yield from page.docs
                listed += len(page.docs)
                self._resync_listed += len(page.docs)
                if not page.next_page_token:
                    return
                if self._stop.is_set():
                    # Never install a partial listing: the old index stays.
                    raise FeedUnavailableError("stopped during a resync")
                log.info("resync progress", extra={"listed_ready": listed})
                page = self._source.list_page(page.next_page_token)

        try:
            self._index.rebuild(documents(), seq=snapshot_seq)
        finally:
            self._resync_total = 0
        log.info(
            "resynchronised from storage's listing",
            extra={"documents": len(self._index), "applied_seq": snapshot_seq},
        )


def _describe(change: DamagedChange | None) -> str:
    if change is None:
        return ""
    return f"seq {change.seq} image {change.image_id}: {change.reason}"
