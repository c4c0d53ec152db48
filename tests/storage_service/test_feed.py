"""The change feed in the column store: every put, annotate and delete in seq order, from any
retained point; only durable rows; a retention horizon that compaction advances (and records)
only when it drops older rows; wait_for_change wakes on a visible change."""

from __future__ import annotations

import errno
import random
import threading
import time

import pytest

from storage_service.columnstore import vectors
from storage_service.columnstore.errors import BackgroundError, HistoryCompactedError
from storage_service.columnstore.feed import CHUNK, ChangeHistory
from storage_service.columnstore.fs import Fault, FaultInjectingFileSystem
from storage_service.columnstore.id_array import id_bytes
from storage_service.columnstore.model import AnnotationUpdate, ChangeKind
from storage_service.columnstore.store import ColumnStore, StoreOptions
from tests.storage_service.test_slot_map import ODD_IDS

BIG = StoreOptions(memtable_bytes=1 << 30, retry_initial_s=0.05, retry_max_s=0.2)
PUT, ANNOTATE, DELETE = ChangeKind.PUT, ChangeKind.ANNOTATE, ChangeKind.DELETE


def _tag(tag: str) -> AnnotationUpdate:
    return AnnotationUpdate(add_tags=(tag,))


def _feed(store: ColumnStore, after: int = 0, limit: int = 1000) -> list[tuple[int, str, str]]:
    page = store.changes(after, limit)
    return [(c.seq, c.kind.name, c.image_id) for c in page.changes]


def test_the_feed_has_every_put_annotate_and_delete_in_seq_order(tmp_path, small_images):
    store = ColumnStore.open(tmp_path / "s", BIG)
    a = store.put("a.jpg", "", small_images[0]).image.id
    b = store.put("b.jpg", "", small_images[1]).image.id
    store.update_annotations(a, _tag("cat"))
    c = store.put("c.jpg", "", small_images[2]).image.id
    store.delete(b)
    store.update_annotations(c, _tag("dog"))

    feed = _feed(store)
    assert [(k, i) for _s, k, i in feed] == [
        ("PUT", a),
        ("PUT", b),
        ("ANNOTATE", a),
        ("PUT", c),
        ("DELETE", b),
        ("ANNOTATE", c),
    ]
    seqs = [s for s, _k, _i in feed]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    page = store.changes(0, 1000)
    assert page.head_seq == seqs[-1]
    assert page.horizon_seq == 0
    # Each change carries the image's current metadata; a deleted image's carry none.
    by_seq = {ch.seq: ch for ch in page.changes}
    assert by_seq[seqs[2]].image is not None and by_seq[seqs[2]].image.tags == ("cat",)
    assert by_seq[seqs[4]].image is None and by_seq[seqs[1]].image is None
    # From the middle: exactly the rest; in small batches: the same sequence.
    assert _feed(store, seqs[2]) == feed[3:]
    batched: list[tuple[int, str, str]] = []
    after = 0
    while chunk := _feed(store, after, 2):
        batched += chunk
        after = chunk[-1][0]
    assert batched == feed
    assert _feed(store, seqs[-1]) == []
    # Ahead of the head: a consumer of some other store, told to resynchronise.
    with pytest.raises(HistoryCompactedError, match="ahead"):
        store.changes(seqs[-1] + 1)
    store.close()


def test_the_feed_survives_flushes_and_a_restart(tmp_path, small_images):
    store = ColumnStore.open(tmp_path / "s", StoreOptions(memtable_bytes=20_000))
    ids = [store.put(f"{i}.jpg", "", im).image.id for i, im in enumerate(small_images[:8])]
    store.flush()  # these in segments (some flushed on their own already), the rest in the log
    store.update_annotations(ids[3], _tag("x"))
    store.delete(ids[5])
    before = _feed(store)
    assert store.stats().segment_count >= 1
    store.close()

    reopened = ColumnStore.open(tmp_path / "s", StoreOptions(memtable_bytes=20_000))
    assert _feed(reopened) == before
    assert reopened.head_seq == before[-1][0]
    reopened.close()


def test_a_write_whose_fsync_fails_never_appears_in_the_feed(tmp_path, small_images):
    fs = FaultInjectingFileSystem()
    store = ColumnStore.open(tmp_path / "s", BIG, fs=fs)
    kept = store.put("a.jpg", "", small_images[0]).image.id
    fs.faults.append(Fault("sync", errno.EIO, path_part="wal", times=1))
    with pytest.raises(BackgroundError):
        store.put("b.jpg", "", small_images[1])
    deadline = time.monotonic() + 10
    while store.stats().background_error:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    later = store.put("c.jpg", "", small_images[2]).image.id

    assert [(k, i) for _s, k, i in _feed(store)] == [("PUT", kept), ("PUT", later)]
    store.close()
    reopened = ColumnStore.open(tmp_path / "s", BIG)
    assert [(k, i) for _s, k, i in _feed(reopened)] == [("PUT", kept), ("PUT", later)]
    reopened.close()


def test_wait_for_change_wakes_when_a_write_becomes_visible(tmp_path, small_images):
    store = ColumnStore.open(tmp_path / "s", BIG)
    store.put("a.jpg", "", small_images[0])
    head = store.head_seq
    assert store.wait_for_change(head, 0.05) is False  # nothing new: times out
    assert store.wait_for_change(head - 1, 0.0) is True

    woke: list[float] = []

    def waiter() -> None:
        # A long timeout: only the put's notification can end this wait within the join.
        woke.append(store.wait_for_change(head, 120))

    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    time.sleep(0.1)
    new = store.put("b.jpg", "", small_images[1]).image.id
    thread.join(10)
    assert woke == [True], "the waiter was not woken by the put"
    assert _feed(store, head) == [(store.head_seq, "PUT", new)]
    store.close()


def test_close_releases_waiters(tmp_path):
    store = ColumnStore.open(tmp_path / "s", BIG)
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(store.wait_for_change(0, 30)))
    thread.start()
    time.sleep(0.1)
    store.close()
    thread.join(5)
    assert result == [False]


def _churn(store: ColumnStore, images, n: int) -> list[str]:
    """Puts, two annotations each and deletes of half, flushed: rows compaction can drop."""
    ids = [store.put(f"{i}.jpg", "", im).image.id for i, im in enumerate(images[:n])]
    for image_id in ids:
        store.update_annotations(image_id, _tag("one"))
        store.update_annotations(image_id, _tag("two"))
    for image_id in ids[: n // 2]:
        store.delete(image_id)
    store.flush()
    return ids


def test_compaction_keeps_the_retained_changes_and_leaves_the_horizon(tmp_path, small_images):
    options = StoreOptions(memtable_bytes=1 << 30, feed_retention_seqs=1_000)
    store = ColumnStore.open(tmp_path / "s", options)
    _churn(store, small_images, 6)
    store.flush()
    before = _feed(store)

    report = store.compact()

    # Everything is within the retention: nothing may be dropped, the horizon stays.
    assert report.rows_dropped == 0
    assert store.horizon_seq == 0
    assert _feed(store) == before
    # ...but the deleted half's bytes are gone all the same (the feed needs no image bytes;
    # every retained row keeps its metadata, a per-row copy included since issue 13).
    assert report.bytes_after < report.bytes_before * 0.75
    store.close()


def test_retained_rows_keep_only_the_newest_vector_and_live_bytes(tmp_path, small_images):
    options = StoreOptions(memtable_bytes=1 << 30, feed_retention_seqs=1_000)
    store = ColumnStore.open(tmp_path / "s", options)
    ids = [store.put(f"{i}.jpg", "", im).image.id for i, im in enumerate(small_images[:4])]
    for round_ in range(3):
        for n, image_id in enumerate(ids):
            vector = tuple(float(round_ * 10 + n + k) for k in range(512))
            store.update_annotations(
                image_id,
                AnnotationUpdate(fields=frozenset({"feature_vector"}), feature_vector=vector),
            )
    store.update_annotations(ids[0], _tag("no new vector"))  # newest row carries the old one
    store.delete(ids[3])
    store.flush()
    store.compact()

    for reopen in (False, True):
        if reopen:
            store.close()
            store = ColumnStore.open(tmp_path / "s", options)
        for n, image_id in enumerate(ids[:3]):
            newest = [float(20 + n + k) for k in range(512)]
            assert store.feature_vector(image_id) == vectors.decode_list(vectors.encode(newest))
            assert store.read_data(image_id)[1] == small_images[n].data
        store.compact()  # a second merge of the merged rows keeps them too
    assert len(_feed(store)) == 4 + 12 + 1 + 1
    store.close()


def test_compaction_advances_the_horizon_durably_and_older_asks_are_compacted(
    tmp_path, small_images
):
    options = StoreOptions(memtable_bytes=1 << 30, feed_retention_seqs=5)
    store = ColumnStore.open(tmp_path / "s", options)
    ids = _churn(store, small_images, 6)
    live = ids[3:]
    head = store.head_seq
    last_five = [c for c in _feed(store) if c[0] > head - 5]

    report = store.compact()

    assert report.rows_dropped > 0
    horizon = store.horizon_seq
    assert horizon == head + 1 - 5
    with pytest.raises(HistoryCompactedError) as caught:
        store.changes(1, 10)
    assert caught.value.horizon_seq == horizon
    # From just below the horizon (and from 0, "the oldest retained"): the retained changes.
    assert _feed(store, horizon - 1) == last_five
    assert _feed(store, 0) == last_five
    # The data is all there: compaction dropped history, not images.
    assert sorted(m.id for m in store.list_images(page_size=100).images) == sorted(live)
    assert all(store.get(i).tags == ("one", "two") for i in live)
    store.close()

    reopened = ColumnStore.open(tmp_path / "s", options)
    assert reopened.horizon_seq == horizon
    assert _feed(reopened, 0) == last_five
    with pytest.raises(HistoryCompactedError):
        reopened.changes(1, 10)
    reopened.close()


def test_the_history_is_compact_and_trims(tmp_path):
    history = ChangeHistory()
    for seq in range(1, 100_001):
        history.append(seq * 2, 1 + seq % 3, f"{seq:032x}")
    assert len(history) == 100_000
    # numpy chunks, not a Python object per change: about 25 bytes each.
    assert history.nbytes() < 100_000 * 30
    assert history.after(2 * 50_000, 2) == [
        (2 * 50_001, 1 + 50_001 % 3, f"{50_001:032x}"),
        (2 * 50_002, 1 + 50_002 % 3, f"{50_002:032x}"),
    ]
    history.trim_below(2 * 90_000 + 1)
    assert len(history) == 10_000
    assert history.after(0, 1) == [(2 * 90_001, 1 + 90_001 % 3, f"{90_001:032x}")]
    with pytest.raises(ValueError):
        history.append(10, 1, "x")


def test_fsync_and_flush_observers_are_called(tmp_path, small_images):
    fsyncs: list[float] = []
    flushes: list[float] = []
    options = StoreOptions(memtable_bytes=1 << 30, on_fsync=fsyncs.append, on_flush=flushes.append)
    store = ColumnStore.open(tmp_path / "s", options)
    store.put("a.jpg", "", small_images[0])
    assert fsyncs and all(s >= 0 for s in fsyncs)
    assert not flushes
    store.flush()
    assert len(flushes) == 1 and flushes[0] > 0
    store.close()


def test_the_history_keeps_ids_as_16_bytes_and_round_trips_every_shape_exactly():
    # Ids as the store makes them (32 lowercase hex digits) with odd ones among them: hex
    # look-alikes, the all-zero id (its bytes equal an odd id's zero bytes), "" and non-ASCII.
    rng = random.Random(7)
    n = 12 * CHUNK  # a whole number of chunks: nothing left in the Python tail
    odd = [*ODD_IDS, "", "0" * 32 + "\x00", "00" * 15 + "0\x00", "é" * 32]
    ids = [f"{rng.getrandbits(128):032x}" for _ in range(n)]
    ids[0] = "0" * 32
    for k, odd_id in enumerate(odd):
        ids[1 + k * (n // len(odd))] = odd_id
        ids[2 + k * (n // len(odd))] = "0" * 32
    changes = [(3 * i + 1, 1 + i % 3, image_id) for i, image_id in enumerate(ids)]
    history = ChangeHistory()
    for change in changes:
        history.append(*change)
    assert len(history) == n
    assert history.after(0, n + 5) == changes
    # Paged across chunk boundaries, from seqs between changes: the same sequence.
    got, after = [], 0
    while page := history.after(after, 1000 - 7):
        got += page
        after = page[-1][0] + 1
    assert got == changes
    # 8 bytes of seq, 1 of kind, 16 of id per change (41 with 32-byte ids), odd ids aside.
    assert history.nbytes() == 25 * n + 100 * len(odd)
    # After a trim (part of a chunk and whole chunks gone): the rest exactly, the side
    # table trimmed with it; then appends in the tail, odd and hex.
    cut = n // 2 + 11
    history.trim_below(changes[cut][0])
    more = [(3 * n + 1, 1, "x"), (3 * n + 2, 2, ids[5]), (3 * n + 3, 3, "")]
    for change in more:
        history.append(*change)
    assert history.after(0, n) == changes[cut:] + more
    assert history.after(changes[-2][0], 3) == [changes[-1], *more[:2]]
    # The side table holds the frozen changes' odd ids only (the tail keeps its strings).
    assert len(history._odd) == sum(1 for _s, _k, i in changes[cut:] if id_bytes(i) is None)


def test_odd_ids_in_the_feed_survive_flushes_and_a_restart(tmp_path, small_images):
    # The store's id counter past four hex digits makes 33-digit ids (kept in the side table).
    store = ColumnStore.open(tmp_path / "s", StoreOptions(memtable_bytes=20_000))
    ids = [store.put(f"{i}.jpg", "", im).image.id for i, im in enumerate(small_images[:4])]
    store._last_id_ms, store._id_counter = int(time.time() * 1000) + 600_000, 0xFFFF
    ids += [store.put(f"o{i}.jpg", "", im).image.id for i, im in enumerate(small_images[4:8])]
    assert [id_bytes(i) is None for i in ids] == [False] * 4 + [True] * 4
    store.flush()
    store.update_annotations(ids[5], _tag("x"))
    store.update_annotations(ids[1], _tag("y"))
    store.delete(ids[6])
    before = _feed(store)
    assert [i for _s, _k, i in before] == ids + [ids[5], ids[1], ids[6]]
    store.close()

    reopened = ColumnStore.open(tmp_path / "s", StoreOptions(memtable_bytes=20_000))
    assert _feed(reopened) == before
    reopened.close()
