"""A snapshot written while searches run must not hold the interpreter lock (or a CPU) for
long at a time:

- the keyword index's posting bytes go out as pieces of bounded size (a C call that copies
  into fresh memory holds the interpreter lock 0.5 ms a MB; one join of every list held it
  25-125 ms at 1M documents), the same bytes as one join of every list;
- the snapshot's pauses wait while a search is in flight (snapshot.Foreground): a held real
  search keeps the real snapshot writer waiting at its next pause, and the snapshot completes
  once the search returns;
- a feed apply takes smaller parts (a shorter hold of the index lock) while searches come in;
- the first snapshot of a store built in this process lets go of the rows it folds before it
  ends (they are freed a slice at a time, not all at once when the snapshot's view goes).

Real DurableIndex, real files, real threads; no timing is asserted."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np

from search_service import durable_index, inverted_index
from search_service import snapshot as snapshot_module
from search_service.doc_store import DocumentStore
from search_service.durable_index import SNAPSHOT_NAME, DurableIndex, FeedChange
from search_service.engine import EngineParams
from search_service.snapshot import FOREGROUND, BytesParts, flatten, write_snapshot
from tests.search_service.documents import DIM, doc, unit

PARAMS = EngineParams(vector_dim=DIM)
LABELS = ("tiger cat", "espresso", "moped", "beagle", "lakeside", "volcano", "pizza", "tabby")
WAIT_S = 30.0


def _docs(count: int) -> list:
    return [
        doc(
            f"img{i}",
            ((LABELS[i % len(LABELS)], 0.8), (LABELS[(i * 3 + 1) % len(LABELS)], 0.2)),
            tags=(f"trip{i % 7}",),
            ocr_text=f"menu {i} soup" if i % 3 == 0 else "",
            vector=unit(i),
        )
        for i in range(1, count + 1)
    ]


def test_posting_bytes_go_out_in_bounded_pieces_holding_the_same_bytes(monkeypatch):
    durable = DurableIndex(None, PARAMS)
    for d in _docs(300):
        durable.put(d)
    keywords = durable._index.keywords
    monkeypatch.setattr(inverted_index, "_PIECE_BYTES", 64)
    state = keywords.frozen_state()
    for name, blob_name in (("ids", "ids_blob"), ("weights", "weights_blob")):
        blob = state[blob_name]()
        assert isinstance(blob, BytesParts)
        lists = [
            bytes(plist._ids if name == "ids" else plist._weights)
            for _, plist in keywords._made
            if len(plist._weights)
        ]
        longest = max(map(len, lists))
        assert len(blob.parts) > len(b"".join(lists)) // (64 + longest)
        assert all(len(part) < 64 + longest for part in blob.parts)
        assert blob.to_bytes() == b"".join(lists)
        offsets = state[f"{name}_offsets"]()
        assert offsets.tolist()[-1] == len(blob.to_bytes())
        assert [len(x) for x in lists] == np.diff(offsets).tolist()


def test_a_snapshot_waits_at_its_pauses_while_a_search_is_in_flight(tmp_path: Path, monkeypatch):
    durable = DurableIndex.open(tmp_path, PARAMS, snapshot_every=1 << 30)
    for d in _docs(200):
        durable.put(d)
    expected = [h.image_id for h in durable.search("soup", semantic=False).hits]
    assert expected
    # Every pace() pauses, and a pause waits for the search for as long as it takes.
    monkeypatch.setattr(snapshot_module, "_PACE_S", 0.0)
    monkeypatch.setattr(snapshot_module, "YIELD_MAX_S", 3600.0)
    in_search = threading.Event()
    release = threading.Event()
    real_search = durable._index.search

    def held_search(*args, **kwargs):
        in_search.set()
        assert release.wait(WAIT_S), "the test never released the search"
        return real_search(*args, **kwargs)

    monkeypatch.setattr(durable._index, "search", held_search)
    found: list[list[str]] = []
    searcher = threading.Thread(
        target=lambda: found.append(
            [h.image_id for h in durable.search("soup", semantic=False).hits]
        )
    )
    searcher.start()
    assert in_search.wait(WAIT_S)
    waits = FOREGROUND.waits
    durable._unsaved = max(durable._unsaved, 1)
    writer = threading.Thread(target=durable.snapshot)
    writer.start()
    try:
        deadline = threading.Event()
        while FOREGROUND.waits == waits and writer.is_alive():
            deadline.wait(0.001)
        assert FOREGROUND.waits > waits, "the snapshot never paused for the search in flight"
        writer.join(0.5)
        assert writer.is_alive(), "the snapshot went on while a search was in flight"
        assert not (tmp_path / SNAPSHOT_NAME).exists()
    finally:
        release.set()
        searcher.join(WAIT_S)
        writer.join(WAIT_S)
    assert not writer.is_alive() and not searcher.is_alive()
    assert found == [expected]
    assert (tmp_path / SNAPSHOT_NAME).exists()
    monkeypatch.undo()
    durable.close()
    reopened = DurableIndex.open(tmp_path, PARAMS)
    assert [h.image_id for h in reopened.search("soup", semantic=False).hits] == expected
    reopened.close()


def test_pauses_outside_a_snapshot_writer_do_not_wait_for_searches(monkeypatch):
    """A Pacer used elsewhere (under a lock a search may wait for) never waits for a search."""
    monkeypatch.setattr(snapshot_module, "_PACE_S", 0.0)
    monkeypatch.setattr(snapshot_module, "YIELD_MAX_S", 2.0)
    waits = FOREGROUND.waits
    with FOREGROUND:
        pace = snapshot_module.Pacer()
        for _ in range(3):
            pace()  # inside yielding(), each would wait (and count)
    assert FOREGROUND.waits == waits


def test_the_first_snapshot_lets_go_of_the_rows_it_folds_before_it_ends(tmp_path: Path):
    """After a snapshot folds a store built in this process onto its file, no part of the
    snapshot's frozen view (still alive until the snapshot returns) holds the rows: the fold
    frees them a slice at a time. Kept by the view, a million rows were freed at once when the
    snapshot ended (the interpreter lock held 450 ms at 1M documents)."""
    store = DocumentStore()
    for d in _docs(50):
        store.append(d)
    row = store._s.rows[7]
    assert row is not None
    frozen = store.frozen_columns()  # kept alive here, as the snapshot's state is until it ends
    write_snapshot(tmp_path / SNAPSHOT_NAME, flatten({"doc_columns": frozen}))
    assert store.mapped_count == 50  # folded onto the file
    assert sys.getrefcount(row) == 2  # `row` and getrefcount's argument: nothing else
    assert store[7] is not None and store[7].image_id == "img8"


def test_a_feed_apply_takes_smaller_parts_while_searches_come_in(monkeypatch):
    """A search waits for one part of a feed apply at most: while searches come in, a part
    holds _APPLY_BATCH_SEARCHED upserts; with none for a while, _APPLY_BATCH (a replay)."""
    durable = DurableIndex(None, PARAMS)
    parts: list[int] = []
    real_part = durable._apply_part

    def recorded(changes, rejected, batch=durable_index._APPLY_BATCH):
        parts.append(sum(c.doc is not None for c in changes))
        return real_part(changes, rejected, batch)

    monkeypatch.setattr(durable, "_apply_part", recorded)
    docs = _docs(1000)
    changes = [FeedChange(i + 1, d.image_id, d) for i, d in enumerate(docs)]
    monkeypatch.setattr(FOREGROUND, "last_started", float("-inf"))  # no search lately
    durable.apply(changes[:600])
    assert parts == [256, 256, 88]
    parts.clear()
    with FOREGROUND:  # a search in flight
        durable.apply(changes[600:])
    assert parts == [64] * 6 + [16]
    assert len(durable) == 1000
    assert [h.image_id for h in durable.search("soup", semantic=False, limit=5).hits]
