"""Feature vectors kept as float16 in storage: exact where float16 holds the value, old float32
values still read, and similar-image recall on real photo vectors."""

from __future__ import annotations

import numpy as np
import pytest

from storage_service.columnstore import vectors
from storage_service.columnstore.model import AnnotationUpdate
from storage_service.columnstore.store import ColumnStore
from tests.storage_service.photo_vectors import real_photo_vectors, recall_at_k


def test_vector_is_stored_in_half_the_bytes():
    vector = [0.25, -1.5, 3.0, 0.0] * 320

    stored = vectors.encode(vector)

    assert len(stored) == 1 + 2 * 1280
    assert vectors.decode_list(stored) == vector


def test_float32_value_written_before_float16_still_reads():
    legacy = np.asarray([0.1, -2.5, 7.0], dtype="<f4").tobytes()

    got = vectors.decode(legacy)

    assert got.dtype == np.float32
    assert got.tolist() == np.asarray([0.1, -2.5, 7.0], dtype=np.float32).tolist()


@pytest.mark.parametrize("dim", [1, 2, 3, 4, 5, 1280])
def test_float16_value_of_any_length_is_never_read_as_float32(dim):
    vector = [0.5 * (k + 1) for k in range(dim)]

    stored = vectors.encode(vector)

    assert len(stored) % 4 != 0
    assert vectors.decode_list(stored) == vector


def test_value_float16_cannot_hold_is_kept_as_float32():
    vector = [1.0, 1e6, -3.0]

    stored = vectors.encode(vector)

    assert len(stored) == 12
    assert vectors.decode_list(stored) == vector


def test_no_vector_is_empty():
    assert vectors.encode([]) == b"" and vectors.encode(None) == b""
    assert vectors.decode_list(b"") == []


def test_value_of_unknown_encoding_is_refused():
    with pytest.raises(vectors.VectorFormatError):
        vectors.decode(b"\x00\x01\x02\x03\x04")


def test_store_returns_float32_list_after_flush_compact_and_reopen(tmp_path, small_images):
    vector = [float(v) for v in np.linspace(-1, 1, 1280, dtype=np.float16)]
    store = ColumnStore.open(tmp_path / "s")
    image_id = store.put("a.jpg", "", small_images[0]).image.id
    store.update_annotations(
        image_id,
        AnnotationUpdate(fields=frozenset({"feature_vector"}), feature_vector=tuple(vector)),
    )
    in_memtable = store.feature_vector(image_id)
    store.flush()
    store.compact()
    store.close()

    reopened = ColumnStore.open(tmp_path / "s")

    assert in_memtable == vector
    assert reopened.feature_vector(image_id) == vector
    reopened.close()


def test_similar_image_recall_of_real_photo_vectors_holds_in_float16():
    exact = real_photo_vectors()

    stored = np.stack([vectors.decode(vectors.encode(v)) for v in exact])

    assert stored.dtype == np.float32
    assert recall_at_k(exact, stored, k=10) >= 0.98


def test_store_keeps_a_model_sized_vector_in_float16(tmp_path, small_images):
    store = ColumnStore.open(tmp_path / "s")
    image_id = store.put("a.jpg", "", small_images[0]).image.id
    vector = tuple(float(v) for v in np.linspace(0, 0.3, 1280))
    store.update_annotations(
        image_id, AnnotationUpdate(fields=frozenset({"feature_vector"}), feature_vector=vector)
    )
    store.flush()

    column = {c.name: c for c in store.stats().columns}["feature_vector"]

    assert column.raw_bytes == 1 + 2 * 1280
    assert np.allclose(store.feature_vector(image_id), vector, rtol=1e-3, atol=1e-4)
    store.close()
