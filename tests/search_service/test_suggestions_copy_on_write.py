"""A snapshot's freeze does not copy the suggestion table (texts -> documents holding them,
per field) under the writers' lock: the frozen view keeps the live table and each write saves
a text's entry for the view before it first changes it (inverted_index._FrozenSurface). Texts
whose counts change, texts added, texts removed (their last image removed) and texts removed
and added again between the freeze and the moment the snapshot reads the table must not reach
the snapshot: it holds exactly the table at its seq, and a restart from it that replays the
rest of the feed holds the live table.

Real DurableIndex, real files, real threads: the real snapshot writer is held (an event)
after the freeze and before it reads anything, while the feed applies more changes."""

from __future__ import annotations

from pathlib import Path

from search_service.durable_index import SNAPSHOT_NAME, DurableIndex, FeedChange
from search_service.engine import EngineParams
from search_service.snapshot import read_snapshot
from tests.search_service.documents import DIM, doc, unit
from tests.search_service.snapshot_support import (
    hold_snapshots,
    open_live,
    reopen,
    snapshot_held_after_freeze,
    written_table,
)

PARAMS = EngineParams(vector_dim=DIM)
LABELS = ("tiger cat", "espresso", "moped", "beagle", "lakeside")
FIRST = 300  # changes in the index when the snapshot freezes it
AFTER = 200  # changes applied while the snapshot is held after its freeze


def word(n: int) -> str:
    """A word of letters for n (the tokenizer splits digits off a word)."""
    out = ""
    while True:
        n, digit = divmod(n, 26)
        out += chr(ord("a") + digit)
        if not n:
            return out


def change(seq: int) -> FeedChange:
    """Before the freeze: images with shared labels and tags, and a tag of their own
    (`zz` + word(n), one image each). After it: every second change removes an image of the
    frozen part (its own tag leaves the table, the shared ones count one less); the others
    put new images with new texts (`fresh` + word(n)), more of the shared ones, and a new image
    holding the own tag of an image removed earlier (a text removed, then added again)."""
    if seq > FIRST and seq % 2 == 0:
        return FeedChange(seq, f"img{seq - FIRST}")
    own = "zz" + word(seq if seq <= FIRST else seq - FIRST - 1)
    extra = ("fresh" + word(seq),) if seq > FIRST else ()
    return FeedChange(
        seq,
        f"img{seq}",
        doc(
            f"img{seq}",
            ((LABELS[seq % len(LABELS)], 0.8),),
            tags=(f"trip{seq % 7}", own, *extra),
            ocr_text=f"menu {seq % 11}" if seq % 3 == 0 else "",
            owner=f"owner{seq % 3}",
            vector=unit(seq),
        ),
    )


def live_table(index: DurableIndex) -> dict[str, tuple[int, dict[str, int]]]:
    return {t: (e[0], dict(e[1])) for t, e in index._index.keywords._surface.items()}


def test_suggestion_changes_after_the_freeze_do_not_reach_the_snapshot(tmp_path: Path, monkeypatch):
    held = hold_snapshots(monkeypatch)
    live = open_live(tmp_path / "live", PARAMS)
    live.apply(change(seq) for seq in range(1, FIRST + 1))
    at_freeze = live_table(live)
    snapshot = snapshot_held_after_freeze(live, held)  # frozen at FIRST; nothing read yet
    for seq in range(FIRST + 1, FIRST + AFTER + 1):  # the feed goes on meanwhile
        live.apply([change(seq)])
    live.put(change(FIRST).doc)  # a direct write too (no seq of its own)
    live.remove("img1")
    after = live_table(live)
    # The feed did change the table every way the view must not see.
    assert {t for t in at_freeze if t.startswith("zz")} - set(after)  # removed
    assert {t for t in after if t.startswith("fresh")} and not {
        t for t in at_freeze if t.startswith("fresh")
    }  # added
    assert any(after[t][0] != at_freeze[t][0] for t in after.keys() & at_freeze.keys())
    readded = {"zz" + word(seq - FIRST - 1) for seq in range(FIRST + 1, FIRST + AFTER + 1, 2)}
    assert readded & after.keys() & at_freeze.keys()  # removed, then added again
    snapshot.finish()

    got = read_snapshot(tmp_path / "live" / SNAPSHOT_NAME)
    assert int(got["seq"]) == FIRST
    assert written_table(got) == at_freeze

    # A restart reads exactly that and replays the rest of the feed from its seq.
    restored = reopen(live, tmp_path / "live", PARAMS)
    assert restored.applied_seq == FIRST
    assert live_table(restored) == at_freeze
    restored.apply(change(seq) for seq in range(1, FIRST + AFTER + 1))
    restored.put(change(FIRST).doc)
    restored.remove("img1")
    assert live_table(restored) == after
    assert restored.suggest("zz", 50) == live.suggest("zz", 50)
    restored.close()
