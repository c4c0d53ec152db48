"""Fixtures for the vision tests: the real models, loaded once, a real gRPC server, and
open_nsfw's inputs and float scores on the cascade sets (per test module)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from imagerepo.vision.v1 import vision_service_pb2_grpc as pb_grpc
from service_runtime.grpc_server import channel_options
from tests.conftest import REPO_ROOT
from tests.vision_service.cascade_support import MODERATION_INPUT, THREADS, cascade_inputs
from vision_service.agreement import nsfw_scores
from vision_service.config import VisionConfig
from vision_service.engine import MODERATION, VisionEngine
from vision_service.registry import ModelEntry, load_registry
from vision_service.server import build_server
from vision_service.servicer import EngineSlot
from vision_service.sessions import open_session

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


@pytest.fixture(scope="module")
def moderation_entry(models_dir: Path) -> ModelEntry:
    """open_nsfw's entry in the manifest."""
    return load_registry(models_dir)[MODERATION]


@pytest.fixture(scope="module")
def moderation_sets() -> dict[str, np.ndarray]:
    """Moderation inputs of the tuning, held-out and unseen sets."""
    return cascade_inputs(MODERATION_INPUT)


@pytest.fixture(scope="module")
def float_nsfw_scores(
    moderation_entry: ModelEntry, moderation_sets: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The float open_nsfw's scores (onnxruntime, one thread) of each of those sets."""
    session = open_session(moderation_entry.path(moderation_entry.model_role(False)), THREADS)
    return {what: nsfw_scores(session, x) for what, x in moderation_sets.items()}
