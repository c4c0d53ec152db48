"""Server factory: the search servicer, health and reflection on one gRPC server."""

from __future__ import annotations

import grpc

from imagerepo.search.v1 import search_service_pb2_grpc as pb_grpc
from search_service import SERVICE_NAME
from search_service.servicer import SearchServicer
from service_runtime.grpc_server import new_server
from service_runtime.health import ServiceHealth, enable_reflection


def build_server(address: str, max_workers: int = 16) -> tuple[grpc.Server, int, ServiceHealth]:
    server = new_server(max_workers)
    pb_grpc.add_SearchServiceServicer_to_server(SearchServicer(), server)
    health = ServiceHealth(server, SERVICE_NAME)
    enable_reflection(server, [SERVICE_NAME])
    return server, server.add_insecure_port(address), health
