"""Semantic expansion on the domain level: concept vectors from label probabilities, fused with
BM25. The label embeddings here are built by hand so each case is exact; the quality tests do
the same with the real MiniLM embeddings of the vision service."""

from __future__ import annotations

import numpy as np
import pytest

from search_service.document import Label
from search_service.engine import EngineParams, SearchIndex
from search_service.fusion import reciprocal_rank_fusion
from search_service.semantic import ConceptSpace
from tests.search_service.documents import DIM, doc

LABELS = ["tiger cat", "espresso", "moped"]
CLASSES = {name: i for i, name in enumerate(LABELS)}
# Orthogonal label embeddings; a query "kitten" lands close to "tiger cat" only.
EMBEDDINGS = np.eye(3, 8, dtype=np.float32)
QUERIES = {
    "a photo of a kitten": np.array([0.9, 0.1, 0, 0, 0, 0, 0.42, 0], np.float32),
    "a photo of a dog": np.array([0.35, 0.3, 0.32, 0, 0, 0, 0.85, 0], np.float32),
    "a photo of a cat": np.array([0.95, 0.05, 0.05, 0, 0, 0, 0.3, 0], np.float32),
}


def _embed(texts: list[str]) -> np.ndarray:
    return np.stack([QUERIES[t] / np.linalg.norm(QUERIES[t]) for t in texts])


def _index(**params) -> SearchIndex:
    ix = SearchIndex(EngineParams(vector_dim=DIM, **params))
    ix.attach_semantic(ConceptSpace(LABELS, EMBEDDINGS), _embed)
    ix.put(doc("cat", (("tiger cat", 0.6), ("moped", 0.05)), class_indexes=CLASSES))
    ix.put(doc("coffee", (("espresso", 0.95),), class_indexes=CLASSES))
    ix.put(doc("bike", (("moped", 0.7),), class_indexes=CLASSES))
    return ix


def test_query_without_keyword_match_finds_image_through_its_labels():
    result = _index().search("kitten")

    assert [h.image_id for h in result.hits] == ["cat"]
    (reason,) = result.hits[0].reasons
    assert (reason.field, reason.term) == ("semantic", "tiger cat")
    assert result.semantic_used
    # No label says kitten: the page says which labels stand in for it.
    assert result.note == "no photo is labelled 'kitten'; showing the closest: tiger cat"


def test_weak_concept_matches_are_not_results_but_the_page_shows_the_closest():
    # (these hand-made embeddings are further apart than MiniLM's, so a lower bar)
    result = _index(closest_min_similarity=0.3, closest_margin=1.0).search("dog")

    # No label is close enough to "dog" to be a match ...
    assert result.total == 0 or result.closest
    # ... so the page says so and shows the library's closest concept instead of nothing.
    # (espresso is further than closest_min_similarity from "dog")
    assert result.closest == ("tiger cat", "moped")
    assert result.note == "no photo is labelled 'dog'; showing the closest: tiger cat, moped"
    assert [h.image_id for h in result.hits][:2] == ["cat", "bike"]


def test_no_closest_concepts_when_switched_off():
    result = _index(closest_min_similarity=0.3, closest_count=0).search("dog")
    assert (result.hits, result.closest) == ([], ())
    assert result.note == "no photo matches 'dog', and nothing in the library is close to it"


def test_semantic_can_be_switched_off_per_query():
    result = _index().search("kitten", semantic=False)

    assert result.hits == []
    assert not result.semantic_used


def test_vision_outage_degrades_to_keyword_search():
    ix = SearchIndex(EngineParams(vector_dim=DIM))

    def down(texts: list[str]) -> np.ndarray:
        raise ConnectionError("vision service unreachable")

    ix.attach_semantic(ConceptSpace(LABELS, EMBEDDINGS), down)
    ix.put(doc("coffee", (("espresso", 0.95),), class_indexes=CLASSES))

    result = ix.search("espresso")

    assert [h.image_id for h in result.hits] == ["coffee"]
    assert not result.semantic_used


def test_documents_indexed_before_semantic_attached_get_concepts():
    ix = SearchIndex(EngineParams(vector_dim=DIM))
    ix.put(doc("cat", (("tiger cat", 0.6),), class_indexes=CLASSES))

    ix.attach_semantic(ConceptSpace(LABELS, EMBEDDINGS), _embed)

    assert [h.image_id for h in ix.search("kitten").hits] == ["cat"]


def test_rrf_rewards_documents_both_rankings_agree_on():
    docs, scores = reciprocal_rank_fusion([np.array([1, 2, 3]), np.array([3, 4])])

    assert docs.tolist() == [3, 1, 2, 4]
    assert scores[0] > scores[1]


# ---- the class postings a query expands through -----------------------------------------------

MANY = [f"class {i}" for i in range(200)]
# Orthogonal but for a small shared part, so every class is a little similar to every query.
MANY_EMBEDDINGS = np.eye(200, 256, dtype=np.float32)
MANY_EMBEDDINGS[:, 255] = 0.3


def _many_space() -> ConceptSpace:
    """200 classes; documents 0..399 weigh in classes 1..199, document 400 in
    class 0, and document 401 weakly in class 0 under a strong class 7."""
    space = ConceptSpace(MANY, MANY_EMBEDDINGS)
    for docno in range(400):
        space.add(docno, (Label(MANY[1 + docno % 199], 0.9, (), 1 + docno % 199),))
    space.add(400, (Label(MANY[0], 0.8, (), 0), Label(MANY[5], 0.1, (), 5)))
    space.add(401, (Label(MANY[7], 0.7, (), 7), Label(MANY[0], 0.2, (), 0)))
    return space


def _near_class_0() -> np.ndarray:
    q = np.zeros(256, np.float32)
    q[0], q[255] = 0.9, 0.3
    return q


def test_a_query_scores_only_documents_posted_under_its_closest_classes():
    space = _many_space()
    allowed = np.ones(len(space), np.bool_)
    label_sims = space.embeddings @ (_near_class_0() / np.linalg.norm(_near_class_0()))

    examined = space.candidates(label_sims, allowed, 0.5)

    # Not the 400 documents of unrelated classes: only those posted under class 0.
    assert examined.tolist() == [400, 401]
    found = space.search(_near_class_0(), allowed, 0.5, 0.5)
    reference = space.search(_near_class_0(), allowed, 0.5, 0.5, exhaustive=True)
    assert found.docs.tolist() == reference.docs.tolist() == [400]
    assert found.similarities == pytest.approx(reference.similarities)
    assert found.best_labels.tolist() == [0]


def test_filters_and_removals_apply_to_the_posted_documents():
    space = _many_space()
    allowed = np.ones(len(space), np.bool_)
    allowed[400] = False
    assert space.search(_near_class_0(), allowed, 0.1).docs.tolist() == [401]

    space.remove(401)
    assert space.search(_near_class_0(), allowed, 0.1).docs.tolist() == []


def test_postings_rebuilt_from_a_snapshot_answer_as_the_live_ones_and_keep_growing():
    live = _many_space()
    restored = ConceptSpace(MANY, MANY_EMBEDDINGS)
    restored.restore_docs({k: v.copy() for k, v in live.state().items()})
    allowed = np.ones(len(live) + 1, np.bool_)

    for space in (live, restored):
        assert space.search(_near_class_0(), allowed, 0.1).docs.tolist() == [400, 401]
    # A document added after the restore is posted like the others.
    restored.add(402, (Label(MANY[0], 0.95, (), 0),))
    assert restored.search(_near_class_0(), allowed, 0.1).docs.tolist() == [400, 401, 402]


def test_pages_of_fused_hits_are_slices_of_the_whole_ranking():
    ix = _index()
    for i in range(12):  # keyword and semantic hits for "cat", with ties
        ix.put(doc(f"c{i}", (("tiger cat", 0.5 + (i % 3) / 10),), class_indexes=CLASSES))
    for i in range(5):  # semantic hits only: class 0 under another name
        ix.put(doc(f"k{i}", (("kitty", 0.6 + (i % 2) / 10),), class_indexes={"kitty": 0}))
    result = ix.search("cat", limit=100)
    whole = [h.image_id for h in result.hits]

    paged = [
        h.image_id for i in range(len(whole)) for h in ix.search("cat", limit=1, offset=i).hits
    ]

    assert result.semantic_used and {"k0", "c0", "cat"} <= set(whole)
    assert paged == whole
    assert ix.search("cat", limit=3).total == len(whole) == 18
