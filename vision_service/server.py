"""Server factory: the vision servicer, health and reflection on one gRPC server."""

from __future__ import annotations

import grpc

from imagerepo.vision.v1 import vision_service_pb2_grpc as pb_grpc
from service_runtime.grpc_server import new_server
from service_runtime.health import ServiceHealth, enable_reflection
from vision_service import SERVICE_NAME
from vision_service.servicer import VisionServicer


def build_server(address: str, max_workers: int = 16) -> tuple[grpc.Server, int, ServiceHealth]:
    server = new_server(max_workers)
    pb_grpc.add_VisionServiceServicer_to_server(VisionServicer(), server)
    health = ServiceHealth(server, SERVICE_NAME)
    enable_reflection(server, [SERVICE_NAME])
    return server, server.add_insecure_port(address), health
