"""The first failed flush, compaction or log rotation is latched (LevelDB's bg_error_): writes
fail fast with it, reads go on, partial outputs are removed, close() is bounded, and the store
resumes by itself once the cause is gone. Also: data dirs written in format 1 still open."""

from __future__ import annotations

import errno
import json
import time

import pytest

from storage_service.columnstore import wal
from storage_service.columnstore.errors import BackgroundError
from storage_service.columnstore.fs import Fault, FaultInjectingFileSystem
from storage_service.columnstore.row import Row
from storage_service.columnstore.schema import RowKind
from storage_service.columnstore.store import ColumnStore, StoreOptions

OPTS = StoreOptions(
    memtable_bytes=60_000,
    compact_min_segments=1000,
    retry_initial_s=0.05,
    retry_max_s=0.2,
    close_timeout_s=2.0,
)


def _wait_until(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def _put_many(store: ColumnStore, images, acked: dict[str, bytes]) -> None:
    for image in images:
        acked[store.put("x.jpg", "", image).image.id] = image.data


def test_a_failing_flush_is_latched_writes_fail_fast_and_it_clears_by_itself(
    tmp_path, small_images
):
    fs = FaultInjectingFileSystem()
    store = ColumnStore.open(tmp_path / "s", OPTS, fs=fs)
    acked: dict[str, bytes] = {}
    fs.faults.append(Fault("sync", errno.EIO, path_part="segments"))
    with pytest.raises(BackgroundError, match="flush failed"):
        _put_many(store, small_images * 4, acked)
        time.sleep(0.5)
        _put_many(store, small_images, acked)
    started = time.monotonic()
    with pytest.raises(BackgroundError):
        store.put("fast.jpg", "", small_images[0])
    assert time.monotonic() - started < 0.5  # fails fast, does not block in the freeze
    for image_id, data in acked.items():
        assert store.read_data(image_id)[1] == data
    time.sleep(0.5)
    assert not list((tmp_path / "s" / "segments").glob("*.tmp"))

    fs.faults.clear()
    _wait_until(lambda: store.stats().background_error == "")
    _put_many(store, small_images[:2], acked)
    store.close()
    with ColumnStore.open(tmp_path / "s", OPTS) as reopened:
        for image_id, data in acked.items():
            assert reopened.read_data(image_id)[1] == data


def test_a_failing_log_rotation_is_latched_not_raised_to_the_write_that_triggered_it(
    tmp_path, small_images
):
    fs = FaultInjectingFileSystem()
    store = ColumnStore.open(tmp_path / "s", OPTS, fs=fs)
    acked: dict[str, bytes] = {}
    fs.faults.append(Fault("create", errno.EIO, path_part="wal"))
    with pytest.raises(BackgroundError, match="log rotation"):
        _put_many(store, small_images * 4, acked)
    for image_id, data in acked.items():  # every acknowledged write is visible
        assert store.read_data(image_id)[1] == data
    fs.faults.clear()
    _wait_until(lambda: store.stats().background_error == "")
    _put_many(store, small_images[:2], acked)
    store.close()
    with ColumnStore.open(tmp_path / "s", OPTS) as reopened:
        assert {m.id for m in reopened.list_images(page_size=1000).images} == set(acked)


def test_close_is_bounded_while_the_disk_keeps_failing(tmp_path, small_images):
    fs = FaultInjectingFileSystem()
    store = ColumnStore.open(tmp_path / "s", OPTS, fs=fs)
    acked: dict[str, bytes] = {}
    _put_many(store, small_images[:3], acked)
    fs.faults.append(Fault("sync", errno.EIO, path_part="segments"))
    started = time.monotonic()
    store.close()  # its final flush fails: the rows stay in the log
    assert time.monotonic() - started < 2 * OPTS.close_timeout_s + 1
    with ColumnStore.open(tmp_path / "s", OPTS) as reopened:
        for image_id, data in acked.items():
            assert reopened.read_data(image_id)[1] == data


def test_a_format_1_data_dir_opens_with_every_row(tmp_path, small_images):
    data_dir = tmp_path / "s"
    with ColumnStore.open(data_dir, OPTS) as store:
        flushed = store.put("a.jpg", "", small_images[0]).image.id
        store.flush()
    # What the previous version left: a manifest without a checksum, a format-1 log.
    manifest = (data_dir / "MANIFEST").read_text().split("\n")[0]
    body = json.loads(manifest)
    body["version"] = 1
    body.pop("rows")
    (data_dir / "MANIFEST").write_text(json.dumps(body))
    for p in (data_dir / "wal").iterdir():
        p.unlink()
    values = {
        "id": "0000000000010000aaaaaaaaaaaaaaaa",
        "filename": "old.jpg",
        "owner": "",
        "sha256": small_images[1].sha256,
        "byte_size": len(small_images[1].data),
        "status": 1,
    }
    row = Row(100, RowKind.PUT, values, {"data": small_images[1].data})
    number = body["wal_min"]
    (data_dir / "wal" / f"{number:06d}.log").write_bytes(
        wal.encode_v1_record(100, number, b"".join(row.encode())) + bytes(4096)
    )

    with ColumnStore.open(data_dir, OPTS) as store:
        assert store.read_data(flushed)[1] == small_images[0].data
        assert store.read_data(values["id"])[1] == small_images[1].data
        store.flush()
    with ColumnStore.open(data_dir, OPTS) as store:
        assert store.read_data(values["id"])[1] == small_images[1].data
