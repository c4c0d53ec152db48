"""imagerepo's own column store: segments, write-ahead log, manifest, filename index.

Knows nothing of gRPC; `storage_service.servicer` translates between it and the wire.
"""

from storage_service.columnstore.errors import (
    DataLossError,
    ImageNotFoundError,
    InvalidImageError,
    InvalidRequestError,
    StoreClosedError,
    StoreError,
)
from storage_service.columnstore.image_check import prepare_image
from storage_service.columnstore.store import ColumnStore, StoreOptions

__all__ = [
    "ColumnStore",
    "DataLossError",
    "ImageNotFoundError",
    "InvalidImageError",
    "InvalidRequestError",
    "StoreClosedError",
    "StoreError",
    "StoreOptions",
    "prepare_image",
]
