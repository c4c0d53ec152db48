"""The whole stack in-process: real storage, vision (real models), search following
storage's change feed, an analysis worker, and the gateway.

Every gRPC server binds port 0; the gateway is served over real HTTP by werkzeug in a thread.
The vision models load once per session; a `Stack` can stop and restart one service (or the
analysis worker) on its port to show what the others do while it is away.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from analysis_service.clients import StorageClient as AnalysisStorage
from analysis_service.clients import VisionClient as AnalysisVision
from analysis_service.config import AnalysisConfig
from analysis_service.worker import Worker
from gateway.app import create_app, stop_app
from gateway.config import GatewayConfig
from imagerepo.search.v1 import search_service_pb2_grpc as search_grpc
from imagerepo.storage.v1 import storage_service_pb2_grpc as storage_grpc
from search_service.config import SearchConfig
from search_service.durable_index import DurableIndex
from search_service.feed_consumer import FeedConsumer
from search_service.label_embeddings import CACHE_NAME
from search_service.semantic_link import connect_semantic
from search_service.server import build_server as build_search
from search_service.storage_feed import StorageFeed
from search_service.vision_client import VisionClient
from service_runtime.channels import open_channel
from service_runtime.grpc_server import channel_options
from tests.conftest import REPO_ROOT
from vision_service.config import VisionConfig
from vision_service.engine import VisionEngine
from vision_service.server import build_server as build_vision
from vision_service.servicer import EngineSlot

from .browser_support import browser, own_stack, page, url  # noqa: F401  (the browser fixtures)
from .storage_factory import open_storage


def fresh_jpeg(data: bytes) -> bytes:
    """The same picture as new bytes (a unique JPEG comment): stored, never an exact duplicate
    of what another test uploaded to the shared stack."""
    import io
    import uuid

    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        out = io.BytesIO()
        im.convert("RGB").save(out, "JPEG", quality=92, comment=uuid.uuid4().hex.encode())
    return out.getvalue()


@pytest.fixture(scope="session")
def vision_engine() -> Iterator[VisionEngine]:
    """Every real vision model, loaded once for the integration tests."""
    engine = VisionEngine.load(VisionConfig(models_dir=REPO_ROOT / "models"))
    yield engine
    engine.close()


_LABEL_CACHE: list[Path] = []


class GatewayServer:
    """A gateway app served over HTTP on a free port, in a thread."""

    def __init__(self, config: GatewayConfig) -> None:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.app: Flask = create_app(config)
        self._server: BaseWSGIServer = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(10)
        stop_app(self.app)


@dataclass
class Stack:
    data_dir: Path
    engine: VisionEngine
    ports: dict[str, int] = field(default_factory=dict)
    servers: dict[str, grpc.Server] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    gateway: GatewayServer | None = None
    channels: list[grpc.Channel] = field(default_factory=list)

    # --- services ---------------------------------------------------------------------------

    def start_storage(self) -> None:
        server, port, health, closer = open_storage(
            f"127.0.0.1:{self.ports.get('storage', 0)}", self.data_dir / "storage"
        )
        self._started("storage", server, port, health)
        self.extras["storage_close"] = closer

    def start_vision(self) -> None:
        server, port, health = build_vision(
            f"127.0.0.1:{self.ports.get('vision', 0)}", VisionConfig(), EngineSlot(self.engine)
        )
        self._started("vision", server, port, health)

    def start_search(self) -> None:
        index = self.extras.get("index")
        if index is None:
            data = self.data_dir / "search"
            data.mkdir(parents=True, exist_ok=True)
            index = DurableIndex.open(data, SearchConfig().engine_params())
            self.extras["index"] = index
        # Search follows storage's change feed: nothing else ever writes to its index.
        feed = FeedConsumer(index, StorageFeed(f"127.0.0.1:{self.ports['storage']}"), 0.1, 1.0)
        self.extras["feed"] = feed
        server, port, health = build_search(
            f"127.0.0.1:{self.ports.get('search', 0)}", 8, index, feed
        )
        self._started("search", server, port, health)
        feed.start()
        if "vision_client" not in self.extras:
            client = VisionClient(f"127.0.0.1:{self.ports['vision']}", 30.0)
            self.extras["vision_client"] = client
            search_dir = self.data_dir / "search"
            # Label embeddings are the same for every stack: embed them once per session.
            if _LABEL_CACHE and not (search_dir / CACHE_NAME).exists():
                shutil.copy(_LABEL_CACHE[0], search_dir / CACHE_NAME)
            assert connect_semantic(index, client, search_dir)
            _LABEL_CACHE[:] = [search_dir / CACHE_NAME]
            index.warm()

    def start_analysis(self, **overrides: Any) -> None:
        """An analysis worker (in this process) taking pending images from storage's queue."""
        settings: dict[str, Any] = {
            "storage_address": f"127.0.0.1:{self.ports['storage']}",
            "vision_address": f"127.0.0.1:{self.ports['vision']}",
            "poll_interval_s": 0.5,
            "stats_interval_s": 1.0,
            "grace_s": 2.0,
        }
        settings.update(overrides)
        config = AnalysisConfig(**settings)
        storage = open_channel(config.storage_address, channel_options())
        vision = open_channel(config.vision_address, channel_options())
        worker = Worker(
            config,
            AnalysisStorage(storage, config.rpc_timeout_s),
            AnalysisVision(vision, config.call_timeout_s, config.top_k),
        )
        worker.start()
        self.extras["analysis"] = (worker, storage, vision)

    def stop_analysis(self) -> None:
        worker, storage, vision = self.extras.pop("analysis")
        worker.stop()
        storage.close()
        vision.close()

    def lose_search_index(self) -> None:
        """Restart search with its index files gone (a wiped volume), label cache kept."""
        self.stop("search")
        self.extras.pop("index").close()
        self.extras.pop("vision_client").close()
        for name in ("index.snap", "journal.log"):
            (self.data_dir / "search" / name).unlink(missing_ok=True)
        self.start_search()

    def _started(self, name: str, server: grpc.Server, port: int, health: Any) -> None:
        assert port, f"{name} could not bind its port"
        server.start()
        health.set_serving(True)
        self.ports[name] = port
        self.servers[name] = server

    def stop(self, name: str) -> None:
        if name == "analysis":
            self.stop_analysis()
            return
        if name == "search" and "feed" in self.extras:
            self.extras.pop("feed").stop()
        self.servers.pop(name).stop(grace=None).wait()

    def start(self, name: str) -> None:
        {
            "storage": self.start_storage,
            "vision": self.start_vision,
            "search": self.start_search,
            "analysis": self.start_analysis,
        }[name]()

    def start_gateway(self, **overrides: Any) -> GatewayServer:
        settings: dict[str, Any] = {
            "storage_address": f"127.0.0.1:{self.ports['storage']}",
            "vision_address": f"127.0.0.1:{self.ports['vision']}",
            "search_address": f"127.0.0.1:{self.ports['search']}",
            "secret_key": "integration-secret",
            # Uploads answer with the analysis done (tests read labels from the answer): the
            # wait ends as soon as the worker is done, so only a stuck analysis costs this.
            "analysis_wait_s": 30.0,
            "rpc_timeout_s": 10.0,
        }
        settings.update(overrides)
        return GatewayServer(GatewayConfig(**settings))

    # --- direct stubs, to check what each service holds --------------------------------------

    def storage_stub(self) -> storage_grpc.StorageServiceStub:
        channel = grpc.insecure_channel(
            f"127.0.0.1:{self.ports['storage']}", options=channel_options()
        )
        self.channels.append(channel)
        return storage_grpc.StorageServiceStub(channel)

    def search_stub(self) -> search_grpc.SearchServiceStub:
        channel = grpc.insecure_channel(
            f"127.0.0.1:{self.ports['search']}", options=channel_options()
        )
        self.channels.append(channel)
        return search_grpc.SearchServiceStub(channel)

    def close(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()
        for channel in self.channels:
            channel.close()
        if "analysis" in self.extras:
            self.stop_analysis()
        for name in ("search", *self.servers):
            if name in self.servers:
                self.stop(name)
        if "vision_client" in self.extras:
            self.extras["vision_client"].close()
        if "index" in self.extras:
            self.extras["index"].close()
        if "storage_close" in self.extras:
            self.extras["storage_close"]()


def build_stack(data_dir: Path, engine: VisionEngine, **gateway: Any) -> Stack:
    stack = Stack(data_dir=data_dir, engine=engine)
    stack.start_storage()
    stack.start_vision()
    stack.start_search()
    stack.start_analysis()
    stack.gateway = stack.start_gateway(**gateway)
    return stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory, vision_engine) -> Iterator[Stack]:
    """One whole stack shared by the end-to-end tests (images accumulate across tests)."""
    built = build_stack(tmp_path_factory.mktemp("stack"), vision_engine)
    yield built
    built.close()


@pytest.fixture(scope="session")
def gateway_url(stack: Stack) -> str:
    assert stack.gateway is not None
    return stack.gateway.url


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session
