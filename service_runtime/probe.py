"""`python -m service_runtime.probe HOST:PORT`: exit 0 only if the gRPC health check is SERVING.

Used by docker-compose healthchecks, so they speak the gRPC health protocol rather than
merely testing that a port is open.
"""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def is_serving(address: str, timeout_s: float = 3.0) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout_s
            )
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m service_runtime.probe HOST:PORT", file=sys.stderr)
        return 2
    return 0 if is_serving(argv[0]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
