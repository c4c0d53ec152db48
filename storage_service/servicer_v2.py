"""StorageService v2 (imagerepo.storage.v2): the v2 contract over the same servicer as v1.

It only translates: each v2 request becomes the v1 request with the same meaning, the v1
servicer (the very instance serving v1, with its store, stream limits and shutdown) does the
work, and its answer is said again in v2 terms: Timestamps and Durations for times, common.v2
labels (class_index with presence) and colour enums, ListOrder with an UNSPECIFIED zero value,
a moderation score present once analysed, and FindByFilename paged with an opaque token.
Errors are v1's (the v1 method aborts; the status passes through unchanged).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Iterator
from typing import Any, NoReturn, TypeVar

import grpc
import numpy as np
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message

from imagerepo.common.v1 import common_pb2 as common_v1
from imagerepo.storage.v1 import storage_service_pb2 as v1
from imagerepo.storage.v2 import storage_service_pb2 as pb
from imagerepo.storage.v2 import storage_service_pb2_grpc as pb_grpc
from service_runtime.contracts_v2 import (
    colours_to_v1,
    colours_to_v2,
    feedback_to_v1,
    feedback_to_v2,
    label_to_v1,
    label_to_v2,
    timestamp_of_ms,
)
from storage_service.servicer import StorageServicer, set_floats

M = TypeVar("M", bound=Message)

_ORDERS = {
    pb.LIST_ORDER_UNSPECIFIED: v1.LIST_ORDER_UPLOADED_NEWEST,
    pb.LIST_ORDER_UPLOADED_NEWEST: v1.LIST_ORDER_UPLOADED_NEWEST,
    pb.LIST_ORDER_TAKEN_NEWEST: v1.LIST_ORDER_TAKEN_NEWEST,
    pb.LIST_ORDER_TAKEN_OLDEST: v1.LIST_ORDER_TAKEN_OLDEST,
}
DEFAULT_FILENAME_PAGE, MAX_FILENAME_PAGE = 100, 1000
# How many more images than a page FindByFilename reads to find where the last page ended.
FILENAME_ANCHOR_SLACK = 64
TOKEN_VERSION = 1


# --- messages, v1 -> v2 -------------------------------------------------------------------------


def scalars(src: Message, dst: M, skip: Iterable[str] = ()) -> M:
    """Copy the fields `src` and `dst` both have, by name, where both are scalars (or repeated
    scalars) of one type; everything else is translated by hand."""
    fields = dst.DESCRIPTOR.fields_by_name
    left_out = set(skip)
    for field, value in src.ListFields():
        target = fields.get(field.name)
        if (
            target is None
            or field.name in left_out
            or field.message_type is not None
            or target.message_type is not None
            or field.type != target.type
        ):
            continue
        if field.is_repeated:
            getattr(dst, field.name).extend(value)
        else:
            setattr(dst, field.name, value)
    return dst


def duration_of_ms(ms: int) -> Duration:
    out = Duration()
    out.FromMilliseconds(ms)
    return out


def analysis_state_to_v2(state: v1.AnalysisState) -> pb.AnalysisState:
    return pb.AnalysisState(
        attempts=state.attempts,
        last_error=state.last_error,
        generation=state.generation,
        lease_owner=state.lease_owner,
        lease_expire_time=timestamp_of_ms(state.lease_expires_unix_ms),
        next_attempt_time=timestamp_of_ms(state.next_attempt_unix_ms),
    )


def image_to_v2(image: v1.ImageMetadata) -> pb.ImageMetadata:
    out = pb.ImageMetadata(
        id=image.id,
        filename=image.filename,
        owner=image.owner,
        content_type=image.content_type,
        create_time=timestamp_of_ms(image.created_at_unix_ms),
        sha256=image.sha256,
        byte_size=image.byte_size,
        width=image.width,
        height=image.height,
        exif=dict(image.exif),
        labels=[label_to_v2(label) for label in image.labels],
        ocr_text=image.ocr_text,
        tags=list(image.tags),
        status=image.status,  # type: ignore[arg-type]  # same numbers in both versions
        has_feature_vector=image.has_feature_vector,
        feedback=[feedback_to_v2(item) for item in image.feedback],
        status_detail=image.status_detail,
        format=image.format,
        analysis=analysis_state_to_v2(image.analysis) if image.HasField("analysis") else None,
        colours=colours_to_v2(image.colours),
        favourite=image.favourite,
        trash_time=timestamp_of_ms(image.trashed_at_unix_ms),
        taken_time=timestamp_of_ms(getattr(image, "taken_at_unix_ms", 0)),
        taken_time_is_upload_time=getattr(image, "taken_at_is_upload_time", False),
        thumbnail_state=image.thumbnail_state,  # type: ignore[arg-type]  # same numbers
        thumbnail_detail=image.thumbnail_detail,
    )
    set_floats(out, "feature_vector", np.asarray(image.feature_vector, np.float32))
    if image.status == common_v1.ANALYSIS_STATUS_READY:
        out.moderation_score = image.moderation_score
    return out


def images_to_v2(images: Iterable[v1.ImageMetadata]) -> list[pb.ImageMetadata]:
    return [image_to_v2(image) for image in images]


def album_to_v2(album: Any) -> pb.Album:
    return pb.Album(
        id=album.id,
        name=album.name,
        owner=album.owner,
        create_time=timestamp_of_ms(album.created_at_unix_ms),
        update_time=timestamp_of_ms(album.updated_at_unix_ms),
        image_count=album.image_count,
        cover_image_id=album.cover_image_id,
    )


def verify_report_to_v2(report: v1.VerifyReport) -> pb.VerifyReport:
    out = scalars(report, pb.VerifyReport())
    out.damaged.extend(scalars(item, pb.DamagedItem()) for item in report.damaged)
    stamp = timestamp_of_ms(report.finished_at_unix_ms)
    if stamp is not None:
        out.finish_time.CopyFrom(stamp)
    return out


# --- page tokens ----------------------------------------------------------------------------


def encode_token(fields: dict[str, Any]) -> str:
    raw = json.dumps({"v": TOKEN_VERSION, **fields}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_token(token: str) -> dict[str, Any]:
    """ValueError for anything this service did not issue."""
    try:
        fields = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except ValueError as exc:
        raise ValueError("not a page token of this service") from exc
    if not isinstance(fields, dict) or fields.get("v") != TOKEN_VERSION:
        raise ValueError("not a page token of this service")
    return fields


def _fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    context.abort(code, message)
    raise AssertionError("context.abort returned")


class StorageServicerV2(pb_grpc.StorageServiceServicer):
    """Serves v2 through `v1`, the servicer that serves v1 on the same server."""

    def __init__(self, v1_servicer: StorageServicer) -> None:
        self._v1 = v1_servicer

    # --- images -----------------------------------------------------------------------------

    def PutImage(self, request_iterator: Iterator[pb.PutImageRequest], context):
        def as_v1() -> Iterator[v1.PutImageRequest]:
            for message in request_iterator:
                part = message.WhichOneof("part")
                if part == "header":
                    yield v1.PutImageRequest(header=scalars(message.header, v1.PutImageHeader()))
                elif part == "chunk":
                    yield v1.PutImageRequest(chunk=message.chunk)
                else:
                    yield v1.PutImageRequest()

        reply = self._v1.PutImage(as_v1(), context)
        return pb.PutImageResponse(
            image=image_to_v2(reply.image),
            duplicate_of=list(reply.duplicate_of),
            already_stored=reply.already_stored,
        )

    def GetImage(self, request: pb.GetImageRequest, context):
        reply = self._v1.GetImage(scalars(request, v1.GetImageRequest()), context)
        return pb.GetImageResponse(image=image_to_v2(reply.image), data=reply.data)

    def BatchGetImages(self, request: pb.BatchGetImagesRequest, context):
        reply = self._v1.BatchGetImages(scalars(request, v1.BatchGetImagesRequest()), context)
        return scalars(reply, pb.BatchGetImagesResponse(images=images_to_v2(reply.images)))

    def ReadImageData(self, request: pb.ReadImageDataRequest, context):
        for chunk in self._v1.ReadImageData(scalars(request, v1.ReadImageDataRequest()), context):
            yield scalars(chunk, pb.ReadImageDataResponse())

    def GetThumbnail(self, request: pb.GetThumbnailRequest, context):
        reply = self._v1.GetThumbnail(scalars(request, v1.GetThumbnailRequest()), context)
        return scalars(reply, pb.GetThumbnailResponse())

    def FindByFilename(self, request: pb.FindByFilenameRequest, context):
        """Pages of v1's newest-first lookup: the token holds the position reached and the
        last image's id; the next page starts right after that image wherever it now is."""
        if request.page_size < 0:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "page_size must not be negative")
        size = min(request.page_size or DEFAULT_FILENAME_PAGE, MAX_FILENAME_PAGE)
        position, last_id = 0, ""
        if request.page_token:
            try:
                token = decode_token(request.page_token)
                if token.get("f") != _fingerprint(request.filename):
                    raise ValueError("the page token belongs to another filename")
                position, last_id = int(token["p"]), str(token["id"])
            except (ValueError, KeyError, TypeError) as exc:
                _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"bad page_token: {exc}")
        wanted = position + size + FILENAME_ANCHOR_SLACK + 1
        found = self._v1.FindByFilename(
            v1.FindByFilenameRequest(filename=request.filename, limit=wanted), context
        ).images
        ids = [image.id for image in found]
        start = ids.index(last_id) + 1 if last_id in ids else position
        page = found[start : start + size]
        reply = pb.FindByFilenameResponse(images=images_to_v2(page))
        if page and start + len(page) < len(found):
            reply.next_page_token = encode_token(
                {"f": _fingerprint(request.filename), "p": start + len(page), "id": page[-1].id}
            )
        return reply

    def FindBySha256(self, request: pb.FindBySha256Request, context):
        old = v1.FindBySha256Request(sha256=list(request.sha256))
        if request.HasField("owner"):
            old.owner = request.owner
        reply = self._v1.FindBySha256(old, context)
        return pb.FindBySha256Response(
            matches=[
                pb.Sha256Match(
                    sha256=m.sha256, images=images_to_v2(m.images), image_ids=list(m.image_ids)
                )
                for m in reply.matches
            ],
            truncated=reply.truncated,
        )

    def ListImages(self, request: pb.ListImagesRequest, context):
        if request.order not in _ORDERS:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"unknown order {request.order}")
        old = scalars(request, v1.ListImagesRequest(), skip={"order"})
        old.order = _ORDERS[request.order]  # type: ignore[assignment]
        if request.HasField("taken_from"):
            old.taken_from_unix_ms = request.taken_from.ToMilliseconds()
        if request.HasField("taken_until"):
            old.taken_to_unix_ms = request.taken_until.ToMilliseconds()
        reply = self._v1.ListImages(old, context)
        return scalars(reply, pb.ListImagesResponse(images=images_to_v2(reply.images)))

    def UpdateAnnotations(self, request: pb.UpdateAnnotationsRequest, context):
        a = request.annotations
        old = v1.UpdateAnnotationsRequest(
            image_id=request.image_id,
            annotations=scalars(a, v1.Annotations(labels=[label_to_v1(lb) for lb in a.labels])),
            add_tags=list(request.add_tags),
            remove_tags=list(request.remove_tags),
            add_feedback=[feedback_to_v1(item) for item in request.add_feedback],
        )
        if request.HasField("update_mask"):
            old.update_mask.CopyFrom(request.update_mask)
        reply = self._v1.UpdateAnnotations(old, context)
        return pb.UpdateAnnotationsResponse(image=image_to_v2(reply.image))

    def DeleteImage(self, request: pb.DeleteImageRequest, context):
        reply = self._v1.DeleteImage(scalars(request, v1.DeleteImageRequest()), context)
        return pb.DeleteImageResponse(image=image_to_v2(reply.image))

    # --- the store --------------------------------------------------------------------------

    def GetStats(self, request: pb.GetStatsRequest, context):
        reply = self._v1.GetStats(v1.GetStatsRequest(), context)
        out = scalars(reply, pb.GetStatsResponse())
        out.columns.extend(scalars(c, pb.ColumnStats()) for c in reply.columns)
        if reply.HasField("last_verify"):
            out.last_verify.CopyFrom(verify_report_to_v2(reply.last_verify))
        out.oldest_pending_age.CopyFrom(duration_of_ms(reply.oldest_pending_age_ms))
        out.feed_damaged_changes = self._v1.feed_damaged_changes
        return out

    def Compact(self, request: pb.CompactRequest, context):
        return scalars(self._v1.Compact(v1.CompactRequest(), context), pb.CompactResponse())

    def Verify(self, request: pb.VerifyRequest, context):
        for message in self._v1.Verify(v1.VerifyRequest(), context):
            if message.WhichOneof("event") == "report":
                yield pb.VerifyResponse(report=verify_report_to_v2(message.report))
            else:
                yield pb.VerifyResponse(progress=scalars(message.progress, pb.VerifyProgress()))

    def WatchChanges(self, request: pb.WatchChangesRequest, context):
        pages = self._v1.watch_pages(
            scalars(request, v1.WatchChangesRequest()), context, request.max_backlog_batch
        )
        for page in pages:
            message = page.reply
            out = pb.WatchChangesResponse(
                head_seq=message.head_seq, horizon_seq=message.horizon_seq, more=page.more
            )
            # Every change of an image in a message carries the same metadata (see v1's
            # _change_to_proto): it is translated once.
            made: dict[str, tuple[object, pb.ImageMetadata]] = {}
            for old, change in zip(message.changes, page.changes, strict=True):
                proto = out.changes.add(seq=old.seq, kind=old.kind, image_id=old.image_id)  # type: ignore[arg-type]
                if old.HasField("image"):
                    known = made.get(change.image_id)
                    if known is None or known[0] is not change.image:
                        known = made[change.image_id] = (change.image, image_to_v2(old.image))
                    proto.image.CopyFrom(known[1])
                if change.damage:
                    proto.damage.reason = change.damage
            yield out

    # --- the analysis queue -----------------------------------------------------------------

    def ClaimAnalysis(self, request: pb.ClaimAnalysisRequest, context):
        old = scalars(request, v1.ClaimAnalysisRequest())
        if request.HasField("lease"):
            old.lease_ms = request.lease.ToMilliseconds()
        reply = self._v1.ClaimAnalysis(old, context)
        return pb.ClaimAnalysisResponse(
            images=[
                pb.ClaimedImage(image=image_to_v2(c.image), generation=c.generation)
                for c in reply.images
            ]
        )

    def CompleteAnalysis(self, request: pb.CompleteAnalysisRequest, context):
        old = v1.CompleteAnalysisRequest(image_id=request.image_id, generation=request.generation)
        outcome = request.WhichOneof("outcome")
        if outcome == "result":
            result = request.result
            try:
                colours = colours_to_v1(result.colours)
            except ValueError as exc:
                _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"result.colours: {exc}")
            old.result.CopyFrom(
                scalars(
                    result,
                    v1.AnalysisResult(
                        labels=[label_to_v1(lb) for lb in result.labels], colours=colours
                    ),
                )
            )
        elif outcome == "failure":
            old.failure.CopyFrom(scalars(request.failure, v1.AnalysisFailure()))
        # v1's AnalysisFailure has no `outage`: it goes beside the request.
        outage = outcome == "failure" and request.failure.outage
        reply = self._v1.complete_analysis(old, context, outage)
        return pb.CompleteAnalysisResponse(image=image_to_v2(reply.image))

    # --- albums -----------------------------------------------------------------------------

    def CreateAlbum(self, request: pb.CreateAlbumRequest, context):
        reply = self._v1.CreateAlbum(scalars(request, v1.CreateAlbumRequest()), context)
        return pb.CreateAlbumResponse(album=album_to_v2(reply.album))

    def RenameAlbum(self, request: pb.RenameAlbumRequest, context):
        reply = self._v1.RenameAlbum(scalars(request, v1.RenameAlbumRequest()), context)
        return pb.RenameAlbumResponse(album=album_to_v2(reply.album))

    def DeleteAlbum(self, request: pb.DeleteAlbumRequest, context):
        reply = self._v1.DeleteAlbum(scalars(request, v1.DeleteAlbumRequest()), context)
        return pb.DeleteAlbumResponse(album=album_to_v2(reply.album))

    def ListAlbums(self, request: pb.ListAlbumsRequest, context):
        reply = self._v1.ListAlbums(scalars(request, v1.ListAlbumsRequest()), context)
        return scalars(reply, pb.ListAlbumsResponse(albums=[album_to_v2(a) for a in reply.albums]))

    def GetAlbum(self, request: pb.GetAlbumRequest, context):
        reply = self._v1.GetAlbum(scalars(request, v1.GetAlbumRequest()), context)
        return scalars(
            reply,
            pb.GetAlbumResponse(album=album_to_v2(reply.album), images=images_to_v2(reply.images)),
        )

    def AddToAlbum(self, request: pb.AddToAlbumRequest, context):
        reply = self._v1.AddToAlbum(scalars(request, v1.AddToAlbumRequest()), context)
        return scalars(reply, pb.AddToAlbumResponse(album=album_to_v2(reply.album)))

    def RemoveFromAlbum(self, request: pb.RemoveFromAlbumRequest, context):
        reply = self._v1.RemoveFromAlbum(scalars(request, v1.RemoveFromAlbumRequest()), context)
        return scalars(reply, pb.RemoveFromAlbumResponse(album=album_to_v2(reply.album)))
