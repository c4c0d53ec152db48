"""A feed part is worked out before the index lock is taken (SearchIndex.prepare_put: labels
numbered, postings encoded, suggestion counts grouped, vectors quantised) and only put in under
it (apply_put), so searches wait for less of each part; the index comes out as if every change
had been applied one after another, also when another write comes between the two.

Real DurableIndex, SearchIndex and tokenizer; the prepare and apply steps are wrapped only to
note whether the index lock was held when they ran (no timing)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from search_service import durable_index
from search_service.document import Document
from search_service.durable_index import DurableIndex, FeedChange
from search_service.engine import EngineParams, SearchIndex
from search_service.inverted_index import FIELDS, InvertedIndex
from search_service.semantic import ConceptSpace
from search_service.vector_index import VectorIndex
from tests.search_service.documents import DIM, doc, unit

PARAMS = EngineParams(vector_dim=DIM)
CLASSES = {"espresso": 0, "tabby": 1, "golden retriever": 2, "seashore": 3, "kayak": 4}
QUERIES = ("dog beach", "menu", "cafe", "kayak harbour", "tabby", "retriever sign")


def _concepts() -> ConceptSpace:
    rng = np.random.default_rng(7)
    return ConceptSpace(list(CLASSES), rng.normal(size=(len(CLASSES), 8)).astype(np.float32))


def _embed(texts: list[str]) -> Any:
    return np.ones((len(texts), 8), np.float32)


def cafe(i: int) -> Document:
    return doc(
        f"img{i}",
        (("espresso", 0.7), ("tabby", 0.2)),
        ocr_text=f"menu board {i}",
        tags=("cafe",),
        vector=unit(i),
        class_indexes=CLASSES,
    )


def beach(i: int) -> Document:
    return doc(
        f"img{i}",
        (("golden retriever", 0.8), ("seashore", 0.3)),
        ocr_text=f"beach sign {i % 7}",
        tags=("holiday", "dog"),
        vector=unit(1000 + i),
        class_indexes=CLASSES,
    )


def kayak(i: int) -> Document:
    """Words no other document has (new posting lists and suggestion texts)."""
    return doc(
        f"kayak{i}",
        (("kayak", 0.9), ("seashore", 0.4)),
        ocr_text=f"harbour {i}",
        tags=("paddling",),
        vector=unit(2000 + i),
        class_indexes=CLASSES,
    )


def _index(docs: list[Document]) -> SearchIndex:
    index = SearchIndex(PARAMS)
    index.attach_semantic(_concepts(), _embed)
    index.put_many(docs)
    return index


def _contents(index: SearchIndex) -> dict[str, Any]:
    """What a search or a snapshot reads of the index, in comparable form."""
    kw = index.keywords
    postings = {}
    for key, plist in kw._postings.items():
        ids, weights = plist.decode()
        if ids.size:
            postings[key] = (ids.tolist(), weights.tolist())
    concepts = index.concepts
    assert concepts is not None
    return {
        "postings": postings,
        "surface": {t: (e[0], dict(e[1])) for t, e in kw._surface.items()},
        "lengths": {f: kw._lengths[f].view().tolist() for f in FIELDS},
        "length_sums": {f: round(s, 6) for f, s in kw._length_sums.items()},
        "live": kw._live,
        "ids": dict(index._ids),
        "rows": [d.image_id if d else None for d in index._docs],
        "label_docs": dict(index._label_docs),
        "vectors": index.vectors.present().tolist(),
        "vector_rows": index.vectors.vectors_of(np.asarray(sorted(index._ids.values()))).tolist(),
        "concept_norms": concepts._norms.view().tolist(),
        "columns": [index._owner.view().tolist(), index._alive.view().tolist()],
        "hits": [[h.image_id for h in index.search(q, semantic=False).hits] for q in QUERIES],
    }


def _nonzero(surface: dict[str, Any]) -> dict[str, Any]:
    return {t: (n, {f: c for f, c in fields.items() if c}) for t, (n, fields) in surface.items()}


def _noting(monkeypatch: pytest.MonkeyPatch, durable: DurableIndex) -> dict[str, list[bool]]:
    """Per step of a part: whether the index lock was held, each time it ran."""
    seen: dict[str, list[bool]] = {}
    steps = [
        (InvertedIndex, "prepare_add"),
        (VectorIndex, "prepare_add"),
        (InvertedIndex, "apply_add"),
    ]
    for owner, name in steps:
        original = getattr(owner, name)
        key = f"{owner.__name__}.{name}"

        def noted(self: Any, *args: Any, _original: Any = original, _key: str = key) -> Any:
            seen.setdefault(_key, []).append(durable._lock.held_by_me())
            return _original(self, *args)

        monkeypatch.setattr(owner, name, noted)
    return seen


def test_a_feed_part_is_worked_out_before_the_index_lock(monkeypatch) -> None:
    durable = DurableIndex.open(None, PARAMS)
    durable.attach_semantic(list(CLASSES), _concepts().embeddings, _embed)
    durable.apply(FeedChange(i + 1, f"img{i}", cafe(i)) for i in range(40))
    seen = _noting(monkeypatch, durable)

    # New images (each put twice, as the feed sends them) and re-puts, in several parts.
    changes = [FeedChange(41 + 2 * i + k, f"kayak{i}", kayak(i)) for i in range(30) for k in (0, 1)]
    changes += [FeedChange(101 + i, f"img{i}", beach(i)) for i in range(40)]
    durable.apply(changes)

    assert seen["InvertedIndex.prepare_add"] and seen["VectorIndex.prepare_add"]
    assert not any(seen["InvertedIndex.prepare_add"]), "keyword postings made under the lock"
    assert not any(seen["VectorIndex.prepare_add"]), "vectors quantised under the lock"
    assert all(seen["InvertedIndex.apply_add"])  # the appends themselves are under it
    assert durable.applied_seq == 140


def test_prepared_parts_give_the_same_index_as_parts_made_under_the_lock(monkeypatch) -> None:
    changes = [FeedChange(i + 1, f"img{i}", cafe(i)) for i in range(40)]
    changes += [
        FeedChange(41 + 2 * i + k, f"kayak{i}", kayak(i)) for i in range(30) for k in (0, 1)
    ]
    changes += [FeedChange(101 + i, f"img{i}", beach(i)) for i in range(0, 40, 3)]
    changes += [FeedChange(200 + i, f"kayak{i}") for i in range(0, 30, 4)]  # removals

    def applied(prepare: bool) -> DurableIndex:
        monkeypatch.setattr(durable_index, "PREPARE_PARTS", prepare)
        durable = DurableIndex.open(None, PARAMS)
        durable.attach_semantic(list(CLASSES), _concepts().embeddings, _embed)
        durable.apply(changes[:40])  # apart: the beach images then replace indexed ones
        durable.apply(changes[40:])
        return durable

    prepared, unprepared = applied(True), applied(False)
    # And an index that only ever held the documents left at the end.
    last: dict[str, Document | None] = {}
    for change in changes:
        last.pop(change.image_id, None)
        last[change.image_id] = change.doc
    fresh = _index([d for d in last.values() if d is not None])

    got = _contents(prepared._index)
    assert got == _contents(unprepared._index)
    assert prepared.applied_seq == unprepared.applied_seq == changes[-1].seq
    want = _contents(fresh)
    for what in ("length_sums", "live", "label_docs"):
        assert got[what] == want[what], what
    # A removal leaves a field's count at 0 in a text's entry (the fresh index has none).
    assert _nonzero(got["surface"]) == want["surface"]
    assert [sorted(hits) for hits in got["hits"]] == [sorted(hits) for hits in want["hits"]]


def test_a_put_between_prepare_and_apply_gives_the_serial_result() -> None:
    base = [cafe(i) for i in range(20)]
    batch = [beach(i) for i in range(0, 20, 2)] + [kayak(i) for i in range(5)]
    # A direct write that adds documents (the batch's numbers and posting lists' ends move),
    # makes a posting list the batch would make (kayak), and replaces an image the batch
    # replaces too.
    between = [kayak(99), beach(4)]
    index = _index(base)

    prepared = index.prepare_put(batch)
    index.put_many(between)
    index.apply_put(prepared)

    serial = _index(base)
    serial.put_many(between)
    serial.put_many(batch)
    assert _contents(index) == _contents(serial)
    assert len({key for key, _ in index.keywords._made}) == len(index.keywords._made)


def test_a_removal_between_prepare_and_apply_keeps_the_prepared_work(monkeypatch) -> None:
    base = [cafe(i) for i in range(20)] + [kayak(i) for i in range(3)]
    # The batch re-puts img2 and img4 (their analyses and counts prepared) and brings kayak
    # words.
    batch = [beach(2), beach(4), kayak(7)]
    index = _index(base)
    prepared = index.prepare_put(batch)
    remade: list[int] = []
    prepare_add = InvertedIndex.prepare_add
    monkeypatch.setattr(
        InvertedIndex, "prepare_add", lambda self, *a: remade.append(1) or prepare_add(self, *a)
    )

    # Removals change suggestion counts, lengths and live documents the batch also changes:
    # the last kayak goes (its texts' entries with it), and img6 (cafe words like img2's).
    for image_id in ("kayak0", "kayak1", "kayak2", "img6"):
        index.remove(image_id)
    index.apply_put(prepared)
    made_again = len(remade)

    serial = _index(base)
    for image_id in ("kayak0", "kayak1", "kayak2", "img6"):
        serial.remove(image_id)
    serial.put_many(batch)
    assert _contents(index) == _contents(serial)
    assert made_again == 0  # removals of other images leave a prepared part as it was made


def test_removing_an_image_the_part_replaces_between_prepare_and_apply() -> None:
    base = [cafe(i) for i in range(20)]
    batch = [beach(2), beach(4), beach(5)]
    index = _index(base)
    prepared = index.prepare_put(batch)

    # img2's counts were to be taken off with the batch's: it is gone already.
    index.remove("img2")
    index.apply_put(prepared)

    serial = _index(base)
    serial.remove("img2")
    serial.put_many(batch)
    assert _contents(index) == _contents(serial)
