"""Storage memory bounded by design (issue 13): the live view is fixed-width arrays and an
index per segment; metadata is read from its row on demand; older segments without an index
still open; compaction merges in bounded runs and drops rows of images deleted elsewhere."""

from __future__ import annotations

import dataclasses

import pytest

from storage_service.columnstore import format as fmt
from storage_service.columnstore.errors import DataLossError, ImageNotFoundError
from storage_service.columnstore.manifest import Manifest
from storage_service.columnstore.model import (
    AnalysisStatus,
    AnnotationUpdate,
    ImageMeta,
    Label,
    ListOrder,
)
from storage_service.columnstore.row import Row
from storage_service.columnstore.schema import RowKind
from storage_service.columnstore.segment_reader import SegmentReader
from storage_service.columnstore.segment_writer import write_segment
from storage_service.columnstore.store import ColumnStore, StoreOptions
from tests.storage_service.conftest import damage_row_meta

# Every put flushes after a few photos; tests decide when compaction happens.
OPTS = StoreOptions(
    memtable_bytes=30_000,
    compact_min_segments=1000,
    compact_dead_fraction=2.0,
    feed_retention_seqs=0,
)


def _put_all(store, images, owner="ann"):
    return [store.put(f"p{i}.jpg", owner, im).image for i, im in enumerate(images)]


def test_metadata_is_read_from_its_row_and_only_a_few_are_kept_decoded(tmp_path, small_images):
    options = dataclasses.replace(OPTS, meta_cache_images=3)
    store = ColumnStore.open(tmp_path / "s", options)
    metas = _put_all(store, small_images[:10])
    store.flush()
    store.close()

    reopened = ColumnStore.open(tmp_path / "s", options)
    listed = reopened.list_images(50).images
    got = [reopened.get(m.id) for m in metas]

    assert {m.id: m for m in listed} == {m.id: m for m in metas}
    assert got == metas
    assert len(reopened._meta_cache) <= 3
    reopened.close()


def test_open_reads_the_index_not_the_rows(tmp_path, small_images):
    store = ColumnStore.open(tmp_path / "s", OPTS)
    metas = _put_all(store, small_images[:6])
    store.flush()
    store.close()
    # Damage one image's metadata frame: opening does not read it, so it still opens, and
    # only that image answers data loss when its metadata is asked for.
    victim = metas[2]
    for path in sorted((tmp_path / "s" / "segments").glob("*.seg")):
        reader = SegmentReader(path)
        ids = reader.ids()
        if victim.id in ids:
            offset, length = reader.blob_location("row_meta", ids.index(victim.id))
            del reader
            raw = bytearray(path.read_bytes())
            raw[offset + length // 2] ^= 0xFF
            path.write_bytes(bytes(raw))

    reopened = ColumnStore.open(tmp_path / "s", OPTS)

    assert reopened.stats().image_count == 6
    with pytest.raises(DataLossError):
        reopened.get(victim.id)
    assert reopened.get(metas[3].id) == metas[3]
    assert reopened.count(owner="ann") == 6
    reopened.close()


@pytest.mark.parametrize("order", [ListOrder.UPLOADED_NEWEST, ListOrder.TAKEN_NEWEST])
def test_a_damaged_metadata_record_is_left_out_of_its_page_and_counted(
    tmp_path, small_images, order
):
    store = ColumnStore.open(tmp_path / "s", OPTS)
    metas = _put_all(store, small_images[:7])
    store.flush()
    store.close()
    victim = metas[3]
    damage_row_meta(tmp_path / "s", victim.id)
    reopened = ColumnStore.open(tmp_path / "s", OPTS)

    def walk(**kw):
        seen, token, counted = [], "", 0
        while True:
            page = reopened.list_images(2, token, order=order, **kw)
            seen += [m.id for m in page.images]
            counted = max(counted, page.unreadable_count)
            token = page.next_page_token
            if not token:
                return seen, counted

    listed, unreadable = walk()
    assert sorted(listed) == sorted(m.id for m in metas if m.id != victim.id)
    assert unreadable == 1
    assert len(listed) == len(set(listed))
    listed, _ = walk(owner="ann")
    assert victim.id not in listed and len(listed) == 6
    with pytest.raises(DataLossError):
        reopened.get(victim.id)
    # Verify names the same record.
    report = reopened.verify()
    assert any(victim.id in d.image_ids for d in report.damaged), report.damaged
    reopened.close()


def test_annotations_trash_and_deletes_survive_flush_compaction_and_restart(tmp_path, small_images):
    store = ColumnStore.open(tmp_path / "s", OPTS)
    metas = _put_all(store, small_images[:8])
    store.update_annotations(
        metas[0].id,
        AnnotationUpdate(
            fields=frozenset({"status", "tags", "favourite"}),
            status=AnalysisStatus.READY,
            tags=("beach",),
            favourite=True,
        ),
    )
    store.update_annotations(metas[1].id, AnnotationUpdate(frozenset({"trashed"}), trashed=True))
    store.delete(metas[2].id)
    store.flush()
    before = {m.id: m for m in store.list_images(50).images}
    store.compact()
    after_compaction = {m.id: m for m in store.list_images(50).images}
    store.close()

    reopened = ColumnStore.open(tmp_path / "s", OPTS)
    after_restart = {m.id: m for m in reopened.list_images(50).images}

    assert before == after_compaction == after_restart
    assert after_restart[metas[0].id].tags == ("beach",)
    assert after_restart[metas[0].id].favourite
    assert metas[1].id not in after_restart
    assert reopened.list_images(trashed_only=True).images[0].id == metas[1].id
    assert reopened.list_images(favourite_only=True).total_count == 1
    assert reopened.count(status=AnalysisStatus.READY) == 1
    with pytest.raises(ImageNotFoundError):
        reopened.get(metas[2].id)
    assert reopened.find_by_filename("p3.jpg")[0].id == metas[3].id
    assert reopened.find_by_sha256(metas[4].sha256)[0].id == metas[4].id
    assert reopened.read_data(metas[5].id)[1] == small_images[5].data
    reopened.close()


def test_segments_written_before_they_carried_an_index_still_open(tmp_path, small_images):
    data_dir = tmp_path / "s"
    (data_dir / "segments").mkdir(parents=True)
    image = small_images[0]
    rows = []
    for i in range(3):
        values = {
            "id": f"0000000000{i:02x}0000{i:016x}",
            "filename": f"old{i}.jpg",
            "owner": "ann",
            "content_type": "image/jpeg",
            "format": "JPEG",
            "created_at_ms": 1_000_000 + i,
            "sha256": f"{i:064x}",
            "byte_size": len(image.data),
            "width": image.width,
            "height": image.height,
            "exif": {"taken_at": f"201{i}:01:01 00:00:00"},
            "status": int(AnalysisStatus.PENDING),
        }
        rows.append(Row(i + 1, RowKind.PUT, values, {"data": image.data}))
    write_segment(data_dir / "segments" / "000001.seg", rows, covers=[(1, 3)], with_index=False)
    Manifest((1,), 2, 1, {1: 3}, 0).save(data_dir)
    assert not SegmentReader(data_dir / "segments" / "000001.seg").has_index

    store = ColumnStore.open(data_dir, OPTS)

    assert store.find_by_filename("old1.jpg")[0].id == rows[1].image_id
    assert store.find_by_sha256(f"{2:064x}")[0].filename == "old2.jpg"
    newest_taken = store.list_images(order=ListOrder.TAKEN_NEWEST).images
    assert [m.filename for m in newest_taken] == ["old2.jpg", "old1.jpg", "old0.jpg"]
    assert store.read_data(rows[0].image_id)[1] == image.data
    # A compaction rewrites it with its index.
    store.compact()
    assert all(s.has_index for s in store._segments)
    store.close()


def test_compaction_merges_in_bounded_runs_with_progress(tmp_path, small_images):
    options = dataclasses.replace(OPTS, compact_max_run_rows=6)
    store = ColumnStore.open(tmp_path / "s", options)
    metas = _put_all(store, small_images[:16])
    store.flush()
    # Annotations superseded by newer ones in another segment (so in another run).
    for tag in ("old", "x"):
        for m in metas[::3]:
            store.update_annotations(m.id, AnnotationUpdate(frozenset({"tags"}), tags=(tag,)))
        store.flush()
    calls = []

    report = store.compact(progress=lambda done, total: calls.append((done, total)))

    assert report.rows_dropped > 0
    assert calls and calls[-1][0] == calls[-1][1] > 1
    assert all(s.row_count <= 6 for s in store._segments)
    assert {m.id for m in store.list_images(50).images} == {m.id for m in metas}
    assert store.get(metas[0].id).tags == ("x",)
    store.close()


def test_a_delete_whose_tombstone_is_in_another_run_drops_the_image_rows(tmp_path, small_images):
    options = dataclasses.replace(OPTS, compact_max_run_rows=4)
    store = ColumnStore.open(tmp_path / "s", options)
    metas = _put_all(store, small_images[:8])
    store.flush()
    first = min(store._segments, key=lambda s: s.segment_id)
    victim = first.ids()[0]
    store.delete(victim)
    store.flush()
    data_before = sum(s.column_bytes()["data"][1] for s in store._segments)

    store.compact()

    holding = [s for s in store._segments if victim in s.ids()]
    kinds = [int(s.column("kind")[s.ids().index(victim)]) for s in holding]
    assert kinds == [int(RowKind.DELETE)]  # only its tombstone is left
    data_after = sum(s.column_bytes()["data"][1] for s in store._segments)
    assert data_after < data_before
    assert len(store.list_images(50).images) == len(metas) - 1
    store.close()


def test_key_hash_is_stable_and_64_bit():
    assert fmt.key_hash("IMG_0001.jpg") == fmt.key_hash("IMG_0001.jpg")
    assert fmt.key_hash("a") != fmt.key_hash("b")
    assert -(2**63) <= fmt.key_hash("x" * 500) < 2**63


def test_metadata_read_from_rows_is_the_same_as_built_by_its_constructor(tmp_path, small_images):
    # _meta_from fills ImageMeta's and Label's fields at once (not through __init__): every
    # field is there, equal to what the constructor makes, frozen and replaceable.
    store = ColumnStore.open(tmp_path / "s", OPTS)
    metas = _put_all(store, small_images[:3])
    store.update_annotations(
        metas[0].id,
        AnnotationUpdate(
            fields=frozenset({"labels", "status", "tags"}),
            labels=(Label("tabby", 0.75, ("cat",), 281), Label("mug", 0.5)),
            status=AnalysisStatus.READY,
            tags=("x",),
        ),
    )
    store.flush()
    store.close()
    reopened = ColumnStore.open(tmp_path / "s", dataclasses.replace(OPTS, meta_cache_images=1))
    for meta in metas:
        read = reopened.get(meta.id)
        rebuilt = ImageMeta(
            **{f.name: getattr(read, f.name) for f in dataclasses.fields(ImageMeta)}
        )
        assert read == rebuilt and repr(read) == repr(rebuilt)
        assert vars(read).keys() == vars(rebuilt).keys()
        assert dataclasses.replace(read, ocr_text="z").ocr_text == "z"
        with pytest.raises(dataclasses.FrozenInstanceError):
            read.filename = "other"  # type: ignore[misc]
    labelled = reopened.get(metas[0].id)
    assert labelled.labels == (Label("tabby", 0.75, ("cat",), 281), Label("mug", 0.5))
    assert vars(labelled.labels[0]) == vars(Label("tabby", 0.75, ("cat",), 281))
    assert labelled.thumb_state == metas[1].thumb_state == ImageMeta.thumb_state
    reopened.close()
