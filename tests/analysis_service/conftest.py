"""Fixtures for the worker's tests against a real storage server: storage backing a failed
image off for 50-100 ms instead of seconds (so the claims come quickly), the worker's real loop
and clients started with a test's settings, and the storage calls those tests make."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from analysis_service.clients import StorageClient, VisionClient
from analysis_service.config import AnalysisConfig
from analysis_service.worker import Worker
from imagerepo.storage.v1 import storage_service_pb2 as pb
from imagerepo.storage.v1 import storage_service_pb2_grpc as pbg
from service_runtime.channels import open_channel
from service_runtime.grpc_server import channel_options
from storage_service.columnstore.store import ColumnStore, StoreOptions
from storage_service.server import build_server


@dataclass(frozen=True)
class RunningStorage:
    """A storage server on a free port: its address, and a stub on a channel to it."""

    address: str
    stub: pbg.StorageServiceStub


@pytest.fixture
def start_storage(tmp_path: Path) -> Iterator[Callable[[int], RunningStorage]]:
    """`start_storage(max_claims)`: a real storage server over tmp_path/storage (once a test),
    `max_claims` its own cap on counted attempts (0: none). Stopped after the test."""
    stops: list[Callable[[], None]] = []

    def start(max_claims: int) -> RunningStorage:
        store = ColumnStore.open(
            tmp_path / "storage",
            StoreOptions(
                analysis_backoff_initial_ms=50,
                analysis_backoff_max_ms=100,
                analysis_max_attempts=max_claims,
            ),
        )
        server, port, health = build_server(store, "127.0.0.1:0")
        server.start()
        health.set_serving(True)
        address = f"127.0.0.1:{port}"
        channel = open_channel(address, channel_options())

        def stop() -> None:
            channel.close()
            server.stop(None).wait()
            store.close()

        stops.append(stop)
        return RunningStorage(address, pbg.StorageServiceStub(channel))

    yield start
    for stop in reversed(stops):
        stop()


def worker_config(storage: str, vision: str, **settings: Any) -> AnalysisConfig:
    """One image per claim, a claim every 0.1 s when the feed is quiet, no stats to speak of;
    `settings` (lanes, lease, outage hold) as the test needs them."""
    return AnalysisConfig(
        storage_address=storage,
        vision_address=vision,
        worker_id="w",
        batch_size=1,
        poll_interval_s=0.1,
        stats_interval_s=60.0,
        **settings,
    )


@pytest.fixture
def start_worker(start_storage: Callable[[int], RunningStorage]) -> Iterator[Callable[..., Worker]]:
    """`start_worker(config, vision_options=())`: the worker's real loop and clients, started;
    the vision channel takes `vision_options` besides the usual ones. Stopped (no grace) after
    the test, before the storage it talks to."""
    workers: list[Worker] = []

    def start(config: AnalysisConfig, vision_options: Sequence[tuple[str, Any]] = ()) -> Worker:
        worker = Worker(
            config,
            StorageClient(
                open_channel(config.storage_address, channel_options()), config.rpc_timeout_s
            ),
            VisionClient(
                open_channel(config.vision_address, [*channel_options(), *vision_options]),
                config.call_timeout_s,
                5,
            ),
        )
        worker.start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop(0)


def put(stub: pbg.StorageServiceStub, data: bytes, filename: str) -> str:
    """Stores `data` (one chunk) for owner "a"; its image id."""
    reply = stub.PutImage(
        iter(
            [
                pb.PutImageRequest(header=pb.PutImageHeader(filename=filename, owner="a")),
                pb.PutImageRequest(chunk=data),
            ]
        ),
        timeout=30,
    )
    return str(reply.image.id)


def image(stub: pbg.StorageServiceStub, image_id: str) -> pb.ImageMetadata:
    return stub.GetImage(pb.GetImageRequest(image_id=image_id), timeout=30).image


def between_claims(
    stub: pbg.StorageServiceStub, image_id: str, deadline: float
) -> pb.ImageMetadata:
    """The image as storage has it once no claim holds it: the last claim's outcome written,
    the next not yet made."""
    while (meta := image(stub, image_id)).analysis.lease_owner:
        assert time.monotonic() < deadline, "never seen between two claims"
        time.sleep(0.005)
    return meta
