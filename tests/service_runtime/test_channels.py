"""Client channels over several replicas: three real gRPC servers (the real health service),
one channel to all three through `open_channel`, calls spread by round_robin, and a replica
that goes away is routed around (its calls retried on the others)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service_runtime.channels import channel_target, open_channel
from service_runtime.health import ServiceHealth


class _Counter(grpc.ServerInterceptor):
    """Counts the calls one server receives."""

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def intercept_service(
        self, continuation: Callable[[Any], Any], handler_call_details: Any
    ) -> Any:
        with self._lock:
            self.calls += 1
        return continuation(handler_call_details)


def _replica() -> tuple[grpc.Server, _Counter, str]:
    counter = _Counter()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        interceptors=[counter],
    )
    ServiceHealth(server, "imagerepo.test.v1.Replica").set_serving(True)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, counter, f"127.0.0.1:{port}"


@pytest.fixture
def replicas() -> Iterator[list[tuple[grpc.Server, _Counter, str]]]:
    started = [_replica() for _ in range(3)]
    yield started
    for server, _, _ in started:
        server.stop(None)


def _check(channel: grpc.Channel) -> int:
    reply = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=""), timeout=5, wait_for_ready=True
    )
    return int(reply.status)


def test_a_list_of_addresses_becomes_one_target_of_every_replica() -> None:
    assert channel_target("127.0.0.1:1") == "127.0.0.1:1"
    assert channel_target("127.0.0.1:1, 127.0.0.1:2") == "ipv4:127.0.0.1:1,127.0.0.1:2"
    assert channel_target("localhost:7,127.0.0.2:8") == "ipv4:127.0.0.1:7,127.0.0.2:8"
    assert channel_target("dns:///vision:50052") == "dns:///vision:50052"
    assert channel_target("ipv4:127.0.0.1:1,127.0.0.1:2") == "ipv4:127.0.0.1:1,127.0.0.1:2"
    with pytest.raises(ValueError, match="host:port"):
        channel_target("127.0.0.1:1,nohost")


def test_calls_spread_over_every_replica_with_round_robin(replicas: list[Any]) -> None:
    addresses = ",".join(address for _, _, address in replicas)
    with open_channel(addresses) as channel:
        for _ in range(90):
            assert _check(channel) == health_pb2.HealthCheckResponse.SERVING
    shares = [counter.calls for _, counter, _ in replicas]
    assert sum(shares) == 90
    # round_robin takes the ready replicas in turn: each serves about a third (pick_first,
    # gRPC's default, would send all 90 to one).
    assert all(20 <= share <= 40 for share in shares), shares


def test_a_replica_that_goes_away_is_routed_around(replicas: list[Any]) -> None:
    addresses = ",".join(address for _, _, address in replicas)
    with open_channel(addresses) as channel:
        for _ in range(9):
            _check(channel)
        gone, gone_counter, _ = replicas[0]
        gone.stop(None).wait()
        before = gone_counter.calls
        for _ in range(30):
            assert _check(channel) == health_pb2.HealthCheckResponse.SERVING
        assert gone_counter.calls == before
        assert replicas[1][1].calls > 3 and replicas[2][1].calls > 3
