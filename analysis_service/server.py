"""The worker's own small gRPC server: health (SERVING while the worker runs) and reflection,
so probes (docker, `python -m stack`) treat it like every other service."""

from __future__ import annotations

import grpc

from analysis_service import SERVICE_NAME
from service_runtime.grpc_server import new_server
from service_runtime.health import ServiceHealth, enable_reflection


def build_server(
    address: str, metrics_address: tuple[str, int] | None = None
) -> tuple[grpc.Server, int, ServiceHealth]:
    """A server bound to `address` (port 0 picks one), not started, health NOT_SERVING."""
    server = new_server(4, metrics_address=metrics_address)
    health = ServiceHealth(server, SERVICE_NAME)
    enable_reflection(server, [SERVICE_NAME])
    return server, server.add_insecure_port(address), health
