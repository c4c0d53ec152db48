"""Typed errors: every failed call raises an `ImageRepoError` subclass carrying the gRPC status.

Callers branch on the class (`except NotFoundError:`) or on `.code`, never on message text.
"""

from __future__ import annotations

import grpc


class ImageRepoError(Exception):
    """A call to an imagerepo service failed; `code` and `details` are the gRPC status, and
    `reason` the service's google.rpc.ErrorInfo reason when it sent one (e.g. STORAGE_FULL,
    IMAGE_TOO_LARGE, UNSUPPORTED_FORMAT, INVALID_IMAGE), with its `metadata`."""

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str,
        method: str = "",
        reason: str = "",
        metadata: dict[str, str] | None = None,
    ) -> None:
        where = f"{method}: " if method else ""
        super().__init__(f"{where}{code.name}: {details}")
        self.code = code
        self.details = details
        self.method = method
        self.reason = reason
        self.metadata = metadata or {}


class NotFoundError(ImageRepoError):
    """No image (or other object) with that id."""


class InvalidArgumentError(ImageRepoError):
    """The request was refused as it stands: not an image, too large, a bad field."""


class FailedPreconditionError(ImageRepoError):
    """The request cannot be served in the current state (e.g. inline bytes of a huge image)."""


class ResourceExhaustedError(ImageRepoError):
    """A limit was reached (a size or pixel limit, a quota)."""


class StorageFullError(ResourceExhaustedError):
    """The storage service's disk is full: writes are refused until space is freed."""


class UnauthenticatedError(ImageRepoError):
    pass


class PermissionDeniedError(ImageRepoError):
    pass


class UnavailableError(ImageRepoError):
    """The service is down or unreachable; safe calls were already retried."""


class DeadlineExceededError(ImageRepoError):
    """The call took longer than its deadline."""


class DataLossError(ImageRepoError):
    """Stored bytes failed their checksum; the service never returns them."""


class CompactedError(ImageRepoError):
    """WatchChanges was asked for history the store no longer keeps (OUT_OF_RANGE, reason
    COMPACTED): resynchronise from a listing (its snapshot_seq), then watch from there."""

    @property
    def horizon_seq(self) -> int:
        """The oldest seq still retained (0 when the service did not say)."""
        value = self.metadata.get("horizon_seq", "")
        return int(value) if value.isdigit() else 0


class InternalError(ImageRepoError):
    """The service failed (INTERNAL, UNKNOWN, UNIMPLEMENTED or another unexpected code)."""


_CLASS_OF: dict[grpc.StatusCode, type[ImageRepoError]] = {
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgumentError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.DATA_LOSS: DataLossError,
}

_CLASS_OF_REASON: dict[str, type[ImageRepoError]] = {
    "STORAGE_FULL": StorageFullError,
    "COMPACTED": CompactedError,
}
_ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"


def error_from_rpc(exc: grpc.RpcError, method: str = "", service: str = "") -> ImageRepoError:
    """The typed error for a failed gRPC call (by ErrorInfo reason first, then by code)."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = (exc.details() if hasattr(exc, "details") else "") or ""
    reason, metadata = _error_info(exc)
    cls = _CLASS_OF_REASON.get(reason) or _CLASS_OF.get(code, InternalError)
    return cls(code, details, method, reason, metadata)


def _error_info(exc: grpc.RpcError) -> tuple[str, dict[str, str]]:
    """The ErrorInfo reason and metadata in the status details, read from the wire format
    (google.rpc.Status and ErrorInfo are small; this keeps the client's dependencies to grpcio
    and protobuf)."""
    trailing = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    blob = next((v for k, v in trailing or () if k == "grpc-status-details-bin"), None)
    if not isinstance(blob, bytes):
        return "", {}
    try:
        for number, value in _fields(blob):
            if number != 3 or not isinstance(value, bytes):  # Status.details: repeated Any
                continue
            parts = dict(_fields(value))  # Any: type_url = 1, value = 2
            if parts.get(1) == _ERROR_INFO_TYPE.encode() and isinstance(parts.get(2), bytes):
                return _decode_error_info(parts[2])  # type: ignore[arg-type]
    except (IndexError, ValueError):
        pass
    return "", {}


def _decode_error_info(data: bytes) -> tuple[str, dict[str, str]]:
    reason, metadata = "", {}
    for number, value in _fields(data):
        if number == 1 and isinstance(value, bytes):
            reason = value.decode("utf-8", "replace")
        elif number == 3 and isinstance(value, bytes):  # map entry: key = 1, value = 2
            entry = dict(_fields(value))
            key, val = entry.get(1, b""), entry.get(2, b"")
            if isinstance(key, bytes) and isinstance(val, bytes):
                metadata[key.decode("utf-8", "replace")] = val.decode("utf-8", "replace")
    return reason, metadata


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs of a protobuf message: varints and length-delimited."""
    out: list[tuple[int, int | bytes]] = []
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, i = _varint(data, i)
            out.append((number, value))
        elif wire_type == 2:
            length, i = _varint(data, i)
            if i + length > len(data):
                raise ValueError("truncated field")
            out.append((number, data[i : i + length]))
            i += length
        elif wire_type == 1:
            i += 8
        elif wire_type == 5:
            i += 4
        else:
            raise ValueError(f"unexpected wire type {wire_type}")
    return out


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i
        shift += 7
