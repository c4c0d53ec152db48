"""gRPC stubs of the three services, sharing one channel each; every call gets a deadline."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.config import GatewayConfig
from imagerepo.search.v1 import search_service_pb2_grpc as search_grpc
from imagerepo.storage.v1 import storage_service_pb2_grpc as storage_grpc
from imagerepo.vision.v1 import vision_service_pb2_grpc as vision_grpc
from service_runtime.grpc_server import channel_options


@dataclass
class ServiceClients:
    storage: storage_grpc.StorageServiceStub
    vision: vision_grpc.VisionServiceStub
    search: search_grpc.SearchServiceStub
    channels: dict[str, grpc.Channel]
    timeout_s: float

    @classmethod
    def connect(cls, config: GatewayConfig) -> ServiceClients:
        channels = {
            "storage": grpc.insecure_channel(config.storage_address, options=channel_options()),
            "vision": grpc.insecure_channel(config.vision_address, options=channel_options()),
            "search": grpc.insecure_channel(config.search_address, options=channel_options()),
        }
        return cls(
            storage=storage_grpc.StorageServiceStub(channels["storage"]),
            vision=vision_grpc.VisionServiceStub(channels["vision"]),
            search=search_grpc.SearchServiceStub(channels["search"]),
            channels=channels,
            timeout_s=config.rpc_timeout_s,
        )

    def health(self, timeout_s: float = 2.0) -> dict[str, str]:
        """Each service's health status name, or UNAVAILABLE when it does not answer."""
        statuses: dict[str, str] = {}
        for name, channel in self.channels.items():
            stub = health_pb2_grpc.HealthStub(channel)
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout_s)
                statuses[name] = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.RpcError as exc:
                statuses[name] = exc.code().name
        return statuses

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()
