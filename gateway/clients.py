"""gRPC stubs of the three services, sharing one channel each (round_robin over a service's
replicas); every call gets a deadline. The gateway speaks the v2 contracts
(imagerepo.<service>.v2): Timestamps, enums with UNSPECIFIED zero values, presence fields and
opaque page tokens; the word tables below say v2's enums in the words the REST API has always
used ("ocr_text", "hnswlib", "labels+features").

Every method turns a failed call into `ServiceError` (service, method, status code, details),
which `gateway.errors` maps to an HTTP status in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.protobuf import field_mask_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.config import GatewayConfig
from gateway.errors import ServiceError
from imagerepo.common.v2 import common_pb2
from imagerepo.search.v2 import search_service_pb2 as search_pb
from imagerepo.search.v2 import search_service_pb2_grpc as search_grpc
from imagerepo.storage.v2 import storage_service_pb2 as storage_pb
from imagerepo.storage.v2 import storage_service_pb2_grpc as storage_grpc
from imagerepo.vision.v2 import vision_service_pb2 as vision_pb
from imagerepo.vision.v2 import vision_service_pb2_grpc as vision_grpc
from service_runtime.channels import open_channel
from service_runtime.contracts_v2 import timestamp_of_ms
from service_runtime.grpc_server import channel_options

# The storage contract caps each streamed chunk at 1 MiB.
CHUNK_BYTES = 1024 * 1024

# gRPC's reconnect backoff grows to 2 minutes by default: after a long outage a service that
# is back would wait that long for traffic.
RECONNECT_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.min_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 5000),
]

T = TypeVar("T")

# v2's enums in the words the gateway's JSON has always carried.
MATCH_FIELD_WORDS = {
    value: name.removeprefix("MATCH_FIELD_").lower()
    for name, value in search_pb.MatchField.items()
    if value != search_pb.MATCH_FIELD_UNSPECIFIED
}
VECTOR_BACKEND_WORDS = {
    value: name.removeprefix("VECTOR_BACKEND_").lower()
    for name, value in search_pb.VectorBackend.items()
    if value != search_pb.VECTOR_BACKEND_UNSPECIFIED
}
MODEL_TASK_WORDS = {
    vision_pb.MODEL_TASK_LABELS_AND_FEATURES: "labels+features",
    vision_pb.MODEL_TASK_MODERATION: "moderation",
    vision_pb.MODEL_TASK_OCR_DETECTION: "ocr-det",
    vision_pb.MODEL_TASK_OCR_RECOGNITION: "ocr-rec",
    vision_pb.MODEL_TASK_TEXT_EMBEDDING: "text-embedding",
}


def match_field_word(field: int) -> str:
    """A match reason's or suggestion's field as a word ("labels", "ocr_text"); "" if unknown."""
    return MATCH_FIELD_WORDS.get(field, "")


@dataclass
class ServiceClients:
    storage: storage_grpc.StorageServiceStub
    vision: vision_grpc.VisionServiceStub
    search: search_grpc.SearchServiceStub
    channels: dict[str, grpc.Channel]
    timeout_s: float
    # Vision runs models (OCR on a large page takes seconds on a busy CPU): a longer deadline.
    analyze_timeout_s: float = 30.0

    @classmethod
    def connect(cls, config: GatewayConfig) -> ServiceClients:
        options = [*channel_options(), *RECONNECT_OPTIONS]
        channels = {
            "storage": open_channel(config.storage_address, options, config.security),
            "vision": open_channel(config.vision_address, options, config.security),
            "search": open_channel(config.search_address, options, config.security),
        }
        return cls(
            storage=storage_grpc.StorageServiceStub(channels["storage"]),
            vision=vision_grpc.VisionServiceStub(channels["vision"]),
            search=search_grpc.SearchServiceStub(channels["search"]),
            channels=channels,
            timeout_s=config.rpc_timeout_s,
            analyze_timeout_s=config.analyze_timeout_s,
        )

    def health(self, timeout_s: float = 2.0) -> dict[str, str]:
        """Each service's health status name, or UNAVAILABLE when it does not answer."""
        statuses: dict[str, str] = {}
        for name, channel in self.channels.items():
            stub = health_pb2_grpc.HealthStub(channel)
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout_s)
                statuses[name] = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.RpcError as exc:
                statuses[name] = exc.code().name
        return statuses

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()

    # --- one wrapper for every unary call --------------------------------------------------

    def _call(
        self,
        service: str,
        method: str,
        invoke: Callable[..., T],
        request: Any,
        timeout_s: float | None = None,
    ) -> T:
        try:
            return invoke(request, timeout=timeout_s or self.timeout_s)
        except grpc.RpcError as exc:
            raise ServiceError(service, method, exc.code(), exc.details() or "") from exc

    # --- storage ----------------------------------------------------------------------------

    def put_image(
        self,
        filename: str,
        data: bytes,
        owner: str,
        content_type: str = "",
        keep_duplicate: bool = False,
    ) -> storage_pb.PutImageResponse:
        """Store one upload; bytes already stored for the owner come back as that image with
        already_stored set, unless keep_duplicate."""

        def messages() -> Iterator[storage_pb.PutImageRequest]:
            yield storage_pb.PutImageRequest(
                header=storage_pb.PutImageHeader(
                    filename=filename,
                    content_type=content_type,
                    owner=owner,
                    expected_size=len(data),
                    keep_duplicate=keep_duplicate,
                )
            )
            view = memoryview(data)
            for start in range(0, len(data), CHUNK_BYTES):
                yield storage_pb.PutImageRequest(chunk=bytes(view[start : start + CHUNK_BYTES]))

        return self._call("storage", "PutImage", self.storage.PutImage, messages())

    def get_image(
        self, image_id: str, include_feature_vector: bool = False
    ) -> storage_pb.ImageMetadata:
        request = storage_pb.GetImageRequest(
            image_id=image_id, include_feature_vector=include_feature_vector
        )
        return self._call("storage", "GetImage", self.storage.GetImage, request).image

    def read_image_chunks(self, image_id: str) -> Iterator[storage_pb.ReadImageDataResponse]:
        """The original bytes as chunks; a failure mid-stream raises ServiceError too."""
        request = storage_pb.ReadImageDataRequest(image_id=image_id)
        try:
            yield from self.storage.ReadImageData(request, timeout=self.timeout_s)
        except grpc.RpcError as exc:
            raise ServiceError("storage", "ReadImageData", exc.code(), exc.details() or "") from exc

    def read_image_bytes(self, image_id: str) -> bytes:
        return b"".join(chunk.chunk for chunk in self.read_image_chunks(image_id))

    def get_thumbnail(self, image_id: str, size: int) -> storage_pb.GetThumbnailResponse:
        request = storage_pb.GetThumbnailRequest(image_id=image_id, size=size)  # type: ignore[arg-type]
        return self._call("storage", "GetThumbnail", self.storage.GetThumbnail, request)

    def find_by_filename(self, filename: str, limit: int = 0) -> list[storage_pb.ImageMetadata]:
        """Images with this filename, newest first: at most `limit`, every one for 0."""
        found: list[storage_pb.ImageMetadata] = []
        token = ""
        while True:
            request = storage_pb.FindByFilenameRequest(
                filename=filename,
                page_size=min(limit - len(found), 1000) if limit else 1000,
                page_token=token,
            )
            reply = self._call("storage", "FindByFilename", self.storage.FindByFilename, request)
            found.extend(reply.images)
            token = reply.next_page_token
            if not token or not reply.images or (limit and len(found) >= limit):
                return found

    def find_by_sha256(
        self, sha256s: Sequence[str], owner: str
    ) -> list[tuple[str, list[storage_pb.ImageMetadata]]]:
        """(sha256, this owner's live images with those bytes, newest first) per digest, in
        order; at most 1000 digests."""
        request = storage_pb.FindBySha256Request(sha256=list(sha256s), owner=owner)
        reply = self._call("storage", "FindBySha256", self.storage.FindBySha256, request)
        missing = [i for m in reply.matches for i in m.image_ids[len(m.images) :]]
        extra = {image.id: image for image in self.batch_get_images(missing)}
        return [
            (m.sha256, [*m.images, *(extra[i] for i in m.image_ids[len(m.images) :] if i in extra)])
            for m in reply.matches
        ]

    def batch_get_images(self, image_ids: Sequence[str]) -> list[storage_pb.ImageMetadata]:
        """Metadata of the ids that exist, in order, one call per 1000 ids."""
        found: list[storage_pb.ImageMetadata] = []
        ids = list(dict.fromkeys(image_ids))
        for start in range(0, len(ids), 1000):
            batch = ids[start : start + 1000]
            while batch:
                request = storage_pb.BatchGetImagesRequest(image_ids=batch)
                reply = self._call(
                    "storage", "BatchGetImages", self.storage.BatchGetImages, request
                )
                found.extend(reply.images)
                batch = list(reply.not_returned_ids) if reply.images else []
        return found

    def list_images(
        self,
        page_size: int = 50,
        page_token: str = "",
        owner: str = "",
        status: int = common_pb2.ANALYSIS_STATUS_UNSPECIFIED,
        include_feature_vectors: bool = False,
        favourite_only: bool = False,
        trashed_only: bool = False,
        order: int = storage_pb.LIST_ORDER_UPLOADED_NEWEST,
        taken_from_unix_ms: int = 0,
        taken_to_unix_ms: int = 0,
    ) -> storage_pb.ListImagesResponse:
        """0 for taken_from_unix_ms or taken_to_unix_ms leaves that end open."""
        request = storage_pb.ListImagesRequest(
            page_size=page_size,
            page_token=page_token,
            owner=owner,
            status=status,  # type: ignore[arg-type]
            include_feature_vectors=include_feature_vectors,
            favourite_only=favourite_only,
            trashed_only=trashed_only,
            order=order,  # type: ignore[arg-type]
            taken_from=timestamp_of_ms(taken_from_unix_ms),
            taken_until=timestamp_of_ms(taken_to_unix_ms),
        )
        return self._call("storage", "ListImages", self.storage.ListImages, request)

    def iter_images(
        self, status: int = 0, page_size: int = 200, include_feature_vectors: bool = False
    ) -> Iterator[Any]:
        """Every live image (optionally of one status), newest first, across pages."""
        token = ""
        while True:
            reply = self.list_images(
                page_size=page_size,
                page_token=token,
                status=status,
                include_feature_vectors=include_feature_vectors,
            )
            yield from reply.images
            token = reply.next_page_token
            if not token:
                return

    def update_annotations(
        self,
        image_id: str,
        annotations: storage_pb.Annotations | None = None,
        fields: Sequence[str] = (),
        add_tags: Iterable[str] = (),
        remove_tags: Iterable[str] = (),
        add_feedback: Iterable[common_pb2.LabelFeedback] = (),
    ) -> storage_pb.ImageMetadata:
        request = storage_pb.UpdateAnnotationsRequest(
            image_id=image_id,
            annotations=annotations or storage_pb.Annotations(),
            update_mask=field_mask_pb2.FieldMask(paths=list(fields)),
            add_tags=list(add_tags),
            remove_tags=list(remove_tags),
            add_feedback=list(add_feedback),
        )
        reply = self._call("storage", "UpdateAnnotations", self.storage.UpdateAnnotations, request)
        return reply.image

    def set_favourite(self, image_id: str, favourite: bool) -> storage_pb.ImageMetadata:
        return self.update_annotations(
            image_id, storage_pb.Annotations(favourite=favourite), fields=("favourite",)
        )

    def set_trashed(self, image_id: str, trashed: bool) -> storage_pb.ImageMetadata:
        return self.update_annotations(
            image_id, storage_pb.Annotations(trashed=trashed), fields=("trashed",)
        )

    def delete_image(self, image_id: str) -> storage_pb.ImageMetadata:
        request = storage_pb.DeleteImageRequest(image_id=image_id)
        return self._call("storage", "DeleteImage", self.storage.DeleteImage, request).image

    def storage_stats(self) -> storage_pb.GetStatsResponse:
        return self._call(
            "storage", "GetStats", self.storage.GetStats, storage_pb.GetStatsRequest()
        )

    # --- albums (storage) -------------------------------------------------------------------

    def create_album(
        self, name: str, owner: str, image_ids: Sequence[str] = ()
    ) -> storage_pb.Album:
        request = storage_pb.CreateAlbumRequest(name=name, owner=owner, image_ids=list(image_ids))
        return self._call("storage", "CreateAlbum", self.storage.CreateAlbum, request).album

    def rename_album(self, album_id: str, name: str) -> storage_pb.Album:
        request = storage_pb.RenameAlbumRequest(album_id=album_id, name=name)
        return self._call("storage", "RenameAlbum", self.storage.RenameAlbum, request).album

    def delete_album(self, album_id: str) -> storage_pb.Album:
        request = storage_pb.DeleteAlbumRequest(album_id=album_id)
        return self._call("storage", "DeleteAlbum", self.storage.DeleteAlbum, request).album

    def list_albums(
        self, owner: str = "", page_size: int = 0, page_token: str = "", image_id: str = ""
    ) -> storage_pb.ListAlbumsResponse:
        request = storage_pb.ListAlbumsRequest(
            owner=owner, page_size=page_size, page_token=page_token, image_id=image_id
        )
        return self._call("storage", "ListAlbums", self.storage.ListAlbums, request)

    def get_album(
        self, album_id: str, page_size: int = 0, page_token: str = "", include_images: bool = False
    ) -> storage_pb.GetAlbumResponse:
        request = storage_pb.GetAlbumRequest(
            album_id=album_id,
            page_size=page_size,
            page_token=page_token,
            include_images=include_images,
        )
        return self._call("storage", "GetAlbum", self.storage.GetAlbum, request)

    def album_image_ids(self, album_id: str) -> list[str]:
        """Every member id shown in the album (live, not trashed), across pages."""
        ids: list[str] = []
        token = ""
        while True:
            reply = self.get_album(album_id, page_size=1000, page_token=token)
            ids.extend(reply.image_ids)
            token = reply.next_page_token
            if not token:
                return ids

    def add_to_album(
        self, album_id: str, image_ids: Sequence[str]
    ) -> storage_pb.AddToAlbumResponse:
        request = storage_pb.AddToAlbumRequest(album_id=album_id, image_ids=list(image_ids))
        return self._call("storage", "AddToAlbum", self.storage.AddToAlbum, request)

    def remove_from_album(
        self, album_id: str, image_ids: Sequence[str]
    ) -> storage_pb.RemoveFromAlbumResponse:
        request = storage_pb.RemoveFromAlbumRequest(album_id=album_id, image_ids=list(image_ids))
        return self._call("storage", "RemoveFromAlbum", self.storage.RemoveFromAlbum, request)

    # --- vision -----------------------------------------------------------------------------

    def analyze(
        self,
        data: bytes,
        tasks: Sequence[int] = (),
        top_k: int = 5,
        ocr_mode: int = vision_pb.OCR_MODE_AUTO,
    ) -> vision_pb.AnalyzeResponse:
        request = vision_pb.AnalyzeRequest(
            image_data=data,
            tasks=list(tasks),  # type: ignore[arg-type]
            top_k=top_k,
            ocr_mode=ocr_mode,  # type: ignore[arg-type]
        )
        return self._call("vision", "Analyze", self.vision.Analyze, request, self.analyze_timeout_s)

    def list_models(self) -> list[vision_pb.ModelInfo]:
        reply = self._call(
            "vision", "ListModels", self.vision.ListModels, vision_pb.ListModelsRequest()
        )
        return list(reply.models)

    # --- search -----------------------------------------------------------------------------

    def search_images(
        self, query: str, page_size: int = 20, page_token: str = ""
    ) -> search_pb.SearchResponse:
        # The gateway blurs moderated images instead of hiding them, so it asks for all.
        request = search_pb.SearchRequest(
            query=query,
            page_size=page_size,
            page_token=page_token,
            filters=search_pb.SearchFilters(include_moderated=True),
        )
        return self._call("search", "Search", self.search.Search, request)

    def similar_images(
        self, image_id: str = "", vector: Sequence[float] = (), k: int = 10
    ) -> list[search_pb.SimilarHit]:
        filters = search_pb.SearchFilters(include_moderated=True)
        if image_id:
            request = search_pb.SimilarImagesRequest(image_id=image_id, k=k, filters=filters)
        else:
            request = search_pb.SimilarImagesRequest(
                vector=search_pb.FeatureVector(values=list(vector)), k=k, filters=filters
            )
        reply = self._call("search", "SimilarImages", self.search.SimilarImages, request)
        return list(reply.hits)

    def find_duplicates(
        self, image_id: str = "", near_threshold: float = 0.0
    ) -> search_pb.FindDuplicatesResponse:
        """near_threshold 0 means search's default."""
        request = search_pb.FindDuplicatesRequest(image_id=image_id)
        if near_threshold:
            request.near_threshold = near_threshold
        return self._call("search", "FindDuplicates", self.search.FindDuplicates, request)

    def suggest(self, prefix: str, limit: int = 8) -> list[search_pb.Suggestion]:
        request = search_pb.SuggestRequest(prefix=prefix, limit=limit)
        return list(self._call("search", "Suggest", self.search.Suggest, request).suggestions)

    def search_stats(self) -> search_pb.GetStatsResponse:
        return self._call("search", "GetStats", self.search.GetStats, search_pb.GetStatsRequest())
