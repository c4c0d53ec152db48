"""Batch indexing (InvertedIndex.add_many, the write path of put_many and every bulk load)
gives exactly the postings, field lengths and suggestion counts that analysing each document
on its own (InvertedIndex.analyse, the reference) gives."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from search_service.document import Document, Label
from search_service.inverted_index import FIELDS, BM25Params, InvertedIndex

CLASSES = Path(__file__).resolve().parents[2] / "models" / "imagenet_classes.json"
WORDS = [
    "sale",
    "Menu",
    "coffee",
    "EXIT",
    "café",
    "Straße",
    "ＣＡＴ",
    "don't",
    "HTTPServer",
    "2019",
]


def _documents(count: int, seed: int, words: list[str] = WORDS) -> list[Document]:
    classes = json.loads(CLASSES.read_text())
    rng = random.Random(seed)
    docs = []
    for n in range(count):
        picked = rng.sample(classes, rng.randint(0, 20))
        probs = sorted((rng.random() ** 3 for _ in picked), reverse=True)
        labels = [
            Label(c["name"], round(p, 5), tuple(c["synonyms"]), c["index"])
            for c, p in zip(picked, probs, strict=True)
        ]
        if labels and n % 5 == 0:
            labels.append(labels[0])  # one class twice
        if n % 7 == 0:
            labels.append(Label("unknown thing", 0.6, ("odd name",), -1))
        tags = tuple(rng.sample(["dog", "New York", "summer holiday", "cat"], rng.randint(0, 3)))
        ocr = " ".join(rng.choice(words) for _ in range(rng.randint(0, 12))) if n % 3 else ""
        docs.append(
            Document(
                image_id=f"img-{n}",
                filename=rng.choice(
                    [f"IMG_{n:05d}.jpg", f"dir\\BeachDay{n}.JPEG", "a/b/HTTPServer-Log.png", ""]
                ),
                owner=f"user{n % 4}",
                labels=tuple(labels),
                tags=tags,
                ocr_text=ocr if n % 11 else "word " * 300,  # a count past 255
                taken_at_unix_s=0 if n % 2 else 1_500_000_000 + n * 86_400,
                camera_make="Canon" if n % 3 == 0 else "",
                camera_model=rng.choice(["Canon EOS 80D", "PowerShot G7X", ""]),
                colours=(("grey", 0.4), ("dark green", 0.2)) if n % 4 == 0 else (),
            )
        )
    return docs


def _reference(index: InvertedIndex, docs: list[Document]):
    """Postings, lengths and surface counts from analyse(), one document at a time."""
    postings: dict[tuple[str, str], tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
    lengths = {f: [] for f in FIELDS}
    surface: dict[str, list] = {}
    for docno, doc in enumerate(docs):
        analysis = index.analyse(doc)
        for name, stems in analysis.weights.items():
            for stem, weight in stems.items():
                postings[(name, stem)][0].append(docno)
                postings[(name, stem)][1].append(weight)
        for name in FIELDS:
            lengths[name].append(analysis.lengths[name])
        for text, fields in analysis.surface.items():
            entry = surface.setdefault(text, [0, {}])
            entry[0] += 1
            for name in fields:
                entry[1][name] = entry[1].get(name, 0) + 1
    return dict(postings), lengths, surface


@pytest.mark.parametrize("hierarchy", [True, False])
def test_batches_index_exactly_what_one_document_at_a_time_analysis_gives(hierarchy):
    docs = _documents(600, seed=3)
    index = InvertedIndex(BM25Params(hierarchy=hierarchy))
    first = 0
    for size in (1, 2, 250, 1, 346):  # batches of several sizes, single documents too
        index.add_many(first, docs[first : first + size])
        first += size

    expected, lengths, surface = _reference(InvertedIndex(BM25Params(hierarchy=hierarchy)), docs)

    state = index.state()
    got = {}
    words = state["term_text"].decode().split("\0")[:-1]  # each term followed by a NUL
    for fno, term in zip(state["term_fields"].tolist(), words, strict=True):
        ids, weights = index._postings[(fno, term)].decode()
        got[(FIELDS[fno], term)] = (ids.tolist(), weights.tolist())
    assert got == expected
    for i, name in enumerate(FIELDS):
        assert state["lengths"][i].tolist() == lengths[name], name
        assert state["meta"]["length_sums"][name] == sum(lengths[name])
    restored = InvertedIndex.from_state(state, BM25Params(hierarchy=hierarchy))
    assert {t: [c, f] for t, (c, f, _) in restored._surface.items()} == surface


def _postings(index: InvertedIndex) -> dict[tuple[str, str], tuple[list[int], list[int]]]:
    return {
        (FIELDS[fno], term): tuple(a.tolist() for a in plist.decode())
        for (fno, term), plist in index._postings.items()
    }


def test_plain_ascii_text_split_a_batch_at_once_matches_too(monkeypatch):
    """OCR text, filenames and owners of a batch in plain ASCII are split by one regex over the
    joined values and their words looked up in a table (a word table started afresh midway
    too): the same postings and counts as analysing each document."""
    import search_service.inverted_index as inverted_index

    monkeypatch.setattr(inverted_index, "_VOCAB_LIMIT", 400)
    ascii_words = [w for w in WORDS if w.isascii()] + ["it's", "O'Brien", "BeachDay2024"]
    docs = _documents(500, seed=8, words=ascii_words)
    index = InvertedIndex()
    for first in range(0, 500, 100):
        index.add_many(first, docs[first : first + 100])

    expected, lengths, surface = _reference(InvertedIndex(), docs)

    assert _postings(index) == {k: (ids, w) for k, (ids, w) in expected.items()}
    state = index.state()
    for i, name in enumerate(FIELDS):
        assert state["lengths"][i].tolist() == lengths[name], name
    assert {t: [e[0], e[1]] for t, e in index._surface.items()} == surface


def test_batch_with_a_new_vocabulary_midway_matches_too(monkeypatch):
    """The batch vocabulary is started afresh when it grows large; numbering stays right."""
    import search_service.inverted_index as inverted_index

    monkeypatch.setattr(inverted_index, "_VOCAB_LIMIT", 50)
    docs = _documents(120, seed=4)
    index = InvertedIndex()
    for first in range(0, 120, 30):
        index.add_many(first, docs[first : first + 30])

    expected, _, surface = _reference(InvertedIndex(), docs)

    got = {
        (FIELDS[fno], term): tuple(a.tolist() for a in plist.decode())
        for (fno, term), plist in index._postings.items()
    }
    assert got == {k: (ids, w) for k, (ids, w) in expected.items()}
    assert {t: [e[0], e[1]] for t, e in index._surface.items()} == surface


def test_out_of_order_batch_is_refused():
    index = InvertedIndex()
    index.add_many(0, _documents(3, seed=5))

    with pytest.raises(ValueError):
        index.add_many(2, _documents(1, seed=6))
    assert np.array_equal(index.state()["lengths"].shape, (len(FIELDS), 3))


@pytest.mark.parametrize("top", [1 << 12, 1 << 16, 1 << 24, 1 << 40])
def test_stable_order_is_a_stable_argsort(top):
    """Postings and suggestions are grouped by radix sorts of 16-bit parts of their keys."""
    from search_service.inverted_index import _stable_order

    keys = np.random.default_rng(top).integers(0, top, 50_000, dtype=np.int64)
    keys[::7] = keys[0]  # many ties, whose order must be kept

    assert np.array_equal(_stable_order(keys), np.argsort(keys, kind="stable"))
    assert _stable_order(keys[:0]).size == 0
