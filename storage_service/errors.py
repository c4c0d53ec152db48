"""Every failure -> a precise gRPC status with a short message, in one place.

Column-store errors map by class; policy refusals carry their own reason; operating-system
errors map by errno (a full disk is RESOURCE_EXHAUSTED, anything else UNAVAILABLE), and any
other exception is INTERNAL with a short message (the traceback goes to the log), so a client
never sees UNKNOWN. Where a client must branch on the cause, the status carries a
`google.rpc.ErrorInfo` detail (domain "storage.imagerepo") with a reason: the reasons are
listed in protos/imagerepo/storage/v1/storage_service.proto. A BUSY answer also carries a
`google.rpc.RetryInfo` detail: how long the client should wait before asking again
(BUSY_RETRY_S); the gateway sends it on as Retry-After.
"""

from __future__ import annotations

import errno
import functools
import inspect
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from storage_service.columnstore import policy
from storage_service.columnstore.errors import (
    BackgroundError,
    DataDirLockedError,
    DataLossError,
    HistoryCompactedError,
    ImageNotFoundError,
    InvalidImageError,
    InvalidRequestError,
    LeaseLostError,
    StorageFullError,
    StoreClosedError,
    StoreError,
)
from storage_service.columnstore.image_check import DecodeBusyError

log = logging.getLogger(__name__)

DOMAIN = "storage.imagerepo"
# Status messages travel in trailing metadata (8 KiB by default for all headers together).
MAX_MESSAGE_CHARS = 500
MAX_METADATA_CHARS = 128

STORAGE_FULL = "STORAGE_FULL"
DATA_LOSS = "DATA_LOSS"
NOT_FOUND = "NOT_FOUND"
BACKGROUND_ERROR = "BACKGROUND_ERROR"
IO_ERROR = "IO_ERROR"
BUSY = "BUSY"
STORAGE_FULL_MESSAGE = "storage is full"
# The RetryInfo delay of every BUSY answer. The background thumbnailer tries an image its
# decode memory was busy for again after 1 s: a client that waits twice that asks after the
# thumbnailer's own second try (which may have made the very thumbnail asked for), not before.
BUSY_RETRY_S = 2.0

STATUS_OF: dict[type[StoreError], grpc.StatusCode] = {
    ImageNotFoundError: grpc.StatusCode.NOT_FOUND,
    InvalidImageError: grpc.StatusCode.INVALID_ARGUMENT,
    InvalidRequestError: grpc.StatusCode.INVALID_ARGUMENT,
    DataLossError: grpc.StatusCode.DATA_LOSS,
    StoreClosedError: grpc.StatusCode.UNAVAILABLE,
    StorageFullError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    BackgroundError: grpc.StatusCode.UNAVAILABLE,
    DataDirLockedError: grpc.StatusCode.FAILED_PRECONDITION,
    DecodeBusyError: grpc.StatusCode.UNAVAILABLE,
    LeaseLostError: grpc.StatusCode.ABORTED,
    HistoryCompactedError: grpc.StatusCode.OUT_OF_RANGE,
}
_REASON_OF: dict[type[StoreError], str] = {
    ImageNotFoundError: NOT_FOUND,
    InvalidImageError: policy.INVALID_IMAGE,
    InvalidRequestError: policy.POLICY_VIOLATION,
    DataLossError: DATA_LOSS,
    StorageFullError: STORAGE_FULL,
    BackgroundError: BACKGROUND_ERROR,
    DecodeBusyError: BUSY,
}

T = TypeVar("T")


def _short(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def status_of(error: StoreError) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return grpc.StatusCode.INTERNAL


def _reason_of(error: StoreError) -> str:
    reason = getattr(error, "reason", "")
    if reason:
        return str(reason)
    for cls in type(error).__mro__:
        if cls in _REASON_OF:
            return _REASON_OF[cls]
    return ""


def abort(
    context: grpc.ServicerContext,
    code: grpc.StatusCode,
    message: str,
    reason: str = "",
    **metadata: str,
) -> NoReturn:
    """End the call with `code`, a short message and, given a reason, an ErrorInfo detail (and
    for BUSY a RetryInfo one)."""
    message = _short(message)
    if not reason:
        context.abort(code, message)
    info = error_details_pb2.ErrorInfo(
        reason=reason,
        domain=DOMAIN,
        metadata={k: _short(str(v), MAX_METADATA_CHARS) for k, v in metadata.items() if v},
    )
    detail = any_pb2.Any()
    detail.Pack(info)
    details = [detail]
    if reason == BUSY:
        retry = any_pb2.Any()
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(round(BUSY_RETRY_S * 1000))
        retry.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        details.append(retry)
    answer = rpc_status.to_status(
        status_pb2.Status(code=code.value[0], message=message, details=details)
    )
    if reason == BUSY:
        # A negative pushback: clients' retry policies (service_runtime/channels.py retries
        # reads on UNAVAILABLE) do not ask again at once: that would wait for the memory again.
        pushback = (("grpc-retry-pushback-ms", "-1"),)
        answer = answer._replace(trailing_metadata=(*answer.trailing_metadata, *pushback))
    context.abort_with_status(answer)
    raise AssertionError("unreachable")  # abort raises


def store_error_status(error: StoreError) -> tuple[grpc.StatusCode, str, str, dict[str, str]]:
    """(code, message, reason, ErrorInfo metadata) for a column-store error."""
    code = status_of(error)
    reason = _reason_of(error)
    metadata: dict[str, str] = {}
    message = str(error)
    if isinstance(error, ImageNotFoundError):
        message = f"no image with id {policy.short_id(error.image_id)!r}"
        metadata["image_id"] = error.image_id
    elif isinstance(error, StorageFullError):
        if STORAGE_FULL_MESSAGE not in message:
            message = f"{STORAGE_FULL_MESSAGE}: {message}" if message else STORAGE_FULL_MESSAGE
    elif isinstance(error, DataLossError):
        metadata["path"] = error.segment
    elif isinstance(error, HistoryCompactedError):
        metadata["horizon_seq"] = str(error.horizon_seq)
    limit = getattr(error, "limit", "")
    if limit:
        metadata["limit"] = limit
    return code, message or code.name.lower(), reason, metadata


def os_error_status(error: OSError) -> tuple[grpc.StatusCode, str, str]:
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, STORAGE_FULL_MESSAGE, STORAGE_FULL
    what = error.strerror or type(error).__name__
    return grpc.StatusCode.UNAVAILABLE, f"storage I/O error: {what}", IO_ERROR


@contextmanager
def store_errors(context: grpc.ServicerContext) -> Iterator[None]:
    """Turn a column-store or OS error raised inside the block into an aborted call."""
    try:
        yield
    except StoreError as e:
        code, message, reason, metadata = store_error_status(e)
        abort(context, code, message, reason, **metadata)
    except OSError as e:
        code, message, reason = os_error_status(e)
        log.warning("storage I/O error", extra={"error": str(e)})
        abort(context, code, message, reason)
    except MemoryError:
        # Not RESOURCE_EXHAUSTED: clients read that as "the disk is full".
        abort(
            context,
            grpc.StatusCode.UNAVAILABLE,
            "storage ran out of memory for this request",
            BUSY,
        )


def _aborted(context: grpc.ServicerContext) -> bool:
    code = context.code()  # type: ignore[attr-defined]
    return code is not None and code != grpc.StatusCode.OK


def _unexpected(context: grpc.ServicerContext, name: str, error: BaseException) -> NoReturn:
    if isinstance(error, OSError):
        code, message, reason = os_error_status(error)
        log.warning("storage I/O error", extra={"rpc": name, "error": str(error)})
        abort(context, code, message, reason)
    log.exception("unexpected error", extra={"rpc": name})
    abort(
        context,
        grpc.StatusCode.INTERNAL,
        f"internal error in storage ({type(error).__name__}); the storage log has details",
    )


def guarded(method: Callable[..., T]) -> Callable[..., T]:
    """A servicer method whose unexpected exceptions end the call as INTERNAL (or the OSError's
    status), never UNKNOWN. Works for unary and server-streaming (generator) methods."""
    name = method.__name__
    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def stream(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            try:
                yield from method(self, request, context)
            except Exception as e:
                if _aborted(context):
                    raise
                _unexpected(context, name, e)

        return stream  # type: ignore[return-value]

    @functools.wraps(method)
    def unary(self: Any, request: Any, context: grpc.ServicerContext) -> T:
        try:
            return method(self, request, context)
        except Exception as e:
            if _aborted(context):
                raise
            _unexpected(context, name, e)

    return unary


def with_status_codes(cls: type[T]) -> type[T]:
    """Apply `guarded` to every public CamelCase method (the RPCs) of a servicer class."""
    for attr, value in list(vars(cls).items()):
        if attr[:1].isupper() and callable(value):
            setattr(cls, attr, guarded(value))
    return cls
