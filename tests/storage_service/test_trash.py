"""Trash: an image moved there leaves listings (O(page): its own id list), comes back on
restore, survives restarts, and is deleted for good after the retention (injected clock)."""

from __future__ import annotations

import time

import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from imagerepo.storage.v1 import storage_service_pb2 as pb
from storage_service.columnstore.errors import ImageNotFoundError
from storage_service.columnstore.model import AnnotationUpdate
from storage_service.columnstore.store import ColumnStore, StoreOptions
from storage_service.config import StorageConfig
from tests.storage_service.conftest import SMALL_MEMTABLE, put

DAY_MS = 86_400_000
BIG = StoreOptions(memtable_bytes=1 << 30, trash_retention_ms=2 * DAY_MS)


def _trash(on: bool = True) -> AnnotationUpdate:
    return AnnotationUpdate(fields=frozenset({"trashed"}), trashed=on)


def test_trashed_images_leave_listings_and_come_back_on_restore(tmp_path, small_images):
    store = ColumnStore.open(tmp_path / "s", BIG)
    ids = [store.put(f"{i}.jpg", "o", p).image.id for i, p in enumerate(small_images[:4])]
    store.update_annotations(
        ids[2], AnnotationUpdate(fields=frozenset({"favourite"}), favourite=True)
    )
    head = store.head_seq
    before = int(time.time() * 1000)
    trashed = store.update_annotations(ids[2], _trash())
    assert trashed.trashed_at_ms >= before

    assert [m.id for m in store.list_images().images] == [ids[3], ids[1], ids[0]]
    assert store.list_images().total_count == 3
    assert store.list_images(owner="o").total_count == 3
    assert store.list_images(favourite_only=True).total_count == 0
    assert [m.id for m in store.list_images(trashed_only=True).images] == [ids[2]]
    assert store.get(ids[2]).trashed_at_ms == trashed.trashed_at_ms  # still readable
    (change,) = store.changes(head, 10).changes
    assert change.kind.name == "ANNOTATE" and change.image and change.image.trashed_at_ms
    store.close()

    reopened = ColumnStore.open(tmp_path / "s", BIG)
    assert [m.id for m in reopened.list_images(trashed_only=True).images] == [ids[2]]
    assert reopened.list_images().total_count == 3
    reopened.update_annotations(ids[2], _trash(False))
    assert [m.id for m in reopened.list_images().images] == ids[::-1]
    assert reopened.list_images(trashed_only=True).total_count == 0
    assert reopened.get(ids[2]).favourite  # restored as it was
    reopened.close()


def test_purge_deletes_only_what_outlived_the_retention(tmp_path, small_images):
    store = ColumnStore.open(tmp_path / "s", BIG)
    ids = [store.put(f"{i}.jpg", "", p).image.id for i, p in enumerate(small_images[:3])]
    old = store.update_annotations(ids[0], _trash()).trashed_at_ms
    newer = store.update_annotations(ids[1], _trash()).trashed_at_ms
    assert newer >= old
    assert store.purge_trash(now_ms=old + DAY_MS) == []
    # Both have outlived the two days once the later one has (a loaded machine may put
    # milliseconds between the two moves to the trash).
    assert store.purge_trash(now_ms=newer + 2 * DAY_MS + 1) == [ids[0], ids[1]]
    with pytest.raises(ImageNotFoundError):
        store.get(ids[0])
    assert [m.id for m in store.list_images().images] == [ids[2]]
    assert store.list_images(trashed_only=True).total_count == 0
    store.close()


def test_empty_trash_then_compaction_reclaims(tmp_path, small_images):
    store = ColumnStore.open(tmp_path / "s", SMALL_MEMTABLE)
    ids = [store.put(f"{i}.jpg", "", p).image.id for i, p in enumerate(small_images[:6])]
    for image_id in ids[:3]:
        store.update_annotations(image_id, _trash())
    store.flush()
    assert store.purge_trash(everything=True) == ids[:3]
    store.flush()
    store.compact()
    assert [m.id for m in store.list_images().images] == ids[:2:-1]
    store.close()
    reopened = ColumnStore.open(tmp_path / "s")
    assert reopened.list_images().total_count == 3
    assert reopened.list_images(trashed_only=True).total_count == 0
    reopened.close()


def test_the_background_thread_purges_by_itself(tmp_path, small_images):
    options = StoreOptions(memtable_bytes=1 << 30, trash_retention_ms=0, trash_check_s=0.05)
    store = ColumnStore.open(tmp_path / "s", options)
    image_id = store.put("a.jpg", "", small_images[0]).image.id
    store.update_annotations(image_id, _trash())
    deadline = time.monotonic() + 10
    while store.list_images(trashed_only=True).total_count and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(ImageNotFoundError):
        store.get(image_id)
    store.close()


def test_a_copy_in_the_trash_is_not_already_stored_nor_a_duplicate(tmp_path, small_images):
    store = ColumnStore.open(tmp_path / "s", BIG)
    first = store.put("a.jpg", "o", small_images[0]).image.id
    store.update_annotations(first, _trash())
    again = store.put("a.jpg", "o", small_images[0], keep_duplicate=False)
    assert not again.already_stored and again.image.id != first
    assert again.duplicate_of == ()
    assert [m.id for m in store.list_images().images] == [again.image.id]
    store.close()


def test_retention_is_a_storage_setting():
    config = StorageConfig.from_env({"STORAGE_TRASH_RETENTION_DAYS": "7"})
    assert config.store_options().trash_retention_ms == 7 * DAY_MS
    assert StorageConfig.from_env({}).store_options().trash_retention_ms == 30 * DAY_MS


def test_trash_and_restore_over_grpc(storage, photo_jpegs):
    data = next(iter(photo_jpegs.values()))
    a = put(storage.stub, data, "a.jpg").image.id
    mask = FieldMask(paths=["trashed"])
    got = storage.stub.UpdateAnnotations(
        pb.UpdateAnnotationsRequest(
            image_id=a, annotations=pb.Annotations(trashed=True), update_mask=mask
        )
    )
    assert got.image.trashed_at_unix_ms > 0
    assert storage.stub.ListImages(pb.ListImagesRequest()).total_count == 0
    trash = storage.stub.ListImages(pb.ListImagesRequest(trashed_only=True))
    assert [m.id for m in trash.images] == [a]
    storage.stub.UpdateAnnotations(
        pb.UpdateAnnotationsRequest(
            image_id=a, annotations=pb.Annotations(trashed=False), update_mask=mask
        )
    )
    assert [m.id for m in storage.stub.ListImages(pb.ListImagesRequest()).images] == [a]
