"""Column-store errors -> gRPC status codes, in one place."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from storage_service.columnstore.errors import (
    DataLossError,
    ImageNotFoundError,
    InvalidImageError,
    InvalidRequestError,
    StoreClosedError,
    StoreError,
)

STATUS_OF: dict[type[StoreError], grpc.StatusCode] = {
    ImageNotFoundError: grpc.StatusCode.NOT_FOUND,
    InvalidImageError: grpc.StatusCode.INVALID_ARGUMENT,
    InvalidRequestError: grpc.StatusCode.INVALID_ARGUMENT,
    DataLossError: grpc.StatusCode.DATA_LOSS,
    StoreClosedError: grpc.StatusCode.UNAVAILABLE,
}


def status_of(error: StoreError) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return grpc.StatusCode.INTERNAL


@contextmanager
def store_errors(context: grpc.ServicerContext) -> Iterator[None]:
    """Turn a column-store error raised inside the block into an aborted call."""
    try:
        yield
    except StoreError as e:
        context.abort(status_of(e), str(e))
