"""SearchIndex.put_many (the bulk write path: every label numbered once for the keyword
index, the document store and the concept space, the batch validated at once) stores exactly
what putting the same documents one at a time stores, and refuses a bad batch as validate()
refuses its first bad document."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from search_service.doc_store import DocumentStore
from search_service.document import Document, Label
from search_service.engine import SearchIndex
from search_service.errors import InvalidDocumentError
from search_service.inverted_index import FIELDS, InvertedIndex
from search_service.label_embeddings import load_cached
from search_service.semantic import ConceptSpace
from tests.search_service.test_batch_index import _documents

DIM = 1280


def _unembeddable(texts: list[str]) -> np.ndarray:
    raise RuntimeError("no query embedding needed here")


def _with_extras(docs: list[Document]) -> list[Document]:
    """Vectors, moderation, favourites and some labels out of probability order (a class
    twice, synonyms given as a list) on the batch-index documents; later documents replace
    earlier images."""
    rng = np.random.default_rng(5)
    out = []
    for n, doc in enumerate(docs):
        vector = rng.standard_normal(DIM).astype(np.float32) if n % 4 else None
        labels = doc.labels
        if n % 9 == 0 and labels:
            labels = (*labels[1:], labels[0])  # top label last
        if n % 13 == 0 and labels:
            first = labels[0]
            labels = (Label(first.name, first.probability, list(first.synonyms), -1), *labels)  # type: ignore[arg-type]
        out.append(
            replace(
                doc,
                image_id=f"img-{n % 350}",  # the last 50 replace earlier images
                labels=labels,
                feature_vector=vector,
                moderation_score=(n % 10) / 10,
                favourite=n % 6 == 0,
                sha256=f"{n:064x}",
            )
        )
    return out


def _index(label_cache: Path) -> SearchIndex:
    cached = load_cached(label_cache.parent)
    assert cached is not None
    index = SearchIndex()
    index.attach_semantic(ConceptSpace(*cached), _unembeddable)
    return index


def _postings(index: SearchIndex) -> dict:
    return {
        (FIELDS[fno], term): tuple(a.tolist() for a in plist.decode())
        for (fno, term), plist in index.keywords._postings.items()
    }


def _counts(surface: dict) -> dict:
    return {t: (c, {f: n for f, n in fields.items() if n}) for t, (c, fields) in surface.items()}


def _surface(state: dict) -> dict:
    """The suggestion table of an engine state() (text -> [documents, {field: documents}])."""
    restored = InvertedIndex.from_state(state["keywords"])
    return {t: [c, fields] for t, (c, fields, _) in restored._surface.items()}


def _same(a: object, b: object) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    return a == b


def test_put_many_stores_exactly_what_one_at_a_time_stores(label_cache):
    docs = _with_extras(_documents(400, seed=11))
    one = _index(label_cache)
    for doc in docs:
        one.put(doc)
    many = _index(label_cache)
    start = 0
    for size in (1, 60, 139, 200):
        many.put_many(docs[start : start + size])
        start += size

    assert len(many) == len(one) == 350
    assert _postings(many) == _postings(one)
    a, b = one.state(), many.state()
    for name in a["doc_columns"]:
        assert _same(a["doc_columns"][name], b["doc_columns"][name]), name
    for name in ("alive", "owner", "moderation", "status", "taken"):
        assert np.array_equal(a[name], b[name]), name
    assert np.array_equal(one._favourite.view(), many._favourite.view())
    for name in ("classes", "probs", "norms"):
        assert np.array_equal(a["concepts"][name], b["concepts"][name]), name
    assert one.concepts is not None and many.concepts is not None
    for posted_one, posted_many in zip(one.concepts._posted, many.concepts._posted, strict=True):
        assert (posted_one is None) == (posted_many is None)
        if posted_one is not None and posted_many is not None:
            assert np.array_equal(posted_one[0].view(), posted_many[0].view())
            assert np.array_equal(posted_one[1].view(), posted_many[1].view())
    assert one._label_docs == many._label_docs
    # Suggestion counts (a field a removal took to 0 may stay listed with 0 or go, by the
    # order removals and additions came in).
    assert _counts(_surface(a)) == _counts(_surface(b))
    for n in (0, 7, 13, 349):
        assert many.get(f"img-{n}") == one.get(f"img-{n}")
    # Against references that do not share the batch code: documents stored one by one
    # (DocumentStore.append), what was put, and labels by probability in the concept rows.
    reference = DocumentStore()
    latest = {doc.image_id: doc for doc in docs}
    for docno in range(len(many._docs)):
        stored = many._docs[docno]
        reference.append(docs[docno] if stored is not None else None)
        if stored is not None:
            put = latest[stored.image_id]
            assert [(lb.name, lb.probability) for lb in stored.labels] == [
                (lb.name, lb.probability) for lb in put.labels
            ]
    ref_columns = reference.columns()
    for name, column in b["doc_columns"].items():
        if name not in ("kinds", "label_kinds"):  # kinds are numbered in another order
            assert _same(column, ref_columns[name]), name

    def kinds(columns: dict) -> list:
        return [columns["kinds"][k] for k in columns["label_kinds"].tolist()]

    assert kinds(b["doc_columns"]) == kinds(ref_columns)
    probs = b["concepts"]["probs"]
    assert (np.diff(probs, axis=1) <= 0).all()
    for query in ("cat", "summer holiday", "coffee sale", "img 00042", "canon"):
        found_one = one.search(query, semantic=False).hits
        found_many = many.search(query, semantic=False).hits
        assert [(h.image_id, h.score) for h in found_many] == [
            (h.image_id, h.score) for h in found_one
        ]


@pytest.mark.parametrize(
    "bad",
    [
        {"image_id": ""},
        {"moderation_score": 1.0000001},
        {"taken_at_unix_s": -1},
        {"labels": (Label("cat", 1.5),)},
        {"labels": (Label("cat", float("nan")),)},
        {"feature_vector": np.full(DIM, np.nan, np.float32)},
        {"feature_vector": np.r_[np.ones(DIM - 1, np.float32), np.inf].astype(np.float32)},
        {"feature_vector": np.ones(DIM - 1, np.float32)},
    ],
)
def test_a_bad_document_refuses_the_batch_as_validate_does(bad):
    index = SearchIndex()
    docs = [Document(image_id=f"img-{n}", labels=(Label("cat", 0.5),)) for n in range(5)]
    docs[3] = replace(docs[3], **bad)
    with pytest.raises(InvalidDocumentError) as expected:
        index.validate(docs[3])

    with pytest.raises(InvalidDocumentError) as refused:
        index.put_many(docs)

    assert str(refused.value) == str(expected.value)
    assert len(index) == 0 and len(index._docs) == 0


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # the vector's norm
def test_large_finite_vectors_are_taken():
    """A vector whose squared length overflows float32 is still finite: the batch check then
    asks validate(), which takes it."""
    index = SearchIndex()
    big = np.full(DIM, 1e20, np.float32)
    index.put_many([Document(image_id="a", feature_vector=big), Document(image_id="b")])

    assert len(index) == 2


def test_kind_numbers_of_another_table_are_not_mixed_up(label_cache):
    """Label kinds are numbered by the caller's table; a different table starts afresh."""
    cached = load_cached(label_cache.parent)
    assert cached is not None
    names = cached[0]
    space = ConceptSpace(*cached)
    first = [(names[3], (), 3), (names[5], (), 5)]
    other = [(names[5], (), 5), ("no such label", (), -1)]

    assert space.kind_classes(first).tolist() == [3, 5]
    assert space.kind_classes(other).tolist() == [5, -1]

    from search_service.inverted_index import InvertedIndex

    index = InvertedIndex()
    probs = np.asarray([0.9], np.float64)
    one = Document(image_id="a", labels=(Label(names[5], 0.9, (), 5),))
    two = Document(image_id="b", labels=(Label("no such label", 0.9, (), -1),))
    index.add_many(0, [one], (np.asarray([1]), first, probs))  # kind 1: names[5]
    index.add_many(1, [two], (np.asarray([1]), other, probs))  # kind 1: "no such label"
    held = {term for (fno, term) in index._postings if FIELDS[fno] == "labels"}
    expected = set(index._tokenizer.terms(names[5])) | set(index._tokenizer.terms("no such label"))
    assert held == expected
