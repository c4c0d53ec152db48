"""One way to make every call: a deadline always, typed errors, and retries only where safe.

A call is retried only when the service was unreachable (UNAVAILABLE) and repeating it cannot
change the outcome: reads, deletes by id, and uploads that the storage service deduplicates by
sha256. Nothing is retried after a deadline passes, since the first attempt may have been done.
"""

from __future__ import annotations

import json
import os
import random
import socket
import time
from collections import namedtuple
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc

from imagerepo_client.errors import error_from_rpc

T = TypeVar("T")

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
TOKEN_METADATA_KEY = "x-service-token"

# Reconnect quickly to a restarted service (gRPC's default backoff grows to 2 minutes).
CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep trying a safe call whose service is unavailable."""

    attempts: int = 5
    first_backoff_s: float = 0.2
    max_backoff_s: float = 2.0

    def backoff_s(self, attempt: int) -> float:
        """Pause before retry number `attempt` (1-based), with jitter."""
        ceiling = min(self.max_backoff_s, self.first_backoff_s * 2 ** (attempt - 1))
        return ceiling * (0.5 + random.random() / 2)


NO_RETRY = RetryPolicy(attempts=1)


@dataclass(frozen=True)
class Credentials:
    """How to reach services that require TLS and/or the shared service token (see the
    services' IMAGEREPO_TLS_* and IMAGEREPO_SERVICE_TOKEN_FILE settings)."""

    # PEM of the CA that signed the services' certificates; None means plain text.
    root_certificates: bytes | None = None
    # This client's certificate and key (PEM), for services that require client certificates.
    certificate_chain: bytes | None = None
    private_key: bytes | None = None
    # The name to check in server certificates instead of the dialled host.
    server_name: str = ""
    # Sent as `x-service-token` metadata on every call.
    service_token: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Credentials:
        """The same files the services read: IMAGEREPO_TLS_CA, IMAGEREPO_TLS_CERT,
        IMAGEREPO_TLS_KEY, IMAGEREPO_TLS_SERVER_NAME, IMAGEREPO_SERVICE_TOKEN_FILE."""

        def read(name: str) -> bytes | None:
            path = env.get(name, "").strip()
            return Path(path).read_bytes() if path else None

        token = read("IMAGEREPO_SERVICE_TOKEN_FILE")
        return cls(
            root_certificates=read("IMAGEREPO_TLS_CA"),
            certificate_chain=read("IMAGEREPO_TLS_CERT"),
            private_key=read("IMAGEREPO_TLS_KEY"),
            server_name=env.get("IMAGEREPO_TLS_SERVER_NAME", "").strip(),
            service_token=token.decode().strip() if token else "",
        )


# Spread calls over every replica an address names (a comma-separated list, or a dns:/// name
# with several A records); gRPC's default, pick_first, would send every call to one.
ROUND_ROBIN_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})


def channel_target(address: str) -> str:
    """`host:port` and gRPC URIs (`dns:///name:port`) as they are; a comma-separated list of
    replicas as one `ipv4:`/`ipv6:` target (host names in it resolved once, here)."""
    parts = [part.strip() for part in address.split(",") if part.strip()]
    if len(parts) <= 1 or ":/" in address or address.startswith(("ipv4:", "ipv6:", "unix:")):
        return address.strip()
    resolved = []
    for part in parts:
        host, _, port = part.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"address {part!r} in {address!r} needs host:port")
        infos = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)
        ips = [str(info[4][0]) for info in infos]
        v4 = [ip for ip in ips if ":" not in ip]
        resolved.append(f"{v4[0]}:{port}" if v4 else f"[{ips[0]}]:{port}")
    if all(not r.startswith("[") for r in resolved):
        return "ipv4:" + ",".join(resolved)
    if all(r.startswith("[") for r in resolved):
        return "ipv6:" + ",".join(resolved)
    raise ValueError(f"address list {address!r} mixes IPv4 and IPv6 replicas")


def open_channel(address: str, credentials: Credentials | None = None) -> grpc.Channel:
    """A channel to one service: `address` may list replicas (see channel_target); calls
    are spread over them with round_robin."""
    creds = credentials or Credentials()
    address = channel_target(address)
    options = [*CHANNEL_OPTIONS, ("grpc.service_config", ROUND_ROBIN_CONFIG)]
    if creds.server_name:
        options.append(("grpc.ssl_target_name_override", creds.server_name))
    if creds.root_certificates is not None:
        tls = grpc.ssl_channel_credentials(
            creds.root_certificates, creds.private_key, creds.certificate_chain
        )
        channel = grpc.secure_channel(address, tls, options=options)
    else:
        channel = grpc.insecure_channel(address, options=options)
    if creds.service_token:
        channel = grpc.intercept_channel(channel, _TokenInterceptor(creds.service_token))
    return channel


class _CallDetails(
    namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready")),
    grpc.ClientCallDetails,
):
    pass


class _TokenInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the service token to every call's metadata."""

    def __init__(self, token: str) -> None:
        self._token = token

    def _with_token(self, details: grpc.ClientCallDetails) -> _CallDetails:
        metadata = [*(details.metadata or ()), (TOKEN_METADATA_KEY, self._token)]
        return _CallDetails(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
        )

    def intercept_unary_unary(self, continuation, details, request):  # type: ignore[no-untyped-def]
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(self, continuation, details, request):  # type: ignore[no-untyped-def]
        return continuation(self._with_token(details), request)

    def intercept_stream_unary(self, continuation, details, requests):  # type: ignore[no-untyped-def]
        return continuation(self._with_token(details), requests)

    def intercept_stream_stream(self, continuation, details, requests):  # type: ignore[no-untyped-def]
        return continuation(self._with_token(details), requests)


@dataclass
class Caller:
    """Runs calls against one service with a default deadline and a retry policy."""

    service: str
    timeout_s: float
    retry: RetryPolicy

    def call(
        self,
        method: str,
        attempt: Callable[[float], T],
        *,
        idempotent: bool,
        timeout_s: float | None = None,
    ) -> T:
        """Run attempt(deadline_s); retry UNAVAILABLE when idempotent; raise typed errors."""
        deadline_s = timeout_s if timeout_s is not None else self.timeout_s
        tries = self.retry.attempts if idempotent else 1
        for number in range(1, tries + 1):
            try:
                return attempt(deadline_s)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or number == tries:
                    raise error_from_rpc(exc, method, self.service) from exc
            time.sleep(self.retry.backoff_s(number))
        raise AssertionError("unreachable")  # pragma: no cover
