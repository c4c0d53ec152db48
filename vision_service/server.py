"""Server factory: the vision servicer, health and reflection on one gRPC server."""

from __future__ import annotations

import grpc

from imagerepo.vision.v1 import vision_service_pb2_grpc as pb_grpc
from imagerepo.vision.v2 import vision_service_pb2 as pb_v2
from imagerepo.vision.v2 import vision_service_pb2_grpc as pb_grpc_v2
from service_runtime.grpc_server import new_server
from service_runtime.health import ServiceHealth, enable_reflection
from vision_service import SERVICE_NAME
from vision_service.config import VisionConfig
from vision_service.engine import VisionEngine
from vision_service.servicer import EngineSlot, VisionServicer
from vision_service.servicer_v2 import VisionServicerV2

# v2 of the contract, served beside v1 over the same engine until v1's clients move.
SERVICE_NAME_V2 = pb_v2.DESCRIPTOR.services_by_name["VisionService"].full_name


def build_server(
    address: str,
    config: VisionConfig | None = None,
    slot: EngineSlot | None = None,
) -> tuple[grpc.Server, int, ServiceHealth]:
    """A vision server bound to `address` (port 0 picks a free one), health NOT_SERVING.

    With no `slot`, the models are loaded (and verified) here, so the server answers as soon as
    it starts; `__main__` passes an empty slot instead, starts the server, then loads, so
    health probes see NOT_SERVING while the models load.
    """
    config = config or VisionConfig()
    if slot is None:
        slot = EngineSlot(VisionEngine.load(config))
    server = new_server(config.max_workers)
    pb_grpc.add_VisionServiceServicer_to_server(VisionServicer(slot), server)
    pb_grpc_v2.add_VisionServiceServicer_to_server(VisionServicerV2(slot), server)
    health = ServiceHealth(server, SERVICE_NAME, SERVICE_NAME_V2)
    enable_reflection(server, [SERVICE_NAME, SERVICE_NAME_V2])
    return server, server.add_insecure_port(address), health
