"""Favourites: a per-image flag written through the log like annotations, listed O(page)."""

from __future__ import annotations

from google.protobuf.field_mask_pb2 import FieldMask

from imagerepo.storage.v1 import storage_service_pb2 as pb
from storage_service.columnstore.model import AnnotationUpdate
from storage_service.columnstore.store import ColumnStore, StoreOptions
from tests.storage_service.conftest import SMALL_MEMTABLE, put

BIG = StoreOptions(memtable_bytes=1 << 30)


def _star(on: bool = True) -> AnnotationUpdate:
    return AnnotationUpdate(fields=frozenset({"favourite"}), favourite=on)


def test_favourite_is_durable_in_the_feed_and_listed_on_its_own(tmp_path, small_images):
    store = ColumnStore.open(tmp_path / "s", BIG)
    ids = [store.put(f"{i}.jpg", "", p).image.id for i, p in enumerate(small_images[:4])]
    head = store.head_seq
    assert store.update_annotations(ids[1], _star()).favourite
    store.update_annotations(ids[3], _star())
    store.update_annotations(ids[3], AnnotationUpdate(add_tags=("cat",)))  # other edits keep it

    page = store.changes(head, 100)
    assert [(c.kind.name, c.image_id) for c in page.changes] == [
        ("ANNOTATE", ids[1]),
        ("ANNOTATE", ids[3]),
        ("ANNOTATE", ids[3]),
    ]
    assert page.changes[0].image is not None and page.changes[0].image.favourite
    starred = store.list_images(favourite_only=True)
    assert [m.id for m in starred.images] == [ids[3], ids[1]]
    assert starred.total_count == 2
    assert not store.get(ids[0]).favourite

    # Paging through favourites only: one per page, newest first.
    first = store.list_images(page_size=1, favourite_only=True)
    second = store.list_images(page_size=1, page_token=first.next_page_token, favourite_only=True)
    assert [m.id for m in first.images + second.images] == [ids[3], ids[1]]
    assert second.next_page_token == ""

    store.update_annotations(ids[1], _star(False))
    assert [m.id for m in store.list_images(favourite_only=True).images] == [ids[3]]
    store.close()

    reopened = ColumnStore.open(tmp_path / "s")
    assert reopened.get(ids[3]).favourite and reopened.get(ids[3]).tags == ("cat",)
    assert not reopened.get(ids[1]).favourite
    assert [m.id for m in reopened.list_images(favourite_only=True).images] == [ids[3]]
    reopened.close()


def test_favourite_survives_flush_and_compaction(tmp_path, small_images):
    store = ColumnStore.open(tmp_path / "s", SMALL_MEMTABLE)
    ids = [store.put(f"{i}.jpg", "", p).image.id for i, p in enumerate(small_images[:6])]
    store.update_annotations(ids[2], _star())
    store.delete(ids[4])
    store.flush()
    store.compact()
    assert [m.id for m in store.list_images(favourite_only=True).images] == [ids[2]]
    store.close()
    reopened = ColumnStore.open(tmp_path / "s")
    assert reopened.get(ids[2]).favourite
    assert [m.id for m in reopened.list_images(favourite_only=True).images] == [ids[2]]
    reopened.close()


def test_favourite_over_grpc(storage, photo_jpegs):
    data = next(iter(photo_jpegs.values()))
    a = put(storage.stub, data, "a.jpg", owner="alice").image.id
    put(storage.stub, data[:-2] + b"\xff\xd9", "b.jpg", owner="alice")
    got = storage.stub.UpdateAnnotations(
        pb.UpdateAnnotationsRequest(
            image_id=a,
            annotations=pb.Annotations(favourite=True),
            update_mask=FieldMask(paths=["favourite"]),
        )
    )
    assert got.image.favourite
    listed = storage.stub.ListImages(pb.ListImagesRequest(favourite_only=True))
    assert [m.id for m in listed.images] == [a] and listed.total_count == 1
    assert storage.stub.GetImage(pb.GetImageRequest(image_id=a)).image.favourite
