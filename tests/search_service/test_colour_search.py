"""Colour words in search, on the labelled evaluation set (real photos, their cached analysis
with dominant colours, real MiniLM embeddings): a colour alone finds photos of that colour, most
of it first; with other words it narrows them ("orange flower" is a flower that is orange)."""

from __future__ import annotations

from pathlib import Path

import pytest

from search_service.document import Document
from search_service.engine import EngineParams, SearchIndex
from search_service.label_embeddings import load_cached
from search_service.vision_client import VisionClient
from tests.search_service import eval_set

COLOUR_QUERIES = [q for q in eval_set.QUERIES if q[2] == "colour"]


@pytest.fixture(scope="module")
def index(label_cache: Path, vision_address: str):
    cached = load_cached(label_cache.parent)
    assert cached is not None
    client = VisionClient(vision_address)
    yield eval_set.build_index(
        eval_set.load_analysis(), eval_set.AFTER, cached[0], cached[1], client.embed
    )
    client.close()


def _keys(index, query: str) -> list[str]:
    return [hit.image_id for hit in index.search(query, limit=10).hits]


def test_colour_queries_put_a_right_photo_first(index):
    quality_hits = [(query, _keys(index, query)[:3]) for query, _relevant, _kind in COLOUR_QUERIES]
    right = [
        query
        for (query, relevant, _), (_, hits) in zip(COLOUR_QUERIES, quality_hits, strict=True)
        if hits and hits[0] in relevant
    ]
    print(f"colour queries P@1 {len(right)}/{len(COLOUR_QUERIES)}: {quality_hits}")
    overall = eval_set.evaluate(lambda query: _keys(index, query))
    print(f"all queries: P@1 {overall.p_at_1:.3f} nDCG@10 {overall.ndcg_at_10:.3f}")
    assert len(right) / len(COLOUR_QUERIES) >= 0.7, quality_hits
    assert all(hits for _, hits in quality_hits)


def test_a_colour_narrows_other_words(index):
    flowers = _keys(index, "flower")
    orange_flowers = _keys(index, "orange flower")
    assert orange_flowers[0] in {"dahlia", "redflower", "marigold"}
    # The yellow daisy is a flower, but not orange: it comes after the orange ones.
    assert orange_flowers.index("yellowflower") > orange_flowers.index("redflower")
    assert _keys(index, "red motorcycle")[0] == "motorcycle"
    assert set(flowers) >= {"yellowflower", "redflower"}


def test_colours_are_a_field_weighted_by_share():
    index = SearchIndex(EngineParams(vector_dim=4))
    index.put(Document("mostly", colours=(("blue", 0.8), ("grey", 0.2))))
    index.put(Document("a_little", colours=(("grey", 0.7), ("blue", 0.12))))
    index.put(Document("none", colours=(("red", 0.9),)))

    assert [h.image_id for h in index.search("blue").hits] == ["mostly", "a_little"]
    assert [h.image_id for h in index.search("gray").hits] == ["a_little", "mostly"]
    assert index.search("blue").hits[0].reasons[0].field == "colours"
