"""Server factory: the search servicer, health and reflection on one gRPC server."""

from __future__ import annotations

import grpc

from imagerepo.search.v1 import search_service_pb2_grpc as pb_grpc
from imagerepo.search.v2 import search_service_pb2 as pb_v2
from imagerepo.search.v2 import search_service_pb2_grpc as pb_grpc_v2
from search_service import SERVICE_NAME
from search_service.durable_index import DurableIndex
from search_service.feed_consumer import FeedConsumer
from search_service.servicer import SearchServicer
from search_service.servicer_v2 import SearchServicerV2
from service_runtime.grpc_server import new_server
from service_runtime.health import ServiceHealth, enable_reflection

# v2 of the contract, served beside v1 over the same index until v1's clients move.
SERVICE_NAME_V2 = pb_v2.DESCRIPTOR.services_by_name["SearchService"].full_name


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
    pb_grpc_v2.add_SearchServiceServicer_to_server(SearchServicerV2(index, feed), server)
    health = ServiceHealth(server, SERVICE_NAME, SERVICE_NAME_V2)
    enable_reflection(server, [SERVICE_NAME, SERVICE_NAME_V2])
    return server, server.add_insecure_port(address), health
