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
- Batched: a worker takes what is queued, up to `BATCH_SIZE` images, makes their thumbnails
  and stores their rows together (`set_thumbnails_many`): one fsync per batch instead of one
  per image, which had the workers waiting on the disk more than working (catching up 2 cores'
  worth of puts, 1 worker made ~120 img/s at 5.5 ms of CPU each). A corrupt or deleted image in
  a batch does not keep the others from being stored. While puts arrive (the feed's head
  moves), a worker makes one image and pauses `FOREGROUND_YIELD_S` instead: measured with 8
  clients, batches made at full speed during a burst took the acks from ~400-600/s down to
  ~290-440/s (a niced worker the kernel preempts while it holds the interpreter lock stalls
  every request thread); one image at a time with the pause: within noise of the unbatched
  rate (acks/s and sustained img/s, 3-4 rounds at load 7-9).
- Low priority: the worker threads lower their own scheduling priority (Linux `nice` per
  thread), so during a burst of puts the acks keep the CPU and the thumbnails catch up after.
- On demand: `thumbnail()` of an image whose thumbnails are not made yet makes them at once
  (and stores them), so a gallery never shows a hole; a worker and a reader never make the
  same image's at once. A batch claims each image only when its turn comes and lets it go once
  stored or failed, stops at its first decode that waited in vain for decode memory (BUSY; the
  rest are tried again a second later) and takes no new image after `BATCH_MAX_S`: a reader
  asking for an image of a batch waits for that image's own decode (and the batch's store),
  not for the batch's other decodes, and hears BUSY at once when that decode was busy. (Claimed
  together and let go together, with the memory held, a batch kept a reader up to 8 decode
  waits: 25-28 s with the 4 s wait, past the gateway's 10 s deadline.)
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
    DataLossError,
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
# Images a worker makes before storing their rows together (one fsync for the batch): what is
# queued when it starts, up to this many. 1: a row and an fsync per image (the path before).
BATCH_SIZE = 8
# A batch takes no new image once it has run this long (the rest wait for the worker's next
# batch): an image it made waits for the batch's store, and a reader asking for it with it.
# A batch of 8 made with free decode memory takes a few tens of milliseconds.
BATCH_MAX_S = 1.0
# While puts arrive, a worker makes one image at a time and waits this long after each (0: one
# at a time, no pause).
FOREGROUND_YIELD_S = 0.005
# (content type, small, its size, preview, its size), as store.set_thumbnails takes them.
Made = tuple[str, bytes, tuple[int, int], bytes, tuple[int, int]]


class _Claim:
    """One thread making one image's thumbnails; others asking for them wait on `done`."""

    __slots__ = ("busy", "done")

    def __init__(self) -> None:
        self.done = threading.Event()
        # Its decode waited the whole decode wait for memory in vain (DecodeBusyError).
        self.busy = False


class _NotReachedError(Exception):
    """A batch ran out of its time before this image's turn: the worker takes it next."""


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
        nice: int | None = None,
        batch_size: int | None = None,
        yield_s: float | None = None,
        batch_max_s: float = BATCH_MAX_S,
    ) -> None:
        self._store = store
        self._budget = budget
        self._workers = max(1, workers)
        self._batch_size = max(1, batch_size or BATCH_SIZE)
        self._yield_s = FOREGROUND_YIELD_S if yield_s is None else yield_s
        self._batch_max_s = batch_max_s
        self._queue: queue.Queue[tuple[int, str]] = queue.Queue(maxsize=queue_size)
        self._checkpoint_every_s = checkpoint_every_s
        self._nice = WORKER_NICE if nice is None else nice
        self._path = Path(store.data_dir) / CHECKPOINT_NAME
        self._lock = threading.Lock()
        # seq of each queued or running put -> its image id.
        self._outstanding: dict[int, str] = {}
        # Image ids being made now (by a worker or on demand) -> set when done.
        self._making: dict[str, _Claim] = {}
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
        results, errors = self._make_many([meta.id])
        if meta.id in errors:
            raise errors[meta.id]
        made = results.get(meta.id)
        if made is None:
            raise ImageNotFoundError(meta.id)
        return made

    def _make_many(
        self, image_ids: list[str]
    ) -> tuple[dict[str, ImageMeta | None], dict[str, Exception]]:
        """Make the thumbnails of these images (those still PENDING and not being made by
        another thread) and store them together: one log write each, one fsync for all.
        Returns each image's metadata (None: deleted) and the errors of those not made (a
        decode that could not get its memory, ...); an error storing them raises.

        Each image is claimed only when its turn comes and let go as soon as nothing more
        will be done with it here (stored, or failed), so a reader asking for an image of the
        batch waits at most for that one image's decode, not for the batch. The batch stops
        at its first busy decode (the images after it answer DecodeBusyError too, unclaimed:
        the worker tries them again later) and takes no new image once it has run for
        `batch_max_s` (those answer _NotReachedError)."""
        started = time.monotonic()
        claimed: dict[str, _Claim] = {}
        others: dict[str, _Claim] = {}
        results: dict[str, ImageMeta | None] = {}
        errors: dict[str, Exception] = {}
        busy: DecodeBusyError | None = None
        try:
            items: list[tuple[str, Made | None, str]] = []
            for index, image_id in enumerate(image_ids):
                if image_id in claimed or image_id in others or image_id in errors:
                    continue
                if busy is not None:
                    errors[image_id] = busy
                    continue
                if index and time.monotonic() - started > self._batch_max_s:
                    errors[image_id] = _NotReachedError(image_id)
                    continue
                with self._lock:
                    running = self._making.get(image_id)
                    if running is None:
                        claim = claimed[image_id] = self._making[image_id] = _Claim()
                    else:
                        others[image_id] = running
                        continue
                try:
                    current = self._store.get(image_id)
                    if current.thumb_state is not ThumbState.PENDING:
                        results[image_id] = current
                        self._release(claimed.pop(image_id), image_id)
                        continue
                    _meta, data = self._store.read_data(image_id)
                except ImageNotFoundError:
                    results[image_id] = None
                    self._release(claimed.pop(image_id), image_id)
                    continue
                except DataLossError as e:  # this image's bytes are damaged: not the others
                    errors[image_id] = e
                    self._release(claimed.pop(image_id), image_id)
                    continue
                try:
                    thumbs = render_thumbnails(data, budget=self._budget)
                except InvalidImageError as e:
                    log.warning(
                        "stored image cannot be decoded: kept, marked without thumbnails",
                        extra={"image_id": image_id, "error": str(e)},
                    )
                    items.append((image_id, None, str(e)))
                    continue
                except DecodeBusyError as e:
                    # The memory stayed taken for a whole wait: the next decodes would wait
                    # as long. Whoever waits on this image hears BUSY at once.
                    busy = errors[image_id] = e
                    claim.busy = True
                    self._release(claimed.pop(image_id), image_id)
                    continue
                except Exception as e:  # noqa: BLE001 - the others of the batch are still stored
                    errors[image_id] = e
                    self._release(claimed.pop(image_id), image_id)
                    continue
                made = (
                    thumbs.content_type,
                    thumbs.small,
                    thumbs.small_size,
                    thumbs.preview,
                    thumbs.preview_size,
                )
                items.append((image_id, made, ""))
            stored = self._store.set_thumbnails_many(items) if items else []
            made_count = failed_count = 0
            for (image_id, made_item, _), meta in zip(items, stored, strict=True):
                results[image_id] = meta
                if meta is not None:
                    made_count += made_item is not None
                    failed_count += made_item is None
            with self._lock:
                self._made += made_count
                self._failed += failed_count
        finally:
            for image_id, claim in claimed.items():
                self._release(claim, image_id)
        for image_id, running in others.items():
            # Being made by another thread: wait for it (one image's decode at most), then
            # make it here if that one did not; BUSY if its decode waited in vain.
            running.done.wait(60.0)
            if running.busy:
                errors[image_id] = DecodeBusyError(
                    "storage is busy decoding other large images; try again shortly"
                )
                continue
            more, more_errors = self._make_many([image_id])
            results.update(more)
            errors.update(more_errors)
        return results, errors

    def _release(self, claim: _Claim, image_id: str) -> None:
        with self._lock:
            if self._making.get(image_id) is claim:
                del self._making[image_id]
        claim.done.set()

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
        seen = self._store.head_seq
        # Images a batch did not reach (busy decode memory, or out of time): taken first next.
        carried: list[tuple[int, str]] = []
        while not self._stop.is_set() and not self._store.is_closing:
            if carried:
                batch, carried = carried[:1], carried[1:]
            else:
                try:
                    batch = [self._queue.get(timeout=0.5)]
                except queue.Empty:
                    continue
            head = self._store.head_seq
            if head != seen:
                # Puts arrived since this worker's last image: they come first. One image,
                # then a pause (nice lowers these threads' CPU share, but a niced thread the
                # kernel preempts while it holds the interpreter lock stalls every request).
                seen = head
                if self._yield_s:
                    self._stop.wait(self._yield_s)
            else:
                # Catching up: what else is queued, up to a batch: its rows share one fsync.
                take = min(len(carried), self._batch_size - len(batch))
                batch, carried = batch + carried[:take], carried[take:]
                while len(batch) < self._batch_size:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
            try:
                _results, errors = self._make_many([image_id for _, image_id in batch])
            except (StoreClosedError, StorageFullError, BackgroundError) as e:
                # Not stored: they stay PENDING and outstanding (the checkpoint does not pass).
                log.warning("thumbnails not stored", extra={"images": len(batch), "error": str(e)})
                if isinstance(e, StoreClosedError) or not self._retry(batch + carried):
                    return
                carried = []
                continue
            except Exception:  # noqa: BLE001 - one batch must not stop the thumbnailer
                log.exception("thumbnailer failed on a batch", extra={"images": len(batch)})
                errors = {}
            busy = False
            for seq, image_id in batch:
                error = errors.get(image_id)
                if isinstance(error, (DecodeBusyError, _NotReachedError)):
                    carried.append((seq, image_id))
                    busy = busy or isinstance(error, DecodeBusyError)
                    continue
                if error is not None:
                    log.error(
                        "thumbnailer failed on an image",
                        extra={"image_id": image_id, "error": repr(error)},
                    )
                with self._lock:
                    self._outstanding.pop(seq, None)
            if busy:
                # Decode memory stayed taken: a second before trying these again.
                self._stop.wait(1.0)

    def _retry(self, items: list[tuple[int, str]]) -> bool:
        """Queue again, a second later, images whose thumbnails could not be stored now."""
        self._stop.wait(1.0)
        return all(self._enqueue(item) for item in items)

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
