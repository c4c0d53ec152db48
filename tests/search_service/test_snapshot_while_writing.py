"""A snapshot taken while the feed keeps writing holds exactly the index it froze: every
section equal to the snapshot of an index that applied the same changes up to the seq the
snapshot names, and nothing of the writes after it; searches go on meanwhile."""

from __future__ import annotations

import threading
import time

import numpy as np

from search_service.durable_index import SNAPSHOT_NAME, DurableIndex, FeedChange
from search_service.engine import EngineParams
from search_service.label_embeddings import load_cached
from search_service.snapshot import read_snapshot
from tests.search_service.documents import DIM, doc, unit
from tests.search_service.snapshot_support import (
    assert_same_sections,
    open_live,
    reference_sections,
    reopen,
)

PARAMS = EngineParams(vector_dim=DIM)
LABELS = ("tiger cat", "espresso", "moped", "beagle", "lakeside", "volcano", "pizza", "tabby")
FIRST = 3000  # changes applied before the snapshot starts


def change(seq: int) -> FeedChange:
    """The feed's change `seq`: mostly puts (labels, tags, OCR words, a vector each), every
    seventh a delete of an earlier image, every eleventh a new version of one."""
    if seq % 7 == 0:
        return FeedChange(seq, f"img{seq - 5}")
    image = f"img{seq - 3}" if seq % 11 == 0 else f"img{seq}"
    rng = np.random.default_rng(seq)
    picked = rng.choice(len(LABELS), 3, replace=False)
    labels = tuple((LABELS[i], float(p)) for i, p in zip(picked, (0.7, 0.2, 0.06), strict=True))
    return FeedChange(
        seq,
        image,
        doc(
            image,
            labels,
            tags=(f"trip{seq % 13}", "holiday") if seq % 3 else (),
            ocr_text=f"menu {seq} price{seq % 17}" if seq % 4 == 0 else "",
            owner=f"owner{seq % 5}",
            vector=unit(seq),
        ),
    )


def _no_embedding(texts: list[str]) -> list[np.ndarray]:
    raise RuntimeError("queries are not embedded here (keyword search only)")


def test_a_snapshot_taken_while_writes_go_on_holds_exactly_the_index_it_froze(
    tmp_path, label_cache
):
    """With concept weights too (the real label embeddings): removals after the freeze zero
    concept rows and lengths the snapshot must still hold."""
    names, embeddings = load_cached(label_cache.parent)
    live = open_live(tmp_path / "live", PARAMS)
    live.attach_semantic(names, embeddings, _no_embedding)
    for seq in range(1, FIRST + 1):
        live.apply([change(seq)])
    written_during: list[int] = []
    snapshotting = threading.Event()
    done = threading.Event()

    def writer() -> None:
        seq = FIRST
        while not done.is_set() or seq < FIRST + 50:
            seq += 1
            live.apply([change(seq)])
            if snapshotting.is_set() and not done.is_set():
                written_during.append(seq)

    searched_during: list[int] = []

    def searcher() -> None:  # searches share the index with the writer and the snapshot
        while not done.is_set():
            hits = live.search("holiday", limit=5, semantic=False).hits
            if snapshotting.is_set() and not done.is_set():
                searched_during.append(len(hits))

    thread = threading.Thread(target=writer)
    thread.start()
    reader = threading.Thread(target=searcher)
    reader.start()
    deadline = time.monotonic() + 60
    while live.applied_seq < FIRST + 20:  # the writer is under way
        assert thread.is_alive() and time.monotonic() < deadline, "the writer did not get going"
        time.sleep(0.001)
    snapshotting.set()
    live.snapshot()
    done.set()
    thread.join()
    reader.join()

    got = read_snapshot(tmp_path / "live" / SNAPSHOT_NAME)
    frozen_seq = int(got["seq"])
    # The snapshot was taken amid the writes and did not hold them off meanwhile.
    assert FIRST + 20 <= frozen_seq < live.applied_seq
    assert written_during, "no write finished while the snapshot was written"
    assert searched_during and all(searched_during), "no search answered meanwhile"
    # The same changes up to that seq, applied one by one (as the writer did) to a fresh index.
    reference = DurableIndex.open(None, PARAMS)
    reference.attach_semantic(names, embeddings, _no_embedding)
    for seq in range(1, frozen_seq + 1):
        reference.apply([change(seq)])
    assert "engine.concepts.probs" in got
    assert_same_sections(
        got, reference_sections(reference, frozen_seq, tmp_path / "reference.snap")
    )

    restored = reopen(live, tmp_path / "live", PARAMS)
    assert restored.applied_seq == frozen_seq and len(restored) == len(reference)
    for query in ("holiday", "tiger cat", "menu", "price3", "trip5 espresso"):
        assert [h.image_id for h in restored.search(query, limit=50, semantic=False).hits] == [
            h.image_id for h in reference.search(query, limit=50, semantic=False).hits
        ], query
    assert restored.suggest("tri") == reference.suggest("tri")
    restored.close()
