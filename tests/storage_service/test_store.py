"""The column store used directly: recovery, log damage, compaction, index consistency."""

from __future__ import annotations

import logging
import shutil
import threading
import time

import pytest

from storage_service.columnstore import wal
from storage_service.columnstore.errors import (
    DataLossError,
    ImageNotFoundError,
    StoreClosedError,
)
from storage_service.columnstore.image_check import prepare_image
from storage_service.columnstore.model import AnnotationUpdate, Label
from storage_service.columnstore.segment_reader import SegmentReader
from storage_service.columnstore.store import ColumnStore, StoreOptions
from tests.storage_service.conftest import SMALL_MEMTABLE, jpeg_variant


@pytest.fixture(scope="module")
def prepared(photo_jpegs):
    """Validated photos with thumbnails, ready for put (made once: Pillow work is slow)."""
    return [prepare_image(jpeg_variant(data, i)) for i, data in enumerate(photo_jpegs.values())]


def _crash_copy(store: ColumnStore, tmp_path, name: str = "crashed"):
    """The data dir as a kill -9 would leave it now: every acknowledged write is in a file."""
    target = tmp_path / name
    shutil.copytree(store.data_dir, target)
    return target


def test_unflushed_writes_are_replayed_from_the_log(tmp_path, prepared):
    store = ColumnStore.open(tmp_path / "s", StoreOptions(memtable_bytes=1 << 30))
    ids = [store.put(f"{i}.jpg", "", p).image.id for i, p in enumerate(prepared[:4])]
    store.delete(ids[0])
    store.update_annotations(
        ids[1], AnnotationUpdate(fields=frozenset({"ocr_text"}), ocr_text="hello")
    )

    reopened = ColumnStore.open(_crash_copy(store, tmp_path))

    assert [m.id for m in reopened.list_images().images] == ids[:0:-1]
    assert reopened.get(ids[1]).ocr_text == "hello"
    assert reopened.read_data(ids[3])[1] == prepared[3].data
    with pytest.raises(ImageNotFoundError):
        reopened.get(ids[0])
    reopened.close()
    store.close()


def test_torn_log_tail_is_dropped_with_a_log_line(tmp_path, prepared, caplog):
    store = ColumnStore.open(tmp_path / "s", StoreOptions(memtable_bytes=1 << 30))
    ids = [store.put(f"{i}.jpg", "", p).image.id for i, p in enumerate(prepared[:3])]
    crashed = _crash_copy(store, tmp_path)
    (log_file,) = (crashed / "wal").glob("*.log")
    last_start = wal.record_offsets(log_file)[-1]
    log_file.write_bytes(log_file.read_bytes()[: last_start + 1000])  # the last record cut short

    with caplog.at_level(logging.ERROR):
        reopened = ColumnStore.open(crashed)

    assert [m.id for m in reopened.list_images().images] == ids[1::-1]
    assert any("write-ahead log damage" in r.message for r in caplog.records)
    reopened.close()
    store.close()


def test_flipped_byte_in_the_log_drops_that_record_and_keeps_the_rest(tmp_path, prepared, caplog):
    store = ColumnStore.open(tmp_path / "s", StoreOptions(memtable_bytes=1 << 30))
    ids = [store.put(f"{i}.jpg", "", p).image.id for i, p in enumerate(prepared[:3])]
    crashed = _crash_copy(store, tmp_path)
    (log_file,) = (crashed / "wal").glob("*.log")
    raw = bytearray(log_file.read_bytes())
    second_record_middle = wal.record_offsets(log_file)[1] + 5000
    raw[second_record_middle] ^= 0x01
    log_file.write_bytes(bytes(raw))

    with caplog.at_level(logging.ERROR):
        reopened = ColumnStore.open(crashed)

    assert [m.id for m in reopened.list_images().images] == [ids[2], ids[0]]
    assert reopened.read_data(ids[2])[1] == prepared[2].data
    assert any("write-ahead log damage" in r.message for r in caplog.records)
    reopened.close()
    store.close()


def test_flush_moves_rows_to_a_segment_and_retires_the_log(bare_store, prepared):
    ids = [bare_store.put(f"{i}.jpg", "", p).image.id for i, p in enumerate(prepared)]

    bare_store.flush()
    stats = bare_store.stats()

    assert stats.memtable_rows == 0
    assert stats.segment_count >= 1
    (current_log,) = (bare_store.data_dir / "wal").glob("*.log")
    assert wal.read_log(current_log) == ([], [])
    assert [bare_store.read_data(i)[1] for i in ids] == [p.data for p in prepared]


def test_filename_index_stays_consistent_through_delete_compaction_and_restart(tmp_path, prepared):
    store = ColumnStore.open(tmp_path / "s", SMALL_MEMTABLE)
    ids = [store.put("same.jpg", "", p).image.id for p in prepared[:5]]
    store.flush()
    store.delete(ids[1])
    store.delete(ids[3])
    store.flush()

    store.compact()
    after_compaction = [m.id for m in store.find_by_filename("same.jpg")]
    store.close()
    reopened = ColumnStore.open(tmp_path / "s", SMALL_MEMTABLE)

    expected = [ids[4], ids[2], ids[0]]
    assert after_compaction == expected
    assert [m.id for m in reopened.find_by_filename("same.jpg")] == expected
    assert reopened.find_by_filename("missing.jpg") == []
    reopened.close()


def test_annotations_survive_compaction_with_their_vector(tmp_path, prepared):
    store = ColumnStore.open(tmp_path / "s", SMALL_MEMTABLE)
    image_id = store.put("a.jpg", "", prepared[0]).image.id
    store.update_annotations(
        image_id,
        AnnotationUpdate(
            fields=frozenset({"labels", "feature_vector"}),
            labels=(Label("tabby", 0.5),),
            feature_vector=(1.0, 2.0, 3.0),
        ),
    )
    store.flush()
    store.update_annotations(image_id, AnnotationUpdate(add_tags=("x",)))
    store.flush()

    store.compact()
    store.close()
    reopened = ColumnStore.open(tmp_path / "s")

    meta = reopened.get(image_id)
    assert meta.labels == (Label("tabby", 0.5),)
    assert meta.tags == ("x",)
    assert reopened.feature_vector(image_id) == [1.0, 2.0, 3.0]
    assert reopened.stats().segment_count == 1
    reopened.close()


def test_background_policy_merges_segments_of_a_size_tier(tmp_path, prepared):
    # Every put fills the memtable: ten flushes, ten segments of about the same size.
    store = ColumnStore.open(tmp_path / "s", StoreOptions(memtable_bytes=1, compact_min_segments=3))
    ids = [store.put(f"{i}.jpg", "", p).image.id for i, p in enumerate(prepared)]

    deadline = time.monotonic() + 30
    while store.stats().segment_count > 4 and time.monotonic() < deadline:
        time.sleep(0.05)

    assert len(ids) == 10
    assert store.stats().segment_count <= 4
    assert [store.read_data(i)[1] for i in ids] == [p.data for p in prepared]
    store.close()


def test_partial_merge_keeps_tombstones_and_annotations_of_rows_outside_it(tmp_path, prepared):
    store = ColumnStore.open(tmp_path / "s", SMALL_MEMTABLE)
    ids = [store.put(f"{i}.jpg", "", p).image.id for i, p in enumerate(prepared[:3])]
    store.flush()  # segment A: three puts
    store.delete(ids[0])
    store.update_annotations(
        ids[1], AnnotationUpdate(fields=frozenset({"ocr_text"}), ocr_text="kept")
    )
    store.flush()  # segment B: a tombstone and an annotation whose puts are in A
    store.put("new.jpg", "", prepared[3])
    store.flush()  # segment C
    a, b, c = sorted(int(p.stem) for p in (store.data_dir / "segments").glob("*.seg"))

    partial = store.compact([b, c])
    after_partial = (store.get(ids[1]).ocr_text, store.stats().deleted_count)
    store.close()
    reopened = ColumnStore.open(tmp_path / "s", SMALL_MEMTABLE)
    reopened_view = (reopened.get(ids[1]).ocr_text, [m.id for m in reopened.list_images().images])
    reopened.compact()

    assert (partial.segments_before, partial.segments_after, partial.rows_dropped) == (3, 2, 0)
    assert after_partial == ("kept", 1)
    assert reopened_view[0] == "kept"
    assert ids[0] not in reopened_view[1]
    assert len(reopened_view[1]) == 3
    assert reopened.stats().deleted_count == 0
    with pytest.raises(ImageNotFoundError):
        reopened.get(ids[0])
    assert reopened.get(ids[1]).ocr_text == "kept"
    reopened.close()


def test_readers_keep_reading_while_compaction_swaps_segments(tmp_path, prepared):
    store = ColumnStore.open(tmp_path / "s", SMALL_MEMTABLE)
    ids = [store.put(f"{i}.jpg", "", p).image.id for i, p in enumerate(prepared)]
    store.flush()
    expected = dict(zip(ids, (p.data for p in prepared), strict=True))
    stop = threading.Event()
    failures: list[BaseException] = []
    reads = [0]

    def reader() -> None:
        while not stop.is_set():
            for image_id, data in expected.items():
                try:
                    assert store.read_data(image_id)[1] == data
                    reads[0] += 1
                except BaseException as e:  # noqa: BLE001 - reported below
                    failures.append(e)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in range(3):
        store.put("more.jpg", "", prepared[0])
        store.flush()
        store.compact()
    stop.set()
    for t in threads:
        t.join()

    assert failures == []
    assert reads[0] > 0
    assert len(list((store.data_dir / "segments").glob("*.seg"))) == 1
    store.close()


def test_writes_after_close_are_refused(tmp_path, prepared):
    store = ColumnStore.open(tmp_path / "s")
    store.close()

    with pytest.raises(StoreClosedError):
        store.put("a.jpg", "", prepared[0])


def test_segment_with_a_damaged_column_answers_data_loss_and_the_rest_serves(tmp_path, prepared):
    store = ColumnStore.open(tmp_path / "s", SMALL_MEMTABLE)
    first = [store.put(f"a{i}.jpg", "", p).image.id for i, p in enumerate(prepared[:2])]
    store.flush()
    second = [store.put(f"b{i}.jpg", "", p).image.id for i, p in enumerate(prepared[2:4])]
    store.close()
    damaged = sorted((tmp_path / "s" / "segments").glob("*.seg"))[0]
    offset, length = SegmentReader(damaged).block_location("filename")
    raw = bytearray(damaged.read_bytes())
    raw[offset + length // 2] ^= 0x10
    damaged.write_bytes(bytes(raw))

    reopened = ColumnStore.open(tmp_path / "s", SMALL_MEMTABLE)

    with pytest.raises(DataLossError, match=damaged.name):
        reopened.get(first[0])
    assert reopened.read_data(second[1])[1] == prepared[3].data
    reopened.put("c.jpg", "", prepared[4])
    reopened.flush()
    reopened.close()
    assert damaged.exists()


def test_one_copy_per_photo_and_owner_even_when_two_identical_puts_race(tmp_path, prepared):
    store = ColumnStore.open(tmp_path / "s", SMALL_MEMTABLE)
    results = []
    barrier = threading.Barrier(6)

    def put_same(owner: str) -> None:
        barrier.wait()
        results.append(store.put("a.jpg", owner, prepared[0], keep_duplicate=False))

    threads = [threading.Thread(target=put_same, args=(o,)) for o in ("ann",) * 4 + ("bob",) * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored = [r for r in results if not r.already_stored]
    assert sorted(r.image.owner for r in stored) == ["ann", "bob"]
    by_owner = {r.image.owner: r.image.id for r in stored}
    assert all(r.image.id == by_owner[r.image.owner] for r in results)
    assert len(store.find_by_sha256(prepared[0].sha256)) == 2
    assert [m.id for m in store.find_by_sha256(prepared[0].sha256, "bob")] == [by_owner["bob"]]
    # The default keeps today's behaviour: a second copy, naming the first as a duplicate.
    again = store.put("b.jpg", "ann", prepared[0])
    assert not again.already_stored and by_owner["ann"] in again.duplicate_of
    got = store.get_many([by_owner["ann"], "nope", again.image.id])
    assert [m.id if m else None for m in got] == [by_owner["ann"], None, again.image.id]
    store.close()


def test_verify_checks_every_byte_with_progress_and_is_remembered(tmp_path, prepared):
    store = ColumnStore.open(tmp_path / "s", SMALL_MEMTABLE)
    for i, p in enumerate(prepared[:6]):
        store.put(f"{i}.jpg", "", p)
    store.flush()
    store.put("log.jpg", "", prepared[6])
    assert store.last_verify is None
    seen: list[tuple[int, int]] = []

    report = store.verify(lambda done, total: seen.append((done, total)))

    assert report.ok and report.damaged == ()
    segments = list((tmp_path / "s" / "segments").glob("*.seg"))
    assert report.bytes_checked >= sum(p.stat().st_size for p in segments)
    assert report.files_checked >= len(segments) + 2  # segments, the log, the manifest
    dones = [d for d, _t in seen]
    assert dones == sorted(dones) and seen[-1][0] == seen[-1][1]
    assert store.last_verify is report
    store.close()
