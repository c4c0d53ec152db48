"""The standard gRPC health service (grpc.health.v1) and server reflection.

A service registers as NOT_SERVING and flips to SERVING only once it is ready (models loaded,
log replayed, index loaded), so probes never route traffic to a half-started process.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection


class ServiceHealth:
    """Health status of one server: the overall status ("") and the named services (one
    service may be served in several contract versions, each a name of its own)."""

    def __init__(self, server: grpc.Server, service_name: str, *more_names: str) -> None:
        self._servicer = health.HealthServicer()
        self._names = ("", service_name, *more_names)
        health_pb2_grpc.add_HealthServicer_to_server(self._servicer, server)
        self.set_serving(False)

    def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in self._names:
            self._servicer.set(name, status)

    def shutdown(self) -> None:
        """Mark NOT_SERVING for good (watchers are told) before the server stops."""
        self._servicer.enter_graceful_shutdown()


def enable_reflection(server: grpc.Server, service_names: Iterable[str]) -> None:
    names = (*service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name)
    reflection.enable_server_reflection((*names, reflection.SERVICE_NAME), server)
