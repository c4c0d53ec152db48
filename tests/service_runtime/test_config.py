"""Configuration comes from the environment once, with defaults for local use."""

from __future__ import annotations

from pathlib import Path

from gateway.config import GatewayConfig
from search_service.config import SearchConfig
from storage_service.config import StorageConfig
from vision_service.config import VisionConfig


def test_defaults_listen_on_loopback_ports():
    assert StorageConfig.from_env({}).port == 50051
    assert VisionConfig.from_env({}).port == 50052
    assert SearchConfig.from_env({}).port == 50053
    assert (GatewayConfig.from_env({}).host, GatewayConfig.from_env({}).port) == ("127.0.0.1", 8080)


def test_environment_overrides_defaults():
    config = StorageConfig.from_env({"STORAGE_PORT": "6000", "STORAGE_DATA_DIR": "/tmp/x"})

    assert config.port == 6000
    assert config.data_dir == Path("/tmp/x")


def test_api_keys_are_split_and_trimmed():
    config = GatewayConfig.from_env({"IMAGEREPO_API_KEYS": " a1 , b2,, "})

    assert config.api_keys == frozenset({"a1", "b2"})
