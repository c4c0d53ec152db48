"""A full disk: writes fail with StorageFullError (the servicer's RESOURCE_EXHAUSTED), reads go
on, writes resume by themselves once space is freed, and nothing acknowledged is lost. First
with ENOSPC injected at each kind of write, then on a small disk filled up for real (a 6 MB
tmpfs when it can be mounted, else a 6 MB quota in the fault-injecting file system)."""

from __future__ import annotations

import errno
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from storage_service.columnstore.errors import StorageFullError
from storage_service.columnstore.fs import Fault, FaultInjectingFileSystem, FileSystem
from storage_service.columnstore.store import ColumnStore, StoreOptions

OPTS = StoreOptions(
    memtable_bytes=60_000, compact_min_segments=1000, retry_initial_s=0.05, retry_max_s=0.2
)


def _put_until_accepted(store: ColumnStore, image, deadline_s: float = 10.0) -> str:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return store.put("again.jpg", "", image).image.id
        except StorageFullError:
            assert time.monotonic() < deadline, "writes did not resume after space was freed"
            time.sleep(0.05)


def _check_all(store: ColumnStore, acked: dict[str, bytes]) -> None:
    for image_id, data in acked.items():
        assert store.read_data(image_id)[1] == data, image_id
    assert store.list_images(page_size=1000).total_count == len(acked)


def test_a_full_log_refuses_the_write_and_the_next_one_after_space_frees_succeeds(
    tmp_path, small_images
):
    fs = FaultInjectingFileSystem()
    store = ColumnStore.open(tmp_path / "s", OPTS, fs=fs)
    acked = {store.put("a.jpg", "", small_images[0]).image.id: small_images[0].data}
    fs.faults.append(Fault("write", errno.ENOSPC, path_part="wal"))

    with pytest.raises(StorageFullError, match="storage is full"):
        store.put("b.jpg", "", small_images[1])
    _check_all(store, acked)  # reads go on, the refused write is not there

    fs.faults.clear()  # space freed
    acked[_put_until_accepted(store, small_images[1])] = small_images[1].data
    store.close()
    with ColumnStore.open(tmp_path / "s", OPTS) as reopened:
        _check_all(reopened, acked)


def test_a_flush_on_a_full_disk_is_latched_without_a_retry_storm_and_clears_by_itself(
    tmp_path, small_images
):
    fs = FaultInjectingFileSystem()
    store = ColumnStore.open(tmp_path / "s", OPTS, fs=fs)
    acked: dict[str, bytes] = {}
    fs.faults.append(Fault("write", errno.ENOSPC, path_part="segments"))
    with pytest.raises(StorageFullError):
        for image in small_images * 3:  # enough to fill the memtable and need a flush
            acked[store.put("x.jpg", "", image).image.id] = image.data
            time.sleep(0.01)
    assert "No space" in store.stats().background_error
    time.sleep(1.0)  # the flusher retries meanwhile, with backoff, always under the same id
    _check_all(store, acked)
    with pytest.raises(StorageFullError):
        store.put("y.jpg", "", small_images[0])
    segment_files = list((tmp_path / "s" / "segments").iterdir())
    assert [p for p in segment_files if p.suffix == ".tmp"] == []  # partial outputs removed
    assert store._manifest.next_segment_id <= 3  # no new id per retry

    fs.faults.clear()
    acked[_put_until_accepted(store, small_images[2])] = small_images[2].data
    assert store.stats().background_error == ""
    store.close()
    with ColumnStore.open(tmp_path / "s", OPTS) as reopened:
        _check_all(reopened, acked)


def test_open_works_on_a_nearly_full_disk(tmp_path, small_images):
    fs = FaultInjectingFileSystem()
    # No room to zero-fill or preallocate the new log (32 MB would be written otherwise).
    fs.faults.append(Fault("allocate", errno.ENOSPC))
    store = ColumnStore.open(tmp_path / "s", StoreOptions(memtable_bytes=32 << 20), fs=fs)
    assert sum(p.stat().st_size for p in (tmp_path / "s" / "wal").iterdir()) < 1 << 20
    image_id = store.put("a.jpg", "", small_images[0]).image.id  # plain appends still fit
    fs.faults.append(Fault("write", errno.ENOSPC, "wal"))
    with pytest.raises(StorageFullError):
        store.put("b.jpg", "", small_images[1])
    assert [m.id for m in store.list_images().images] == [image_id]
    store.close()
    with ColumnStore.open(tmp_path / "s") as reopened:
        assert reopened.read_data(image_id)[1] == small_images[0].data


@dataclass
class SmallDisk:
    root: Path
    fs: FileSystem | None  # None: the real file system (a mounted tmpfs)
    kind: str


@pytest.fixture
def small_disk(tmp_path) -> Iterator[SmallDisk]:
    """A 6 MB disk: a real tmpfs where this process may mount one (root), else the same size
    enforced by the fault-injecting file system (ENOSPC past a byte quota)."""
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode == 0:
        yield SmallDisk(mount_point, None, "tmpfs")
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
    else:
        quota_fs = FaultInjectingFileSystem(quota=(mount_point, 6 << 20))
        yield SmallDisk(mount_point, quota_fs, "quota")


def test_a_small_disk_filled_up(small_disk, small_images):
    ballast = small_disk.root / "ballast"
    ballast.write_bytes(bytes(2 << 20))
    opts = StoreOptions(
        memtable_bytes=200_000, compact_min_segments=1000, retry_initial_s=0.05, retry_max_s=0.2
    )
    store = ColumnStore.open(small_disk.root / "s", opts, fs=small_disk.fs)
    acked: dict[str, bytes] = {}
    with pytest.raises(StorageFullError):
        for i in range(10_000):
            image = small_images[i % len(small_images)]
            acked[store.put(f"{i}.jpg", "", image).image.id] = image.data
    assert len(acked) > 5, small_disk.kind
    _check_all(store, acked)  # reads keep working on the full disk

    ballast.unlink()  # the operator frees space
    for i in range(5):
        image = small_images[i]
        acked[_put_until_accepted(store, image)] = image.data
    _check_all(store, acked)
    store.close()
    with ColumnStore.open(small_disk.root / "s", opts) as reopened:
        _check_all(reopened, acked)
