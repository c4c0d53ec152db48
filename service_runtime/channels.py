"""Client channels to imagerepo services: TLS when configured, and every call carrying the
service token and the current request id in its metadata.

An address may name several replicas of a service: a comma-separated list
(`10.0.0.5:50052,10.0.0.6:50052`), or a `dns:///vision:50052` name whose A records are the
replicas (docker-compose `--scale vision=3`). Every channel uses gRPC's `round_robin` policy,
so calls spread over the replicas that are up, and retries calls that are safe to repeat
(reads, and vision's pure functions) when a replica answers UNAVAILABLE.
"""

from __future__ import annotations

import ipaddress
import json
import socket
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


# Calls that change nothing (or compute a pure function of their request): retried on another
# replica when one answers UNAVAILABLE. Writes are not, as a write may have been applied
# before the replica went away (gRPC still retries transparently a call no server ever saw).
# Every method of every imagerepo service (v1 and v2) is in exactly one of IDEMPOTENT_METHODS
# and NOT_RETRIED_METHODS: tests/service_runtime/test_retry_policy.py checks both against the
# generated protos, so a new method cannot be left out of either unnoticed.
_STORAGE_READS = (
    "GetImage",
    "BatchGetImages",
    "ReadImageData",
    # Makes and stores a PENDING image's thumbnails on demand: the same answer again.
    "GetThumbnail",
    "FindByFilename",
    "FindBySha256",
    "ListImages",
    "GetStats",
    "WatchChanges",
    "ListAlbums",
    "GetAlbum",
)
_STORAGE_WRITES = (
    "PutImage",
    "UpdateAnnotations",
    "DeleteImage",
    "Compact",
    # Records its report (GetStats.last_verify) and runs one at a time: an operator's call.
    "Verify",
    "ClaimAnalysis",
    "CompleteAnalysis",
    "CreateAlbum",
    "RenameAlbum",
    "DeleteAlbum",
    "AddToAlbum",
    "RemoveFromAlbum",
)
_VISION_PURE = ("Analyze", "EmbedText", "ListModels", "ListLabels")
_SEARCH_READS = ("Search", "SimilarImages", "FindDuplicates", "Suggest", "GetStats")

IDEMPOTENT_METHODS: dict[str, tuple[str, ...]] = {
    "imagerepo.storage.v1.StorageService": _STORAGE_READS,
    "imagerepo.storage.v2.StorageService": _STORAGE_READS,
    "imagerepo.vision.v1.VisionService": _VISION_PURE,
    "imagerepo.vision.v2.VisionService": _VISION_PURE,
    "imagerepo.search.v1.SearchService": _SEARCH_READS,
    "imagerepo.search.v2.SearchService": _SEARCH_READS,
    "grpc.health.v1.Health": ("Check",),
}

NOT_RETRIED_METHODS: dict[str, tuple[str, ...]] = {
    "imagerepo.storage.v1.StorageService": _STORAGE_WRITES,
    "imagerepo.storage.v2.StorageService": _STORAGE_WRITES,
    "imagerepo.search.v1.SearchService": ("IndexImage", "RemoveImage", "Rebuild"),
    "imagerepo.vision.v1.VisionService": (),
    "imagerepo.vision.v2.VisionService": (),
    "imagerepo.search.v2.SearchService": (),
}

RETRY_POLICY: dict[str, Any] = {
    "maxAttempts": 3,
    "initialBackoff": "0.05s",
    "maxBackoff": "0.5s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}


def service_config() -> str:
    """The channel's service config: round_robin over every resolved address, and the retry
    policy for the idempotent methods."""
    names = [
        {"service": service, "method": method}
        for service, methods in IDEMPOTENT_METHODS.items()
        for method in methods
    ]
    config = {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [{"name": names, "retryPolicy": RETRY_POLICY}],
    }
    return json.dumps(config)


def channel_target(address: str) -> str:
    """The gRPC target for an address, a comma-separated list of them, or a resolver URI.

    `host:port` and `dns:///name:port` pass through (gRPC's DNS resolver finds every replica
    behind a name). A list becomes an `ipv4:`/`ipv6:` target of every address; host names in
    a list are resolved here, once (use a `dns:///` name for replicas that come and go).
    """
    address = address.strip()
    parts = [part.strip() for part in address.split(",") if part.strip()]
    if len(parts) <= 1:
        return parts[0] if parts else address
    if "://" in address or address.startswith(("ipv4:", "ipv6:", "unix:")):
        return address  # already a URI of gRPC's own
    v4: list[str] = []
    v6: list[str] = []
    for part in parts:
        host, sep, port = part.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"address {part!r} in {address!r} needs host:port")
        host = host.strip("[]")
        for ip in _ips(host, int(port)):
            if ipaddress.ip_address(ip).version == 4:
                v4.append(f"{ip}:{port}")
            else:
                v6.append(f"[{ip}]:{port}")
    if v4 and v6:
        raise ValueError(f"address list {address!r} mixes IPv4 and IPv6 replicas")
    return "ipv4:" + ",".join(v4) if v4 else "ipv6:" + ",".join(v6)


def _ips(host: str, port: int) -> list[str]:
    """The addresses of one replica named in a list (IPv4 first when it has both)."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    found: list[str] = []
    for *_info, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        ip = str(sockaddr[0])
        if ip not in found:
            found.append(ip)
    v4 = [ip for ip in found if ipaddress.ip_address(ip).version == 4]
    return v4[:1] or found[:1]


def open_channel(
    address: str,
    options: Sequence[tuple[str, Any]] | None = None,
    security: TransportSecurity | None = None,
) -> grpc.Channel:
    """A channel to `address` (one replica, a comma-separated list, or a `dns:///` name) with
    the project's message limits (or `options`), round_robin over the replicas, retries of
    idempotent calls, TLS when `security` has a CA, and the token and request id on every
    call."""
    security = security or NO_SECURITY
    address = channel_target(address)
    opts = list(options if options is not None else channel_options())
    if not any(name == "grpc.service_config" for name, _ in opts):
        opts.append(("grpc.service_config", service_config()))
        # The service config is ours: a DNS TXT record must not replace it.
        opts.append(("grpc.service_config_disable_resolution", 1))
    if security.tls:
        if security.server_name:
            opts.append(("grpc.ssl_target_name_override", security.server_name))
        channel = grpc.secure_channel(address, security.channel_credentials(), options=opts)
    else:
        channel = grpc.insecure_channel(address, options=opts)
    return grpc.intercept_channel(channel, _OutgoingMetadata(security.token))
