"""A feed apply takes the writers' lock a part at a time (durable_index._APPLY_BATCH upserts):
a direct write or a snapshot that arrives while an apply runs goes in between two of its
parts, not after the whole apply, and a snapshot taken there holds exactly the index at its
seq (the restart replays the rest).

Real DurableIndex, real threads, no timing: the feed's changes come from a generator that,
asked for the first change of the second part, lets the other thread in and waits until that
thread's write or snapshot has returned. With the writers' lock held for the whole apply
(durable_index.APPLY_WHOLE, as before) the other thread cannot get in: the generator gives up
after DEADLINE_S and the write is seen to land after the whole apply."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from search_service import durable_index
from search_service.durable_index import DurableIndex, FeedChange
from search_service.engine import EngineParams
from search_service.snapshot import FOREGROUND
from tests.search_service.documents import DIM, doc, unit

PARAMS = EngineParams(vector_dim=DIM)
DEADLINE_S = 30  # only so the broken behaviour fails instead of hanging the run
PART = durable_index._APPLY_BATCH
TOTAL = 3 * PART


@pytest.fixture(autouse=True)
def _no_search_lately(monkeypatch):
    """Parts hold _APPLY_BATCH upserts when no search came in lately (a search an earlier
    test made a moment ago would make them _APPLY_BATCH_SEARCHED)."""
    monkeypatch.setattr(FOREGROUND, "last_started", float("-inf"))


def change(seq: int) -> FeedChange:
    """Every change a put of a new image, but every fifth a delete of an earlier one."""
    if seq % 5 == 0:
        return FeedChange(seq, f"img{seq - 3}")
    return FeedChange(
        seq, f"img{seq}", doc(f"img{seq}", (("espresso", 0.7), ("tabby", 0.2)), vector=unit(seq))
    )


def _first_part_end() -> int:
    """The seq of the change that makes the first part whole (its PART-th upsert)."""
    upserts = 0
    for seq in range(1, TOTAL + 1):
        upserts += change(seq).doc is not None
        if upserts == PART:
            return seq
    raise AssertionError("fewer upserts than a part")


def _apply_with(durable: DurableIndex, other: Callable[[], None]) -> tuple[bool, int]:
    """Apply changes 1..TOTAL while `other` runs on another thread once the apply is between
    its first and second part; (whether `other` had returned before the apply went on, the
    applied seq `other` saw right after it returned)."""
    between = threading.Event()
    returned = threading.Event()
    seen: list[int] = []
    failure: list[BaseException] = []

    def changes() -> Iterator[FeedChange]:
        for seq in range(1, TOTAL + 1):
            if seq == _first_part_end() + 1:  # the first part (PART upserts) is in
                between.set()
                in_time.append(returned.wait(DEADLINE_S))
            yield change(seq)

    def run_other() -> None:
        try:
            between.wait(DEADLINE_S)
            other()
            seen.append(durable.applied_seq)
        except BaseException as exc:  # surfaced below
            failure.append(exc)
        finally:
            returned.set()

    in_time: list[bool] = []
    thread = threading.Thread(target=run_other, daemon=True)
    thread.start()
    durable.apply(changes())
    thread.join(DEADLINE_S)
    assert not failure, failure
    assert durable.applied_seq == TOTAL
    return in_time == [True], seen[0]


def test_a_direct_write_goes_in_between_two_parts_of_a_feed_apply() -> None:
    durable = DurableIndex.open(None, PARAMS)
    extra = doc("direct", (("volcano", 0.9),), vector=unit(10_000))
    in_time, seen = _apply_with(durable, lambda: durable.put(extra))
    first_part = _first_part_end()
    assert in_time, "the write waited for the whole apply"
    assert seen == first_part, f"the write landed at seq {seen}, not after the first part"
    assert durable.get("direct").labels[0].name == "volcano"
    assert [h.image_id for h in durable.search("volcano", semantic=False).hits] == ["direct"]


def test_a_snapshot_between_two_parts_holds_the_index_at_its_seq(tmp_path: Path) -> None:
    durable = DurableIndex.open(tmp_path, PARAMS, snapshot_every=1 << 30)
    in_time, seen = _apply_with(durable, durable.snapshot)
    assert in_time, "the snapshot waited for the whole apply"
    first_part = _first_part_end()
    assert seen == first_part
    # What the snapshot holds: exactly the changes up to its seq.
    durable._stop_snapshotter()
    durable._unsaved = 0  # close() must not write the rest over it
    durable.close()
    reopened = DurableIndex.open(tmp_path, PARAMS)
    reference = DurableIndex.open(None, PARAMS)
    reference.apply(change(seq) for seq in range(1, first_part + 1))
    assert reopened.applied_seq == first_part
    assert sorted(reopened._index._ids) == sorted(reference._index._ids)
    for image_id in reference._index._ids:
        assert reopened.get(image_id) == reference.get(image_id)
    # A restart replays the rest of the feed onto it and ends where the live index did.
    reopened.apply(change(seq) for seq in range(1, TOTAL + 1))
    live = DurableIndex.open(None, PARAMS)
    live.apply(change(seq) for seq in range(1, TOTAL + 1))
    assert reopened.applied_seq == TOTAL
    assert sorted(reopened._index._ids) == sorted(live._index._ids)
    assert len(reopened.search("espresso", semantic=False, limit=1000).hits) == len(
        live.search("espresso", semantic=False, limit=1000).hits
    )
    reopened.close()
