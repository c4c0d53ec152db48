"""The album table in storage's upkeep: Verify reads and checks every album log record (damage
named by file, the other albums still read), a graceful stop closes the table (a real process
stopped with SIGTERM and started again has every album), and GetStats counts albums (v1 and
v2)."""

from __future__ import annotations

import os
from pathlib import Path

import grpc
import pytest

from gateway.app import create_app, stop_app
from imagerepo.storage.v1 import storage_service_pb2 as pb
from imagerepo.storage.v1 import storage_service_pb2_grpc as pb_grpc
from imagerepo.storage.v2 import storage_service_pb2 as pb2
from imagerepo.storage.v2 import storage_service_pb2_grpc as pb2_grpc
from storage_service.columnstore import wal as wal_mod
from storage_service.columnstore.albums import AlbumStore, verify_logs
from storage_service.columnstore.store import ColumnStore
from storage_service.server import build_server
from tests.gateway.conftest import offline_config
from tests.storage_service.conftest import SMALL_MEMTABLE, jpeg_variant, put
from tests.storage_service.test_crash_recovery import StorageProcess
from tests.storage_service.test_verify_rpc import _cli, _verify


@pytest.fixture
def process(tmp_path: Path):
    proc = StorageProcess(tmp_path / "data", tmp_path / "storage.log")
    yield proc
    if proc.proc is not None and proc.proc.poll() is None:
        proc.kill()


def _photos(stub, photo_jpegs, count: int = 4) -> list[str]:
    data = photo_jpegs["astronaut"]
    return [put(stub, jpeg_variant(data, i), f"{i}.jpg", "o").image.id for i in range(count)]


def _albums(stub) -> dict[str, tuple[str, ...]]:
    """Every album: name -> its image ids in album order."""
    out = {}
    for album in stub.ListAlbums(pb.ListAlbumsRequest(page_size=1000)).albums:
        page = stub.GetAlbum(pb.GetAlbumRequest(album_id=album.id, page_size=1000))
        out[album.name] = tuple(page.image_ids)
    return out


def _damage_record(log: Path, index: int) -> None:
    """Flip a byte inside the payload of intact record `index` of an album log."""
    start = wal_mod.record_offsets(log)[index]
    with log.open("r+b") as f:
        f.seek(start + wal_mod.FRAGMENT_HEADER.size + 8 + 6)  # header, seq, then the JSON
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x20]))


def test_verify_names_a_damaged_album_record_and_the_other_albums_still_read(process, photo_jpegs):
    stub = process.start()
    ids = _photos(stub, photo_jpegs)
    for name, members in (("Alps", ids[:2]), ("Beach", ids[1:3]), ("City", ids[3:])):
        stub.CreateAlbum(pb.CreateAlbumRequest(name=name, owner="o", image_ids=members))
    _progress, clean = _verify(stub)
    logs = sorted((process.data_dir / "albums").glob("*.log"))
    assert len(logs) == 1
    _damage_record(logs[0], 1)  # Beach's "set"

    _progress, report = _verify(stub)
    stats = stub.GetStats(pb.GetStatsRequest())
    cli = _cli("--storage", process.address, "--no-progress")
    app = create_app(offline_config(storage_address=process.address))
    try:
        status_page = app.test_client().get("/status").get_data(as_text=True)
    finally:
        stop_app(app)
    running = _albums(stub)
    assert process.terminate() == 0
    stub = process.start()
    _progress, before_open = _verify(stub)  # the table not opened yet: its files as they are
    after_restart = _albums(stub)
    _progress, after_open = _verify(stub)  # opened: the damaged log retired, still reported
    quarantined = [p.name for p in (process.data_dir / "quarantine").glob("albums-*")]
    quarantined_files = stub.GetStats(pb.GetStatsRequest()).quarantined_files

    album_log = f"albums/{logs[0].name}"
    assert clean.ok
    assert not report.ok
    assert [d.path for d in report.damaged] == [album_log]
    assert "not replayed" in report.damaged[0].detail
    assert list(report.damaged_image_ids) == []  # no image is lost
    assert report.files_checked == clean.files_checked
    assert stats.last_verify == report
    assert cli.returncode == 1, cli.stderr
    assert album_log in cli.stdout
    assert "damage in 1 place" in status_page and album_log in status_page
    # The running table still has every album; the restarted one all but the damaged record's.
    assert running == {"Alps": tuple(ids[:2]), "Beach": tuple(ids[1:3]), "City": (ids[3],)}
    assert after_restart == {"Alps": tuple(ids[:2]), "City": (ids[3],)}
    assert [d.path for d in before_open.damaged] == [album_log]
    assert [d.path for d in after_open.damaged] == ["albums/"]
    assert "1 damaged album log record" in after_open.damaged[0].detail
    # The damaged log is kept in quarantine (never deleted), named in the report.
    assert len(quarantined) == 1 and quarantined[0].startswith(f"albums-{logs[0].name}.")
    assert f"quarantine/{quarantined[0]}" in after_open.damaged[0].detail
    assert not logs[0].exists()
    assert quarantined_files >= 1
    assert stub.GetStats(pb.GetStatsRequest()).album_count == 2


def test_verify_checks_album_logs_and_finds_nothing_wrong_in_good_ones(storage, photo_jpegs):
    ids = _photos(storage.stub, photo_jpegs, 2)
    _progress, without = _verify(storage.stub)
    assert not (storage.data_dir / "albums").exists()  # verify did not create the table
    album = storage.stub.CreateAlbum(pb.CreateAlbumRequest(name="a", owner="o", image_ids=ids))
    storage.stub.AddToAlbum(pb.AddToAlbumRequest(album_id=album.album.id, image_ids=ids[:1]))
    _progress, report = _verify(storage.stub)
    album_bytes = sum(p.stat().st_size for p in (storage.data_dir / "albums").glob("*.log"))

    assert without.ok and report.ok
    recorded = storage.store.last_verify  # the report with the album table's files added
    store_report = storage.store.verify(record=False)  # the image store's files alone
    assert recorded is not None and recorded.files_checked == report.files_checked
    assert without.files_checked == report.files_checked - 1 == store_report.files_checked
    assert report.bytes_checked == store_report.bytes_checked + album_bytes > 0


def test_a_record_that_passes_its_checksum_but_is_no_album_change_is_reported(bare_store):
    table = AlbumStore.open(bare_store.data_dir, bare_store)
    try:
        kept = table.create("kept", "o")
        with table._lock:  # what a bug (not the disk) could write: a checksummed non-change
            position = table._append({"op": "grow", "id": kept.id})
            table._wal.sync(position)  # type: ignore[union-attr]
        check = table.verify()
    finally:
        table.close()
    reopened = AlbumStore.open(bare_store.data_dir, bare_store)
    try:
        names = [a.name for a in reopened.list()[0]]
        after = reopened.verify()
    finally:
        reopened.close()

    assert check.records_checked == 2 and check.files_checked == 1
    assert len(check.damaged) == 1
    assert check.damaged[0].path.startswith("albums/")
    assert "not an album change" in check.damaged[0].detail
    assert "unknown album op 'grow'" in check.damaged[0].detail
    assert names == ["kept"]
    assert [d.path for d in after.damaged] == ["albums/"]
    assert verify_logs(bare_store.data_dir).damaged == ()  # the checkpoint left good logs


def _open_album_files(data_dir: Path) -> list[str]:
    albums = str(data_dir / "albums")
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(albums):
            out.append(target)
    return out


def test_a_graceful_stop_closes_the_album_table(tmp_path, photo_jpegs):
    data_dir = tmp_path / "data"
    store = ColumnStore.open(data_dir, SMALL_MEMTABLE)
    server, port, health = build_server(store, "127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        stub = pb_grpc.StorageServiceStub(channel)
        ids = _photos(stub, photo_jpegs, 2)
        stub.CreateAlbum(pb.CreateAlbumRequest(name="a", owner="o", image_ids=ids))
        stub.CreateAlbum(pb.CreateAlbumRequest(name="b", owner="o"))
        open_while_serving = _open_album_files(data_dir)
    finally:
        channel.close()
        # What serve_until_signalled does on SIGTERM.
        health.shutdown()
        server.stop(None).wait()
        store.close()
    open_after_stop = _open_album_files(data_dir)
    reopened = ColumnStore.open(data_dir, SMALL_MEMTABLE)
    try:
        table = AlbumStore.open(data_dir, reopened)
        names = sorted(a.name for a in table.list()[0])
        table.close()
    finally:
        reopened.close()

    assert open_while_serving
    assert open_after_stop == []
    assert names == ["a", "b"]


def test_a_storage_process_stopped_with_sigterm_and_started_again_has_every_album(
    process, photo_jpegs
):
    stub = process.start()
    ids = _photos(stub, photo_jpegs, 6)
    before_albums = stub.GetStats(pb.GetStatsRequest()).album_count
    made = {}
    for n in range(12):
        album = stub.CreateAlbum(
            pb.CreateAlbumRequest(name=f"album {n}", owner="o", image_ids=ids[n % 6 :])
        ).album
        made[album.name] = album.id
    stub.RenameAlbum(pb.RenameAlbumRequest(album_id=made["album 0"], name="first"))
    stub.RemoveFromAlbum(pb.RemoveFromAlbumRequest(album_id=made["album 1"], image_ids=ids[2:4]))
    stub.AddToAlbum(pb.AddToAlbumRequest(album_id=made["album 11"], image_ids=ids[:1]))
    stub.DeleteAlbum(pb.DeleteAlbumRequest(album_id=made["album 5"]))
    expected = _albums(stub)
    stats = stub.GetStats(pb.GetStatsRequest())
    assert process.terminate() == 0
    stub = process.start()
    restarted = stub.GetStats(pb.GetStatsRequest())  # counts before any album call opens it
    v2 = pb2_grpc.StorageServiceStub(process.channel).GetStats(pb2.GetStatsRequest())
    got = _albums(stub)

    assert before_albums == 0
    assert len(expected) == 11 and "first" in expected and "album 5" not in expected
    assert expected["album 1"] == (ids[1], ids[4], ids[5])
    assert got == expected
    assert stats.album_count == restarted.album_count == v2.album_count == 11
    assert "Traceback" not in process.log_path.read_text()


def test_a_log_with_damage_goes_to_quarantine_not_away(bare_store):
    table = AlbumStore.open(bare_store.data_dir, bare_store)
    table.create("first", "o")
    table.create("second", "o")
    table.close()
    (log,) = sorted((bare_store.data_dir / "albums").glob("*.log"))
    _damage_record(log, 0)  # (damage to the last record reads as a torn tail: a crash)

    before = verify_logs(bare_store.data_dir)
    reopened = AlbumStore.open(bare_store.data_dir, bare_store)
    try:
        names = [a.name for a in reopened.list()[0]]
        after = reopened.verify()
    finally:
        reopened.close()
    kept = list((bare_store.data_dir / "quarantine").glob("albums-*"))

    assert [d.path for d in before.damaged] == [f"albums/{log.name}"]
    assert "corrupt record skipped at offset" in before.damaged[0].detail
    assert names == ["second"]
    assert len(kept) == 1 and b"second" in kept[0].read_bytes()  # kept for an operator
    assert not log.exists()
    assert [d.path for d in after.damaged] == ["albums/"]
    assert kept[0].name in after.damaged[0].detail
    assert verify_logs(bare_store.data_dir).damaged == ()
