"""Fixtures for gateway tests that need no running service."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask

from gateway.app import create_app, stop_app
from gateway.config import GatewayConfig
from tests.support import free_port


def closed_address() -> str:
    """A loopback address nothing listens on (bound once, then released)."""
    return f"127.0.0.1:{free_port()}"


def offline_config(**overrides: object) -> GatewayConfig:
    settings: dict[str, object] = {
        "storage_address": closed_address(),
        "vision_address": closed_address(),
        "search_address": closed_address(),
        "rpc_timeout_s": 2.0,
        "secret_key": "test-secret",
    }
    settings.update(overrides)
    return GatewayConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture
def offline_app() -> Iterator[Flask]:
    """The real gateway app whose services are all down (nothing listens on their ports)."""
    app = create_app(offline_config())
    yield app
    stop_app(app)


@pytest.fixture
def keyed_app() -> Iterator[Flask]:
    """An offline gateway that requires API keys for writes."""
    app = create_app(offline_config(api_keys=frozenset({"alice:s3cret", "plainkey"})))
    yield app
    stop_app(app)
