"""The favourites filter: only starred images, after an update, and after a state round trip."""

from __future__ import annotations

import dataclasses

from search_service.engine import EngineParams, Filters, SearchIndex
from tests.search_service.documents import DIM, doc


def _ids(result) -> list[str]:
    return sorted(h.image_id for h in result.hits)


def test_favourites_filter_keeps_only_starred_images_and_follows_updates():
    ix = SearchIndex(EngineParams(vector_dim=DIM))
    ix.put(dataclasses.replace(doc("a", (("tiger cat", 0.9),)), favourite=True))
    ix.put(doc("b", (("tiger cat", 0.8),)))

    assert _ids(ix.search("cat", Filters(favourites_only=True))) == ["a"]
    assert _ids(ix.search("cat")) == ["a", "b"]

    ix.put(dataclasses.replace(doc("b", (("tiger cat", 0.8),)), favourite=True))
    ix.put(doc("a", (("tiger cat", 0.9),)))  # unstarred
    assert _ids(ix.search("cat", Filters(favourites_only=True))) == ["b"]

    restored = SearchIndex.from_state(ix.state(), EngineParams(vector_dim=DIM))
    assert _ids(restored.search("cat", Filters(favourites_only=True))) == ["b"]
