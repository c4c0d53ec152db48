"""Server factory: the search servicer, health and reflection on one gRPC server."""

from __future__ import annotations

import grpc

from imagerepo.search.v1 import search_service_pb2_grpc as pb_grpc
from search_service import SERVICE_NAME
from search_service.durable_index import DurableIndex
from search_service.feed_consumer import FeedConsumer
from search_service.servicer import SearchServicer
from service_runtime.grpc_server import new_server
from service_runtime.health import ServiceHealth, enable_reflection


def build_server(
    address: str,
    max_workers: int = 16,
    index: DurableIndex | None = None,
    feed: FeedConsumer | None = None,
) -> tuple[grpc.Server, int, ServiceHealth]:
    """A search server bound to `address` (port 0 picks a free one), health NOT_SERVING.

    With no `index` it serves an empty in-memory index (keyword search only), which is what the
    contract test needs; `__main__` passes the index loaded from SEARCH_DATA_DIR and the
    consumer of storage's feed that fills it (then the write RPCs are refused). The caller
    starts and stops `feed`.
    """
    if index is None:
        index = DurableIndex.open(None)
    server = new_server(max_workers)
    pb_grpc.add_SearchServiceServicer_to_server(SearchServicer(index, feed), server)
    health = ServiceHealth(server, SERVICE_NAME)
    enable_reflection(server, [SERVICE_NAME])
    return server, server.add_insecure_port(address), health
