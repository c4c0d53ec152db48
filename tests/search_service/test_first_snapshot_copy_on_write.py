"""The first snapshot of an index built in the running process (its documents are rows, not
columns mapped from a file) copies none of them under the writers' lock: the frozen view
keeps the row list as it is, and a removal made after the freeze keeps the row it clears for
the view (doc_store._FrozenRows). Removals, updates and new images applied between the
freeze and the moment the snapshot reads its rows must not reach the snapshot: it holds
exactly the index at its seq, and a restart from it replays the rest of the feed.

Real DurableIndex, real files, real threads: the real snapshot writer is held (an event)
after the freeze and before it reads anything, while the feed applies more changes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from search_service import durable_index
from search_service.durable_index import SNAPSHOT_NAME, DurableIndex, FeedChange
from search_service.engine import EngineParams
from search_service.snapshot import read_snapshot
from tests.search_service.documents import DIM, doc, unit
from tests.search_service.snapshot_support import (
    assert_same_sections,
    hold_snapshots,
    open_live,
    reference_sections,
    reopen,
    snapshot_held_after_freeze,
)

PARAMS = EngineParams(vector_dim=DIM)
LABELS = ("tiger cat", "espresso", "moped", "beagle", "lakeside", "volcano", "pizza", "tabby")
FIRST = 600  # changes in the index when the snapshot freezes it
AFTER = 400  # changes applied while the snapshot is held after its freeze


def change(seq: int) -> FeedChange:
    """Puts of new images; after FIRST, every third change removes an image of the frozen
    part and every fifth puts a new version of one (a removal plus a put)."""
    if seq > FIRST and seq % 3 == 0:
        return FeedChange(seq, f"img{(seq * 7) % FIRST + 1}")
    image = f"img{(seq * 11) % FIRST + 1}" if seq > FIRST and seq % 5 == 0 else f"img{seq}"
    rng = np.random.default_rng(seq)
    picked = rng.choice(len(LABELS), 2, replace=False)
    return FeedChange(
        seq,
        image,
        doc(
            image,
            ((LABELS[picked[0]], 0.8), (LABELS[picked[1]], 0.1)),
            tags=(f"trip{seq % 13}",),
            ocr_text=f"menu {seq}" if seq % 4 == 0 else "",
            owner=f"owner{seq % 3}",
            vector=unit(seq),
        ),
    )


def searched(monkeypatch, recently: bool) -> None:
    """DurableIndex.apply's parts as if a search had started in the last second, or not."""
    part = durable_index._APPLY_BATCH_SEARCHED if recently else durable_index._APPLY_BATCH
    monkeypatch.setattr(DurableIndex, "_apply_batch", staticmethod(lambda: part))


def test_writes_after_the_freeze_do_not_reach_the_first_snapshot(tmp_path: Path, monkeypatch):
    held = hold_snapshots(monkeypatch)
    live = open_live(tmp_path / "live", PARAMS)
    # The live index takes its first changes in the parts of an apply while searches come in,
    # the reference below in whole parts (as each did when the last search was an earlier
    # test's, less than a second before the one apply and more before the other): their
    # posting lists are made in different orders, the lists are the same (written_postings).
    searched(monkeypatch, True)
    live.apply(change(seq) for seq in range(1, FIRST + 1))
    searched(monkeypatch, False)
    assert live._index._docs.mapped_count == 0  # rows: this is the conversion under test
    snapshot = snapshot_held_after_freeze(live, held)  # frozen at FIRST; nothing read yet
    for seq in range(FIRST + 1, FIRST + AFTER + 1):  # the feed goes on meanwhile
        live.apply([change(seq)])
    snapshot.finish()

    got = read_snapshot(tmp_path / "live" / SNAPSHOT_NAME)
    assert int(got["seq"]) == FIRST
    reference = DurableIndex.open(None, PARAMS)
    reference.apply(change(seq) for seq in range(1, FIRST + 1))
    assert_same_sections(got, reference_sections(reference, FIRST, tmp_path / "reference.snap"))

    # A restart reads exactly that and replays the rest of the feed from its seq.
    restored = reopen(live, tmp_path / "live", PARAMS)
    assert restored.applied_seq == FIRST
    for image_id in reference._index._ids:
        assert restored.get(image_id) == reference.get(image_id)
    restored.apply(change(seq) for seq in range(1, FIRST + AFTER + 1))
    assert restored.applied_seq == live.applied_seq == FIRST + AFTER
    assert sorted(restored._index._ids) == sorted(live._index._ids)
    for image_id in live._index._ids:
        assert restored.get(image_id) == live.get(image_id)
    for query in ("tiger cat", "espresso", "trip5", "menu"):
        assert [h.image_id for h in restored.search(query, limit=100, semantic=False).hits] == [
            h.image_id for h in live.search(query, limit=100, semantic=False).hits
        ], query
    restored.close()
