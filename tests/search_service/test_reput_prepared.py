"""A feed apply that re-puts images analyses the replaced documents before it takes the index
lock (engine.prepare_removals, under the writers' lock only), so a search waits for less of a
part's work; the index comes out the same as when the removal analyses them itself.

Real DurableIndex and tokenizer; analyse is wrapped only to note whether the index lock was
held when it ran (no timing)."""

from __future__ import annotations

from typing import Any

import pytest

from search_service.durable_index import DurableIndex, FeedChange
from search_service.engine import EngineParams, SearchIndex
from search_service.inverted_index import InvertedIndex
from tests.search_service.documents import DIM, doc, unit

PARAMS = EngineParams(vector_dim=DIM)
N = 40


def first(i: int) -> Any:
    return doc(
        f"img{i}",
        (("espresso", 0.7), ("tabby", 0.2)),
        ocr_text=f"menu board {i}",
        tags=("cafe",),
        vector=unit(i),
    )


def changed(i: int) -> Any:
    return doc(
        f"img{i}",
        (("golden retriever", 0.8), ("seashore", 0.3)),
        ocr_text=f"beach sign {i % 7}",
        tags=("holiday", "dog"),
        vector=unit(1000 + i),
    )


def _apply_both(durable: DurableIndex) -> None:
    durable.apply(FeedChange(i + 1, f"img{i}", first(i)) for i in range(N))
    durable.apply(FeedChange(N + i + 1, f"img{i}", changed(i)) for i in range(N))


def _state(durable: DurableIndex) -> tuple[Any, ...]:
    kw = durable._index.keywords
    surface = {t: (e[0], dict(e[1])) for t, e in kw._surface.items()}
    hits = [h.image_id for h in durable.search("dog beach").hits]
    return dict(kw._length_sums), surface, kw._live, hits


def test_reput_analyses_the_replaced_documents_outside_the_index_lock(monkeypatch) -> None:
    durable = DurableIndex.open(None, PARAMS)
    under_lock: list[str] = []
    analyse = InvertedIndex.analyse

    def noting(self: InvertedIndex, d: Any) -> Any:
        if durable._lock.held_by_me():
            under_lock.append(d.image_id)
        return analyse(self, d)

    durable.apply(FeedChange(i + 1, f"img{i}", first(i)) for i in range(N))
    monkeypatch.setattr(InvertedIndex, "analyse", noting)
    durable.apply(FeedChange(N + i + 1, f"img{i}", changed(i)) for i in range(N))
    assert under_lock == []


def test_prepared_reput_gives_the_same_index(monkeypatch) -> None:
    prepared = DurableIndex.open(None, PARAMS)
    _apply_both(prepared)
    # The same changes with the removals analysing the replaced documents themselves.
    monkeypatch.setattr(SearchIndex, "prepare_removals", lambda self, docs: {})
    unprepared = DurableIndex.open(None, PARAMS)
    _apply_both(unprepared)
    # And an index that only ever held the changed documents.
    fresh = DurableIndex.open(None, PARAMS)
    fresh.apply(FeedChange(i + 1, f"img{i}", changed(i)) for i in range(N))
    got = _state(prepared)
    assert got == _state(unprepared)
    lengths, surface, live, hits = got
    f_lengths, f_surface, f_live, f_hits = _state(fresh)
    assert lengths == pytest.approx(f_lengths)
    assert surface == f_surface
    assert live == f_live == N
    assert sorted(hits) == sorted(f_hits) and hits
