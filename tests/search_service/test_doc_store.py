"""The compact document store reads back exactly the documents it was given."""

from __future__ import annotations

import numpy as np
import pytest

from search_service.doc_store import DocumentStore
from search_service.document import Document, Label, Status
from tests.search_service.documents import unit


def _photo(i: int) -> Document:
    return Document(
        image_id=f"img{i}",
        filename=f"IMG_{i}.jpg",
        owner="alice",
        labels=(
            Label("tiger cat", 0.61234567891, ("tabby",), 282),
            Label("custom", 1 / 3, (), -1),
        ),
        tags=("pets", "home"),
        ocr_text="Menu",
        moderation_score=0.25,
        status=Status.PENDING,
        sha256="ab" * 32,
        created_at_unix_ms=1_700_000_000_000,
        taken_at_unix_s=1_600_000_000,
        camera_make="Canon",
        camera_model="EOS 80D",
        colours=(("orange", 0.4),),
        favourite=True,
    )


def test_documents_come_back_exactly_without_their_vector():
    store = DocumentStore()
    for i in range(3):
        store.append(_photo(i))

    for i in range(3):
        assert store[i] == _photo(i)  # equality leaves the vector out
        assert store[i].labels[0].probability == 0.61234567891
    assert store.field(1, "sha256") == "ab" * 32
    kept = DocumentStore()
    kept.append(Document("v", feature_vector=unit(1)))
    assert kept[0].feature_vector is None


def test_a_removed_document_reads_as_none_even_after_it_was_read():
    store = DocumentStore()
    store.append(_photo(0))
    store.append(_photo(1))
    assert store[1] is not None

    store[1] = None

    assert store[1] is None
    assert [d.image_id if d else None for d in store] == ["img0", None]
    with pytest.raises(ValueError):
        store[0] = _photo(5)  # type: ignore[assignment]


def test_frozen_columns_keep_documents_removed_after_them():
    store = DocumentStore()
    store.append(_photo(0))
    frozen = store.frozen_columns()

    store[0] = None

    loaded = DocumentStore.from_columns({name: make() for name, make in frozen.items()})
    assert loaded[0] == _photo(0)
    assert store[0] is None


def test_a_store_loaded_from_columns_reads_like_the_one_written():
    store = DocumentStore()
    for i in range(4):
        store.append(_photo(i))
    store.append(Document("plain"))  # no labels, tags or colours
    store.append(Document("nul\0inside", filename="a\0b", tags=("x\0y",)))
    store[1] = None

    loaded = DocumentStore.from_columns(store.columns())

    assert len(loaded) == len(store) == 6
    assert [loaded[d] for d in range(6)] == [store[d] for d in range(6)]
    # a removed row's id is gone (the engine's id map never needs it)
    assert loaded.image_ids() == ["img0", "", "img2", "img3", "plain", "nul\0inside"]
    assert loaded.field(2, "sha256") == "ab" * 32 and loaded.field(2, "status") == Status.PENDING
    assert loaded.light(0, 0.5).labels == store.light(0, 0.5).labels
    assert loaded.label_counts(0.05) == {"tiger cat": 3, "custom": 3}


def test_columns_of_a_loaded_store_and_its_later_documents_load_again():
    store = DocumentStore()
    store.append(_photo(0))
    store.append(_photo(1))
    loaded = DocumentStore.from_columns(store.columns())
    loaded.append(_photo(2))
    loaded[0] = None
    loaded.append(Document("odd", labels=(Label("new kind", 0.7, ("syn",), 5),)))

    again = DocumentStore.from_columns(loaded.columns())

    assert [again[d] for d in range(4)] == [None, _photo(1), _photo(2), loaded[3]]
    assert again[3].labels == (Label("new kind", 0.7, ("syn",), 5),)
    assert again.label_counts(0.05) == {"tiger cat": 2, "custom": 2, "new kind": 1}


def test_columns_made_a_chunk_at_a_time_load_every_document_back():
    store = DocumentStore()
    count = 2 * 32_768 + 5  # past the size converted per call (doc_store._CHUNK)
    for i in range(count):
        store.append(_photo(i) if i % 5 else Document(f"plain{i}", created_at_unix_ms=i))
    for i in range(0, count, 7):
        store[i] = None

    columns = store.columns()
    loaded = DocumentStore.from_columns(columns)

    assert len(loaded) == count
    assert all(loaded[d] == store[d] for d in range(count))
    assert columns["label_kinds"].dtype == np.uint16 and columns["label_probs"].dtype == np.float64
    assert columns["created_at_unix_ms"][count - 1] == count - 1  # a plain one (i % 5 == 0)
    assert columns["created_at_unix_ms"][count - 2] == 1_700_000_000_000
    assert loaded.label_counts(0.05) == store.label_counts(0.05)


def test_a_light_document_keeps_only_the_labels_that_can_have_matched():
    store = DocumentStore()
    store.append(_photo(0))

    light = store.light(0, 0.5)

    assert [lb.name for lb in light.labels] == ["tiger cat"]
    assert light.image_id == "img0" and light.tags == ("pets", "home")
    assert store[0] == _photo(0)  # the full document is unchanged
