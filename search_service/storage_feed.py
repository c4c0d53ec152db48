"""Search's calls to storage: its change feed and its listing, translated to index changes.

This module and vision_client are the only ones besides the servicer that speak gRPC; the
consumer (feed_consumer.py) sees FeedBatch values and the two errors below.

What search indexes of an image (decided here, documented in docs/search.md): only READY
images are searchable. A PENDING or FAILED image is removed from the index if it was there
(its analysis is not there to search), a deleted one too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import grpc
import numpy as np

from imagerepo.common.v2 import common_pb2
from imagerepo.storage.v2 import storage_service_pb2 as storage_pb
from imagerepo.storage.v2 import storage_service_pb2_grpc as storage_grpc
from search_service.document import Document, Label, Status
from search_service.durable_index import FeedChange
from search_service.errors import InvalidDocumentError
from search_service.exif import typed_fields
from service_runtime.channels import open_channel
from service_runtime.contracts_v2 import KNOWN_COLOURS, word_of_colour
from service_runtime.grpc_server import channel_options
from service_runtime.security import TransportSecurity

READY = common_pb2.ANALYSIS_STATUS_READY
LIST_PAGE_SIZE = 500


class FeedCompactedError(Exception):
    """The feed no longer holds the changes asked for (below storage's retention horizon)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class FeedUnavailableError(Exception):
    """Storage could not be reached or ended the call; try again later."""


@dataclass(frozen=True)
class DamagedChange:
    """A change storage could not read (its row failed its checksum or does not decode): it
    is applied as a removal (storage answers DATA_LOSS for the image, and its listing leaves
    it out too) and recorded, so the feed goes on past it."""

    seq: int
    image_id: str
    reason: str


@dataclass(frozen=True)
class FeedBatch:
    changes: list[FeedChange]
    head_seq: int
    horizon_seq: int
    damaged: tuple[DamagedChange, ...] = ()
    # Storage already holds more changes (a backlog): the next batch follows at once.
    more: bool = False


def joined(batches: list[FeedBatch]) -> FeedBatch:
    """Several consecutive batches as one (applied at once while replaying a backlog)."""
    last = batches[-1]
    return FeedBatch(
        [c for b in batches for c in b.changes],
        last.head_seq,
        last.horizon_seq,
        tuple(d for b in batches for d in b.damaged),
        last.more,
    )


@dataclass(frozen=True)
class Listing:
    """One page of storage's READY-or-not listing, as index documents (None = not searchable)."""

    docs: list[Document | InvalidDocumentError]
    snapshot_seq: int
    next_page_token: str
    total_count: int


def document_from_image(image: storage_pb.ImageMetadata) -> Document:
    """What search indexes for a READY image: labels (the index keeps those above its
    probability floor), OCR text, filename, owner, tags, EXIF date and camera, moderation score,
    sha256 and the feature vector. InvalidDocumentError when it cannot be a document."""
    vector = np.asarray(image.feature_vector, np.float32) if image.feature_vector else None
    if vector is not None and not np.isfinite(vector).all():
        raise InvalidDocumentError(f"{image.id}: feature_vector holds NaN or infinity")
    taken, make, model = typed_fields(image.exif)
    return Document(
        image_id=image.id,
        filename=image.filename,
        owner=image.owner,
        labels=tuple(
            Label(
                lb.name,
                float(lb.probability),
                tuple(lb.synonyms),
                lb.class_index if lb.HasField("class_index") else -1,
            )
            for lb in image.labels
        ),
        tags=tuple(image.tags),
        ocr_text=image.ocr_text,
        moderation_score=float(image.moderation_score),
        status=Status.READY,
        feature_vector=vector,
        sha256=image.sha256,
        created_at_unix_ms=image.create_time.ToMilliseconds(),
        taken_at_unix_s=taken,
        camera_make=make,
        camera_model=model,
        colours=tuple(
            (word_of_colour(c.colour), float(c.share))
            for c in image.colours
            if c.colour in KNOWN_COLOURS
        ),
        favourite=image.favourite,
    )


def _document(image: storage_pb.ImageMetadata) -> Document | None:
    """The document of a changed image, None when it is not searchable."""
    if image.status != READY or image.HasField("trash_time"):
        # Not analysed yet, or in the trash: not searchable (a removal if it was indexed).
        return None
    try:
        return document_from_image(image)
    except InvalidDocumentError:
        # Not indexable: leave it out (the index logs nothing for a removal of what it lacks).
        return None


def _changes(changes: Iterable[storage_pb.Change]) -> list[FeedChange]:
    """One message's changes as index changes. Storage reads a message's metadata under one
    lock, so every change of an image in it carries the same current metadata: its document
    is made once (a replayed put and its annotation are two changes of one READY image)."""
    out: list[FeedChange] = []
    docs: dict[str, Document | None] = {}
    for change in changes:
        # A damaged change carries no image either: it leaves the index (see DamagedChange).
        if change.kind == storage_pb.CHANGE_KIND_DELETE or not change.HasField("image"):
            out.append(FeedChange(change.seq, change.image_id))
            continue
        if change.image_id in docs:
            doc = docs[change.image_id]
        else:
            doc = docs[change.image_id] = _document(change.image)
        out.append(FeedChange(change.seq, change.image_id, doc))
    return out


# Changes per feed message, and the most a message may grow to while a backlog is replayed
# (storage doubles a full message's size up to it; 0 = no growth). Growth is off by default:
# at 5,000 photos messages grown to storage's 3.5 MiB cut cost the consumer 15-20% more CPU per
# change than messages of 256 (benchmarks/search_bench.py main_feed).
DEFAULT_MAX_BATCH = 256
DEFAULT_MAX_BACKLOG_BATCH = 0


class StorageFeed:
    def __init__(
        self,
        address: str,
        list_timeout_s: float = 60.0,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_backlog_batch: int = DEFAULT_MAX_BACKLOG_BATCH,
    ) -> None:
        self.address = address
        self.list_timeout_s = list_timeout_s
        self.max_batch = max_batch
        self.max_backlog_batch = max_backlog_batch
        # gRPC's own reconnect backoff grows to 2 minutes by default: cap it near the
        # consumer's, so a storage back after a long outage is followed again within seconds.
        options = [
            *channel_options(),
            ("grpc.initial_reconnect_backoff_ms", 500),
            ("grpc.max_reconnect_backoff_ms", 10_000),
        ]
        self._channel = open_channel(address, options, TransportSecurity.from_env())
        self._stub = storage_grpc.StorageServiceStub(self._channel)
        self._call: grpc.Future | None = None

    def watch(self, after_seq: int) -> Iterator[FeedBatch]:
        """Changes after `after_seq`, then new ones live, until `cancel()` or an error
        (FeedCompactedError, FeedUnavailableError)."""
        request = storage_pb.WatchChangesRequest(
            after_seq=after_seq,
            follow=True,
            include_feature_vector=True,
            max_batch=self.max_batch,
            max_backlog_batch=self.max_backlog_batch,
        )
        call = self._stub.WatchChanges(request)
        self._call = call
        try:
            for reply in call:
                damaged = tuple(
                    DamagedChange(c.seq, c.image_id, c.damage.reason)
                    for c in reply.changes
                    if c.HasField("damage")
                )
                yield FeedBatch(
                    _changes(reply.changes), reply.head_seq, reply.horizon_seq, damaged, reply.more
                )
        except grpc.RpcError as exc:
            raise _translate(exc) from None
        finally:
            self._call = None
            call.cancel()
        raise FeedUnavailableError("storage ended the change feed")

    def list_page(self, page_token: str) -> Listing:
        """One page of every image (READY ones as documents), with the listing's snapshot seq."""
        try:
            reply = self._stub.ListImages(
                storage_pb.ListImagesRequest(
                    page_size=LIST_PAGE_SIZE,
                    page_token=page_token,
                    include_feature_vectors=True,
                ),
                timeout=self.list_timeout_s,
            )
        except grpc.RpcError as exc:
            raise _translate(exc) from None
        docs: list[Document | InvalidDocumentError] = []
        for image in reply.images:
            if image.status != READY or image.HasField("trash_time"):
                continue
            try:
                docs.append(document_from_image(image))
            except InvalidDocumentError as exc:
                docs.append(exc)
        return Listing(docs, reply.snapshot_seq, reply.next_page_token, reply.total_count)

    def cancel(self) -> None:
        call = self._call
        if call is not None:
            call.cancel()

    def close(self) -> None:
        self.cancel()
        self._channel.close()


def _translate(exc: grpc.RpcError) -> Exception:
    code = exc.code() if isinstance(exc, grpc.Call) else None
    details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
    if code == grpc.StatusCode.OUT_OF_RANGE:
        return FeedCompactedError(details or "change feed compacted")
    return FeedUnavailableError(f"{code.name if code else 'error'}: {details}")
