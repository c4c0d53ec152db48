"""A worker started before storage (as `make run` does) is quiet while storage comes up: one
INFO "waiting for storage at <addr>", no WARNING; it warns when storage stays away past
ANALYSIS_STORAGE_WAIT_S, and at once when storage is lost after it had answered.

Real parts: the worker's loop and clients, a storage server started on a port chosen before
the worker; vision is a port nothing listens on (no image is stored, so it is never called)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from analysis_service.clients import StorageClient, VisionClient
from analysis_service.config import AnalysisConfig
from analysis_service.worker import Worker
from service_runtime.channels import open_channel
from service_runtime.grpc_server import channel_options
from storage_service.columnstore.store import ColumnStore
from storage_service.server import build_server
from tests.support import free_ports

STORAGE_LATE_S = 1.0


class CountingStorageClient(StorageClient):
    """Counts the claims storage answered."""

    answered = 0

    def claim(self, *args):
        claims = super().claim(*args)
        self.answered += 1
        return claims


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith("analysis_service")
    ]


def _wait_for(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def worker_before_storage(caplog: pytest.LogCaptureFixture) -> Iterator:
    """Start a worker at a storage address nothing listens on yet; (worker, its storage
    client, the address)."""
    caplog.set_level(logging.INFO, logger="analysis_service")
    storage_port, vision_port = free_ports(2)
    started: list[Worker] = []

    def start(wait_s: float) -> tuple[Worker, CountingStorageClient, str]:
        address = f"127.0.0.1:{storage_port}"
        config = AnalysisConfig(
            storage_address=address,
            vision_address=f"127.0.0.1:{vision_port}",
            worker_id="w",
            poll_interval_s=0.2,
            stats_interval_s=0.5,
            storage_wait_s=wait_s,
        )
        storage = CountingStorageClient(open_channel(address, channel_options()), 2.0)
        worker = Worker(
            config,
            storage,
            VisionClient(open_channel(config.vision_address, channel_options()), 2.0, config.top_k),
        )
        worker.start()
        started.append(worker)
        return worker, storage, address

    yield start
    for worker in started:
        worker.stop(0)


def test_storage_coming_up_a_second_later_gives_one_info_and_no_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, worker_before_storage
) -> None:
    _worker, client, address = worker_before_storage(wait_s=8.0)
    time.sleep(STORAGE_LATE_S)
    store = ColumnStore.open(tmp_path / "storage")
    server, _port, health = build_server(store, address)
    server.start()
    health.set_serving(True)
    try:
        reached = _wait_for(lambda: client.answered > 0, 7.0)
        before_loss = _warnings(caplog)
        waiting = [r for r in caplog.records if r.getMessage().startswith("waiting for storage")]
    finally:
        server.stop(None).wait()
        store.close()
    lost_warned = _wait_for(lambda: bool(_warnings(caplog)), 10.0)

    assert reached, "the worker never reached storage"
    assert before_loss == []
    assert [(r.levelname, r.getMessage()) for r in waiting] == [
        ("INFO", f"waiting for storage at {address}")
    ]
    assert lost_warned, "storage lost after it had answered: no warning"


def test_storage_away_past_the_wait_is_warned_about(
    caplog: pytest.LogCaptureFixture, worker_before_storage
) -> None:
    _worker, _client, address = worker_before_storage(wait_s=1.0)
    time.sleep(0.8)
    early = _warnings(caplog)
    warned = _wait_for(lambda: bool(_warnings(caplog)), 10.0)

    assert early == []
    assert warned
    assert _warnings(caplog)[0].startswith(f"storage at {address} still unreachable after")
