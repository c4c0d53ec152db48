"""Snapshots due by count or interval are written by the index's background thread: the write
(or feed apply) that crossed the count returns at once and more go on while the snapshot is
written; the snapshot still holds what it froze and a restart reads it; close() waits for it
and writes the final one; requests made during one snapshot give one more after it; a failed
one is logged, counted and raised by the next request.

The snapshot is held inside its writing step by a wrapper around the real writer
(snapshot.write_snapshot) that waits for the test to release it, then writes for real."""

from __future__ import annotations

import logging
import threading

import pytest

from search_service import durable_index
from search_service.durable_index import SNAPSHOT_NAME, DurableIndex, FeedChange
from search_service.engine import EngineParams
from search_service.feed_consumer import FeedConsumer
from search_service.snapshot import read_snapshot
from search_service.storage_feed import StorageFeed
from tests.search_service.documents import DIM, doc
from tests.search_service.snapshot_support import WAIT_S, HeldWriter
from tests.search_service.storage_support import Storage, eventually, label

PARAMS = EngineParams(vector_dim=DIM)


@pytest.fixture
def held(monkeypatch) -> HeldWriter:
    writer = HeldWriter()
    monkeypatch.setattr(durable_index, "write_snapshot", writer)
    return writer


def apply_one(index: DurableIndex, seq: int) -> bool:
    """One feed change applied as the consumer does it: apply, then maybe_snapshot."""
    index.apply([FeedChange(seq, f"img{seq}", doc(f"img{seq}", (("moped", 0.9),)))])
    return index.maybe_snapshot()


def in_thread(work) -> threading.Thread:
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def test_applies_that_cross_the_count_go_on_while_the_snapshot_is_written(tmp_path, held):
    index = DurableIndex.open(tmp_path, PARAMS, snapshot_every=3, snapshot_interval_s=3600)
    done: list[int] = []

    def writes() -> None:
        for seq in range(1, 24):
            apply_one(index, seq)
            done.append(seq)

    # In a thread so that a write waiting for the held snapshot fails the test, not hangs it.
    writer = in_thread(writes)
    assert held.entered.wait(WAIT_S)
    writer.join(WAIT_S)
    # All 23 applied (20 after the one that crossed the count, each crossing it again) while
    # the snapshot frozen at seq 3 is still held in its writing step.
    assert not writer.is_alive() and done == list(range(1, 24))
    assert not held.release.is_set() and held.seqs == []
    assert index.applied_seq == 23

    held.release.set()
    assert index.wait_for_snapshots(WAIT_S)
    # The frozen one lands with the seq it froze (3, or a few more if the writes got there
    # before its freeze), and the requests made meanwhile give exactly one more, holding the
    # rest.
    assert len(held.seqs) == 2 and 3 <= held.seqs[0] < 23 and held.seqs[1] == 23
    assert int(read_snapshot(tmp_path / SNAPSHOT_NAME)["seq"]) == 23
    index.close()
    assert len(held.seqs) == 2  # nothing unsaved: close wrote none; the restart reads the 2nd

    reopened = DurableIndex.open(tmp_path, PARAMS)
    assert reopened.applied_seq == 23 and len(reopened) == 23
    hits = reopened.search("moped", limit=50, semantic=False).hits
    assert sorted(h.image_id for h in hits) == sorted(f"img{s}" for s in range(1, 24))
    reopened.close()


def test_direct_writes_that_cross_the_count_return_before_the_snapshot(tmp_path, held):
    index = DurableIndex.open(tmp_path, PARAMS, snapshot_every=2, snapshot_interval_s=3600)
    done: list[str] = []

    def writes() -> None:
        for i in range(10):
            index.put(doc(f"p{i}", (("beagle", 0.9),)))
            done.append(f"p{i}")

    writer = in_thread(writes)
    assert held.entered.wait(WAIT_S)
    writer.join(WAIT_S)
    assert not writer.is_alive() and len(done) == 10 and not held.release.is_set()
    held.release.set()
    index.close()  # waits for the held one, then the one asked for meanwhile; nothing after

    reopened = DurableIndex.open(tmp_path, PARAMS)
    assert len(reopened) == 10
    reopened.close()


def test_close_waits_for_the_snapshot_being_written_and_writes_the_final_one(tmp_path, held):
    index = DurableIndex.open(tmp_path, PARAMS, snapshot_every=3, snapshot_interval_s=3600)
    for seq in range(1, 4):
        apply_one(index, seq)
    assert held.entered.wait(WAIT_S)
    for seq in range(4, 6):  # not enough for another by count
        assert not apply_one(index, seq)

    closer = in_thread(index.close)
    closer.join(0.5)
    assert closer.is_alive()  # close waits for the snapshot it cannot cut short
    held.release.set()
    closer.join(WAIT_S)
    assert not closer.is_alive()
    assert held.seqs == [3, 5]  # the background one, then close's final one

    reopened = DurableIndex.open(tmp_path, PARAMS)
    assert reopened.applied_seq == 5 and len(reopened) == 5
    reopened.close()


def test_requests_during_one_snapshot_give_exactly_one_more(tmp_path, held):
    index = DurableIndex.open(tmp_path, PARAMS, snapshot_every=3, snapshot_interval_s=3600)
    for seq in range(1, 4):
        apply_one(index, seq)
    assert held.entered.wait(WAIT_S)  # frozen at seq 3 (nothing written since)
    # Nothing since it froze: the snapshot being written holds it all, none is due.
    assert not index.maybe_snapshot()
    # Six more changes: from the third on each is due again (four requests while it is
    # written), and they give one snapshot after it, holding all six.
    assert [apply_one(index, seq) for seq in range(4, 10)] == [False, False] + [True] * 4
    held.release.set()
    assert index.wait_for_snapshots(WAIT_S)
    assert held.seqs == [3, 9]
    index.close()
    assert held.seqs == [3, 9]


def test_a_failed_background_snapshot_is_logged_counted_and_raised_by_the_next_request(
    tmp_path, held, caplog
):
    index = DurableIndex.open(tmp_path, PARAMS, snapshot_every=3, snapshot_interval_s=3600)
    held.fail_next = True
    held.release.set()
    with caplog.at_level(logging.ERROR, logger="search_service.durable_index"):
        for seq in range(1, 4):
            apply_one(index, seq)
        assert index.wait_for_snapshots(WAIT_S)

    assert index.snapshot_failures == 1
    assert "No space left on device" in index.last_snapshot_error
    assert any("background snapshot failed" in r.getMessage() for r in caplog.records)
    assert not (tmp_path / SNAPSHOT_NAME).exists()
    with pytest.raises(OSError, match="No space left"):
        index.maybe_snapshot()
    # Raised once; the next request (still due) writes it.
    assert index.maybe_snapshot() and index.wait_for_snapshots(WAIT_S)
    assert held.seqs == [3] and index.snapshot_failures == 1
    index.close()


def test_the_feed_consumer_applies_on_while_a_snapshot_is_written(tmp_path, held, photo_jpegs):
    storage = Storage(tmp_path / "storage").start()
    index = DurableIndex.open(tmp_path / "search", snapshot_every=2, snapshot_interval_s=3600)
    source = StorageFeed(storage.address)
    feed = FeedConsumer(index, source, retry_initial_s=0.05)
    feed.start()
    try:
        storage.put_ready(photo_jpegs["rocket"], "r.jpg", [label("shuttle")])
        assert held.entered.wait(WAIT_S)  # the count crossed: a snapshot is being written
        storage.put_ready(photo_jpegs["coffee"], "c.jpg", [label("espresso")])
        head = storage.head_seq()
        eventually(lambda: index.applied_seq >= head, what="the feed applied while held")
        assert not held.release.is_set() and held.seqs == []
        assert [h.image_id for h in index.search("espresso", semantic=False).hits]
    finally:
        held.release.set()
        feed.stop()
        source.close()
        index.close()
        storage.stop()
    assert held.seqs[-1] == head
    reopened = DurableIndex.open(tmp_path / "search")
    assert reopened.applied_seq == head and len(reopened) == 2
    reopened.close()
