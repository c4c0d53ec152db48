"""imagerepo's Python client: typed clients for the storage, search and vision gRPC services
and `ImageRepoClient`, the high-level one (upload, get, download, list, search, similar,
delete, find_by_sha256, watch). Installs with only grpcio and protobuf."""

from imagerepo_client.calls import Credentials, RetryPolicy
from imagerepo_client.client import (
    ChangeEvent,
    ChangeKind,
    ImageRepoClient,
    Page,
    SearchResult,
    SimilarResult,
    UploadResult,
    sha256_of,
)
from imagerepo_client.errors import (
    CompactedError,
    DataLossError,
    DeadlineExceededError,
    FailedPreconditionError,
    ImageRepoError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    StorageFullError,
    UnauthenticatedError,
    UnavailableError,
)
from imagerepo_client.services import SearchClient, StorageClient, VisionClient

__all__ = [
    "ChangeEvent",
    "ChangeKind",
    "CompactedError",
    "Credentials",
    "DataLossError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "ImageRepoClient",
    "ImageRepoError",
    "InternalError",
    "InvalidArgumentError",
    "NotFoundError",
    "Page",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "RetryPolicy",
    "SearchClient",
    "SearchResult",
    "SimilarResult",
    "StorageClient",
    "StorageFullError",
    "UnauthenticatedError",
    "UnavailableError",
    "UploadResult",
    "VisionClient",
    "sha256_of",
]
