"""StorageService: translates gRPC requests to column-store calls and errors to status codes.

Requests are checked against the shared policy (`columnstore.policy`) before the store sees
them; every reply is kept under gRPC's default 4 MiB message limit (pages and batches are cut,
and say so); every failure is a precise status (see `storage_service.errors`).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
from google.protobuf.message import Message
from prometheus_client import Gauge

from imagerepo.common.v1 import common_pb2
from imagerepo.storage.v1 import storage_service_pb2 as pb
from imagerepo.storage.v1 import storage_service_pb2_grpc as pb_grpc
from storage_service.album_servicer import AlbumServicer
from storage_service.columnstore import policy
from storage_service.columnstore.errors import DataLossError, ImageNotFoundError
from storage_service.columnstore.image_check import DEFAULT_MAX_PIXELS, DecodeBudget, check_image
from storage_service.columnstore.model import (
    AnalysisFailure,
    AnalysisResult,
    AnalysisStatus,
    AnnotationUpdate,
    Change,
    Colour,
    Feedback,
    ImageMeta,
    Label,
    ListOrder,
    ThumbnailSize,
    ThumbState,
    VerifyReport,
)
from storage_service.columnstore.store import ColumnStore
from storage_service.columnstore.thumbnailer import Thumbnailer
from storage_service.errors import (
    BUSY,
    STORAGE_FULL_MESSAGE,
    abort,
    store_errors,
    with_status_codes,
)

log = logging.getLogger(__name__)

MAX_CHUNK_BYTES = 1024 * 1024
# GetImage carries the bytes inline only below this (the reply must stay under 4 MiB);
# larger images stream via ReadImageData.
MAX_INLINE_BYTES = 3 * 1024 * 1024
# How often Verify streams a progress message at most.
PROGRESS_INTERVAL_S = 0.2
# WatchChanges: changes per message by default and at most; an idle stream's heartbeat period;
# how often a waiting stream checks that its client and the server are still there.
DEFAULT_WATCH_BATCH = 256
MAX_WATCH_BATCH = 1000
# A backlog replay's messages grow up to this many changes (v2's max_backlog_batch).
MAX_BACKLOG_BATCH = 4096
HEARTBEAT_S = 3.0
WATCH_POLL_S = 0.5
DEFAULT_LEASE_MS = 60_000
MAX_LEASE_MS = 24 * 3600 * 1000
# How long a decode waits for memory other decodes hold before the call answers UNAVAILABLE
# with reason BUSY (STORAGE_DECODE_WAIT_S). Under the gateway's 10 s deadline even twice over:
# a thumbnail asked for while the background thumbnailer waits to make that image alone waits
# for it (up to this long), then for memory itself (this long again), so the caller hears BUSY
# in 8 s at most instead of running out of its deadline. A batch of the thumbnailer holds an
# image only while making it and stops at its first busy decode, so that holds for batched
# images too (docs/storage.md).
DECODE_WAIT_S = 4.0


def _require_id(image_id: str, context: grpc.ServicerContext) -> None:
    if not image_id:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "image_id is required")


def _check_batch(count: int, what: str, context: grpc.ServicerContext) -> None:
    if count > policy.MAX_BATCH:
        abort(
            context,
            grpc.StatusCode.INVALID_ARGUMENT,
            f"{count} {what} in one call, over the limit of {policy.MAX_BATCH}",
            policy.POLICY_VIOLATION,
            limit="batch_size",
        )


def _disk_full(background_error: str) -> bool:
    """Whether the store's latched background error is a full disk (ENOSPC)."""
    return f"[Errno {errno.ENOSPC}]" in background_error or (
        STORAGE_FULL_MESSAGE in background_error
    )


def _fit(
    images: list[pb.ImageMetadata], budget: int = policy.MAX_REPLY_BYTES
) -> tuple[list[pb.ImageMetadata], int]:
    """The leading images whose serialized size fits in `budget`, and the bytes they take."""
    used = 0
    for i, image in enumerate(images):
        size = image.ByteSize() + 8
        if used + size > budget:
            return images[:i], used
        used += size
    return images, used


def _verify_to_proto(report: VerifyReport) -> pb.VerifyReport:
    damaged_ids: list[str] = []
    for item in report.damaged:
        for image_id in item.image_ids:
            if image_id not in damaged_ids:
                damaged_ids.append(image_id)
    return pb.VerifyReport(
        files_checked=report.files_checked,
        blocks_checked=report.blocks_checked,
        bytes_checked=report.bytes_checked,
        damaged=[
            pb.DamagedItem(path=d.path, detail=d.detail, image_ids=list(d.image_ids))
            for d in report.damaged
        ],
        finished_at_unix_ms=report.finished_at_ms,
        ok=report.ok,
        damaged_image_ids=damaged_ids,
    )


def _progress_message(args: tuple[Any, ...], kwargs: dict[str, Any]) -> pb.VerifyProgress:
    """A progress message from whatever the store's verify reports: an object with
    files/bytes attributes, keyword counts, or (done, total) positional counts."""
    names = ("files_checked", "files_total", "bytes_checked", "bytes_total")
    values: dict[str, int] = {}
    source: Any = args[0] if len(args) == 1 and not isinstance(args[0], int) else None
    for name in names:
        if name in kwargs:
            values[name] = int(kwargs[name])
        elif source is not None and hasattr(source, name):
            values[name] = int(getattr(source, name))
    if not values and args and all(isinstance(a, int) for a in args):
        # ColumnStore.verify reports (done, total) in bytes.
        values["bytes_checked"] = int(args[0])
        if len(args) > 1:
            values["bytes_total"] = int(args[1])
    return pb.VerifyProgress(**values)


def _status(value: int, context: grpc.ServicerContext) -> AnalysisStatus:
    try:
        return AnalysisStatus(value)
    except ValueError:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown analysis status {value}")
        raise


_THUMBNAIL_STATE = {
    ThumbState.IN_PUT: pb.THUMBNAIL_STATE_READY,
    ThumbState.MADE: pb.THUMBNAIL_STATE_READY,
    ThumbState.PENDING: pb.THUMBNAIL_STATE_PENDING,
    ThumbState.FAILED: pb.THUMBNAIL_STATE_FAILED,
}


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def set_floats(message: Message, name: str, values: Sequence[float] | np.ndarray) -> None:
    """Set a packed `repeated float` field from float32 bytes in one parse: a feature vector
    of 1280 values costs about 5 us this way, 40-80 us as Python floats."""
    message.ClearField(name)
    if len(values) == 0:
        return
    raw = np.asarray(values, dtype="<f4").tobytes()
    number = message.DESCRIPTOR.fields_by_name[name].number
    message.MergeFromString(_varint(number << 3 | 2) + _varint(len(raw)) + raw)


def to_proto(
    meta: ImageMeta, vector: Sequence[float] | np.ndarray | None = None
) -> pb.ImageMetadata:
    reply = _to_proto(meta)
    if vector is not None:
        set_floats(reply, "feature_vector", vector)
    return reply


def _to_proto(meta: ImageMeta) -> pb.ImageMetadata:
    return pb.ImageMetadata(
        id=meta.id,
        filename=meta.filename,
        owner=meta.owner,
        content_type=meta.content_type,
        created_at_unix_ms=meta.created_at_ms,
        sha256=meta.sha256,
        byte_size=meta.byte_size,
        width=meta.width,
        height=meta.height,
        exif=meta.exif,
        labels=[
            common_pb2.Label(
                name=lb.name,
                probability=lb.probability,
                synonyms=lb.synonyms,
                class_index=lb.class_index,
            )
            for lb in meta.labels
        ],
        moderation_score=meta.moderation_score,
        ocr_text=meta.ocr_text,
        tags=meta.tags,
        status=int(meta.status),  # type: ignore[arg-type]
        has_feature_vector=meta.has_feature_vector,
        feedback=[
            common_pb2.LabelFeedback(
                label=f.label,
                comment=f.comment,
                reported_by=f.reported_by,
                created_at_unix_ms=f.created_at_ms,
            )
            for f in meta.feedback
        ],
        status_detail=meta.status_detail,
        format=meta.format,
        analysis=pb.AnalysisState(
            attempts=meta.analysis.attempts,
            last_error=meta.analysis.last_error,
            generation=meta.analysis.generation,
            lease_owner=meta.analysis.lease_owner,
            lease_expires_unix_ms=meta.analysis.lease_expires_ms,
            next_attempt_unix_ms=meta.analysis.next_attempt_ms,
        ),
        favourite=meta.favourite,
        trashed_at_unix_ms=meta.trashed_at_ms,
        taken_at_unix_ms=meta.taken_at_ms,
        taken_at_is_upload_time=meta.taken_at_is_upload_time,
        colours=[common_pb2.ColourShare(name=c.name, share=c.share) for c in meta.colours],
        thumbnail_state=_THUMBNAIL_STATE[meta.thumb_state],
        thumbnail_detail=meta.thumb_detail,
    )


THUMBNAILS_BACKLOG = Gauge(
    "storage_thumbnails_backlog",
    "Acknowledged puts whose thumbnails are not made yet (queued or being made; a put not yet "
    "read from the feed counts in storage_thumbnails_feed_lag).",
)
THUMBNAILS_FEED_LAG = Gauge(
    "storage_thumbnails_feed_lag",
    "Changes in the feed the thumbnailer has not read yet.",
)
THUMBNAILS_DONE = Gauge(
    "storage_thumbnails_done",
    "Thumbnails made after the ack since the start, by outcome.",
    ["outcome"],
)


def watch_thumbnailer(thumbnailer: Thumbnailer) -> None:
    """Serve the thumbnailer's progress as gauges (read when /metrics is scraped)."""
    THUMBNAILS_BACKLOG.set_function(lambda: thumbnailer.stats().backlog)
    THUMBNAILS_FEED_LAG.set_function(lambda: thumbnailer.stats().feed_lag)
    THUMBNAILS_DONE.labels("made").set_function(lambda: thumbnailer.stats().made)
    THUMBNAILS_DONE.labels("failed").set_function(lambda: thumbnailer.stats().failed)
    THUMBNAILS_DONE.labels("on_demand").set_function(lambda: thumbnailer.stats().on_demand)


@dataclass(frozen=True)
class WatchPage:
    """One WatchChanges message, the feed changes it carries, and whether the feed already
    holds more after them (a backlog)."""

    reply: pb.WatchChangesResponse
    changes: list[Change] = field(default_factory=list)
    more: bool = False


FEED_DAMAGED_CHANGES = Gauge(
    "storage_feed_damaged_changes",
    "Distinct change-feed changes whose row was unreadable (checksum or decode failure) since "
    "the store opened; each was delivered marked damaged, and logged.",
)


@with_status_codes
class StorageServicer(AlbumServicer, pb_grpc.StorageServiceServicer):
    def __init__(
        self,
        store: ColumnStore,
        *,
        max_image_bytes: int = policy.DEFAULT_MAX_IMAGE_BYTES,
        max_image_pixels: int = DEFAULT_MAX_PIXELS,
        decode_memory_bytes: int = policy.DEFAULT_DECODE_MEMORY_BYTES,
        decode_wait_s: float = DECODE_WAIT_S,
        heartbeat_s: float = HEARTBEAT_S,
        max_streams: int = 8,
    ) -> None:
        self._store = store
        self._heartbeat_s = heartbeat_s
        # Each open WatchChanges stream holds a server thread: at most this many at once, so
        # followers can never take every thread from the other calls.
        self._max_streams = max_streams
        self._streams = threading.BoundedSemaphore(max_streams)
        # Set by stop(): open WatchChanges streams end within WATCH_POLL_S.
        self._stopping = threading.Event()
        self._max_image_bytes = max_image_bytes
        self._max_image_pixels = max_image_pixels
        self._budget = DecodeBudget(decode_memory_bytes, wait_s=decode_wait_s)
        self._verify_lock = threading.Lock()
        # Thumbnails are made after the put's ack, in the background (or on the first
        # GetThumbnail): see columnstore/thumbnailer.py.
        self.thumbnailer = Thumbnailer(store, budget=self._budget).start()
        watch_thumbnailer(self.thumbnailer)
        FEED_DAMAGED_CHANGES.set_function(lambda: store.feed_damaged_count)

    def PutImage(
        self, request_iterator: Iterable[pb.PutImageRequest], context: grpc.ServicerContext
    ) -> pb.PutImageResponse:
        messages = iter(request_iterator)
        first = next(messages, None)
        if first is None or first.WhichOneof("part") != "header":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message must be a header")
        assert first is not None
        header = first.header
        if not header.filename:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "header.filename is required")
        limit = self._max_image_bytes
        with store_errors(context):
            filename = policy.clean_filename(header.filename)
            policy.check_owner(header.owner)
            policy.check_byte_size(header.expected_size, limit)
            policy.check_tags(header.tags)
        data = bytearray()
        for message in messages:
            if message.WhichOneof("part") != "chunk":
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, "only the first message may be a header"
                )
            if len(message.chunk) > MAX_CHUNK_BYTES:
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"a chunk of {len(message.chunk)} bytes is over the 1 MiB chunk limit",
                )
            data += message.chunk
            if len(data) > limit:
                # Refused as soon as it is known, before the rest is received.
                abort(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"the image is over the limit of {limit} bytes",
                    policy.IMAGE_TOO_LARGE,
                    limit="max_image_bytes",
                )
        with store_errors(context):
            if not header.keep_duplicate:
                # Fast path: bytes this owner already stored are not decoded again (the store
                # decides under its lock in put, for puts racing each other).
                existing = self._store.find_by_sha256(
                    hashlib.sha256(data).hexdigest(), header.owner
                )
                if existing:
                    stored = self._tag_upload(existing[0], header.tags)
                    return pb.PutImageResponse(image=to_proto(stored), already_stored=True)
            image = check_image(bytes(data), max_pixels=self._max_image_pixels, budget=self._budget)
            result = self._store.put(
                filename, header.owner, image, keep_duplicate=header.keep_duplicate
            )
            stored = self._tag_upload(result.image, header.tags)
        return pb.PutImageResponse(
            image=to_proto(stored),
            duplicate_of=list(result.duplicate_of),
            already_stored=result.already_stored,
        )

    def _tag_upload(self, image: ImageMeta, tags: Iterable[str]) -> ImageMeta:
        """The upload header's tags, added through the annotation path (a second change in the
        feed); a retried upload adds them again, which changes nothing."""
        tags = tuple(tags)
        if not tags:
            return image
        return self._store.update_annotations(image.id, AnnotationUpdate(add_tags=tags))

    def GetImage(
        self, request: pb.GetImageRequest, context: grpc.ServicerContext
    ) -> pb.GetImageResponse:
        _require_id(request.image_id, context)
        with store_errors(context):
            meta = self._store.get(request.image_id)
            data = b""
            if request.include_data:
                if meta.byte_size > MAX_INLINE_BYTES:
                    context.abort(
                        grpc.StatusCode.FAILED_PRECONDITION,
                        f"image is {meta.byte_size} bytes, over the {MAX_INLINE_BYTES} bytes "
                        "GetImage carries inline: use ReadImageData",
                    )
                meta, data = self._store.read_data(request.image_id)
            vector = (
                self._store.feature_vector_array(request.image_id)
                if request.include_feature_vector
                else None
            )
        return pb.GetImageResponse(image=to_proto(meta, vector), data=data)

    def ReadImageData(
        self, request: pb.ReadImageDataRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ReadImageDataResponse]:
        _require_id(request.image_id, context)
        if request.chunk_size < 0:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "chunk_size must not be negative")
        size = min(request.chunk_size or MAX_CHUNK_BYTES, MAX_CHUNK_BYTES)
        with store_errors(context):
            meta, data = self._store.read_data(request.image_id)
        view = memoryview(data)
        for offset in range(0, max(len(data), 1), size):
            yield pb.ReadImageDataResponse(
                chunk=bytes(view[offset : offset + size]),
                offset=offset,
                total_size=len(data),
                content_type=meta.content_type,
            )

    def GetThumbnail(
        self, request: pb.GetThumbnailRequest, context: grpc.ServicerContext
    ) -> pb.GetThumbnailResponse:
        _require_id(request.image_id, context)
        size = (
            ThumbnailSize.PREVIEW
            if request.size == pb.THUMBNAIL_SIZE_PREVIEW
            else (ThumbnailSize.SMALL)
        )
        with store_errors(context):
            thumb = self.thumbnailer.thumbnail(request.image_id, size)
        return pb.GetThumbnailResponse(
            data=thumb.data, content_type=thumb.content_type, width=thumb.width, height=thumb.height
        )

    def FindByFilename(
        self, request: pb.FindByFilenameRequest, context: grpc.ServicerContext
    ) -> pb.FindByFilenameResponse:
        if not request.filename:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "filename is required")
        if request.limit < 0:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "limit must not be negative")
        with store_errors(context):
            filename = policy.check_lookup_filename(request.filename)
            found = self._store.find_by_filename(filename, request.limit)
        images, _ = _fit([to_proto(m) for m in found])
        return pb.FindByFilenameResponse(images=images)

    def ListImages(
        self, request: pb.ListImagesRequest, context: grpc.ServicerContext
    ) -> pb.ListImagesResponse:
        if request.page_size < 0:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "page_size must not be negative")
        status = _status(request.status, context)
        try:
            order = ListOrder(request.order)
        except ValueError:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown order {request.order}")
        size = request.page_size
        with store_errors(context):
            policy.check_owner(request.owner)
            while True:
                page = self._store.list_images(
                    size,
                    request.page_token,
                    request.owner,
                    status,
                    favourite_only=request.favourite_only,
                    trashed_only=request.trashed_only,
                    order=order,
                    taken_from_ms=request.taken_from_unix_ms,
                    taken_to_ms=request.taken_to_unix_ms,
                )
                images = [
                    to_proto(
                        m, self._vector_or_none(m) if request.include_feature_vectors else None
                    )
                    for m in page.images
                ]
                fitting, _ = _fit(images)
                if len(fitting) == len(images) or len(fitting) == 0:
                    break
                # Too large for one reply: ask for the page that fits, so the token is right.
                size = len(fitting)
        return pb.ListImagesResponse(
            images=images,
            next_page_token=page.next_page_token,
            total_count=page.total_count,
            unreadable_count=page.unreadable_count,
            snapshot_seq=page.snapshot_seq,
        )

    def _vector_or_none(self, meta: ImageMeta) -> np.ndarray | None:
        """The image's vector for a listing; None when it cannot be read (a damaged value: the
        listing goes on, the image says has_feature_vector with no values, and GetImage
        answers DATA_LOSS for it)."""
        try:
            return self._store.feature_vector_array(meta.id)
        except (DataLossError, ImageNotFoundError):
            log.warning("feature vector unreadable, left out of a listing", extra={"id": meta.id})
            return None

    def UpdateAnnotations(
        self, request: pb.UpdateAnnotationsRequest, context: grpc.ServicerContext
    ) -> pb.UpdateAnnotationsResponse:
        _require_id(request.image_id, context)
        fields = frozenset(request.update_mask.paths)
        if not (fields or request.add_tags or request.remove_tags or request.add_feedback):
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "nothing to update: name fields in update_mask, or give add_tags, remove_tags "
                "or add_feedback",
            )
        a = request.annotations
        with store_errors(context):
            self._check_annotations(request, fields)
        now_ms = int(time.time() * 1000)
        update = AnnotationUpdate(
            fields=fields,
            labels=tuple(
                Label(lb.name, lb.probability, tuple(lb.synonyms), lb.class_index)
                for lb in a.labels
            ),
            feature_vector=tuple(a.feature_vector),
            moderation_score=a.moderation_score,
            ocr_text=a.ocr_text,
            tags=tuple(a.tags),
            status=_status(a.status, context),
            status_detail=policy.clip_status_detail(a.status_detail),
            add_tags=tuple(request.add_tags),
            remove_tags=tuple(request.remove_tags),
            add_feedback=tuple(
                Feedback(f.label, f.comment, f.reported_by, f.created_at_unix_ms or now_ms)
                for f in request.add_feedback
            ),
            favourite=a.favourite,
            trashed=a.trashed,
        )
        with store_errors(context):
            meta = self._store.update_annotations(request.image_id, update)
        return pb.UpdateAnnotationsResponse(image=to_proto(meta))

    def _check_annotations(
        self, request: pb.UpdateAnnotationsRequest, fields: frozenset[str]
    ) -> None:
        """Policy checks of an annotation update; PolicyError names the limit."""
        a = request.annotations
        if "labels" in fields:
            policy.check_label_count(len(a.labels))
            for label in a.labels:
                policy.check_label(label.name, label.probability, label.synonyms)
        if "feature_vector" in fields:
            policy.check_feature_vector(a.feature_vector)
        if "moderation_score" in fields:
            policy.check_moderation_score(a.moderation_score)
        if "ocr_text" in fields:
            policy.check_ocr_text(a.ocr_text)
        if "tags" in fields:
            policy.check_tags(a.tags)
        policy.check_tags(request.add_tags, "add_tags")
        if len(request.remove_tags) > policy.MAX_BATCH:
            policy.check_tags(request.remove_tags, "remove_tags")
        for f in request.add_feedback:
            policy.check_feedback(f.label, f.comment, f.reported_by)
        if request.add_tags or request.add_feedback:
            # Limits on what the image holds after the update (tags and feedback accumulate).
            current = self._store.get(request.image_id)
            tags = list(a.tags) if "tags" in fields else list(current.tags)
            removed = set(request.remove_tags)
            after = {t for t in [*tags, *request.add_tags] if t not in removed}
            policy.check_tag_count(len(after))
            policy.check_feedback_count(len(current.feedback) + len(request.add_feedback))

    def DeleteImage(
        self, request: pb.DeleteImageRequest, context: grpc.ServicerContext
    ) -> pb.DeleteImageResponse:
        _require_id(request.image_id, context)
        with store_errors(context):
            meta = self._store.delete(request.image_id)
        return pb.DeleteImageResponse(image=to_proto(meta))

    def GetStats(
        self, request: pb.GetStatsRequest, context: grpc.ServicerContext
    ) -> pb.GetStatsResponse:
        with store_errors(context):
            stats = self._store.stats()
            last_verify = self._store.last_verify
        reply = pb.GetStatsResponse(
            image_count=stats.image_count,
            deleted_count=stats.deleted_count,
            segment_count=stats.segment_count,
            disk_bytes=stats.disk_bytes,
            raw_image_bytes=stats.raw_image_bytes,
            wal_bytes=stats.wal_bytes,
            memtable_rows=stats.memtable_rows,
            columns=[
                pb.ColumnStats(name=c.name, raw_bytes=c.raw_bytes, stored_bytes=c.stored_bytes)
                for c in stats.columns
            ],
            unreadable_count=stats.unreadable_rows,
            background_error=stats.background_error,
            storage_full=_disk_full(stats.background_error),
            quarantined_files=stats.quarantined_files,
            damaged_log_records=stats.damaged_log_records,
            head_seq=stats.head_seq,
            horizon_seq=stats.horizon_seq,
            pending_count=stats.pending_count,
            oldest_pending_age_ms=stats.oldest_pending_age_ms,
            album_count=self.album_count(),
        )
        if last_verify is not None:
            reply.last_verify.CopyFrom(_verify_to_proto(last_verify))
        return reply

    def Compact(
        self, request: pb.CompactRequest, context: grpc.ServicerContext
    ) -> pb.CompactResponse:
        with store_errors(context):
            report = self._store.compact()
        return pb.CompactResponse(
            segments_before=report.segments_before,
            segments_after=report.segments_after,
            bytes_before=report.bytes_before,
            bytes_after=report.bytes_after,
            rows_dropped=report.rows_dropped,
        )

    def Verify(
        self, request: pb.VerifyRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.VerifyResponse]:
        """Runs the store's verify in a worker thread and streams its progress (at most every
        PROGRESS_INTERVAL_S), then the report. One verify at a time: the worker holds the lock
        to its end, so a client that goes away early does not let a second one start."""
        if not self._verify_lock.acquire(blocking=False):
            abort(
                context,
                grpc.StatusCode.ABORTED,
                "a verify is already running; its report will be in GetStats.last_verify",
                "VERIFY_RUNNING",
            )
        yield from self._run_verify(context)

    def _run_verify(self, context: grpc.ServicerContext) -> Iterator[pb.VerifyResponse]:
        events: queue.Queue[tuple[str, Any]] = queue.Queue()
        last_sent = [0.0]

        def on_progress(*args: Any, **kwargs: Any) -> None:
            now = time.monotonic()
            if now - last_sent[0] >= PROGRESS_INTERVAL_S:
                last_sent[0] = now
                events.put(("progress", _progress_message(args, kwargs)))

        def work() -> None:
            try:
                report = self.verify_albums(self._store.verify(progress=on_progress, record=False))
                events.put(("report", report))
            except BaseException as e:  # noqa: BLE001 - handed to the RPC thread
                events.put(("error", e))
            finally:
                self._verify_lock.release()

        worker = threading.Thread(target=work, name="storage-verify", daemon=True)
        try:
            worker.start()
        except BaseException:
            self._verify_lock.release()
            raise
        yield pb.VerifyResponse(progress=pb.VerifyProgress())
        while True:
            kind, value = events.get()
            if kind == "progress":
                yield pb.VerifyResponse(progress=value)
            elif kind == "report":
                yield pb.VerifyResponse(report=_verify_to_proto(value))
                return
            else:
                with store_errors(context):
                    raise value

    def FindBySha256(
        self, request: pb.FindBySha256Request, context: grpc.ServicerContext
    ) -> pb.FindBySha256Response:
        _check_batch(len(request.sha256), "sha256 digests", context)
        owner = request.owner if request.HasField("owner") else None
        with store_errors(context):
            digests = [policy.check_sha256(d) for d in request.sha256]
            if owner is not None:
                policy.check_owner(owner)
            found = [self._store.find_by_sha256(d, owner) for d in digests]
        reply = pb.FindBySha256Response()
        used = 0
        for digest, metas in zip(digests, found, strict=True):
            match = reply.matches.add(sha256=digest, image_ids=[m.id for m in metas])
            images = [to_proto(m) for m in metas]
            fitting, size = _fit(images, policy.MAX_REPLY_BYTES - used)
            if len(fitting) < len(images):
                reply.truncated = True
            match.images.extend(fitting)
            used += size + 200
        return reply

    def BatchGetImages(
        self, request: pb.BatchGetImagesRequest, context: grpc.ServicerContext
    ) -> pb.BatchGetImagesResponse:
        _check_batch(len(request.image_ids), "image ids", context)
        ids = list(dict.fromkeys(request.image_ids))
        for image_id in ids:
            if not image_id or len(image_id) > policy.MAX_ID_CHARS:
                abort(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"image id {policy.short_id(image_id)!r} is empty or over "
                    f"{policy.MAX_ID_CHARS} characters",
                    policy.POLICY_VIOLATION,
                    limit="image_id",
                )
        reply = pb.BatchGetImagesResponse()
        with store_errors(context):
            images = self._batch_metas(ids, reply)
        used = 0
        for meta in images:
            try:
                vector = (
                    self._store.feature_vector_array(meta.id)
                    if request.include_feature_vectors
                    else None
                )
            except DataLossError:
                reply.unreadable_ids.append(meta.id)
                continue
            except ImageNotFoundError:
                reply.not_found_ids.append(meta.id)
                continue
            proto = to_proto(meta, vector)
            size = proto.ByteSize() + 8
            if used + size > policy.MAX_REPLY_BYTES:
                reply.not_returned_ids.append(meta.id)
                continue
            used += size
            reply.images.append(proto)
        return reply

    def _batch_metas(self, ids: list[str], reply: pb.BatchGetImagesResponse) -> list[ImageMeta]:
        """Metadata of the ids found; the others go to reply.not_found_ids/unreadable_ids."""
        try:
            metas = self._store.get_many(ids)
        except DataLossError:
            # Some row is damaged: find which, one at a time.
            metas = []
            for image_id in ids:
                try:
                    metas.append(self._store.get(image_id))
                except ImageNotFoundError:
                    metas.append(None)
                except DataLossError:
                    reply.unreadable_ids.append(image_id)
            unreadable = set(reply.unreadable_ids)
            ids = [i for i in ids if i not in unreadable]
        found: list[ImageMeta] = []
        for image_id, meta in zip(ids, metas, strict=True):
            if meta is None:
                reply.not_found_ids.append(image_id)
            else:
                found.append(meta)
        return found

    # --- the change feed and the analysis queue ------------------------------------------------

    def stop(self) -> None:
        """End every open WatchChanges stream (within WATCH_POLL_S), so server.stop() and the
        store's close are never held up by a follower."""
        self._stopping.set()
        self.thumbnailer.stop()
        self.close_albums()

    @property
    def feed_damaged_changes(self) -> int:
        return self._store.feed_damaged_count

    @property
    def decode_budget(self) -> DecodeBudget:
        """The decode memory the uploads and the thumbnailer share (each decode reserves it)."""
        return self._budget

    def _change_to_proto(
        self,
        change: Change,
        with_vector: bool,
        made: dict[str, tuple[ImageMeta, pb.ImageMetadata]] | None = None,
    ) -> pb.Change:
        """One change as sent. `made` (per page) keeps each image's message: a page carries
        every change of an image with the same current metadata (read under one lock), so a
        replayed put and its annotation read the vector and build the message once."""
        reply = pb.Change(seq=change.seq, kind=int(change.kind), image_id=change.image_id)  # type: ignore[arg-type]
        if change.image is not None:
            known = made.get(change.image_id) if made is not None else None
            if known is not None and known[0] is change.image:
                image = known[1]
            else:
                vector = self._vector_or_none(change.image) if with_vector else None
                image = to_proto(change.image, vector)
                if made is not None:
                    made[change.image_id] = (change.image, image)
            reply.image.CopyFrom(image)
        return reply

    def WatchChanges(
        self, request: pb.WatchChangesRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WatchChangesResponse]:
        """Changes after request.after_seq in batches; then, with follow, new ones as they
        become visible, and a heartbeat (no changes, head_seq) every few idle seconds. A
        change whose row is damaged comes without its image (v2 marks it damaged)."""
        for page in self.watch_pages(request, context):
            yield page.reply

    def watch_pages(
        self,
        request: pb.WatchChangesRequest,
        context: grpc.ServicerContext,
        max_backlog_batch: int = 0,
    ) -> Iterator[WatchPage]:
        """WatchChanges' messages, each with the feed changes it carries (v2 adds what v1
        cannot say: a change's damage, whether more changes follow at once). With
        `max_backlog_batch`, a full message is followed by one twice its size, up to that (at
        most MAX_BACKLOG_BATCH): a backlog replays in large messages, live changes still go out
        one small message at a time."""
        if request.after_seq < 0 or request.max_batch < 0 or max_backlog_batch < 0:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "after_seq, max_batch and max_backlog_batch must not be negative",
            )
        if not self._streams.acquire(blocking=False):
            abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                f"{self._max_streams} change-feed streams are open already; retry later",
                BUSY,
            )
        try:
            yield from self._watch(request, context, max_backlog_batch)
        finally:
            self._streams.release()

    def _watch(
        self, request: pb.WatchChangesRequest, context: grpc.ServicerContext, backlog: int
    ) -> Iterator[WatchPage]:
        batch = min(request.max_batch or DEFAULT_WATCH_BATCH, MAX_WATCH_BATCH)
        most = max(batch, min(backlog, MAX_BACKLOG_BATCH))
        size_now = batch
        after = request.after_seq
        sent_any = False
        last_sent = time.monotonic()
        while not self._stopping.is_set() and context.is_active():
            with store_errors(context):
                page = self._store.changes(after, size_now)
            if page.changes:
                reply = pb.WatchChangesResponse(
                    head_seq=page.head_seq, horizon_seq=page.horizon_seq
                )
                used = 0
                carried: list[Change] = []
                made: dict[str, tuple[ImageMeta, pb.ImageMetadata]] = {}
                for change in page.changes:
                    proto = self._change_to_proto(change, request.include_feature_vector, made)
                    size = proto.ByteSize() + 8
                    if reply.changes and used + size > policy.MAX_REPLY_BYTES:
                        break  # the rest goes in the next message
                    used += size
                    reply.changes.append(proto)
                    carried.append(change)
                after = reply.changes[-1].seq
                # A full page means a backlog: the next one may be larger; else back to small.
                if len(page.changes) < size_now:
                    size_now = batch
                elif len(carried) == size_now:
                    size_now = min(most, size_now * 2)
                sent_any = True
                last_sent = time.monotonic()
                yield WatchPage(reply, carried, self._store.last_change_seq > after)
                continue
            size_now = batch
            if not request.follow:
                if not sent_any:
                    yield WatchPage(
                        pb.WatchChangesResponse(
                            head_seq=page.head_seq, horizon_seq=page.horizon_seq
                        )
                    )
                return
            if time.monotonic() - last_sent >= self._heartbeat_s:
                last_sent = time.monotonic()
                sent_any = True
                yield WatchPage(
                    pb.WatchChangesResponse(head_seq=page.head_seq, horizon_seq=page.horizon_seq)
                )
            wait = min(WATCH_POLL_S, max(0.0, self._heartbeat_s - (time.monotonic() - last_sent)))
            if not self._store.wait_for_change(after, wait) and self._store.is_closing:
                return

    def ClaimAnalysis(
        self, request: pb.ClaimAnalysisRequest, context: grpc.ServicerContext
    ) -> pb.ClaimAnalysisResponse:
        if not request.worker_id or len(request.worker_id) > policy.MAX_ID_CHARS:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"worker_id is required (at most {policy.MAX_ID_CHARS} characters)",
            )
        if request.max_images < 0 or request.lease_ms < 0:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "max_images and lease_ms must not be negative"
            )
        count = min(request.max_images or 1, policy.MAX_BATCH)
        lease_ms = min(request.lease_ms or DEFAULT_LEASE_MS, MAX_LEASE_MS)
        with store_errors(context):
            claimed = self._store.claim_analysis(request.worker_id, count, lease_ms)
        reply = pb.ClaimAnalysisResponse()
        for item in claimed:
            vector = self._vector_or_none(item.image) if request.include_feature_vector else None
            reply.images.add(image=to_proto(item.image, vector), generation=item.generation)
        return reply

    def CompleteAnalysis(
        self, request: pb.CompleteAnalysisRequest, context: grpc.ServicerContext
    ) -> pb.CompleteAnalysisResponse:
        return self.complete_analysis(request, context)

    def complete_analysis(
        self,
        request: pb.CompleteAnalysisRequest,
        context: grpc.ServicerContext,
        outage: bool = False,
    ) -> pb.CompleteAnalysisResponse:
        """CompleteAnalysis; v2 adds what v1 cannot say: a failure is an outage (a service
        was away), whose claim storage gives back instead of counting it."""
        _require_id(request.image_id, context)
        which = request.WhichOneof("outcome")
        outcome: AnalysisResult | AnalysisFailure
        with store_errors(context):
            if which == "result":
                r = request.result
                policy.check_label_count(len(r.labels))
                for label in r.labels:
                    policy.check_label(label.name, label.probability, label.synonyms)
                policy.check_feature_vector(r.feature_vector)
                policy.check_moderation_score(r.moderation_score)
                policy.check_ocr_text(r.ocr_text)
                policy.check_colours((c.name, c.share) for c in r.colours)
                outcome = AnalysisResult(
                    labels=tuple(
                        Label(lb.name, lb.probability, tuple(lb.synonyms), lb.class_index)
                        for lb in r.labels
                    ),
                    moderation_score=r.moderation_score,
                    ocr_text=r.ocr_text,
                    feature_vector=tuple(r.feature_vector),
                    colours=tuple(Colour(c.name, c.share) for c in r.colours),
                )
            elif which == "failure":
                reason = policy.clip_status_detail(request.failure.reason) or "analysis failed"
                outcome = AnalysisFailure(reason, request.failure.permanent, outage)
            else:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "give either a result or a failure")
            meta = self._store.complete_analysis(request.image_id, request.generation, outcome)
        return pb.CompleteAnalysisResponse(image=to_proto(meta))
