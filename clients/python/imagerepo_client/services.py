"""A typed client per service, over the generated stubs: one method per RPC.

Each method sets a deadline, retries what is safe to retry (see `imagerepo_client.calls`) and
raises `imagerepo_client.errors` classes. They return the protobuf messages as the service sent
them; `ImageRepoClient` (imagerepo_client.client) is the friendlier layer on top.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterable, Iterator, Sequence

import grpc

from imagerepo.search.v2 import search_service_pb2 as search_pb
from imagerepo.search.v2 import search_service_pb2_grpc as search_grpc
from imagerepo.storage.v2 import storage_service_pb2 as storage_pb
from imagerepo.storage.v2 import storage_service_pb2_grpc as storage_grpc
from imagerepo.vision.v2 import vision_service_pb2 as vision_pb
from imagerepo.vision.v2 import vision_service_pb2_grpc as vision_grpc
from imagerepo_client.calls import Caller, Credentials, RetryPolicy, open_channel
from imagerepo_client.errors import UnavailableError, error_from_rpc

# The storage contract caps each streamed upload chunk at 1 MiB.
CHUNK_BYTES = 1024 * 1024
# Uploads get a deadline that grows with their size: this much, plus a second per MiB.
UPLOAD_BASE_TIMEOUT_S = 30.0
# FindBySha256 and BatchGetImages take at most this many keys per call.
BATCH_LIMIT = 1000
# A followed change feed sends a heartbeat every few seconds while idle (3 s today): this much
# silence means the connection is gone.
WATCH_IDLE_TIMEOUT_S = 30.0


class _ServiceClient:
    service = ""

    def __init__(
        self,
        target: str | grpc.Channel,
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        self._owns_channel = isinstance(target, str)
        self.channel = open_channel(target, credentials) if isinstance(target, str) else target
        self._caller = Caller(self.service, timeout_s, retry or RetryPolicy())

    def close(self) -> None:
        if self._owns_channel:
            self.channel.close()

    def __enter__(self) -> _ServiceClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class StorageClient(_ServiceClient):
    """imagerepo.storage.v2.StorageService: images, bytes, thumbnails, annotations."""

    service = "storage"

    def __init__(
        self,
        target: str | grpc.Channel,
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        super().__init__(target, timeout_s, retry, credentials)
        self.stub = storage_grpc.StorageServiceStub(self.channel)

    def put_image(
        self,
        data: bytes,
        filename: str,
        owner: str = "",
        content_type: str = "",
        keep_duplicate: bool = False,
        chunk_bytes: int = CHUNK_BYTES,
        timeout_s: float | None = None,
        tags: Sequence[str] = (),
    ) -> storage_pb.PutImageResponse:
        """Stream one image in chunks, `tags` in the header (storage adds them once the image
        is stored, or to the copy already stored). Retried when storage is unavailable only if
        the upload is idempotent, i.e. the same bytes are not kept twice (keep_duplicate=False)."""
        chunk_bytes = max(1, min(chunk_bytes, CHUNK_BYTES))
        header = storage_pb.PutImageHeader(
            filename=filename,
            content_type=content_type,
            owner=owner,
            expected_size=len(data),
            keep_duplicate=keep_duplicate,
            tags=list(tags),
        )

        def messages() -> Iterator[storage_pb.PutImageRequest]:
            yield storage_pb.PutImageRequest(header=header)
            view = memoryview(data)
            for start in range(0, len(data), chunk_bytes):
                yield storage_pb.PutImageRequest(chunk=bytes(view[start : start + chunk_bytes]))

        if timeout_s is None:
            timeout_s = UPLOAD_BASE_TIMEOUT_S + len(data) / CHUNK_BYTES
        # Without keep_duplicate storage keeps one copy of the same bytes per owner, so sending
        # the upload again after a lost answer is harmless; with it, a retry could store two.
        return self._caller.call(
            "PutImage",
            lambda t: self.stub.PutImage(messages(), timeout=t),
            idempotent=not keep_duplicate,
            timeout_s=timeout_s,
        )

    def get_image(
        self, image_id: str, include_feature_vector: bool = False
    ) -> storage_pb.ImageMetadata:
        request = storage_pb.GetImageRequest(
            image_id=image_id, include_feature_vector=include_feature_vector
        )
        reply = self._caller.call(
            "GetImage", lambda t: self.stub.GetImage(request, timeout=t), idempotent=True
        )
        return reply.image

    def batch_get_images(self, image_ids: Sequence[str]) -> list[storage_pb.ImageMetadata]:
        """Metadata of many images, one call per 1000 ids, in request order; ids with no live
        (or no readable) image are left out."""
        ids = list(image_ids)
        if not ids:
            return []
        found: list[storage_pb.ImageMetadata] = []
        for start in range(0, len(ids), BATCH_LIMIT):
            batch = ids[start : start + BATCH_LIMIT]
            while batch:
                reply = self._batch_get(batch)
                found.extend(reply.images)
                # Ids left out to keep a reply under the message limit are asked for again.
                batch = list(reply.not_returned_ids) if reply.images else []
        by_id = {image.id: image for image in found}
        return [by_id[i] for i in dict.fromkeys(ids) if i in by_id]

    def _batch_get(self, ids: list[str]) -> storage_pb.BatchGetImagesResponse:
        request = storage_pb.BatchGetImagesRequest(image_ids=ids)
        return self._caller.call(
            "BatchGetImages",
            lambda t: self.stub.BatchGetImages(request, timeout=t),
            idempotent=True,
        )

    def read_image_data(
        self, image_id: str, timeout_s: float | None = None
    ) -> Iterator[storage_pb.ReadImageDataResponse]:
        """The original bytes as chunks (not retried once chunks have been handed out)."""
        request = storage_pb.ReadImageDataRequest(image_id=image_id)
        stream = self._caller.call(
            "ReadImageData",
            lambda t: _first_then_rest(self.stub.ReadImageData(request, timeout=t)),
            idempotent=True,
            timeout_s=timeout_s,
        )
        try:
            yield from stream
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, "ReadImageData", self.service) from exc

    def get_thumbnail(
        self, image_id: str, size: int = storage_pb.THUMBNAIL_SIZE_SMALL
    ) -> storage_pb.GetThumbnailResponse:
        request = storage_pb.GetThumbnailRequest(image_id=image_id, size=size)  # type: ignore[arg-type]
        return self._caller.call(
            "GetThumbnail", lambda t: self.stub.GetThumbnail(request, timeout=t), idempotent=True
        )

    def find_by_filename(self, filename: str, limit: int = 0) -> list[storage_pb.ImageMetadata]:
        """Images with exactly this filename, newest first; all of them with limit=0 (read a
        page at a time)."""
        found: list[storage_pb.ImageMetadata] = []
        token = ""
        while True:
            page_size = min(limit - len(found), 1000) if limit else 1000
            request = storage_pb.FindByFilenameRequest(
                filename=filename, page_size=page_size, page_token=token
            )
            reply = self._caller.call(
                "FindByFilename",
                functools.partial(self._find_by_filename, request),
                idempotent=True,
            )
            found.extend(reply.images)
            token = reply.next_page_token
            if not token or (limit and len(found) >= limit):
                return found

    def _find_by_filename(
        self, request: storage_pb.FindByFilenameRequest, timeout_s: float
    ) -> storage_pb.FindByFilenameResponse:
        return self.stub.FindByFilename(request, timeout=timeout_s)

    def find_by_sha256(
        self, sha256s: Sequence[str], owner: str | None = None
    ) -> storage_pb.FindBySha256Response:
        """Live images holding these bytes (one match per digest, in order), of one owner or,
        with owner=None, of any owner. At most 1000 digests per call."""
        request = storage_pb.FindBySha256Request(sha256=list(sha256s))
        if owner is not None:
            request.owner = owner
        return self._caller.call(
            "FindBySha256",
            lambda t: self.stub.FindBySha256(request, timeout=t),
            idempotent=True,
        )

    def list_images(
        self,
        page_size: int = 50,
        page_token: str = "",
        owner: str = "",
        status: int = 0,
    ) -> storage_pb.ListImagesResponse:
        request = storage_pb.ListImagesRequest(
            page_size=page_size,
            page_token=page_token,
            owner=owner,
            status=status,  # type: ignore[arg-type]
        )
        return self._caller.call(
            "ListImages", lambda t: self.stub.ListImages(request, timeout=t), idempotent=True
        )

    def update_tags(
        self, image_id: str, add: Iterable[str] = (), remove: Iterable[str] = ()
    ) -> storage_pb.ImageMetadata:
        request = storage_pb.UpdateAnnotationsRequest(
            image_id=image_id, add_tags=list(add), remove_tags=list(remove)
        )
        # Adding or removing a tag twice leaves the same set: safe to retry.
        reply = self._caller.call(
            "UpdateAnnotations",
            lambda t: self.stub.UpdateAnnotations(request, timeout=t),
            idempotent=True,
        )
        return reply.image

    def delete_image(self, image_id: str) -> storage_pb.ImageMetadata:
        """Deletes one image. A retry after a lost answer may report NOT_FOUND."""
        request = storage_pb.DeleteImageRequest(image_id=image_id)
        reply = self._caller.call(
            "DeleteImage", lambda t: self.stub.DeleteImage(request, timeout=t), idempotent=True
        )
        return reply.image

    def get_stats(self) -> storage_pb.GetStatsResponse:
        request = storage_pb.GetStatsRequest()
        return self._caller.call(
            "GetStats", lambda t: self.stub.GetStats(request, timeout=t), idempotent=True
        )

    def watch_changes(
        self,
        after_seq: int = 0,
        follow: bool = True,
        include_feature_vector: bool = False,
        max_batch: int = 0,
        idle_timeout_s: float = WATCH_IDLE_TIMEOUT_S,
    ) -> Iterator[storage_pb.WatchChangesResponse]:
        """One WatchChanges stream as it comes (heartbeats included), not retried: see
        `ImageRepoClient.watch` for the resuming, reconnecting iterator.

        A followed stream has no deadline; instead it is cancelled (UnavailableError) when no
        message, not even a heartbeat, arrived for idle_timeout_s, so a silently dead
        connection is noticed."""
        request = storage_pb.WatchChangesRequest(
            after_seq=after_seq,
            follow=follow,
            include_feature_vector=include_feature_vector,
            max_batch=max_batch,
        )
        call = self.stub.WatchChanges(request, timeout=None)
        idle = _IdleWatchdog(call, idle_timeout_s)
        try:
            for message in call:
                idle.kick()
                yield message
        except grpc.RpcError as exc:
            if idle.fired:
                raise UnavailableError(
                    grpc.StatusCode.UNAVAILABLE,
                    f"no message on the change feed for {idle_timeout_s:.0f} s",
                    "WatchChanges",
                ) from exc
            raise error_from_rpc(exc, "WatchChanges", self.service) from exc
        finally:
            idle.stop()
            call.cancel()


class _IdleWatchdog:
    """Cancels a streaming call that stays silent for longer than timeout_s."""

    def __init__(self, call: grpc.Call, timeout_s: float) -> None:
        self._call = call
        self._timeout_s = timeout_s
        self._last = time.monotonic()
        self._done = threading.Event()
        self.fired = False
        self._thread = threading.Thread(target=self._run, name="watch-idle", daemon=True)
        self._thread.start()

    def kick(self) -> None:
        self._last = time.monotonic()

    def stop(self) -> None:
        self._done.set()

    def _run(self) -> None:
        while not self._done.wait(min(1.0, self._timeout_s / 4)):
            if time.monotonic() - self._last > self._timeout_s:
                self.fired = True
                self._call.cancel()
                return


class SearchClient(_ServiceClient):
    """imagerepo.search.v2.SearchService: words, similar pictures, duplicates, suggestions."""

    service = "search"

    def __init__(
        self,
        target: str | grpc.Channel,
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        super().__init__(target, timeout_s, retry, credentials)
        self.stub = search_grpc.SearchServiceStub(self.channel)

    def search(
        self,
        query: str,
        page_size: int = 20,
        page_token: str = "",
        owner: str = "",
        include_moderated: bool = False,
    ) -> search_pb.SearchResponse:
        request = search_pb.SearchRequest(
            query=query,
            page_size=page_size,
            page_token=page_token,
            filters=search_pb.SearchFilters(owner=owner, include_moderated=include_moderated),
        )
        return self._caller.call(
            "Search", lambda t: self.stub.Search(request, timeout=t), idempotent=True
        )

    def similar_images(
        self,
        image_id: str = "",
        vector: Sequence[float] = (),
        k: int = 10,
        owner: str = "",
        include_moderated: bool = False,
    ) -> list[search_pb.SimilarHit]:
        filters = search_pb.SearchFilters(owner=owner, include_moderated=include_moderated)
        if image_id:
            request = search_pb.SimilarImagesRequest(image_id=image_id, k=k, filters=filters)
        else:
            request = search_pb.SimilarImagesRequest(
                vector=search_pb.FeatureVector(values=list(vector)), k=k, filters=filters
            )
        reply = self._caller.call(
            "SimilarImages",
            lambda t: self.stub.SimilarImages(request, timeout=t),
            idempotent=True,
        )
        return list(reply.hits)

    def find_duplicates(
        self, image_id: str = "", near_threshold: float = 0.0
    ) -> search_pb.FindDuplicatesResponse:
        request = search_pb.FindDuplicatesRequest(image_id=image_id)
        if near_threshold > 0:  # else the service's default
            request.near_threshold = near_threshold
        return self._caller.call(
            "FindDuplicates",
            lambda t: self.stub.FindDuplicates(request, timeout=t),
            idempotent=True,
        )

    def suggest(self, prefix: str, limit: int = 10) -> list[search_pb.Suggestion]:
        request = search_pb.SuggestRequest(prefix=prefix, limit=limit)
        reply = self._caller.call(
            "Suggest", lambda t: self.stub.Suggest(request, timeout=t), idempotent=True
        )
        return list(reply.suggestions)

    def get_stats(self) -> search_pb.GetStatsResponse:
        request = search_pb.GetStatsRequest()
        return self._caller.call(
            "GetStats", lambda t: self.stub.GetStats(request, timeout=t), idempotent=True
        )


class VisionClient(_ServiceClient):
    """imagerepo.vision.v2.VisionService: labels, features, moderation and OCR of a picture."""

    service = "vision"

    def __init__(
        self,
        target: str | grpc.Channel,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        super().__init__(target, timeout_s, retry, credentials)
        self.stub = vision_grpc.VisionServiceStub(self.channel)

    def analyze(
        self,
        data: bytes,
        tasks: Sequence[int] = (),
        top_k: int = 5,
        ocr_mode: int = 0,
    ) -> vision_pb.AnalyzeResponse:
        """Analysis of a picture that is not stored (a pure function of the bytes)."""
        request = vision_pb.AnalyzeRequest(
            image_data=data,
            tasks=list(tasks),  # type: ignore[arg-type]
            top_k=top_k,
            ocr_mode=ocr_mode,  # type: ignore[arg-type]
        )
        return self._caller.call(
            "Analyze", lambda t: self.stub.Analyze(request, timeout=t), idempotent=True
        )

    def embed_text(self, texts: Sequence[str]) -> vision_pb.EmbedTextResponse:
        request = vision_pb.EmbedTextRequest(texts=list(texts))
        return self._caller.call(
            "EmbedText", lambda t: self.stub.EmbedText(request, timeout=t), idempotent=True
        )

    def list_models(self) -> list[vision_pb.ModelInfo]:
        request = vision_pb.ListModelsRequest()
        reply = self._caller.call(
            "ListModels", lambda t: self.stub.ListModels(request, timeout=t), idempotent=True
        )
        return list(reply.models)


def _first_then_rest(stream: Iterator[storage_pb.ReadImageDataResponse]) -> Iterator:
    """Pull the first chunk now, so a service that is down fails (and is retried) here."""
    first = next(stream, None)

    def chained() -> Iterator[storage_pb.ReadImageDataResponse]:
        if first is not None:
            yield first
        yield from stream

    return chained()
