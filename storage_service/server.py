"""Server factory: the storage servicer over an open store, health and reflection."""

from __future__ import annotations

import grpc

from imagerepo.storage.v1 import storage_service_pb2_grpc as pb_grpc
from imagerepo.storage.v2 import storage_service_pb2 as pb_v2
from imagerepo.storage.v2 import storage_service_pb2_grpc as pb_grpc_v2
from service_runtime.grpc_server import new_server
from service_runtime.health import ServiceHealth, enable_reflection
from storage_service import SERVICE_NAME
from storage_service.columnstore import policy
from storage_service.columnstore.store import ColumnStore
from storage_service.servicer import DECODE_WAIT_S, HEARTBEAT_S, StorageServicer
from storage_service.servicer_v2 import StorageServicerV2

# v2 of the contract, served beside v1 by the same servicer until v1's clients move.
SERVICE_NAME_V2 = pb_v2.DESCRIPTOR.services_by_name["StorageService"].full_name


class StorageHealth(ServiceHealth):
    """Health that, on shutdown, first ends the open WatchChanges streams (they follow the feed
    forever), so draining the server takes well under its grace period."""

    def __init__(self, server: grpc.Server, service_name: str, servicer: StorageServicer) -> None:
        super().__init__(server, service_name, SERVICE_NAME_V2)
        self._storage = servicer

    def shutdown(self) -> None:
        self._storage.stop()
        super().shutdown()


def build_server(
    store: ColumnStore,
    address: str,
    *,
    max_workers: int = 16,
    max_image_bytes: int = policy.DEFAULT_MAX_IMAGE_BYTES,
    max_image_pixels: int = policy.DEFAULT_MAX_PIXELS,
    decode_memory_bytes: int = policy.DEFAULT_DECODE_MEMORY_BYTES,
    decode_wait_s: float = DECODE_WAIT_S,
    heartbeat_s: float = HEARTBEAT_S,
) -> tuple[grpc.Server, int, ServiceHealth]:
    """A server (not started, health NOT_SERVING) and the port it bound; the caller owns
    `store` and closes it after the server stops."""
    server = new_server(max_workers)
    servicer = StorageServicer(
        store,
        max_image_bytes=max_image_bytes,
        max_image_pixels=max_image_pixels,
        decode_memory_bytes=decode_memory_bytes,
        decode_wait_s=decode_wait_s,
        heartbeat_s=heartbeat_s,
        # Half the threads at most for change-feed followers: the rest serve other calls.
        max_streams=max(1, max_workers // 2),
    )
    pb_grpc.add_StorageServiceServicer_to_server(servicer, server)
    pb_grpc_v2.add_StorageServiceServicer_to_server(StorageServicerV2(servicer), server)
    health = StorageHealth(server, SERVICE_NAME, servicer)
    enable_reflection(server, [SERVICE_NAME, SERVICE_NAME_V2])
    return server, server.add_insecure_port(address), health
