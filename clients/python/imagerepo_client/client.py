"""`ImageRepoClient`: the high-level client of an imagerepo installation over gRPC.

    with ImageRepoClient() as repo:                 # make run's default addresses
        up = repo.upload("holiday/beach.jpg", tags=["beach"])
        repo.wait_until_analysed(up.image.id)       # analysed, and search has it
        for hit in repo.search("beach"):
            print(hit.image.filename, hit.score)

Storage is the one source of truth: an upload is stored by the storage service, analysed
(labels, OCR, features) by the analysis workers that take pending images from storage's queue,
and indexed by search, which follows storage's change feed. So a client only ever writes to
storage, and `make run` (storage, vision, search, analysis) must be up for search and similar
images to see it; no gateway is needed. By default the same bytes are stored once per owner:
uploading them again answers with the image already stored (`UploadResult.already_stored`).
Writes (tags, deletes) wait briefly for search to apply them, so a search right after sees them.
"""

from __future__ import annotations

import builtins
import enum
import hashlib
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import grpc

from imagerepo.common.v2 import common_pb2
from imagerepo.search.v2 import search_service_pb2 as search_pb
from imagerepo.storage.v2 import storage_service_pb2 as storage_pb
from imagerepo.vision.v2 import vision_service_pb2 as vision_pb
from imagerepo_client.calls import Credentials, RetryPolicy
from imagerepo_client.errors import DeadlineExceededError, ImageRepoError, UnavailableError
from imagerepo_client.services import (
    WATCH_IDLE_TIMEOUT_S,
    SearchClient,
    StorageClient,
    VisionClient,
)

DEFAULT_STORAGE = os.environ.get("IMAGEREPO_STORAGE_ADDR", "127.0.0.1:50051")
DEFAULT_VISION = os.environ.get("IMAGEREPO_VISION_ADDR", "127.0.0.1:50052")
DEFAULT_SEARCH = os.environ.get("IMAGEREPO_SEARCH_ADDR", "127.0.0.1:50053")
# The gateway records local uploads under this owner when no API keys are set.
DEFAULT_OWNER = "local"
# Uploads at least this large first ask whether the bytes are stored already.
ASK_FIRST_BYTES = 256 * 1024
# Digests per FindBySha256 call (the service takes up to 1000).
SHA256_BATCH = 500

READY = common_pb2.ANALYSIS_STATUS_READY
# How long a tag change or delete waits for search to apply it.
SEARCH_CATCH_UP_S = 5.0
FAILED = common_pb2.ANALYSIS_STATUS_FAILED
PENDING = common_pb2.ANALYSIS_STATUS_PENDING
# A watch keeps reconnecting to a restarting storage service for about a minute.
WATCH_RECONNECT = RetryPolicy(attempts=30, first_backoff_s=0.2, max_backoff_s=2.0)


@dataclass(frozen=True)
class UploadResult:
    image: storage_pb.ImageMetadata
    # True when these bytes were already stored for the owner: `image` is that copy.
    already_stored: bool
    # Other images with the same bytes (kept on purpose with keep_duplicate=True).
    duplicate_of: tuple[str, ...] = ()


@dataclass(frozen=True)
class SearchResult:
    image: storage_pb.ImageMetadata
    score: float
    # (field, term) pairs: why it matched ("labels", "tabby"), ("ocr_text", "coffee"), ...
    reasons: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class SimilarResult:
    image: storage_pb.ImageMetadata
    similarity: float


class ChangeKind(enum.Enum):
    PUT = "put"
    ANNOTATE = "annotate"
    DELETE = "delete"


_KIND_OF = {
    storage_pb.CHANGE_KIND_PUT: ChangeKind.PUT,
    storage_pb.CHANGE_KIND_ANNOTATE: ChangeKind.ANNOTATE,
    storage_pb.CHANGE_KIND_DELETE: ChangeKind.DELETE,
}


@dataclass(frozen=True)
class ChangeEvent:
    """One change of storage's feed: an image stored, annotated (tags, analysis, favourite,
    trash) or deleted."""

    seq: int
    kind: ChangeKind
    image_id: str
    # The image's metadata as it is now (put/annotate); None for a delete.
    image: storage_pb.ImageMetadata | None
    # Storage's newest seq when this was sent: head_seq - seq is how far behind the watcher is.
    head_seq: int

    @classmethod
    def from_proto(cls, change: storage_pb.Change, head_seq: int) -> ChangeEvent:
        return cls(
            seq=change.seq,
            kind=_KIND_OF[change.kind],
            image_id=change.image_id,
            image=change.image if change.HasField("image") else None,
            head_seq=head_seq,
        )


@dataclass
class Page:
    images: list[storage_pb.ImageMetadata]
    next_page_token: str
    total_count: int


@dataclass
class ImageRepoClient:
    """Storage, search and vision behind one object; one channel per service."""

    storage_address: str = DEFAULT_STORAGE
    search_address: str = DEFAULT_SEARCH
    vision_address: str = DEFAULT_VISION
    owner: str = DEFAULT_OWNER
    timeout_s: float = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # TLS and the service token, when the services require them (Credentials.from_env()).
    credentials: Credentials | None = None

    def __post_init__(self) -> None:
        creds = self.credentials
        self.storage = StorageClient(self.storage_address, self.timeout_s, self.retry, creds)
        self.search_service = SearchClient(self.search_address, self.timeout_s, self.retry, creds)
        self.vision = VisionClient(
            self.vision_address, max(30.0, self.timeout_s), self.retry, creds
        )

    def close(self) -> None:
        for client in (self.storage, self.search_service, self.vision):
            client.close()

    def __enter__(self) -> ImageRepoClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- writing ----------------------------------------------------------------------------

    def upload(
        self,
        source: str | os.PathLike[str] | bytes | BinaryIO,
        filename: str | None = None,
        tags: Sequence[str] = (),
        keep_duplicate: bool = False,
    ) -> UploadResult:
        """Store one image (a path, bytes or a binary file), streamed in 1 MiB chunks.

        The same bytes already stored for this owner are not stored again unless
        keep_duplicate=True; the answer then names the existing image. Tags travel in the
        upload's header: storage adds them to the stored image (or to the copy it already had).
        """
        data, name = _read_source(source, filename)
        if not keep_duplicate and len(data) >= ASK_FIRST_BYTES:
            # Ask before sending megabytes the library already holds.
            digest = sha256_of(data)
            known = self.find_by_sha256([digest]).get(digest)
            if known is not None:
                image = self.add_tags(known.id, tags) if tags else known
                return UploadResult(image=image, already_stored=True)
        reply = self.storage.put_image(
            data, name, owner=self.owner, keep_duplicate=keep_duplicate, tags=tags
        )
        image = reply.image
        if tags and not set(tags) <= set(image.tags):
            # A storage service older than tags in the upload header ignores them.
            image = self.add_tags(image.id, tags)
        return UploadResult(
            image=image,
            already_stored=reply.already_stored,
            duplicate_of=tuple(reply.duplicate_of),
        )

    def add_tags(self, image_id: str, tags: Iterable[str]) -> storage_pb.ImageMetadata:
        """Tag an image in storage; search follows storage's feed (waited for briefly, so a
        search right after finds the tags)."""
        image = self.storage.update_tags(image_id, add=tags)
        self.wait_until_searchable(SEARCH_CATCH_UP_S, raise_on_timeout=False)
        return image

    def remove_tags(self, image_id: str, tags: Iterable[str]) -> storage_pb.ImageMetadata:
        image = self.storage.update_tags(image_id, remove=tags)
        self.wait_until_searchable(SEARCH_CATCH_UP_S, raise_on_timeout=False)
        return image

    def delete(self, image_id: str) -> storage_pb.ImageMetadata:
        """Delete one image from storage; search follows storage's feed and drops it too
        (waited for briefly, so a search right after no longer finds it)."""
        deleted = self.storage.delete_image(image_id)
        self.wait_until_searchable(SEARCH_CATCH_UP_S, raise_on_timeout=False)
        return deleted

    # --- reading ----------------------------------------------------------------------------

    def get(self, image_id: str) -> storage_pb.ImageMetadata:
        return self.storage.get_image(image_id)

    def download(self, image_id: str, dest: str | os.PathLike[str] | None = None) -> bytes:
        """The original bytes; with dest, also written there (whole, or not at all)."""
        data = b"".join(part.chunk for part in self.storage.read_image_data(image_id))
        if dest is not None:
            target = Path(dest)
            partial = target.with_name(target.name + ".part")
            partial.write_bytes(data)
            partial.replace(target)
        return data

    def list(
        self, page_size: int = 100, owner: str | None = None, status: int = 0
    ) -> Iterator[storage_pb.ImageMetadata]:
        """Every image, newest first, fetched a page at a time as the iteration goes."""
        for page in self.pages(page_size, owner, status):
            yield from page.images

    def pages(
        self, page_size: int = 100, owner: str | None = None, status: int = 0
    ) -> Iterator[Page]:
        """The listing one page at a time (each page one ListImages call)."""
        token = ""
        while True:
            reply = self.storage.list_images(
                page_size=page_size,
                page_token=token,
                owner=self.owner if owner is None else owner,
                status=status,
            )
            yield Page(list(reply.images), reply.next_page_token, reply.total_count)
            token = reply.next_page_token
            if not token:
                return

    def find_by_sha256(
        self, sha256s: Iterable[str], owner: str | None = None
    ) -> dict[str, storage_pb.ImageMetadata]:
        """sha256 -> an image stored with those bytes for this owner, for those that are.

        Asked in batches, so clients can learn what is stored before sending any bytes."""
        wanted = list(dict.fromkeys(s.lower() for s in sha256s))
        found: dict[str, storage_pb.ImageMetadata] = {}
        for start in range(0, len(wanted), SHA256_BATCH):
            batch = wanted[start : start + SHA256_BATCH]
            reply = self.storage.find_by_sha256(batch, owner=self.owner if owner is None else owner)
            cut: dict[str, str] = {}
            for match in reply.matches:
                if match.images:
                    found[match.sha256] = match.images[0]
                elif match.image_ids:  # left out of a reply that grew too large
                    cut[match.image_ids[0]] = match.sha256
            for image in self.storage.batch_get_images(builtins.list(cut)):
                found[cut[image.id]] = image
        return found

    def wait_until_analysed(
        self, image_id: str, timeout_s: float = 60.0, poll_s: float = 0.25
    ) -> storage_pb.ImageMetadata:
        """Poll until the image is READY or FAILED (the analysis workers analyse new uploads)
        and then until search has applied it (when search answers)."""
        deadline = time.monotonic() + timeout_s
        while True:
            image = self.get(image_id)
            if image.status in (READY, FAILED):
                # Search follows storage's feed: wait for it too (not an error when search is
                # not reachable from here; the image is analysed all the same).
                left = max(0.0, deadline - time.monotonic())
                self.wait_until_searchable(left, poll_s, raise_on_timeout=False)
                return image
            if time.monotonic() >= deadline:
                raise DeadlineExceededError(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"image {image_id} still {common_pb2.AnalysisStatus.Name(image.status)}"
                    f" after {timeout_s:.0f} s: is an analysis worker running?",
                    "wait_until_analysed",
                )
            time.sleep(poll_s)

    def wait_until_searchable(
        self, timeout_s: float = 60.0, poll_s: float = 0.05, raise_on_timeout: bool = True
    ) -> bool:
        """Wait until search has applied every change storage holds now (its applied_seq has
        reached storage's head_seq): what was written before is then visible to searches.
        False (or DeadlineExceededError with raise_on_timeout) when it did not within
        timeout_s; also False when a service could not say."""
        deadline = time.monotonic() + timeout_s
        try:
            head = self.storage.get_stats().head_seq
            while True:
                applied = self.search_service.get_stats().applied_seq
                if applied >= head:
                    return True
                if time.monotonic() >= deadline:
                    break
                time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
        except ImageRepoError:
            if raise_on_timeout:
                raise
            return False
        if raise_on_timeout:
            raise DeadlineExceededError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"search applied changes up to {applied}, storage is at {head},"
                f" after {timeout_s:.0f} s",
                "wait_until_searchable",
            )
        return False

    def watch(
        self,
        after_seq: int = 0,
        follow: bool = True,
        include_feature_vector: bool = False,
        reconnect: RetryPolicy | None = None,
        idle_timeout_s: float = WATCH_IDLE_TIMEOUT_S,
    ) -> Iterator[ChangeEvent]:
        """Storage's change feed as typed events, in seq order, from the first change after
        `after_seq` (0: the oldest retained), then live as they happen (follow=True; the
        iteration ends only when the caller stops it) or until caught up (follow=False).

        When the stream breaks (storage restarted or unreachable, or silent past
        idle_timeout_s) it reconnects by itself and resumes after the last event handed out, so
        no change is lost or repeated; it gives up with UnavailableError once `reconnect`'s
        attempts in a row fail. History older than storage keeps raises CompactedError
        (`.horizon_seq`): list the images (ListImages' snapshot_seq) and watch from there.
        """
        policy = reconnect or WATCH_RECONNECT
        last_seq, failures = after_seq, 0
        while True:
            try:
                for message in self.storage.watch_changes(
                    last_seq, follow, include_feature_vector, idle_timeout_s=idle_timeout_s
                ):
                    failures = 0
                    for change in message.changes:
                        if change.seq <= last_seq:
                            continue  # already handed out before a reconnect
                        last_seq = change.seq
                        yield ChangeEvent.from_proto(change, message.head_seq)
                if not follow:
                    return
                # A followed stream never ends on its own: storage is shutting down.
                error = UnavailableError(
                    grpc.StatusCode.UNAVAILABLE, "storage ended the change feed", "WatchChanges"
                )
            except UnavailableError as exc:
                error = exc
            failures += 1
            if failures >= policy.attempts:
                raise error
            time.sleep(policy.backoff_s(failures))

    # --- finding ----------------------------------------------------------------------------

    def search(
        self, query: str, limit: int = 20, include_moderated: bool = False
    ) -> builtins.list[SearchResult]:
        """Up to `limit` images matching the words, best first, with why each matched."""
        return list(self.iter_search(query, limit, include_moderated=include_moderated))

    def iter_search(
        self,
        query: str,
        limit: int | None = None,
        page_size: int = 50,
        include_moderated: bool = False,
    ) -> Iterator[SearchResult]:
        """Every match, best first, fetched a page at a time (each page's images in one
        storage call where BatchGetImages exists)."""
        token, produced = "", 0
        while True:
            reply = self.search_service.search(
                query,
                page_size=page_size if limit is None else min(page_size, limit - produced),
                page_token=token,
                owner=self.owner,
                include_moderated=include_moderated,
            )
            images = self._images_by_id([hit.image_id for hit in reply.hits])
            for hit in reply.hits:
                if hit.image_id in images:
                    reasons = tuple((_field_word(r.field), r.term) for r in hit.reasons)
                    yield SearchResult(images[hit.image_id], hit.score, reasons)
                    produced += 1
                    if limit is not None and produced >= limit:
                        return
            token = reply.next_page_token
            if not token or not reply.hits:
                return

    def similar(
        self,
        image: str | os.PathLike[str] | bytes,
        k: int = 10,
        include_moderated: bool = False,
    ) -> builtins.list[SimilarResult]:
        """Images that look like a stored image (by id) or like a picture (a path or bytes,
        analysed by vision and not stored)."""
        if isinstance(image, str) and not os.path.exists(image):
            hits = self.search_service.similar_images(
                image_id=image, k=k, owner=self.owner, include_moderated=include_moderated
            )
        else:
            data, _name = _read_source(image, None)
            analysis = self.vision.analyze(data, tasks=[vision_pb.ANALYSIS_TASK_FEATURES])
            hits = self.search_service.similar_images(
                vector=list(analysis.feature_vector),
                k=k,
                owner=self.owner,
                include_moderated=include_moderated,
            )
        images = self._images_by_id([hit.image_id for hit in hits])
        return [
            SimilarResult(images[hit.image_id], float(hit.similarity))
            for hit in hits
            if hit.image_id in images
        ]

    def analyze(self, image: str | os.PathLike[str] | bytes) -> vision_pb.AnalyzeResponse:
        """Labels, moderation score and OCR text of a picture, without storing it."""
        data, _name = _read_source(image, None)
        return self.vision.analyze(data)

    def _images_by_id(self, ids: Sequence[str]) -> dict[str, storage_pb.ImageMetadata]:
        return {image.id: image for image in self.storage.batch_get_images(list(ids))}


def _field_word(field: int) -> str:
    """MATCH_FIELD_OCR_TEXT -> "ocr_text": the words v1 used, which reasons keep."""
    try:
        return search_pb.MatchField.Name(field).removeprefix("MATCH_FIELD_").lower()  # type: ignore[arg-type]
    except ValueError:
        return "unspecified"


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_source(
    source: str | os.PathLike[str] | bytes | BinaryIO, filename: str | None
) -> tuple[bytes, str]:
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source), filename or "upload"
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        return path.read_bytes(), filename or path.name
    data = source.read()
    return data, filename or Path(getattr(source, "name", "upload")).name


__all__ = [
    "ChangeEvent",
    "ChangeKind",
    "ImageRepoClient",
    "Page",
    "SearchResult",
    "SimilarResult",
    "UploadResult",
    "sha256_of",
]
