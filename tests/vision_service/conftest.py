"""Fixtures for the vision tests: the real models, loaded once, and a real gRPC server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from imagerepo.vision.v1 import vision_service_pb2_grpc as pb_grpc
from service_runtime.grpc_server import channel_options
from tests.conftest import REPO_ROOT
from vision_service.config import VisionConfig
from vision_service.engine import VisionEngine
from vision_service.server import build_server
from vision_service.servicer import EngineSlot

MODELS_DIR = REPO_ROOT / "models"


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The repository's models directory with its manifest."""
    return MODELS_DIR


@pytest.fixture(scope="session")
def vision_config(models_dir: Path) -> VisionConfig:
    return VisionConfig(models_dir=models_dir, batch_max_size=8, batch_max_wait_ms=20.0)


@pytest.fixture(scope="session")
def engine(vision_config: VisionConfig) -> Iterator[VisionEngine]:
    """Every real model, verified against the manifest and loaded once for the session."""
    loaded = VisionEngine.load(vision_config)
    yield loaded
    loaded.close()


@pytest.fixture(scope="session")
def vision_server(vision_config: VisionConfig, engine: VisionEngine) -> Iterator[int]:
    """A real vision gRPC server on a free port, serving the session's engine; yields the port."""
    server, port, health = build_server("127.0.0.1:0", vision_config, EngineSlot(engine))
    server.start()
    health.set_serving(True)
    yield port
    server.stop(grace=None)


@pytest.fixture
def vision(vision_server: int) -> Iterator[pb_grpc.VisionServiceStub]:
    """A stub on the session's vision server."""
    with grpc.insecure_channel(f"127.0.0.1:{vision_server}", options=channel_options()) as ch:
        yield pb_grpc.VisionServiceStub(ch)
