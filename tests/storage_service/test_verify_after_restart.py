"""The last verify survives a restart: storage keeps it in LAST_VERIFY, GetStats reports it (and
counts the images it found damaged as unreadable) until a later verify replaces it."""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator

import grpc
import pytest

from gateway.app import create_app, stop_app
from imagerepo.storage.v1 import storage_service_pb2 as pb
from storage_service.columnstore import verify_record
from storage_service.columnstore.fs import Fault, FaultInjectingFileSystem
from storage_service.columnstore.store import ColumnStore
from storage_service.server import build_server
from tests.gateway.conftest import offline_config
from tests.storage_service.conftest import SMALL_MEMTABLE
from tests.storage_service.test_verify_rpc import _damage_one_image, _stored, _verify


@pytest.fixture
def status_page() -> Iterator[Callable[[ColumnStore], str]]:
    """The gateway's status page for a store served on a second real server (port 0)."""
    servers: list[grpc.Server] = []

    def render(store: ColumnStore) -> str:
        server, port, _ = build_server(store, "127.0.0.1:0")
        server.start()
        servers.append(server)
        app = create_app(offline_config(storage_address=f"127.0.0.1:{port}"))
        try:
            return str(app.test_client().get("/status").get_data(as_text=True))
        finally:
            stop_app(app)

    yield render
    for server in servers:
        server.stop(grace=None)


def test_damage_found_by_verify_is_still_reported_after_a_restart(
    storage_runner, storage, photo_jpegs, status_page
):
    _stored(storage, photo_jpegs)
    victim, segment_name = _damage_one_image(storage_runner, storage)
    storage = storage_runner.start()
    _, report = _verify(storage.stub)
    before = storage.stub.GetStats(pb.GetStatsRequest())

    storage = storage_runner.restart()
    after = storage.stub.GetStats(pb.GetStatsRequest())
    page = status_page(storage.store)

    assert list(report.damaged_image_ids) == [victim]
    assert before.unreadable_count == 1
    assert after.HasField("last_verify")
    assert after.last_verify == report  # when it ran, what it read, what is damaged
    assert list(after.last_verify.damaged_image_ids) == [victim]
    assert any(segment_name in d.path for d in after.last_verify.damaged)
    assert after.unreadable_count == 1
    assert "not run since storage started" not in page
    assert "damage in 1 place" in page and f'href="/images/{victim}"' in page
    assert '<td id="unreadable-count" class="bad">1' in page


def test_a_clean_verify_after_the_damage_is_gone_replaces_the_record(
    storage_runner, storage, photo_jpegs
):
    _stored(storage, photo_jpegs)
    victim, _ = _damage_one_image(storage_runner, storage)
    storage = storage_runner.start()
    _, damaged = _verify(storage.stub)
    storage.stub.DeleteImage(pb.DeleteImageRequest(image_id=victim))
    storage.stub.Compact(pb.CompactRequest())
    _, clean = _verify(storage.stub)

    storage = storage_runner.restart()
    after = storage.stub.GetStats(pb.GetStatsRequest())

    assert not damaged.ok
    assert clean.ok and clean.finished_at_unix_ms >= damaged.finished_at_unix_ms
    assert after.last_verify == clean
    assert after.unreadable_count == 0


def test_a_damaged_record_goes_to_quarantine_and_the_store_opens(tmp_path):
    data_dir = tmp_path / "store"
    ColumnStore.open(data_dir, SMALL_MEMTABLE).close()
    (data_dir / verify_record.NAME).write_bytes(b'{"version":1}\n00000000\n')

    store = ColumnStore.open(data_dir, SMALL_MEMTABLE)
    try:
        assert store.last_verify is None
        assert store.stats().quarantined_files == 1
        report = store.verify()
        assert report.duration_ms >= 0 and report.ok
    finally:
        store.close()
    reopened = ColumnStore.open(data_dir, SMALL_MEMTABLE)
    try:
        assert reopened.last_verify == report
    finally:
        reopened.close()


def test_a_record_the_disk_refuses_leaves_the_one_before_whole(tmp_path):
    data_dir = tmp_path / "store"
    fs = FaultInjectingFileSystem()
    store = ColumnStore.open(data_dir, SMALL_MEMTABLE, fs=fs)
    try:
        first = store.verify()
        fs.faults.append(Fault("sync", errno.ENOSPC, f"{verify_record.NAME}.tmp", times=1))
        second = store.verify()
        assert store.last_verify is second  # still shown until the process ends
    finally:
        store.close()
    reopened = ColumnStore.open(data_dir, SMALL_MEMTABLE)
    try:
        assert reopened.last_verify == first
    finally:
        reopened.close()
