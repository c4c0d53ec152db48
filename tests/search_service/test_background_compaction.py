"""Compaction runs in a background thread: when too many document numbers are dead, the index is
rebuilt from its live documents outside the locks (DurableIndex.rebuild's mechanism) while
searches and writes go on; the writes made meanwhile are in the compacted index, the dead
documents are gone (but one number for each image changed after the compaction read it),
`applied_seq` is unchanged, close() stops a compaction cleanly, a compaction of an index
that a rebuild replaced meanwhile gives up, and after a failed compaction none starts again
until a backoff has passed (doubling, capped, reset by a success); GetStats reports
compactions, failures and the last failure's error.

The compaction is held while it streams the live documents by a wrapper around
DurableIndex._live_documents (the compaction's own document iterator) that waits for the test
to release it after the first documents."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from imagerepo.search.v1 import search_service_pb2 as v1
from imagerepo.search.v2 import search_service_pb2 as v2
from imagerepo.search.v2 import search_service_pb2_grpc as v2_grpc
from search_service import durable_index
from search_service.document import Document
from search_service.durable_index import DurableIndex, FeedChange
from search_service.engine import EngineParams, SearchIndex
from tests.search_service.conftest import serve
from tests.search_service.documents import DIM, doc, unit

PARAMS = EngineParams(vector_dim=DIM)
WAIT_S = 30.0
# A search while the compaction is held must answer well within this (it took the whole
# compaction's time when compaction held both locks).
SEARCH_BOUND_S = 5.0
FIRST = 2000  # images put first; re-putting 1000 of them makes compaction due
QUERIES = ("tiger cat", "espresso", "moped", "sofa", "img17", "lynx espresso", "menu")
# These tests expect compactions to start: with no memory check (the default's 512 MB headroom
# would postpone them on a machine with under about 0.7 GB available;
# test_compaction_memory_guard.py tests the check).
UNGUARDED = {"compaction_memory_headroom_bytes": None}


def image(i: int, version: int = 0) -> Document:
    kinds = (("tiger cat", 0.9), ("espresso", 0.8), ("lynx", 0.6), ("moped", 0.7))
    name, p = kinds[(i + version) % len(kinds)]
    return doc(
        f"img{i}",
        ((name, p - 0.01 * (i % 7)),),
        vector=unit(i * 10 + version),
        tags=("sofa",) if (i + version) % 5 == 0 else (),
        ocr_text="menu" if i % 11 == 0 else "",
    )


class HeldStream:
    """Wraps DurableIndex._live_documents: passes `before` documents, then waits for release."""

    def __init__(self, original: Callable[..., Iterator[Document]], before: int = 100) -> None:
        self.original = original
        self.before = before
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0
        self.streamed: list[str] = []  # the image ids it passed on

    def __call__(self, durable: DurableIndex, index: SearchIndex) -> Iterator[Document]:
        self.calls += 1
        for n, document in enumerate(self.original(durable, index)):
            if n == self.before:
                self.entered.set()
                self.release.wait(WAIT_S)
            self.streamed.append(document.image_id)
            yield document


@pytest.fixture
def held(monkeypatch) -> HeldStream:
    stream = HeldStream(DurableIndex._live_documents)

    def live_documents(durable: DurableIndex, index: SearchIndex) -> Iterator[Document]:
        return stream(durable, index)

    monkeypatch.setattr(DurableIndex, "_live_documents", live_documents)
    return stream


def in_thread(work: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def hits(searched: DurableIndex | SearchIndex, query: str) -> list[tuple[str, float]]:
    return [(h.image_id, h.score) for h in searched.search(query, limit=5000).hits]


def ids(found: list[tuple[str, float]]) -> list[str]:
    return [image_id for image_id, _ in found]


def same_hits(first: list[tuple[str, float]], second: list[tuple[str, float]]) -> bool:
    """The same images in the same order, with the same scores but for the 5th decimal place
    (a compaction that replayed writes and one made at once differ there)."""
    return ids(first) == ids(second) and [s for _, s in first] == (
        pytest.approx([s for _, s in second], abs=1e-4)
    )


def make_compaction_due(index: DurableIndex, reference: SearchIndex) -> int:
    """FIRST images through the feed, then 1000 of them re-put (each leaves a dead number):
    compaction is due at the last re-put. Returns the last seq applied."""
    seq = 0
    changes = []
    for i in range(FIRST):
        seq += 1
        changes.append(FeedChange(seq, f"img{i}", image(i)))
    for i in range(1000):
        seq += 1
        changes.append(FeedChange(seq, f"img{i}", image(i, 1)))
    index.apply(changes)
    for change in changes:
        assert change.doc is not None
        reference.put(change.doc)
    return seq


# The writes made meanwhile replayed onto the compacted index outside the locks (all of them
# here), or all under the locks before the swap.
@pytest.mark.parametrize("catch_up_tail", [0, 10**6], ids=["caught-up", "under-the-locks"])
def test_searches_and_writes_go_on_while_a_compaction_runs(
    tmp_path, held, monkeypatch, catch_up_tail
):
    monkeypatch.setattr(durable_index, "_CATCH_UP_TAIL", catch_up_tail)
    index = DurableIndex.open(
        tmp_path, PARAMS, snapshot_every=10**6, snapshot_interval_s=3600, **UNGUARDED
    )
    reference = SearchIndex(PARAMS)  # the same changes, never compacted
    applied: list[int] = []
    # In a thread: a write that compacted inline would wait for the held stream under the locks.
    feeder = in_thread(lambda: applied.append(make_compaction_due(index, reference)))
    try:
        assert held.entered.wait(WAIT_S), "no compaction started"

        # (1) A search answers while the compaction is held.
        answers: list[list[tuple[str, float]]] = []
        started = time.perf_counter()
        searcher = in_thread(lambda: answers.append(hits(index, "tiger cat")))
        searcher.join(SEARCH_BOUND_S)
        assert answers, f"a search waited over {SEARCH_BOUND_S} s for the compaction"
        assert time.perf_counter() - started < SEARCH_BOUND_S
        feeder.join(WAIT_S)  # it fills `reference` after the index
        assert not feeder.is_alive()
        assert same_hits(answers[0], hits(reference, "tiger cat"))  # nothing changed since
        assert index._index.numbered == 3000  # not compacted yet: the stream is held

        # (2) Writes made meanwhile: new images, re-puts of images streamed already (the live
        # ones of lowest number: img1000 on) and not yet (img1600 on; img0-999, re-put above,
        # are numbered last), removals of both, a re-put then a removal and the other way.
        streamed_before = set(held.streamed)
        assert {"img1000", "img1050"} <= streamed_before
        assert not {"img0", "img1600", "img1800"} & streamed_before
        changes: list[tuple[str, Document | None]] = []
        for i in range(FIRST, FIRST + 300):
            changes.append((f"img{i}", image(i)))
        for i in (*range(1000, 1040), *range(1600, 1700), *range(0, 20)):
            changes.append((f"img{i}", image(i, 2)))
        for i in (*range(1040, 1060), *range(1800, 1860), *range(20, 30)):
            changes.append((f"img{i}", None))
        changes.append(("img1900", image(1900, 3)))
        changes.append(("img1900", None))
        changes.append(("img1950", None))
        changes.append(("img1950", image(1950, 4)))
        changes.append(("img1020", None))
        changes.append(("img1020", image(1020, 5)))

        def writes() -> None:
            for image_id, document in changes:
                if document is None:
                    index.remove(image_id)
                    reference.remove(image_id)
                else:
                    index.put(document)
                    reference.put(document)

        writer = in_thread(writes)
        writer.join(WAIT_S)
        assert not writer.is_alive(), "writes waited for the compaction"
        assert held.calls == 1  # one compaction, however many writes found it due
    finally:
        held.release.set()

    assert index.wait_for_compaction(WAIT_S)
    assert index.compactions == 1
    live = len(reference)
    assert len(index) == live
    # The dead documents are gone, but for the images the stream had read before they
    # changed (each left one dead number in the compacted index).
    rewritten = set(held.streamed) & {image_id for image_id, _ in changes}
    assert 60 <= len(rewritten) < 200
    assert index._index.numbered == len(index._index._docs) == live + len(rewritten)
    assert index.applied_seq == applied[0]  # a compaction changes no seq
    expected = reference.compacted()
    assert expected.numbered == live
    for query in QUERIES:
        got = hits(index, query)
        assert got, query
        # The index never compacted ranks the same images the same way (its scores count
        # the dead numbers too), the same index compacted at once gives the same scores.
        assert ids(got) == ids(hits(reference, query)), query
        assert same_hits(got, hits(expected, query)), query
    for i in (0, 25, 1000, 1045, 1600, 1810, 1900, 1950, FIRST + 7):
        got = index.similar(vector=unit(i * 10 + 2), k=10)
        assert got.hits == expected.similar(vector=unit(i * 10 + 2), k=10).hits
    for image_id in ("img0", "img1020", "img1699", "img1950", f"img{FIRST + 299}"):
        assert index.get(image_id) == reference.get(image_id)

    # Written at close and read back as compacted.
    index.close()
    reopened = DurableIndex.open(tmp_path, PARAMS)
    assert reopened.applied_seq == applied[0]
    assert reopened._index.numbered == live + len(rewritten)
    for query in QUERIES:
        assert same_hits(hits(reopened, query), hits(expected, query)), query
    reopened.close()


def test_close_stops_a_running_compaction_and_keeps_the_index(tmp_path, held):
    index = DurableIndex.open(
        tmp_path, PARAMS, snapshot_every=10**6, snapshot_interval_s=3600, **UNGUARDED
    )
    reference = SearchIndex(PARAMS)
    feeder = in_thread(lambda: make_compaction_due(index, reference))
    assert held.entered.wait(WAIT_S)
    feeder.join(WAIT_S)
    closer = in_thread(index.close)
    time.sleep(0.2)
    assert closer.is_alive()  # waits for the compaction to stop
    held.release.set()
    closer.join(WAIT_S)
    assert not closer.is_alive()
    assert index._compactor is not None and not index._compactor.is_alive()
    assert index.compactions == 0
    assert index._index.numbered == 3000  # stopped: the uncompacted index was kept

    reopened = DurableIndex.open(tmp_path, PARAMS)
    for query in QUERIES:
        assert same_hits(hits(reopened, query), hits(reference, query)), query  # uncompacted
    reopened.close()


def test_a_compaction_gives_up_when_a_rebuild_replaced_the_index(tmp_path, held):
    index = DurableIndex.open(
        tmp_path, PARAMS, snapshot_every=10**6, snapshot_interval_s=3600, **UNGUARDED
    )
    feeder = in_thread(lambda: make_compaction_due(index, SearchIndex(PARAMS)))
    try:
        assert held.entered.wait(WAIT_S)
        feeder.join(WAIT_S)
        index.rebuild([image(i, 7) for i in range(50)])  # a resync, say
        index.put(image(60, 8))
    finally:
        held.release.set()

    assert index.wait_for_compaction(WAIT_S)
    assert index.compactions == 0
    assert len(index) == index._index.numbered == 51
    assert index.get("img60").labels == image(60, 8).labels
    assert index.get("img3").labels == image(3, 7).labels
    index.close()


def test_an_index_in_memory_compacts_too():
    index = DurableIndex(None, PARAMS, **UNGUARDED)
    for i in range(FIRST):
        index.put(image(i))
    for i in range(1000):
        index.remove(f"img{i}")

    assert index.wait_for_compaction(WAIT_S)
    assert index.compactions == 1
    assert index._index.numbered == len(index) == FIRST - 1000
    assert [h.image_id for h in index.search("moped", limit=5000).hits] == [
        h.image_id for h in index._index.search("moped", limit=5000).hits
    ]
    assert index.search("tiger cat", limit=5000).total == sum(
        1 for i in range(1000, FIRST) if i % 4 == 0
    )


class FailingStream:
    """Wraps DurableIndex._live_documents: while `failing`, the compaction fails (MemoryError)
    after a few documents; counts the compactions started."""

    def __init__(self, original: Callable[..., Iterator[Document]]) -> None:
        self.original = original
        self.failing = True
        self.calls = 0

    def __call__(self, durable: DurableIndex, index: SearchIndex) -> Iterator[Document]:
        self.calls += 1
        for n, document in enumerate(self.original(durable, index)):
            if self.failing and n == 10:
                raise MemoryError("compaction fails on purpose")
            yield document


@pytest.fixture
def failing(monkeypatch) -> tuple[DurableIndex, FailingStream, list[float]]:
    """An index in memory whose compactions fail (until `stream.failing` is cleared), its
    backoff 10 s on a clock the test sets (`now[0]`)."""
    stream = FailingStream(DurableIndex._live_documents)

    def live_documents(durable: DurableIndex, index: SearchIndex) -> Iterator[Document]:
        return stream(durable, index)

    monkeypatch.setattr(DurableIndex, "_live_documents", live_documents)
    index = DurableIndex(None, PARAMS, compaction_backoff_s=10.0, **UNGUARDED)
    now = [1000.0]
    index._clock = lambda: now[0]
    return index, stream, now


def test_a_failing_compaction_is_retried_only_after_a_backoff(failing, caplog):
    index, stream, now = failing
    version = 0

    def write() -> None:
        """A re-put (one more dead number: compaction stays due), then wait for any compaction
        it started to end."""
        nonlocal version
        version += 1
        index.put(image(1000 + version % 500, version))
        assert index.wait_for_compaction(WAIT_S)

    def failures_logged() -> list[float]:
        return [
            r.retry_in_s  # type: ignore[attr-defined]
            for r in caplog.records
            if r.getMessage().startswith("background compaction failed")
        ]

    for i in range(FIRST):
        index.put(image(i))
    for i in range(1000):
        index.remove(f"img{i}")  # compaction due at the last one: it fails
    assert index.wait_for_compaction(WAIT_S)
    assert (stream.calls, index.compaction_failures, index.compactions) == (1, 1, 0)

    # Within the backoff (10 s), writes that find compaction due start none.
    for _ in range(50):
        write()
    now[0] += 9.9
    write()
    assert (stream.calls, index.compaction_failures) == (1, 1)
    assert failures_logged() == [10.0]  # once per attempt, with the wait
    assert index._index.needs_compaction()

    # After it, the next write starts one; it fails again: the wait doubles (20 s).
    now[0] += 0.1
    write()
    assert (stream.calls, index.compaction_failures) == (2, 2)
    for _ in range(20):
        write()
    now[0] += 19.9
    write()
    assert stream.calls == 2
    assert failures_logged() == [10.0, 20.0]

    # The third attempt succeeds: compacted, the failures still counted.
    stream.failing = False
    now[0] += 0.1
    write()
    assert (stream.calls, index.compactions, index.compaction_failures) == (3, 1, 2)
    assert index._index.numbered == len(index) == 1000
    assert not index._index.needs_compaction()

    # A success resets the wait: the next failure waits the first 10 s again.
    stream.failing = True
    for i in range(2000, 3500):
        index.put(image(i))
    for i in range(2000, 3500):
        index.put(image(i, 1))  # compaction due at the 1072nd: it fails, the rest wait
    assert index.wait_for_compaction(WAIT_S)
    assert (stream.calls, index.compactions, index.compaction_failures) == (4, 1, 3)
    assert failures_logged() == [10.0, 20.0, 10.0]
    # The wait doubles up to an hour at most.
    index._compact_failed_in_a_row = 20
    now[0] += 10.0
    write()
    assert stream.calls == 5
    assert failures_logged()[-1] == durable_index._COMPACT_BACKOFF_MAX_S == 3600.0


def test_get_stats_reports_compactions_and_the_last_failure(failing) -> None:
    """An operator sees through GetStats (v1 and v2) that compaction fails, and why: a real
    server on a free port, the index's own compaction thread."""
    index, stream, now = failing
    server, stub1, channel = serve(index)
    stub2 = v2_grpc.SearchServiceStub(channel)
    try:
        before = stub1.GetStats(v1.GetStatsRequest(), timeout=10)
        assert (before.compactions, before.compaction_failures) == (0, 0)
        assert before.last_compaction_error == ""

        for i in range(FIRST):
            index.put(image(i))
        for i in range(1000):
            index.remove(f"img{i}")  # compaction due at the last one: it fails
        assert index.wait_for_compaction(WAIT_S)
        failed = [
            stub.GetStats(req, timeout=10)
            for stub, req in ((stub1, v1.GetStatsRequest()), (stub2, v2.GetStatsRequest()))
        ]

        stream.failing = False
        now[0] += 10.0  # past the backoff: the next write starts one, which succeeds
        index.put(image(5000))
        assert index.wait_for_compaction(WAIT_S)
        done = stub2.GetStats(v2.GetStatsRequest(), timeout=10)
    finally:
        channel.close()
        server.stop(grace=None)
    for got in failed:
        assert (got.compactions, got.compaction_failures) == (0, 1)
        assert got.last_compaction_error == "MemoryError: compaction fails on purpose"
        assert got.document_count == 1000  # still serving, uncompacted
    assert (done.compactions, done.compaction_failures) == (1, 1)
    assert done.last_compaction_error == "MemoryError: compaction fails on purpose"
    assert done.document_count == 1001
