"""Keyword search on the index: BM25 across fields, AND then OR, filters, deletes, updates."""

from __future__ import annotations

import numpy as np
import pytest

from search_service.document import Status
from search_service.engine import EngineParams, Filters, SearchIndex
from search_service.errors import InvalidDocumentError
from tests.search_service.documents import DIM, doc


@pytest.fixture
def index() -> SearchIndex:
    """Four images: two cats of different confidence, an espresso, an invoice scan."""
    ix = SearchIndex(EngineParams(vector_dim=DIM))
    ix.put(doc("cat-sure", (("tiger cat", 0.9),), filename="IMG_0001.jpg"))
    ix.put(doc("cat-maybe", (("tiger cat", 0.2), ("lynx", 0.5)), filename="IMG_0002.jpg"))
    ix.put(doc("coffee", (("espresso", 0.95),), filename="BreakfastTable.png", tags=("kitchen",)))
    ix.put(
        doc("scan", (("envelope", 0.3),), filename="scan.pdf.png", ocr_text="INVOICE 2024 total")
    )
    return ix


def _ids(result) -> list[str]:
    return [h.image_id for h in result.hits]


def test_higher_label_probability_ranks_first(index):
    result = index.search("cat", semantic=False)

    assert _ids(result) == ["cat-sure", "cat-maybe"]
    assert result.total == 2


def test_unrelated_images_are_not_returned(index):
    assert _ids(index.search("espresso")) == ["coffee"]


def test_every_term_must_match_when_some_image_holds_them_all(index):
    result = index.search("tiger lynx")

    assert _ids(result) == ["cat-maybe"]
    assert not result.fell_back_to_or


def test_falls_back_to_or_when_no_image_holds_every_term(index):
    result = index.search("espresso invoice")

    assert set(_ids(result)) == {"coffee", "scan"}
    assert result.fell_back_to_or


def test_filename_words_and_ocr_text_are_searchable(index):
    assert _ids(index.search("breakfast")) == ["coffee"]
    assert _ids(index.search("invoices")) == ["scan"]
    assert _ids(index.search("BreakfastTable.png")) == ["coffee"]


def test_match_reasons_name_field_and_document_term(index):
    (hit,) = index.search("breakfast kitchen").hits

    reasons = {(r.field, r.term) for r in hit.reasons}

    assert reasons == {("filename", "breakfast"), ("tags", "kitchen")}
    assert all(r.score > 0 for r in hit.reasons)


def test_labels_below_the_noise_floor_are_not_keyword_matches():
    ix = SearchIndex(EngineParams(vector_dim=DIM))
    ix.put(doc("a", (("espresso", 0.9), ("tiger cat", 0.01))))

    assert ix.search("cat").hits == []


def test_removed_image_never_comes_back(index):
    assert index.remove("cat-sure")

    assert "cat-sure" not in _ids(index.search("cat"))
    assert not index.remove("cat-sure")


def test_update_replaces_the_old_document(index):
    index.put(doc("coffee", (("tiger cat", 0.99),), filename="IMG_0003.jpg"))

    assert "coffee" not in _ids(index.search("espresso"))
    assert _ids(index.search("cat"))[0] == "coffee"
    assert len(index) == 4


def test_owner_filter_keeps_only_that_owner():
    ix = SearchIndex(EngineParams(vector_dim=DIM))
    ix.put(doc("a", (("tiger cat", 0.9),), owner="alice"))
    ix.put(doc("b", (("tiger cat", 0.9),), owner="bob"))

    assert _ids(ix.search("cat", Filters(owner="bob"))) == ["b"]
    assert _ids(ix.search("cat", Filters(owner="nobody"))) == []


def test_moderated_images_hidden_unless_asked_for():
    ix = SearchIndex(EngineParams(vector_dim=DIM, moderation_threshold=0.8))
    ix.put(doc("safe", (("tiger cat", 0.9),), moderation=0.1))
    ix.put(doc("flagged", (("tiger cat", 0.9),), moderation=0.93))

    assert _ids(ix.search("cat")) == ["safe"]
    assert set(_ids(ix.search("cat", Filters(include_moderated=True)))) == {"safe", "flagged"}


def test_status_filter_keeps_only_those_statuses():
    ix = SearchIndex(EngineParams(vector_dim=DIM))
    ix.put(doc("ready", (("tiger cat", 0.9),)))
    ix.put(doc("pending", filename="cat.jpg", status=Status.PENDING))

    result = ix.search("cat", Filters(statuses=(Status.PENDING,)))

    assert _ids(result) == ["pending"]


def test_pages_do_not_overlap_and_cover_all_hits():
    ix = SearchIndex(EngineParams(vector_dim=DIM))
    for i in range(25):
        ix.put(doc(f"img{i}", (("tiger cat", 0.5 + i / 100),)))

    first = ix.search("cat", limit=10)
    rest = ix.search("cat", limit=20, offset=10)

    assert first.total == 25
    assert len(first.hits) == 10 and len(rest.hits) == 15
    assert not set(_ids(first)) & set(_ids(rest))


def test_prefix_suggestions_rank_by_document_count(index):
    index.put(doc("cat-3", (("tabby", 0.9),), filename="tiger.jpg"))

    suggestions = index.suggest("ti", 5)

    assert suggestions[0] == ("tiger", 3, "labels")
    assert ("tiger cat", 2, "labels") in suggestions


def test_suggestions_forget_removed_images(index):
    index.remove("scan")

    assert index.suggest("invo", 5) == []
    assert index.suggest("espr", 5) == [("espresso", 1, "labels")]


def test_compaction_keeps_live_documents_searchable():
    ix = SearchIndex(EngineParams(vector_dim=DIM))
    for i in range(3000):
        ix.put(doc(f"img{i}", (("tiger cat", 0.9),) if i % 2 else (("espresso", 0.9),)))
    for i in range(0, 3000, 2):
        ix.remove(f"img{i}")
    assert ix.needs_compaction()

    compacted = ix.compacted()

    assert len(compacted) == 1500
    assert compacted.search("cat", limit=200).total == 1500
    assert compacted.search("espresso").total == 0


def test_bad_documents_are_refused_and_leave_the_index_unchanged(index):
    bad = [
        doc("", (("tiger cat", 0.9),)),
        doc("x", (("tiger cat", 1.5),)),
        doc("x", moderation=float("nan")),
        doc("x", vector=np.full(DIM, np.nan, np.float32)),
        doc("x", vector=np.ones(DIM + 1, np.float32)),
    ]

    for d in bad:
        with pytest.raises(InvalidDocumentError):
            index.put(d)

    assert len(index) == 4
    assert "x" not in index
