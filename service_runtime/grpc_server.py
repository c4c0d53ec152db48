"""A gRPC server with what every imagerepo service shares: message limits, the interceptor
(service token, request id, per-RPC metrics), TLS when configured, and the metrics endpoint.

Services call `new_server(...)`, add their servicers and `add_insecure_port(address)`; the
runtime decides the transport: when TLS is configured (IMAGEREPO_TLS_CA, see
`service_runtime.security`), every port a service binds is a TLS port, so no service can
listen in plain text by mistake. Settings come from the environment once, when the server is
made, unless a test passes them.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import threading
from collections.abc import Mapping
from concurrent import futures
from typing import Any

import grpc

from service_runtime.metrics import MetricsServer, metrics_address_from_env, start_metrics_server
from service_runtime.security import TransportSecurity

log = logging.getLogger(__name__)

# Images travel in chunks of at most 1 MiB, but GetImage may carry a small image whole and
# annotation updates carry a 1280-d vector: leave headroom above the 4 MiB default.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class ListenError(RuntimeError):
    """An address a service cannot listen on; the message says which and why.

    grpc says only "Failed to bind to address ...; set GRPC_VERBOSITY=debug ..." and the
    metrics server raises a bare "[Errno 98] Address already in use": neither says whether
    the port is taken, the host is not this machine's, or which setting chose it."""

    def __init__(self, why: str, settings: str = "") -> None:
        super().__init__(why)
        self.settings = settings

    def naming(self, settings: str) -> str:
        """The message with the settings that chose the address: its own (the metrics
        endpoint's), else `settings` (the service's host and port variables)."""
        return f"{self} ({self.settings or settings} choose it)"


def why_not_listening(host: str, port: int) -> str:
    """Why binding (host, port) fails, found by trying it with a plain socket."""
    try:
        infos = socket.getaddrinfo(
            host.strip("[]") or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except (socket.gaierror, UnicodeError):
        return f"unknown host {host!r}"
    family, kind, proto, _, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        # As the servers do: a port held only by TIME_WAIT connections is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(sockaddr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return "the port is in use"
            if exc.errno == errno.EADDRNOTAVAIL:
                return f"{host} is not an address of this machine"
            if exc.errno == errno.EACCES:
                return "permission denied (ports below 1024 need privileges)"
            return exc.strerror or str(exc)
    return "it could not be bound"


class RuntimeServer(grpc.Server):
    """A grpc.Server that binds with the runtime's transport security and starts the metrics
    endpoint with the server."""

    def __init__(
        self,
        server: grpc.Server,
        security: TransportSecurity,
        metrics_address: tuple[str, int] | None,
    ) -> None:
        self._server = server
        self.security = security
        self._metrics_address = metrics_address
        self.metrics: MetricsServer | None = None

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Any) -> None:
        self._server.add_generic_rpc_handlers(generic_rpc_handlers)

    def add_registered_method_handlers(self, service_name: Any, method_handlers: Any) -> None:
        self._server.add_registered_method_handlers(service_name, method_handlers)

    def add_insecure_port(self, address: str) -> int:
        """Bind `address`: with TLS configured, as a TLS port (see the module docstring).
        ListenError when it cannot be bound."""
        try:
            if self.security.tls:
                return self._server.add_secure_port(address, self.security.server_credentials())
            return self._server.add_insecure_port(address)
        except RuntimeError:
            host, _, port = address.rpartition(":")
            why = why_not_listening(host, int(port)) if port.isdigit() else "not host:port"
            raise ListenError(f"cannot listen on {address}: {why}") from None

    def add_secure_port(self, address: str, server_credentials: grpc.ServerCredentials) -> int:
        return self._server.add_secure_port(address, server_credentials)

    def start(self) -> None:
        self._server.start()
        if self._metrics_address is not None and self.metrics is None:
            host, port = self._metrics_address
            try:
                self.metrics = start_metrics_server(port, host)
            except OSError:
                self._server.stop(None)
                raise ListenError(
                    f"cannot serve metrics on {host}:{port}: {why_not_listening(host, port)}",
                    "IMAGEREPO_METRICS_HOST, IMAGEREPO_METRICS_PORT",
                ) from None

    def stop(self, grace: float | None) -> threading.Event:
        if self.metrics is not None:
            self.metrics.stop()
            self.metrics = None
        return self._server.stop(grace)

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return self._server.wait_for_termination(timeout)


def new_server(
    max_workers: int,
    *,
    security: TransportSecurity | None = None,
    metrics_address: tuple[str, int] | None = None,
    env: Mapping[str, str] | None = None,
) -> RuntimeServer:
    """A server (not started). `security` and `metrics_address` default to the environment's
    settings (IMAGEREPO_TLS_*, IMAGEREPO_SERVICE_TOKEN_FILE, IMAGEREPO_METRICS_PORT)."""
    from service_runtime.interceptors import ServiceInterceptor

    environ = os.environ if env is None else env
    if security is None:
        security = TransportSecurity.from_env(environ)
    if metrics_address is None:
        metrics_address = metrics_address_from_env(environ)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers),
        interceptors=[ServiceInterceptor(security.token)],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    return RuntimeServer(server, security, metrics_address)


def channel_options() -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
