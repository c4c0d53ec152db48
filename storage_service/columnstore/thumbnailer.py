"""The background thumbnailer: thumbnails made after a put is acknowledged (issue 13).

A put acknowledges once the cheap checks pass (image_check.check_image: header, limits, EXIF,
sha256, structural completeness) and its row is durable, with `thumb_state` PENDING. This
makes the thumbnails afterwards and stores them as a row of their own (`set_thumbnails`), so
the acknowledged path costs about a tenth of the CPU; the work is the same, only moved.

- Durable by construction: the work list is the store's change feed. A feeder thread follows
  it from a checkpoint (`thumbnailer.json` in the data directory: every PUT at or below its seq
  has its thumbnails), queues each put whose thumbnails are still PENDING, and advances the
  checkpoint only past puts whose thumbnails are durable. A crash before they are written
  loses nothing: on restart the feed is read again from the checkpoint and the images still
  PENDING are done again (feed retention is a million changes; a checkpoint older than the
  horizon falls back to a listing).
- Bounded: at most `queue_size` images are queued (the feeder waits), each decode reserves
  its memory from the servicer's DecodeBudget.
- Low priority: the worker threads lower their own scheduling priority (Linux `nice` per
  thread), so during a burst of puts the acks keep the CPU and the thumbnails catch up after.
- On demand: `thumbnail()` of an image whose thumbnails are not made yet makes them at once
  (and stores them), so a gallery never shows a hole; a worker and a reader never make the
  same image's at once.
- An image whose full decode fails (corrupt past its header, which the structural check
  cannot see) keeps its bytes and is marked ThumbState.FAILED with the decoder's message as
  `thumb_detail`; GetThumbnail then says so (INVALID_ARGUMENT, reason INVALID_IMAGE).

`stats()` gives the backlog and counters (served as Prometheus gauges by the servicer).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from storage_service.columnstore.errors import (
    BackgroundError,
    HistoryCompactedError,
    ImageNotFoundError,
    InvalidImageError,
    StorageFullError,
    StoreClosedError,
    StoreError,
    ThumbnailsPendingError,
)
from storage_service.columnstore.image_check import (
    DecodeBudget,
    DecodeBusyError,
    render_thumbnails,
)
from storage_service.columnstore.model import (
    ChangeKind,
    ImageMeta,
    Thumbnail,
    ThumbnailSize,
    ThumbState,
)
from storage_service.columnstore.store import ColumnStore

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "thumbnailer.json"
# Worker threads' niceness: the scheduler gives them ~1/10 of a core's share while puts run.
WORKER_NICE = 10


@dataclass(frozen=True)
class ThumbnailerStats:
    # Puts seen in the feed whose thumbnails are not made yet (queued or being made).
    backlog: int
    # Feed seqs not read yet (puts among them are not counted in `backlog` yet).
    feed_lag: int
    made: int
    failed: int
    on_demand: int
    checkpoint_seq: int

    @property
    def idle(self) -> bool:
        return self.backlog == 0 and self.feed_lag == 0


class Thumbnailer:
    def __init__(
        self,
        store: ColumnStore,
        *,
        budget: DecodeBudget | None = None,
        workers: int = 2,
        queue_size: int = 256,
        checkpoint_every_s: float = 1.0,
        nice: int = WORKER_NICE,
    ) -> None:
        self._store = store
        self._budget = budget
        self._workers = max(1, workers)
        self._queue: queue.Queue[tuple[int, str]] = queue.Queue(maxsize=queue_size)
        self._checkpoint_every_s = checkpoint_every_s
        self._nice = nice
        self._path = Path(store.data_dir) / CHECKPOINT_NAME
        self._lock = threading.Lock()
        # seq of each queued or running put -> its image id.
        self._outstanding: dict[int, str] = {}
        # Image ids being made now (by a worker or on demand) -> set when done.
        self._making: dict[str, threading.Event] = {}
        self._cursor = self._read_checkpoint()
        self._saved = self._cursor
        self._made = self._failed = self._on_demand = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # Keys of images queued by a listing (_rescan): -1, -2, ...
        self._listed = itertools.count(1)

    # --- life cycle --------------------------------------------------------------------------

    def start(self) -> Thumbnailer:
        self._threads = [threading.Thread(target=self._feed, name="thumbnailer-feed", daemon=True)]
        self._threads += [
            threading.Thread(target=self._work, name=f"thumbnailer-{i}", daemon=True)
            for i in range(self._workers)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop taking work; what is queued stays PENDING (found again at the next start)."""
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._save_checkpoint()

    def stats(self) -> ThumbnailerStats:
        with self._lock:
            backlog, cursor = len(self._outstanding), self._cursor
            made, failed, on_demand = self._made, self._failed, self._on_demand
            checkpoint = self._checkpoint_seq()
        try:
            head = self._store.head_seq
        except StoreError:
            head = cursor
        return ThumbnailerStats(backlog, max(0, head - cursor), made, failed, on_demand, checkpoint)

    def wait_idle(self, timeout_s: float) -> bool:
        """Until every put so far has its thumbnails (True) or the timeout passes."""
        deadline = time.monotonic() + timeout_s
        while not self.stats().idle:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    # --- on demand ---------------------------------------------------------------------------

    def thumbnail(self, image_id: str, size: ThumbnailSize) -> Thumbnail:
        """The stored thumbnail, made now (and stored) when it is not made yet."""
        try:
            return self._store.thumbnail(image_id, size)
        except ThumbnailsPendingError:
            pass
        with self._lock:
            self._on_demand += 1
        self.make(self._store.get(image_id))
        return self._store.thumbnail(image_id, size)

    def make(self, meta: ImageMeta) -> ImageMeta:
        """Make and store one image's thumbnails unless they are made (or being made)."""
        image_id = meta.id
        while True:
            with self._lock:
                running = self._making.get(image_id)
                if running is None:
                    done = self._making[image_id] = threading.Event()
                    break
            running.wait(60.0)
        try:
            current = self._store.get(image_id)
            if current.thumb_state is not ThumbState.PENDING:
                return current
            _meta, data = self._store.read_data(image_id)
            try:
                thumbs = render_thumbnails(data, budget=self._budget)
            except InvalidImageError as e:
                stored = self._store.set_thumbnails(image_id, None, str(e))
                log.warning(
                    "stored image cannot be decoded: kept, marked without thumbnails",
                    extra={"image_id": image_id, "error": str(e)},
                )
                with self._lock:
                    self._failed += 1
                return stored
            stored = self._store.set_thumbnails(
                image_id,
                (
                    thumbs.content_type,
                    thumbs.small,
                    thumbs.small_size,
                    thumbs.preview,
                    thumbs.preview_size,
                ),
            )
            with self._lock:
                self._made += 1
            return stored
        finally:
            with self._lock:
                del self._making[image_id]
            done.set()

    # --- the feed and the workers ------------------------------------------------------------

    def _feed(self) -> None:
        self._lower_priority()
        last_save = time.monotonic()
        if self._cursor == 0 and self._store.horizon_seq > 1:
            # No checkpoint, and the feed no longer holds every put: a listing finds them.
            self._rescan()
        while not self._stop.is_set() and not self._store.is_closing:
            try:
                page = self._store.changes(self._cursor, limit=256)
            except HistoryCompactedError:
                self._rescan()
                continue
            except StoreClosedError:
                return
            except StoreError as e:  # pragma: no cover - reads fail only when closing
                log.warning("thumbnailer cannot read the feed", extra={"error": str(e)})
                self._stop.wait(1.0)
                continue
            for change in page.changes:
                if (
                    change.kind is ChangeKind.PUT
                    and change.image is not None
                    and change.image.thumb_state is ThumbState.PENDING
                ):
                    with self._lock:
                        self._outstanding[change.seq] = change.image_id
                    if not self._enqueue((change.seq, change.image_id)):
                        return
                with self._lock:
                    self._cursor = change.seq
            if time.monotonic() - last_save >= self._checkpoint_every_s:
                self._save_checkpoint()
                last_save = time.monotonic()
            if not page.changes:
                # Nothing retained after the cursor (a feed compacted away, read from 0).
                with self._lock:
                    self._cursor = max(self._cursor, page.head_seq)
                try:
                    self._store.wait_for_change(self._cursor, 0.5)
                except StoreError:
                    return

    def _enqueue(self, item: tuple[int, str]) -> bool:
        while not self._stop.is_set() and not self._store.is_closing:
            try:
                self._queue.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def _rescan(self) -> None:
        """The checkpoint is older than the feed keeps: every image listed, PENDING ones
        queued, then the feed followed from its oldest retained change."""
        log.warning("thumbnailer checkpoint older than the feed: listing every image")
        token = ""
        while not self._stop.is_set():
            page = self._store.list_images(page_size=1000, page_token=token)
            for meta in page.images:
                if meta.thumb_state is ThumbState.PENDING:
                    with self._lock:
                        seq = -next(self._listed)  # below every feed seq
                        self._outstanding[seq] = meta.id
                    if not self._enqueue((seq, meta.id)):
                        return
            token = page.next_page_token
            if not token:
                break
        with self._lock:
            self._cursor = 0

    def _work(self) -> None:
        self._lower_priority()
        while not self._stop.is_set() and not self._store.is_closing:
            try:
                seq, image_id = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self.make(self._store.get(image_id))
            except ImageNotFoundError:
                pass  # deleted since: nothing to make
            except (StoreClosedError, StorageFullError, BackgroundError, DecodeBusyError) as e:
                # Not done: it stays PENDING and outstanding (the checkpoint does not pass it).
                log.warning("thumbnails not stored", extra={"image_id": image_id, "error": str(e)})
                if isinstance(e, StoreClosedError):
                    return
                self._stop.wait(1.0)
                if not self._enqueue((seq, image_id)):
                    return
                continue
            except Exception:  # noqa: BLE001 - one image must not stop the thumbnailer
                log.exception("thumbnailer failed on an image", extra={"image_id": image_id})
            with self._lock:
                self._outstanding.pop(seq, None)

    def _lower_priority(self) -> None:
        if self._nice <= 0:
            return
        with contextlib.suppress(OSError, AttributeError):
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + self._nice)

    # --- the checkpoint ----------------------------------------------------------------------

    def _checkpoint_seq(self) -> int:
        """Every put at or below this seq has its thumbnails (lock held)."""
        pending = [s for s in self._outstanding if s > 0]
        if any(s < 0 for s in self._outstanding):
            return 0
        return min(pending) - 1 if pending else self._cursor

    def _read_checkpoint(self) -> int:
        try:
            return max(0, int(json.loads(self._path.read_text())["seq"]))
        except FileNotFoundError:
            return 0
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning(
                "thumbnailer checkpoint unreadable: reading the whole feed", extra={"error": str(e)}
            )
            return 0

    def _save_checkpoint(self) -> None:
        with self._lock:
            seq = self._checkpoint_seq()
        if seq == self._saved:
            return
        tmp = self._path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps({"seq": seq}))
            os.replace(tmp, self._path)
            self._saved = seq
        except OSError as e:  # the checkpoint only saves rereading: never fatal
            log.warning("thumbnailer checkpoint not saved", extra={"error": str(e)})
