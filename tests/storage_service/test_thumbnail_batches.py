"""The background thumbnailer stores its thumbnails in batches (issue 13, thumbnail CPU): the
rows of a batch share one fsync, a corrupt image or a deleted one in a batch does not keep the
others from being stored, and a batch is durable across a restart."""

from __future__ import annotations

import time

from storage_service.columnstore.errors import DataLossError
from storage_service.columnstore.image_check import check_image, render_thumbnails
from storage_service.columnstore.model import ThumbnailSize, ThumbState
from storage_service.columnstore.segment_reader import SegmentReader
from storage_service.columnstore.store import ColumnStore, StoreOptions
from storage_service.columnstore.thumbnailer import Thumbnailer
from tests.storage_service.conftest import SMALL_MEMTABLE, jpeg_variant
from tests.support import png_damaged_in_pixels


def test_a_batch_of_thumbnails_shares_one_fsync_and_survives_a_restart(tmp_path, photo_jpegs):
    store = ColumnStore.open(tmp_path / "store", SMALL_MEMTABLE)
    photos = [jpeg_variant(data, i) for i, data in enumerate(photo_jpegs.values())][:6]
    ids = [store.put(f"p{i}.jpg", "", check_image(d)).image.id for i, d in enumerate(photos)]
    thumbnailer = Thumbnailer(store, batch_size=8)
    fsyncs = store._wal.fsyncs

    results, errors = thumbnailer._make_many(ids)

    assert errors == {}
    assert store._wal.fsyncs - fsyncs == 1
    assert thumbnailer.stats().made == len(ids)
    expected = {i: render_thumbnails(d).small for i, d in zip(ids, photos, strict=True)}
    for image_id in ids:
        meta = results[image_id]
        assert meta is not None and meta.thumb_state is ThumbState.MADE
        assert store.thumbnail(image_id, ThumbnailSize.SMALL).data == expected[image_id]
    store.close()
    store = ColumnStore.open(tmp_path / "store", SMALL_MEMTABLE)
    for image_id in ids:
        assert store.get(image_id).thumb_state is ThumbState.MADE
        assert store.thumbnail(image_id, ThumbnailSize.SMALL).data == expected[image_id]
    store.close()


def test_a_corrupt_or_deleted_image_in_a_batch_leaves_the_others_stored(
    tmp_path, photo_jpegs, photo_paths
):
    store = ColumnStore.open(tmp_path / "store", SMALL_MEMTABLE)
    good = [jpeg_variant(data, i) for i, data in enumerate(photo_jpegs.values())][:3]
    ids = [store.put(f"p{i}.jpg", "", check_image(d)).image.id for i, d in enumerate(good)]
    bad = store.put(
        "bad.png", "", check_image(png_damaged_in_pixels(photo_paths["coffee"].read_bytes()))
    )
    gone = store.put("gone.jpg", "", check_image(jpeg_variant(good[0], 99))).image.id
    store.delete(gone)
    batch = [ids[0], bad.image.id, gone, ids[1], ids[2]]

    results, errors = Thumbnailer(store)._make_many(batch)

    assert errors == {}
    assert results[gone] is None
    failed = results[bad.image.id]
    assert failed is not None and failed.thumb_state is ThumbState.FAILED
    assert "corrupt" in store.get(bad.image.id).thumb_detail
    for image_id in ids:
        assert store.get(image_id).thumb_state is ThumbState.MADE
    store.close()


def test_the_running_thumbnailer_makes_every_image_in_batches(tmp_path, photo_jpegs):
    store = ColumnStore.open(tmp_path / "store", SMALL_MEMTABLE)
    photos = [jpeg_variant(data, i) for i, data in enumerate(photo_jpegs.values())]
    photos = (photos * 3)[:24]
    ids = [
        store.put(f"p{i}.jpg", "", check_image(jpeg_variant(d, i))).image.id
        for i, d in enumerate(photos)
    ]
    fsyncs = store._wal.fsyncs
    thumbnailer = Thumbnailer(store, batch_size=8, workers=1).start()
    try:
        assert thumbnailer.wait_idle(120)
        assert all(store.get(i).thumb_state is ThumbState.MADE for i in ids)
        assert thumbnailer.stats().made == len(ids)
        # Everything was queued before the worker started: batches of 8, so 3 fsyncs (the
        # checkpoint file is not the log).
        assert store._wal.fsyncs - fsyncs <= 4
    finally:
        thumbnailer.stop()
        store.close()


class _RecordingStore(ColumnStore):
    """The real store, recording the size of each batch of thumbnails stored and when."""

    batches: list[tuple[float, int]]

    def set_thumbnails_many(self, items):  # type: ignore[no-untyped-def]
        self.batches.append((time.monotonic(), len(items)))
        return super().set_thumbnails_many(items)


def test_while_puts_arrive_the_workers_make_one_image_at_a_time(tmp_path, photo_jpegs):
    store = _RecordingStore.open(tmp_path / "store", SMALL_MEMTABLE)
    assert isinstance(store, _RecordingStore)
    store.batches = []
    photos = [jpeg_variant(data, i) for i, data in enumerate(photo_jpegs.values())]
    prepared = [check_image(jpeg_variant(d, i)) for i, d in enumerate((photos * 12)[:100])]
    ids = [store.put("first.jpg", "", prepared[0]).image.id]
    thumbnailer = Thumbnailer(store, workers=1, batch_size=8, yield_s=0.05, nice=0).start()
    try:
        for i, image in enumerate(prepared[1:]):
            ids.append(store.put(f"p{i}.jpg", "", image).image.id)
        puts_done = time.monotonic()
        assert thumbnailer.wait_idle(120)
    finally:
        thumbnailer.stop()
    during = [size for at, size in store.batches if at < puts_done]
    after = [size for at, size in store.batches if at >= puts_done]
    # One image per batch (and a pause) while puts arrived; the rest in batches once they
    # stopped.
    assert during and set(during[1:]) <= {1}
    assert max(after) > 1
    assert all(store.get(i).thumb_state is ThumbState.MADE for i in ids)
    store.close()


def test_an_image_with_damaged_bytes_in_a_batch_leaves_the_others_stored(tmp_path, photo_jpegs):
    opts = StoreOptions(memtable_bytes=1 << 30, compact_min_segments=1000)
    store = ColumnStore.open(tmp_path / "store", opts)
    photos = [jpeg_variant(data, i) for i, data in enumerate(photo_jpegs.values())][:3]
    ids = [store.put(f"p{i}.jpg", "", check_image(d)).image.id for i, d in enumerate(photos)]
    store.flush()
    store.close()
    (segment,) = sorted((tmp_path / "store" / "segments").glob("*.seg"))
    victim = ids[1]
    offset, length = SegmentReader(segment).blob_location(
        "data", SegmentReader(segment).ids().index(victim)
    )
    raw = bytearray(segment.read_bytes())
    raw[offset + length // 2] ^= 0x10
    segment.write_bytes(bytes(raw))
    store = ColumnStore.open(tmp_path / "store", opts)

    results, errors = Thumbnailer(store)._make_many(ids)

    assert list(errors) == [victim] and isinstance(errors[victim], DataLossError)
    assert store.get(victim).thumb_state is ThumbState.PENDING
    for image_id in (ids[0], ids[2]):
        meta = results[image_id]
        assert meta is not None and meta.thumb_state is ThumbState.MADE
    store.close()
