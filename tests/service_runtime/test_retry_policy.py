"""The channels' retry policy: a read answered UNAVAILABLE once is retried (v1 and v2, through
a real channel built by `open_channel` against a real gRPC server), a write is not, and every
method of every imagerepo service in protos/ is classified either way."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from imagerepo.search.v1 import search_service_pb2 as search_v1
from imagerepo.search.v1 import search_service_pb2_grpc as search_v1_grpc
from imagerepo.search.v2 import search_service_pb2 as search_v2
from imagerepo.search.v2 import search_service_pb2_grpc as search_v2_grpc
from imagerepo.storage.v2 import storage_service_pb2 as storage_v2
from imagerepo.storage.v2 import storage_service_pb2_grpc as storage_v2_grpc
from service_runtime.channels import IDEMPOTENT_METHODS, NOT_RETRIED_METHODS, open_channel

PROTOS = Path(__file__).resolve().parents[2] / "protos"


class _FlakyOnce:
    """Answers UNAVAILABLE to the first call of each method, then `answer()`; counts calls."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(
        self, method: str, context: grpc.ServicerContext, answer: Callable[[], Any]
    ) -> Any:
        with self._lock:
            self.calls[method] = self.calls.get(method, 0) + 1
            first = self.calls[method] == 1
        if first:
            context.abort(grpc.StatusCode.UNAVAILABLE, "replica going away")
        return answer()


class _SearchV1(search_v1_grpc.SearchServiceServicer):
    def __init__(self, flaky: _FlakyOnce) -> None:
        self.flaky = flaky

    def GetStats(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.flaky("GetStats", context, lambda: search_v1.GetStatsResponse(document_count=7))


class _SearchV2(search_v2_grpc.SearchServiceServicer):
    def __init__(self, flaky: _FlakyOnce) -> None:
        self.flaky = flaky

    def GetStats(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.flaky("GetStats", context, lambda: search_v2.GetStatsResponse(document_count=7))


class _StorageV2(storage_v2_grpc.StorageServiceServicer):
    def __init__(self, flaky: _FlakyOnce) -> None:
        self.flaky = flaky

    def GetImage(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.flaky("GetImage", context, storage_v2.GetImageResponse)

    def DeleteImage(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.flaky("DeleteImage", context, storage_v2.DeleteImageResponse)


@pytest.fixture
def flaky_server() -> Iterator[tuple[_FlakyOnce, str]]:
    flaky = _FlakyOnce()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    search_v1_grpc.add_SearchServiceServicer_to_server(_SearchV1(flaky), server)
    search_v2_grpc.add_SearchServiceServicer_to_server(_SearchV2(flaky), server)
    storage_v2_grpc.add_StorageServiceServicer_to_server(_StorageV2(flaky), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield flaky, f"127.0.0.1:{port}"
    server.stop(None)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_a_read_answered_unavailable_once_is_retried(flaky_server, version):
    flaky, address = flaky_server
    with open_channel(address) as channel:
        if version == "v1":
            reply = search_v1_grpc.SearchServiceStub(channel).GetStats(
                search_v1.GetStatsRequest(), timeout=10, wait_for_ready=True
            )
        else:
            reply = search_v2_grpc.SearchServiceStub(channel).GetStats(
                search_v2.GetStatsRequest(), timeout=10, wait_for_ready=True
            )
    assert reply.document_count == 7
    assert flaky.calls == {"GetStats": 2}


def test_a_v2_storage_read_is_retried_and_a_v2_write_is_not(flaky_server):
    flaky, address = flaky_server
    with open_channel(address) as channel:
        stub = storage_v2_grpc.StorageServiceStub(channel)
        stub.GetImage(storage_v2.GetImageRequest(image_id="x"), timeout=10, wait_for_ready=True)
        with pytest.raises(grpc.RpcError) as refused:
            stub.DeleteImage(storage_v2.DeleteImageRequest(image_id="x"), timeout=10)
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    # The read reached the server twice; the delete once (it may have been applied).
    assert flaky.calls == {"GetImage": 2, "DeleteImage": 1}


def _services() -> dict[str, set[str]]:
    """Every service declared in protos/imagerepo, by full name, with its methods (read from
    the generated modules' descriptors)."""
    found: dict[str, set[str]] = {}
    for proto in sorted((PROTOS / "imagerepo").rglob("*.proto")):
        module_name = ".".join(proto.relative_to(PROTOS).with_suffix("").parts) + "_pb2"
        module = importlib.import_module(module_name)
        for service in module.DESCRIPTOR.services_by_name.values():
            found[service.full_name] = {method.name for method in service.methods}
    return found


def test_every_method_of_every_service_is_classified_retried_or_not():
    services = _services()
    assert {"imagerepo.storage.v2.StorageService", "imagerepo.search.v2.SearchService"} <= set(
        services
    )
    for name, methods in services.items():
        retried = set(IDEMPOTENT_METHODS.get(name, ()))
        not_retried = set(NOT_RETRIED_METHODS.get(name, ()))
        assert name in IDEMPOTENT_METHODS or name in NOT_RETRIED_METHODS, name
        assert not retried & not_retried, (name, retried & not_retried)
        assert retried | not_retried == methods, (
            name,
            "unclassified:",
            methods - retried - not_retried,
            "not in the proto:",
            (retried | not_retried) - methods,
        )
    # Nothing named that no proto declares (but the health service, which is gRPC's own).
    assert set(IDEMPOTENT_METHODS) - set(services) == {"grpc.health.v1.Health"}
    assert set(NOT_RETRIED_METHODS) <= set(services)


def test_the_v2_reads_the_gateway_calls_are_retried():
    storage = set(IDEMPOTENT_METHODS["imagerepo.storage.v2.StorageService"])
    assert {"GetImage", "BatchGetImages", "GetThumbnail", "ListImages", "ReadImageData"} <= storage
    assert "PutImage" not in storage and "ClaimAnalysis" not in storage
    assert set(IDEMPOTENT_METHODS["imagerepo.search.v2.SearchService"]) >= {"Search", "Suggest"}
    assert set(IDEMPOTENT_METHODS["imagerepo.vision.v2.VisionService"]) >= {"Analyze", "EmbedText"}
