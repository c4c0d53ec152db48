"""Client channels to imagerepo services: TLS when configured, and every call carrying the
service token and the current request id in its metadata."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import grpc

from service_runtime.grpc_server import channel_options
from service_runtime.logs import REQUEST_ID_METADATA_KEY, current_request_id
from service_runtime.security import NO_SECURITY, TOKEN_METADATA_KEY, TransportSecurity

Next = Callable[..., Any]


class _Details(NamedTuple):
    method: str
    timeout: float | None
    metadata: Sequence[tuple[str, str | bytes]] | None
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: Any


class _OutgoingMetadata(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the service token and the request id (when one is set) to every call."""

    def __init__(self, token: str) -> None:
        self._token = token

    def _details(self, details: Any) -> _Details:
        metadata = list(details.metadata or ())
        if self._token:
            metadata.append((TOKEN_METADATA_KEY, self._token))
        request_id = current_request_id()
        if request_id:
            metadata.append((REQUEST_ID_METADATA_KEY, request_id))
        return _Details(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Next, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Next, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Next, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Next, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


def open_channel(
    address: str,
    options: Sequence[tuple[str, Any]] | None = None,
    security: TransportSecurity | None = None,
) -> grpc.Channel:
    """A channel to `address` with the project's message limits (or `options`), TLS when
    `security` has a CA, and the token and request id on every call."""
    security = security or NO_SECURITY
    opts = list(options if options is not None else channel_options())
    if security.tls:
        if security.server_name:
            opts.append(("grpc.ssl_target_name_override", security.server_name))
        channel = grpc.secure_channel(address, security.channel_credentials(), options=opts)
    else:
        channel = grpc.insecure_channel(address, options=opts)
    return grpc.intercept_channel(channel, _OutgoingMetadata(security.token))
