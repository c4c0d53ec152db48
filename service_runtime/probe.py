"""`python -m service_runtime.probe [HOST:PORT | --http URL]`: exit 0 only if the service is up.

A gRPC address is checked with the gRPC health protocol (SERVING, not merely an open port),
over TLS and with the service token when those are configured (IMAGEREPO_TLS_*,
IMAGEREPO_SERVICE_TOKEN_FILE). With no argument it probes IMAGEREPO_PROBE_ADDR, which the
container images set per service. `--http URL` expects a 200 from the gateway's health page.
Used by the Dockerfile and docker-compose healthchecks and by `python -m stack`.
"""

from __future__ import annotations

import os
import sys
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service_runtime.channels import open_channel
from service_runtime.security import TransportSecurity

DEFAULT_ADDRESS = "127.0.0.1:50051"


def is_serving(
    address: str, timeout_s: float = 3.0, security: TransportSecurity | None = None
) -> bool:
    with open_channel(address, security=security) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout_s
            )
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def http_ok(url: str, timeout_s: float = 3.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as reply:
            return 200 <= int(reply.status) < 300
    except OSError:
        return False


def main(argv: list[str]) -> int:
    if argv[:1] == ["--http"] and len(argv) == 2:
        return 0 if http_ok(argv[1]) else 1
    if len(argv) > 1 or argv[:1] == ["--http"]:
        print("usage: python -m service_runtime.probe [HOST:PORT | --http URL]", file=sys.stderr)
        return 2
    address = argv[0] if argv else os.environ.get("IMAGEREPO_PROBE_ADDR", DEFAULT_ADDRESS)
    return 0 if is_serving(address, security=TransportSecurity.from_env()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
