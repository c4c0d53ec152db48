"""StorageService: translates gRPC requests to column-store calls and errors to status codes."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

import grpc

from imagerepo.common.v1 import common_pb2
from imagerepo.storage.v1 import storage_service_pb2 as pb
from imagerepo.storage.v1 import storage_service_pb2_grpc as pb_grpc
from storage_service.columnstore.image_check import DEFAULT_MAX_PIXELS, prepare_image
from storage_service.columnstore.model import (
    AnalysisStatus,
    AnnotationUpdate,
    Feedback,
    ImageMeta,
    Label,
    ThumbnailSize,
)
from storage_service.columnstore.store import ColumnStore
from storage_service.errors import store_errors

MAX_CHUNK_BYTES = 1024 * 1024
# GetImage carries the bytes inline only below this; larger images stream via ReadImageData.
MAX_INLINE_BYTES = 8 * 1024 * 1024


def _require_id(image_id: str, context: grpc.ServicerContext) -> None:
    if not image_id:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "image_id is required")


def _status(value: int, context: grpc.ServicerContext) -> AnalysisStatus:
    try:
        return AnalysisStatus(value)
    except ValueError:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown analysis status {value}")
        raise


def to_proto(meta: ImageMeta, vector: list[float] | None = None) -> pb.ImageMetadata:
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
        feature_vector=vector or [],
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
    )


class StorageServicer(pb_grpc.StorageServiceServicer):
    def __init__(
        self,
        store: ColumnStore,
        *,
        max_image_bytes: int = 50 * 1024 * 1024,
        max_image_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self._store = store
        self._max_image_bytes = max_image_bytes
        self._max_image_pixels = max_image_pixels

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
        if header.expected_size > limit:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"expected_size {header.expected_size} is over the limit of {limit} bytes",
            )
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
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"the image is over the limit of {limit} bytes",
                )
        with store_errors(context):
            image = prepare_image(bytes(data), max_pixels=self._max_image_pixels)
            result = self._store.put(header.filename, header.owner, image)
        return pb.PutImageResponse(
            image=to_proto(result.image), duplicate_of=list(result.duplicate_of)
        )

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
                self._store.feature_vector(request.image_id)
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
            thumb = self._store.thumbnail(request.image_id, size)
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
            found = self._store.find_by_filename(request.filename, request.limit)
        return pb.FindByFilenameResponse(images=[to_proto(m) for m in found])

    def ListImages(
        self, request: pb.ListImagesRequest, context: grpc.ServicerContext
    ) -> pb.ListImagesResponse:
        if request.page_size < 0:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "page_size must not be negative")
        with store_errors(context):
            page = self._store.list_images(
                request.page_size,
                request.page_token,
                request.owner,
                _status(request.status, context),
            )
            images = [
                to_proto(
                    m,
                    self._store.feature_vector(m.id) if request.include_feature_vectors else None,
                )
                for m in page.images
            ]
        return pb.ListImagesResponse(
            images=images, next_page_token=page.next_page_token, total_count=page.total_count
        )

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
            status_detail=a.status_detail,
            add_tags=tuple(request.add_tags),
            remove_tags=tuple(request.remove_tags),
            add_feedback=tuple(
                Feedback(f.label, f.comment, f.reported_by, f.created_at_unix_ms or now_ms)
                for f in request.add_feedback
            ),
        )
        with store_errors(context):
            meta = self._store.update_annotations(request.image_id, update)
        return pb.UpdateAnnotationsResponse(image=to_proto(meta))

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
        return pb.GetStatsResponse(
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
        )

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
