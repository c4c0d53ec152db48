"""Every gRPC service, started in-process on port 0: health, reflection, argument checks."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from imagerepo.search.v1 import search_service_pb2 as search_pb
from imagerepo.search.v1 import search_service_pb2_grpc as search_grpc
from imagerepo.storage.v1 import storage_service_pb2 as storage_pb
from imagerepo.storage.v1 import storage_service_pb2_grpc as storage_grpc
from imagerepo.vision.v1 import vision_service_pb2 as vision_pb
from imagerepo.vision.v1 import vision_service_pb2_grpc as vision_grpc
from service_runtime.grpc_server import new_server
from service_runtime.health import ServiceHealth, enable_reflection


@pytest.fixture
def bare_server() -> Iterator[tuple[grpc.Channel, ServiceHealth]]:
    """A server with only health and reflection, not yet marked SERVING."""
    server = new_server(2)
    health = ServiceHealth(server, "example.v1.Example")
    enable_reflection(server, ["example.v1.Example"])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel, health
    server.stop(grace=None)


def _status(channel: grpc.Channel, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def test_health_is_not_serving_until_marked_ready(bare_server):
    channel, health = bare_server

    before = _status(channel)
    health.set_serving(True)
    after = _status(channel, "example.v1.Example")

    assert before == health_pb2.HealthCheckResponse.NOT_SERVING
    assert after == health_pb2.HealthCheckResponse.SERVING


def test_health_goes_not_serving_on_shutdown(bare_server):
    channel, health = bare_server
    health.set_serving(True)

    health.shutdown()

    assert _status(channel) == health_pb2.HealthCheckResponse.NOT_SERVING


def _reflected_services(channel: grpc.Channel) -> set[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    (reply,) = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
    return {s.name for s in reply.list_services_response.service}


def _build(name: str):
    if name == "storage":
        from storage_service.server import build_server
    elif name == "vision":
        from vision_service.server import build_server
    else:
        from search_service.server import build_server
    return build_server


@pytest.fixture(params=["storage", "vision", "search"])
def contract_server(request, tmp_path) -> Iterator[tuple[str, grpc.Channel]]:
    """Each real service's server factory, bound to port 0 (fixtures in each package's tests
    give the fully wired servers; this one checks the contract every service keeps)."""
    name = request.param
    store = None
    if name == "storage":
        from storage_service.columnstore.store import ColumnStore

        store = ColumnStore.open(tmp_path / "storage")
        server, port, health = _build(name)(store, "127.0.0.1:0")
    else:
        server, port, health = _build(name)("127.0.0.1:0")
    server.start()
    health.set_serving(True)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield name, channel
    server.stop(grace=None)
    if store is not None:
        store.close()


def test_each_service_reflects_its_contract_and_health(contract_server):
    name, channel = contract_server

    services = _reflected_services(channel)

    assert f"imagerepo.{name}.v1.{name.capitalize()}Service" in services
    assert "grpc.health.v1.Health" in services


def _invalid_calls(name: str, channel: grpc.Channel):
    if name == "storage":
        stub = storage_grpc.StorageServiceStub(channel)
        return [
            lambda: stub.GetImage(storage_pb.GetImageRequest(), timeout=5),
            lambda: stub.DeleteImage(storage_pb.DeleteImageRequest(), timeout=5),
            lambda: stub.FindByFilename(storage_pb.FindByFilenameRequest(), timeout=5),
        ]
    if name == "vision":
        stub = vision_grpc.VisionServiceStub(channel)
        return [
            lambda: stub.Analyze(vision_pb.AnalyzeRequest(), timeout=5),
            lambda: stub.EmbedText(vision_pb.EmbedTextRequest(), timeout=5),
        ]
    stub = search_grpc.SearchServiceStub(channel)
    return [
        lambda: stub.Search(search_pb.SearchRequest(query="  "), timeout=5),
        lambda: stub.RemoveImage(search_pb.RemoveImageRequest(), timeout=5),
    ]


def test_missing_required_fields_are_invalid_argument(contract_server):
    name, channel = contract_server

    for call in _invalid_calls(name, channel):
        with pytest.raises(grpc.RpcError) as info:
            call()

        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details()
