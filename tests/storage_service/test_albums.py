"""Albums, the domain table: create, rename, delete, add and remove in order; deleted, purged
and trashed images drop out on read; owners only add their own images; everything survives a
reopen, a checkpoint, and a damaged record costs that record alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage_service.columnstore import albums as albums_mod
from storage_service.columnstore import wal as wal_mod
from storage_service.columnstore.albums import (
    AlbumExistsError,
    AlbumNotFoundError,
    AlbumStore,
)
from storage_service.columnstore.errors import InvalidRequestError, StoreClosedError
from storage_service.columnstore.model import AnnotationUpdate
from storage_service.columnstore.store import ColumnStore, StoreOptions

BIG = StoreOptions(memtable_bytes=1 << 30)


@pytest.fixture
def library(tmp_path, small_images):
    """An image store with six of owner "o"'s photos and one of "p"'s, and its album table."""
    store = ColumnStore.open(tmp_path / "s", BIG)
    ids = [store.put(f"{i}.jpg", "o", im).image.id for i, im in enumerate(small_images[:6])]
    other = store.put("theirs.jpg", "p", small_images[6]).image.id
    albums = AlbumStore.open(tmp_path / "s", store)
    yield store, albums, ids, other
    albums.close()
    store.close()


def _reopen(tmp_path: Path, store: ColumnStore, albums: AlbumStore):
    albums.close()
    store.close()
    store = ColumnStore.open(tmp_path / "s", BIG)
    return store, AlbumStore.open(tmp_path / "s", store)


def test_create_add_remove_keep_album_order_and_survive_reopen(tmp_path, library):
    store, albums, ids, _other = library

    album = albums.create("  Summer 2019 ", "o", [ids[2]])
    added = albums.add(album.id, [ids[0], ids[2], ids[4], ids[0]])
    removed = albums.remove(album.id, [ids[0], ids[5]])
    store, albums = _reopen(tmp_path, store, albums)

    assert album.name == "Summer 2019" and album.owner == "o"
    assert added.added == (ids[0], ids[4]) and added.already == (ids[2],)
    assert removed.removed == (ids[0],) and removed.not_in_album == (ids[5],)
    page = albums.page(album.id)
    assert page.image_ids == (ids[2], ids[4])
    assert [m.id for m in page.images] == [ids[2], ids[4]]
    assert page.album.image_count == 2 and page.album.cover_image_id == ids[2]
    assert page.album.updated_ms >= page.album.created_ms
    albums.close()
    store.close()


def test_rename_delete_and_list_by_name_per_owner(library):
    _store, albums, ids, other = library

    b = albums.create("beach", "o")
    a = albums.create("Alps", "o")
    theirs = albums.create("beach", "p", [other])
    albums.rename(b.id, "Coast")
    gone = albums.delete(a.id)

    assert gone.name == "Alps"
    assert [x.name for x in albums.list("o")[0]] == ["Coast"]
    assert [x.name for x in albums.list()[0]] == ["beach", "Coast"]
    assert albums.list("p")[0][0].image_count == 1 and theirs.image_count == 1
    assert albums.find_by_name("o", "coast ").id == b.id
    albums.add(b.id, [ids[0]])
    assert [x.name for x in albums.list(image_id=ids[0])[0]] == ["Coast"]
    assert [x.name for x in albums.list(image_id=other)[0]] == ["beach"]
    with pytest.raises(AlbumNotFoundError):
        albums.get(a.id)
    with pytest.raises(AlbumNotFoundError):
        albums.add(a.id, [ids[0]])


def test_names_are_checked_and_unique_per_owner(library):
    _store, albums, _ids, _other = library
    albums.create("Trip", "o")

    with pytest.raises(AlbumExistsError):
        albums.create("trip", "o")
    with pytest.raises(InvalidRequestError):
        albums.create("   ", "o")
    with pytest.raises(InvalidRequestError):
        albums.create("x" * 201, "o")
    with pytest.raises(InvalidRequestError):
        albums.create("a\nb", "o")
    assert albums.create("Trip", "p").name == "Trip"


def test_only_the_owners_live_images_are_added(library):
    _store, albums, ids, other = library
    album = albums.create("mine", "o")

    got = albums.add(album.id, [ids[1], other, "no-such-id"])

    assert got.added == (ids[1],)
    assert got.not_found == (other, "no-such-id")


def test_deleted_and_trashed_images_drop_out_on_read_and_restore_returns(tmp_path, library):
    store, albums, ids, _other = library
    album = albums.create("a", "o", ids[:4])

    store.delete(ids[0])
    store.update_annotations(ids[1], AnnotationUpdate(fields=frozenset({"trashed"}), trashed=True))

    assert albums.page(album.id).image_ids == (ids[2], ids[3])
    assert albums.get(album.id).image_count == 2
    assert albums.get(album.id).cover_image_id == ids[2]
    assert albums.member_ids(album.id) == [ids[2], ids[3]]
    store.update_annotations(ids[1], AnnotationUpdate(fields=frozenset({"trashed"}), trashed=False))
    assert albums.page(album.id).image_ids == (ids[1], ids[2], ids[3])
    store.purge_trash(everything=True)
    store, albums = _reopen(tmp_path, store, albums)
    assert albums.page(album.id).image_ids == (ids[1], ids[2], ids[3])
    albums.close()
    store.close()


def test_pages_walk_the_album_in_order_skipping_gone_members(library):
    store, albums, ids, _other = library
    album = albums.create("a", "o", ids)
    store.delete(ids[1])

    seen, token = [], ""
    while True:
        page = albums.page(album.id, page_size=2, page_token=token)
        seen.append(page.image_ids)
        token = page.next_page_token
        if not token:
            break

    assert seen == [(ids[0], ids[2]), (ids[3], ids[4]), (ids[5],)]
    with pytest.raises(InvalidRequestError):
        albums.page(album.id, page_token="bogus!")


def test_a_checkpoint_keeps_every_album_and_drops_the_old_logs(tmp_path, library, monkeypatch):
    store, albums, ids, _other = library
    monkeypatch.setattr(albums_mod, "CHECKPOINT_RECORDS", 5)
    keep = albums.create("keep", "o", ids[:2])
    for i in range(8):
        albums.add(keep.id, [ids[2 + i % 4]])
        albums.remove(keep.id, [ids[2 + i % 4]])
    albums.add(keep.id, [ids[5]])
    store.delete(ids[0])
    doomed = albums.create("doomed", "o")
    albums.delete(doomed.id)
    logs_before_reopen = wal_mod.log_numbers(tmp_path / "s" / "albums")

    store, albums = _reopen(tmp_path, store, albums)

    assert len(logs_before_reopen) == 1  # checkpoints removed the earlier logs
    assert albums.page(keep.id).image_ids == (ids[1], ids[5])
    assert [a.name for a in albums.list()[0]] == ["keep"]
    assert len(wal_mod.log_numbers(tmp_path / "s" / "albums")) <= 2
    albums.close()
    store.close()


def test_a_damaged_record_costs_that_change_alone(tmp_path, library):
    store, albums, ids, _other = library
    album = albums.create("a", "o")
    albums.add(album.id, [ids[0]])
    albums.add(album.id, [ids[1]])
    albums.add(album.id, [ids[2]])
    albums.close()
    path = wal_mod.log_path(
        tmp_path / "s" / "albums", wal_mod.log_numbers(tmp_path / "s" / "albums")[-1]
    )
    offsets = wal_mod.record_offsets(path)
    data = bytearray(path.read_bytes())
    data[offsets[2] + 20] ^= 0xFF  # inside the record that added ids[1]
    path.write_bytes(bytes(data))

    reopened = AlbumStore.open(tmp_path / "s", store)

    assert reopened.page(album.id).image_ids == (ids[0], ids[2])
    assert reopened.damaged_records == 1
    reopened.close()


def test_writes_are_refused_once_the_image_store_is_closed(tmp_path, small_images):
    store = ColumnStore.open(tmp_path / "s", BIG)
    albums = AlbumStore.open(tmp_path / "s", store)
    store.close()

    with pytest.raises(StoreClosedError):
        albums.create("late", "o")
    albums.close()
