"""A row is visible only once its log record is durable; a failed fsync leaves nothing visible,
is latched (writes fail fast, reads go on) and clears by itself once fsync works again."""

from __future__ import annotations

import errno
import time

import pytest

from storage_service.columnstore.errors import BackgroundError
from storage_service.columnstore.fs import Fault, FaultInjectingFileSystem
from storage_service.columnstore.model import AnalysisStatus, AnnotationUpdate
from storage_service.columnstore.store import ColumnStore, StoreOptions
from tests.storage_service.conftest import MARK_READY, put_images

FAST_RETRY = StoreOptions(memtable_bytes=1 << 30, retry_initial_s=0.05, retry_max_s=0.2)


def _ids(store: ColumnStore) -> list[str]:
    return [m.id for m in store.list_images(page_size=1000).images]


def test_a_row_is_not_visible_while_its_log_record_is_being_fsynced(tmp_path, small_images):
    fs = FaultInjectingFileSystem()
    store = ColumnStore.open(tmp_path / "s", FAST_RETRY, fs=fs)
    first = store.put("a.jpg", "", small_images[0]).image.id
    seen_during_fsync: list[list[str]] = []

    def on_op(op: str, path) -> None:
        if op == "sync" and path.suffix == ".log":
            seen_during_fsync.append(_ids(store))

    fs.on_op = on_op
    second = store.put("b.jpg", "", small_images[1]).image.id
    fs.on_op = None

    assert seen_during_fsync == [[first]]  # not yet durable: not yet visible
    assert _ids(store) == [second, first]
    store.close()


def test_a_failed_fsync_leaves_the_row_invisible_and_writes_resume_once_fsync_works(
    tmp_path, small_images
):
    fs = FaultInjectingFileSystem()
    store = ColumnStore.open(tmp_path / "s", FAST_RETRY, fs=fs)
    kept = store.put("a.jpg", "", small_images[0]).image.id
    fs.faults.append(Fault("sync", errno.EIO, path_part="wal", times=1))

    with pytest.raises(BackgroundError, match="fsync"):
        store.put("b.jpg", "", small_images[1])

    assert _ids(store) == [kept]
    assert store.list_images().total_count == 1
    assert store.find_by_filename("b.jpg") == []
    assert store.read_data(kept)[1] == small_images[0].data  # reads go on
    # The fault is gone after one failure: the flusher moves to a fresh log and clears the
    # latch, without a restart.
    deadline = time.monotonic() + 10
    while store.stats().background_error:
        assert time.monotonic() < deadline, store.stats().background_error
        time.sleep(0.05)
    later = store.put("c.jpg", "", small_images[2]).image.id
    store.update_annotations(later, MARK_READY)
    store.close()

    reopened = ColumnStore.open(tmp_path / "s", FAST_RETRY)
    assert _ids(reopened) == [later, kept]
    assert reopened.get(later).status is AnalysisStatus.READY
    reopened.close()


def test_status_and_owner_listings_and_counts_come_from_kept_indexes(tmp_path, small_images):
    store = ColumnStore.open(tmp_path / "s", FAST_RETRY)
    ids = put_images(store, small_images[:6], ("bob", "ann"))
    for image_id in ids[:3]:
        store.update_annotations(image_id, MARK_READY)
    store.delete(ids[1])

    def listed(**kw) -> tuple[list[str], int]:
        page = store.list_images(page_size=2, **kw)
        out = [m.id for m in page.images]
        while page.next_page_token:
            page = store.list_images(page_size=2, page_token=page.next_page_token, **kw)
            out += [m.id for m in page.images]
        return out, page.total_count

    assert listed(status=AnalysisStatus.READY) == ([ids[2], ids[0]], 2)
    assert listed(status=AnalysisStatus.PENDING) == ([ids[5], ids[4], ids[3]], 3)
    assert listed(owner="ann") == ([ids[5], ids[3]], 2)
    assert listed(owner="bob", status=AnalysisStatus.READY) == ([ids[2], ids[0]], 2)
    assert store.count(status=AnalysisStatus.FAILED) == 0
    store.close()
    reopened = ColumnStore.open(tmp_path / "s", FAST_RETRY)
    assert reopened.count(owner="bob", status=AnalysisStatus.PENDING) == 1
    reopened.close()


class _NoScans:
    """The store's id -> slot map, refusing to be walked: a listing or count that scans every
    image under the lock fails here (lookups of one id pass through)."""

    def __init__(self, inner):
        self._inner = inner

    def _refuse(self, *args, **kwargs):
        raise AssertionError("walked every image")

    values = items = keys = __iter__ = _refuse

    def get(self, key, default=None):
        return self._inner.get(key, default)

    def __getitem__(self, key):
        return self._inner[key]

    def __contains__(self, key):
        return key in self._inner

    def __len__(self):
        return len(self._inner)


def test_filtered_listings_and_totals_never_walk_every_image(tmp_path, small_images):
    store = ColumnStore.open(tmp_path / "s", FAST_RETRY)
    ids = put_images(store, small_images[:4], ("ann",))
    store.update_annotations(
        ids[0], AnnotationUpdate(fields=frozenset({"status"}), status=AnalysisStatus.FAILED)
    )
    store._slot_of = _NoScans(store._slot_of)

    assert store.list_images(status=AnalysisStatus.FAILED).total_count == 1
    assert store.list_images(owner="ann", status=AnalysisStatus.PENDING).total_count == 3
    assert store.list_images(owner="ann", page_size=2).total_count == 4
    assert store.stats().image_count == 4
    store.close()
