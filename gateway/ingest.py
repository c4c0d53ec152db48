"""Uploads: store durably, then wait a moment for the analysis that storage's consumers do.

    upload -> storage.PutImage (streamed, 1 MiB chunks; durable; status PENDING)
           -> (analysis workers claim it from storage's queue, call vision, write it back;
               search follows storage's change feed and indexes it)
           -> GetImage until READY/FAILED, for at most `analysis_wait_s`

The gateway keeps no state of its own: storage is the one source of truth and everything
else (analysis, search) is a consumer of its history. An upload succeeds once PutImage did;
when the analysis takes longer than the short wait, the answer says the image is being
analysed and the gallery shows it as such until it is. The gateway speaks storage's v2
contract; `search_document` (a v1 SearchDocument, for search's v1 IndexImage) is kept for the
tests of that outside-client call only: search indexes what storage's feed says.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from gateway.clients import ServiceClients
from gateway.errors import ServiceError
from imagerepo.common.v1 import common_pb2 as common_v1
from imagerepo.common.v2 import common_pb2
from imagerepo.search.v1 import search_service_pb2 as search_v1
from imagerepo.storage.v1 import storage_service_pb2 as storage_v1
from imagerepo.storage.v2 import storage_service_pb2 as storage_pb

log = logging.getLogger(__name__)

PENDING = common_pb2.ANALYSIS_STATUS_PENDING
READY = common_pb2.ANALYSIS_STATUS_READY
FAILED = common_pb2.ANALYSIS_STATUS_FAILED

# Labels asked of vision per image: search indexes every one above its probability floor and
# adds their WordNet hypernyms, and the search tests index the same 20.
ANALYSIS_TOP_K = 20


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
    labels: list[common_v1.Label]
    feature_vector: list[float]
    moderation_score: float
    ocr_text: str


def stored_analysis(image: storage_v1.ImageMetadata) -> Analysis:
    """The analysis storage holds for an image (read with its feature vector), v1 messages."""
    return Analysis(
        list(image.labels), list(image.feature_vector), image.moderation_score, image.ocr_text
    )


def search_document(
    image: storage_v1.ImageMetadata, analysis: Analysis
) -> search_v1.SearchDocument:
    """What search's v1 IndexImage is sent for an analysed image (v1 messages: search's own
    tests index through it; the running stack indexes from storage's change feed)."""
    return search_v1.SearchDocument(
        image_id=image.id,
        filename=image.filename,
        owner=image.owner,
        labels=analysis.labels,
        tags=list(image.tags),
        ocr_text=analysis.ocr_text,
        moderation_score=analysis.moderation_score,
        status=common_v1.ANALYSIS_STATUS_READY,
        feature_vector=analysis.feature_vector,
        sha256=image.sha256,
        created_at_unix_ms=image.created_at_unix_ms,
        exif=dict(image.exif),  # search parses the date taken and the camera from it
    )


@dataclass
class IngestOutcome:
    image: storage_pb.ImageMetadata
    duplicate_of: list[str]
    # Empty when the image is READY or FAILED; otherwise why it is still pending.
    pending_reason: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    # True when the owner's library held these bytes already: nothing new was stored and
    # `image` is the copy stored earlier.
    already_stored: bool = False


BEING_ANALYSED = "being analysed"


class IngestPipeline:
    """Stores uploads and waits (briefly) for their analysis; holds no state between calls."""

    def __init__(
        self, clients: ServiceClients, analysis_wait_s: float = 3.0, poll_s: float = 0.02
    ) -> None:
        self._clients = clients
        self._wait_s = analysis_wait_s
        self._poll_s = poll_s

    def ingest(
        self,
        filename: str,
        data: bytes,
        owner: str,
        content_type: str,
        keep_duplicate: bool = False,
        wait: bool = True,
    ) -> IngestOutcome:
        """Store the upload (ServiceError if that fails), then wait for its analysis.

        One copy per photo: bytes the owner has stored already are not stored again (storage
        decides, atomically, so concurrent identical uploads keep one copy) and the outcome
        names the existing image, unless keep_duplicate asks for a second copy."""
        timings: dict[str, float] = {}
        with timed(timings, "storage_put"):
            put = self._clients.put_image(
                filename, data, owner, content_type, keep_duplicate=keep_duplicate
            )
        if put.already_stored:
            return IngestOutcome(put.image, [], pending_reason(put.image), timings, True)
        image = put.image
        if wait:
            with timed(timings, "analysis_wait"):
                image = self.wait_for_analysis(image)
        return IngestOutcome(image, list(put.duplicate_of), pending_reason(image), timings)

    def wait_for_analysis(
        self, image: storage_pb.ImageMetadata, wait_s: float | None = None
    ) -> storage_pb.ImageMetadata:
        """The image once it is no longer PENDING and search has caught up with it, or as it
        is when `wait_s` has passed (storage unreachable or the image deleted meanwhile: as
        last seen)."""
        deadline = time.monotonic() + (self._wait_s if wait_s is None else wait_s)
        pause = self._poll_s
        while image.status == PENDING:
            left = deadline - time.monotonic()
            if left <= 0:
                return image
            time.sleep(min(pause, left))
            pause = min(pause * 1.5, 0.25)
            try:
                image = self._clients.get_image(image.id)
            except ServiceError:
                return image
        self.wait_for_search(deadline - time.monotonic())
        return image

    def wait_for_search(self, wait_s: float | None = None) -> bool:
        """Wait until search has applied every change storage held when this was called
        (read your writes: an upload, tag or delete is then visible to search at once); False
        when `wait_s` passed first or either service could not say."""
        deadline = time.monotonic() + (self._wait_s if wait_s is None else wait_s)
        if deadline <= time.monotonic():
            return False
        try:
            head = self._clients.storage_stats().head_seq
            pause = self._poll_s
            while True:
                stats = self._clients.search_stats()
                if not stats.following:
                    return False  # not connected to storage's feed: it cannot catch up now
                if stats.applied_seq >= head:
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                time.sleep(min(pause, left))
                pause = min(pause * 1.5, 0.25)
        except ServiceError:
            return False


def pending_reason(image: storage_pb.ImageMetadata) -> str:
    """Why a PENDING image is not analysed yet, in plain words ("" once it is not pending)."""
    if image.status != PENDING:
        return ""
    if image.analysis.last_error:
        return f"{BEING_ANALYSED} (retrying: {image.analysis.last_error})"
    return BEING_ANALYSED
