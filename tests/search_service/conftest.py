"""Fixtures for the search tests: search servers on free ports, and the real vision service
analysing real photos (loaded once per session)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from gateway.ingest import ANALYSIS_TOP_K
from imagerepo.search.v1 import search_service_pb2_grpc as search_grpc
from imagerepo.vision.v1 import vision_service_pb2 as vision_pb
from imagerepo.vision.v1 import vision_service_pb2_grpc as vision_grpc
from search_service.durable_index import DurableIndex
from search_service.engine import EngineParams
from search_service.label_embeddings import CACHE_NAME
from search_service.semantic_link import connect_semantic
from search_service.server import build_server
from search_service.vision_client import VisionClient
from service_runtime.grpc_server import channel_options
from tests.conftest import REPO_ROOT

# The photos the quality tests search among (see tests/conftest.py photo_paths).
QUALITY_PHOTOS = (
    "chelsea",
    "coffee",
    "rocket",
    "motorcycle",
    "astronaut",
    "china",
    "flower",
    "camera",
)


@pytest.fixture(scope="session")
def vision_address() -> Iterator[str]:
    """The real vision service (every model loaded and verified) on a free port."""
    from vision_service.config import VisionConfig
    from vision_service.server import build_server as build_vision_server

    server, port, health = build_vision_server(
        "127.0.0.1:0", VisionConfig(models_dir=REPO_ROOT / "models")
    )
    server.start()
    health.set_serving(True)
    yield f"127.0.0.1:{port}"
    server.stop(grace=None)


@pytest.fixture(scope="session")
def vision_stub(vision_address: str) -> Iterator[vision_grpc.VisionServiceStub]:
    with grpc.insecure_channel(vision_address, options=channel_options()) as channel:
        yield vision_grpc.VisionServiceStub(channel)


@pytest.fixture(scope="session")
def analysed_photos(
    vision_stub: vision_grpc.VisionServiceStub, photo_jpegs: dict[str, bytes]
) -> dict[str, vision_pb.AnalyzeResponse]:
    """Each quality photo analysed once by the real vision service, with as many labels as
    the gateway asks for."""
    return {
        name: vision_stub.Analyze(
            vision_pb.AnalyzeRequest(image_data=photo_jpegs[name], top_k=ANALYSIS_TOP_K),
            timeout=120,
        )
        for name in QUALITY_PHOTOS
    }


@pytest.fixture(scope="session")
def label_cache(tmp_path_factory: pytest.TempPathFactory, vision_address: str) -> Path:
    """The 1000 label embeddings, computed once through the real vision service."""
    directory = tmp_path_factory.mktemp("label-cache")
    client = VisionClient(vision_address)
    assert connect_semantic(DurableIndex.open(None), client, directory)
    client.close()
    return directory / CACHE_NAME


@pytest.fixture
def linked_index(tmp_path: Path, vision_address: str, label_cache: Path) -> Iterator[DurableIndex]:
    """An index persisted under tmp_path with semantic expansion through the real vision."""
    shutil.copy(label_cache, tmp_path / CACHE_NAME)
    index = DurableIndex.open(tmp_path, EngineParams())
    client = VisionClient(vision_address)
    assert connect_semantic(index, client, tmp_path)
    yield index
    index.close()
    client.close()


def serve(index: DurableIndex) -> tuple[grpc.Server, search_grpc.SearchServiceStub, grpc.Channel]:
    server, port, health = build_server("127.0.0.1:0", 4, index)
    server.start()
    health.set_serving(True)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=channel_options())
    return server, search_grpc.SearchServiceStub(channel), channel


@pytest.fixture
def search(linked_index: DurableIndex) -> Iterator[search_grpc.SearchServiceStub]:
    """A real search gRPC server on a free port over `linked_index`."""
    server, stub, channel = serve(linked_index)
    yield stub
    channel.close()
    server.stop(grace=None)


@pytest.fixture
def bare_search() -> Iterator[search_grpc.SearchServiceStub]:
    """A search server over an in-memory index without semantic expansion."""
    server, stub, channel = serve(DurableIndex.open(None, EngineParams()))
    yield stub
    channel.close()
    server.stop(grace=None)
