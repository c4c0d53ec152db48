"""Server factory: the storage servicer, health and reflection on one gRPC server."""

from __future__ import annotations

import grpc

from imagerepo.storage.v1 import storage_service_pb2_grpc as pb_grpc
from service_runtime.grpc_server import new_server
from service_runtime.health import ServiceHealth, enable_reflection
from storage_service import SERVICE_NAME
from storage_service.servicer import StorageServicer


def build_server(address: str, max_workers: int = 16) -> tuple[grpc.Server, int, ServiceHealth]:
    server = new_server(max_workers)
    pb_grpc.add_StorageServiceServicer_to_server(StorageServicer(), server)
    health = ServiceHealth(server, SERVICE_NAME)
    enable_reflection(server, [SERVICE_NAME])
    return server, server.add_insecure_port(address), health
