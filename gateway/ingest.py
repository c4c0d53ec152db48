"""The ingest pipeline: store durably, analyse, annotate back into storage, index.

    upload -> storage.PutImage (streamed, 1 MiB chunks; durable; status PENDING)
           -> vision.Analyze (labels, features, moderation, OCR)
           -> search.IndexImage
           -> storage.UpdateAnnotations (analysis + status READY, one write)

Only the first step must succeed for an upload to succeed. When vision or search is down or
too slow, the image stays PENDING (with what was done so far saved) and `Reconciler` finishes
it later. Failures that are the image's fault (the models cannot read it), or that repeat
`max_attempts` times, mark it FAILED with the reason in `status_detail`, so nothing stays
pending forever. Each stage is timed so uploads can report where their time went.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import grpc
from PIL import Image, ImageOps

from gateway.clients import ServiceClients
from gateway.errors import ServiceError
from imagerepo.common.v1 import common_pb2
from imagerepo.search.v1 import search_service_pb2 as search_pb
from imagerepo.storage.v1 import storage_service_pb2 as storage_pb

log = logging.getLogger(__name__)

PENDING = common_pb2.ANALYSIS_STATUS_PENDING
READY = common_pb2.ANALYSIS_STATUS_READY
FAILED = common_pb2.ANALYSIS_STATUS_FAILED

# Vision answers these when the bytes are no image it can read: retrying will not help.
_PERMANENT_VISION_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
# Larger files go to vision as a smaller copy (see bytes_for_analysis).
ANALYZE_MAX_BYTES = 8 * 1024 * 1024
ANALYZE_MAX_SIDE_PX = 2048
_ANALYSIS_FIELDS = ("labels", "feature_vector", "moderation_score", "ocr_text")
# Labels asked of vision per image: search indexes every one above its probability floor and
# adds their WordNet hypernyms, and the search tests index the same 20.
ANALYSIS_TOP_K = 20


def bytes_for_analysis(data: bytes) -> bytes:
    """What to send to vision: the image itself, or for a large file a 2048 px JPEG copy.

    A gRPC message is capped at 16 MiB and the models look at 224 px (OCR at up to 960 px),
    so a large upload is analysed from a smaller copy instead of failing.
    """
    if len(data) <= ANALYZE_MAX_BYTES:
        return data
    try:
        with Image.open(io.BytesIO(data)) as picture:
            picture.draft("RGB", (ANALYZE_MAX_SIDE_PX, ANALYZE_MAX_SIDE_PX))  # JPEG: decode small
            copy = ImageOps.exif_transpose(picture).convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return data  # not readable here: vision gives the verdict
    copy.thumbnail((ANALYZE_MAX_SIDE_PX, ANALYZE_MAX_SIDE_PX), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    copy.save(out, "JPEG", quality=92)
    return out.getvalue()


@contextmanager
def timed(timings_ms: dict[str, float], stage: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        elapsed = (time.perf_counter() - started) * 1000
        timings_ms[stage] = timings_ms.get(stage, 0.0) + elapsed


@dataclass
class Analysis:
    labels: list[common_pb2.Label]
    feature_vector: list[float]
    moderation_score: float
    ocr_text: str


def stored_analysis(image: storage_pb.ImageMetadata) -> Analysis:
    """The analysis storage holds for an image (read with its feature vector)."""
    return Analysis(
        list(image.labels), list(image.feature_vector), image.moderation_score, image.ocr_text
    )


def search_document(
    image: storage_pb.ImageMetadata, analysis: Analysis
) -> search_pb.SearchDocument:
    """What search indexes for an analysed image."""
    return search_pb.SearchDocument(
        image_id=image.id,
        filename=image.filename,
        owner=image.owner,
        labels=analysis.labels,
        tags=list(image.tags),
        ocr_text=analysis.ocr_text,
        moderation_score=analysis.moderation_score,
        status=READY,
        feature_vector=analysis.feature_vector,
        sha256=image.sha256,
        created_at_unix_ms=image.created_at_unix_ms,
        exif=dict(image.exif),  # search parses the date taken and the camera from it
    )


@dataclass
class FinishOutcome:
    image: storage_pb.ImageMetadata
    # Empty when the image is READY or FAILED; otherwise why it is still pending.
    pending_reason: str = ""
    error: ServiceError | None = None


@dataclass
class IngestOutcome:
    image: storage_pb.ImageMetadata
    duplicate_of: list[str]
    pending_reason: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    # True when the owner's library held these bytes already: nothing new was stored and
    # `image` is the copy stored earlier.
    already_stored: bool = False


class IngestPipeline:
    def __init__(
        self, clients: ServiceClients, max_attempts: int = 5, top_k: int = ANALYSIS_TOP_K
    ) -> None:
        self._clients = clients
        self._max_attempts = max_attempts
        self._top_k = top_k
        self._busy: set[str] = set()
        self._busy_changed = threading.Condition()
        self._attempts: dict[str, int] = {}
        self._uploads_started_ms: dict[object, float] = {}
        # Deleted from storage while search was down: the reconciler retries these.
        self.pending_removals: set[str] = set()

    def ingest(
        self,
        filename: str,
        data: bytes,
        owner: str,
        content_type: str,
        keep_duplicate: bool = False,
    ) -> IngestOutcome:
        """Store the upload (ServiceError if that fails), then carry it as far as possible.

        One copy per photo: bytes the owner has stored already are not stored again (storage
        decides, atomically, so concurrent identical uploads keep one copy) and the outcome
        names the existing image, unless keep_duplicate asks for a second copy."""
        timings: dict[str, float] = {}
        token = object()
        with self._busy_changed:
            self._uploads_started_ms[token] = time.time() * 1000
        try:
            with timed(timings, "storage_put"):
                put = self._clients.put_image(
                    filename, data, owner, content_type, keep_duplicate=keep_duplicate
                )
            duplicate_of = list(put.duplicate_of)
            if put.already_stored:
                # Its own upload (or the reconciler) carries the existing image along.
                return IngestOutcome(put.image, [], "", timings, already_stored=True)
            finished = self.finish(put.image, data, timings, duplicate_of, wait=True)
        finally:
            with self._busy_changed:
                del self._uploads_started_ms[token]
        return IngestOutcome(finished.image, duplicate_of, finished.pending_reason, timings)

    def uploads_in_flight_since_ms(self) -> float | None:
        """When the oldest upload still being carried through started (None when idle).

        Images created after that are left to their uploads: the reconciler skips them.
        """
        with self._busy_changed:
            return min(self._uploads_started_ms.values(), default=None)

    def finish(
        self,
        image: storage_pb.ImageMetadata,
        data: bytes | None = None,
        timings: dict[str, float] | None = None,
        duplicate_of: list[str] | None = None,
        wait: bool = False,
        reindex: bool = False,
    ) -> FinishOutcome:
        """Analyse, index and mark READY an image that is PENDING; never raises ServiceError.

        With wait=False an image another thread is already finishing is left to it. With
        reindex=True (after a tag change) an analysed image is indexed again from its current
        metadata even if another thread marked it READY meanwhile, from older metadata.
        """
        timings = timings if timings is not None else {}
        with self._claim(image.id, wait) as claim:
            if claim is None:
                return FinishOutcome(image, "being processed")
            try:
                if claim == "waited":
                    # Another thread (the reconciler) had it: see what it left.
                    image = self._clients.get_image(image.id)
                    if image.status != PENDING and not (reindex and image.has_feature_vector):
                        return FinishOutcome(image)
                return self._finish_claimed(image, data, timings, duplicate_of or [], reindex)
            except ServiceError as exc:
                return self._record_failure(image, exc)

    @contextmanager
    def _claim(self, image_id: str, wait: bool) -> Iterator[str | None]:
        """Yields None when another thread holds the image (and wait is False), else whether
        this thread had to wait for it ("waited") or not ("free")."""
        with self._busy_changed:
            if image_id in self._busy and not wait:
                claim = None
            else:
                claim = "waited" if image_id in self._busy else "free"
                while image_id in self._busy:
                    self._busy_changed.wait()
                self._busy.add(image_id)
        if claim is None:
            yield None
            return
        try:
            yield claim
        finally:
            with self._busy_changed:
                self._busy.discard(image_id)
                self._busy_changed.notify_all()

    def _finish_claimed(
        self,
        image: storage_pb.ImageMetadata,
        data: bytes | None,
        timings: dict[str, float],
        duplicate_of: list[str],
        reindex: bool = False,
    ) -> FinishOutcome:
        fields: list[str] = []
        if image.has_feature_vector:
            # Analysed on an earlier attempt (search was down then), or re-indexed after a tag
            # change: only indexing is left, from the current metadata.
            with timed(timings, "storage_read"):
                image = self._clients.get_image(image.id, include_feature_vector=True)
            if image.status != PENDING and not reindex:
                return FinishOutcome(image)
            analysis = stored_analysis(image)
        else:
            analysis = self._copied_analysis(duplicate_of, timings) or self._analyse(
                image.id, data, timings
            )
            fields.extend(_ANALYSIS_FIELDS)
            # Tags set while the models ran (a gRPC client tags right after PutImage) must
            # reach the index: build the document from the metadata as it is now.
            with timed(timings, "storage_read"):
                image = self._clients.get_image(image.id)

        document = search_document(image, analysis)
        index_error: ServiceError | None = None
        try:
            with timed(timings, "search_index"):
                self._clients.index_image(document)
        except ServiceError as exc:
            index_error = exc

        annotations = storage_pb.Annotations(
            labels=analysis.labels,
            feature_vector=analysis.feature_vector,
            moderation_score=analysis.moderation_score,
            ocr_text=analysis.ocr_text,
            status=READY if index_error is None else PENDING,
            status_detail="" if index_error is None else _waiting_detail(index_error),
        )
        fields.extend(("status", "status_detail"))
        try:
            with timed(timings, "storage_annotate"):
                updated = self._clients.update_annotations(image.id, annotations, fields)
        except ServiceError as exc:
            if exc.code == grpc.StatusCode.NOT_FOUND and index_error is None:
                self.remove_from_index(image.id)  # deleted meanwhile: leave no orphan behind
            raise
        if index_error is not None:
            return self._record_failure(updated, index_error, already_saved=True)
        with self._busy_changed:
            self._attempts.pop(image.id, None)
        return FinishOutcome(updated)

    def _copied_analysis(
        self, duplicate_of: list[str], timings: dict[str, float]
    ) -> Analysis | None:
        """An exact duplicate's analysis, so the same bytes are not analysed twice."""
        for original_id in duplicate_of[:1]:
            try:
                with timed(timings, "storage_read"):
                    original = self._clients.get_image(original_id, include_feature_vector=True)
            except ServiceError:
                return None
            if original.status == READY and original.has_feature_vector:
                return Analysis(
                    list(original.labels),
                    list(original.feature_vector),
                    original.moderation_score,
                    original.ocr_text,
                )
        return None

    def _analyse(self, image_id: str, data: bytes | None, timings: dict[str, float]) -> Analysis:
        if data is None:
            with timed(timings, "storage_read"):
                data = self._clients.read_image_bytes(image_id)
        if len(data) > ANALYZE_MAX_BYTES:
            with timed(timings, "gateway_downscale"):
                data = bytes_for_analysis(data)
        with timed(timings, "vision_analyze"):
            reply = self._clients.analyze(data, top_k=self._top_k)
        return Analysis(
            list(reply.labels),
            list(reply.feature_vector),
            reply.moderation_score,
            reply.ocr_text,
        )

    def _record_failure(
        self, image: storage_pb.ImageMetadata, exc: ServiceError, already_saved: bool = False
    ) -> FinishOutcome:
        """Leave the image PENDING for the reconciler, or mark it FAILED for good."""
        permanent = exc.service == "vision" and exc.code in _PERMANENT_VISION_CODES
        with self._busy_changed:
            if exc.code != grpc.StatusCode.UNAVAILABLE:
                # A service that is down says nothing about the image; anything else counts.
                self._attempts[image.id] = self._attempts.get(image.id, 0) + 1
            attempts = self._attempts.get(image.id, 0)
        if permanent or attempts >= self._max_attempts:
            detail = (
                f"{exc.service} could not process this image"
                f" ({exc.code.name}: {exc.details})"
                + ("" if permanent else f" after {attempts} attempts")
            )
            annotations = storage_pb.Annotations(status=FAILED, status_detail=detail)
            try:
                failed = self._clients.update_annotations(
                    image.id, annotations, ("status", "status_detail")
                )
            except ServiceError:
                return FinishOutcome(image, "storage unavailable", exc)
            with self._busy_changed:
                self._attempts.pop(image.id, None)
            log.warning("analysis failed for good", extra={"image_id": image.id, "why": detail})
            return FinishOutcome(failed, "", exc)
        reason = _waiting_detail(exc)
        if not already_saved and exc.service != "storage":
            try:
                annotations = storage_pb.Annotations(status_detail=reason)
                image = self._clients.update_annotations(image.id, annotations, ("status_detail",))
            except ServiceError:
                pass
        return FinishOutcome(image, reason, exc)

    def forget_attempts(self, image_id: str) -> None:
        with self._busy_changed:
            self._attempts.pop(image_id, None)

    def remove_from_index(self, image_id: str) -> bool:
        """Remove a deleted image from search; remember it for the reconciler if search is down."""
        try:
            self._clients.remove_from_index(image_id)
        except ServiceError as exc:
            if exc.code == grpc.StatusCode.NOT_FOUND:
                return True
            self.pending_removals.add(image_id)
            return False
        self.pending_removals.discard(image_id)
        return True


def _waiting_detail(exc: ServiceError) -> str:
    return f"waiting for {exc.service}: {exc.code.name}"
