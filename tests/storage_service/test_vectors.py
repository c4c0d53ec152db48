"""Feature vectors in storage: int8 with a per-vector scale by default (float16 or float32 by
STORAGE_VECTOR_ENCODING), every older encoding still read, non-finite values refused, and
similar-image recall on real photo vectors against float32."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

from storage_service.columnstore import vectors
from storage_service.columnstore.model import AnnotationUpdate
from storage_service.columnstore.store import ColumnStore, StoreOptions
from storage_service.config import StorageConfig
from tests.storage_service.photo_vectors import REPO_ROOT, real_photo_vectors, recall_at_k
from tests.support import free_port

MODEL_DIM = 1280


def _model_like_vector(seed: int = 0) -> list[float]:
    """Non-negative, unit length, a few large values: shaped like the vision model's."""
    values = np.random.default_rng(seed).gamma(0.5, 1.0, MODEL_DIM).astype(np.float32)
    return [float(v) for v in values / np.linalg.norm(values)]


def _annotate(store: ColumnStore, image_id: str, vector: list[float]) -> None:
    store.update_annotations(
        image_id,
        AnnotationUpdate(fields=frozenset({"feature_vector"}), feature_vector=tuple(vector)),
    )


def _vector_column(store: ColumnStore) -> tuple[int, int]:
    column = {c.name: c for c in store.stats().columns}["feature_vector"]
    return column.raw_bytes, column.stored_bytes


def test_model_vector_is_int8_with_its_scale_by_default():
    vector = _model_like_vector()

    stored = vectors.encode(vector)
    got = vectors.decode(stored)

    assert len(stored) == 1 + 4 * 1 + MODEL_DIM and stored[:1] == b"\x08"
    assert got.dtype == np.float32
    top = max(abs(v) for v in vector)
    # Within half a quantisation step of every value, and the largest value exact.
    assert np.max(np.abs(got - np.asarray(vector, np.float32))) <= top / 254 * 1.0001
    assert float(got[int(np.argmax(np.abs(vector)))]) == top


@pytest.mark.parametrize("encoding", ["int8", "float16", "float32"])
def test_each_encoding_round_trips_and_writing_a_read_vector_again_changes_nothing(encoding):
    vector = _model_like_vector(1)

    stored = vectors.encode(vector, encoding)
    got = vectors.decode_list(stored)

    tolerance = {"int8": max(vector) / 254, "float16": 5e-4 * max(vector), "float32": 0.0}
    assert len(got) == MODEL_DIM
    assert max(abs(a - b) for a, b in zip(got, vector, strict=True)) <= tolerance[encoding]
    assert vectors.encode(got, encoding) == stored


def test_float16_and_float32_keep_what_they_can_hold_exactly():
    vector = [0.25, -1.5, 3.0, 0.0] * 320

    assert vectors.decode_list(vectors.encode(vector, "float16")) == vector
    assert len(vectors.encode(vector, "float16")) == 1 + 2 * MODEL_DIM
    assert vectors.decode_list(vectors.encode(vector, "float32")) == vector
    assert len(vectors.encode(vector, "float32")) == 4 * MODEL_DIM


def test_values_written_before_int8_still_read():
    # The bytes earlier versions wrote, built by hand, not by today's encode.
    values = [0.1, -2.5, 7.0, 0.0]
    float32_value = np.asarray(values, dtype="<f4").tobytes()
    float16_value = b"\x16" + np.asarray(values, dtype="<f2").tobytes()

    assert vectors.decode_list(float32_value) == np.asarray(values, np.float32).tolist()
    assert vectors.decode_list(float16_value) == np.asarray(values, np.float16).tolist()
    assert vectors.decode(float32_value).dtype == vectors.decode(float16_value).dtype


@pytest.mark.parametrize("encoding", ["int8", "float16", "float32"])
@pytest.mark.parametrize("dim", [1, 2, 3, 4, 5, 6, 8, 1280])
def test_a_value_of_any_length_is_read_in_the_encoding_it_was_written(encoding, dim):
    vector = [0.5 * (k + 1) for k in range(dim)]

    stored = vectors.encode(vector, encoding)

    if encoding == "float32":
        assert len(stored) == 4 * dim
    else:
        assert len(stored) % 4 != 0  # never mistaken for float32
        # int8 needs an even count (its length stays odd); an odd count is kept as float16.
        assert stored[:1] == (b"\x08" if encoding == "int8" and dim % 2 == 0 else b"\x16")
    got = vectors.decode_list(stored)
    assert len(got) == dim
    assert np.allclose(got, vector, rtol=0, atol=max(vector) / 254)


def test_value_float16_cannot_hold_is_kept_as_float32():
    vector = [1.0, 1e6, -3.0]

    stored = vectors.encode(vector, "float16")

    assert len(stored) == 12
    assert vectors.decode_list(stored) == vector


def test_a_vector_of_zeros_reads_back_as_zeros():
    assert vectors.decode_list(vectors.encode([0.0] * MODEL_DIM)) == [0.0] * MODEL_DIM


def test_no_vector_is_empty():
    for encoding in vectors.ENCODINGS:
        assert vectors.encode([], encoding) == b"" and vectors.encode(None, encoding) == b""
    assert vectors.decode_list(b"") == []


@pytest.mark.parametrize(
    "stored", [b"\x00\x01\x02\x03\x04", b"\x08\x00\x00\x80\x3f", b"\x09" + bytes(1284)]
)
def test_value_of_unknown_encoding_is_refused(stored):
    with pytest.raises(vectors.VectorFormatError):
        vectors.decode(stored)


@pytest.mark.parametrize("encoding", ["int8", "float16", "float32"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_vector_that_is_not_finite_is_refused(encoding, bad):
    with pytest.raises(ValueError, match="NaN or infinite"):
        vectors.encode([0.5] * (MODEL_DIM - 1) + [bad], encoding)


def test_store_refuses_a_vector_that_is_not_finite_and_keeps_the_old_one(tmp_path, small_images):
    store = ColumnStore.open(tmp_path / "s")
    image_id = store.put("a.jpg", "", small_images[0]).image.id
    vector = _model_like_vector(2)
    _annotate(store, image_id, vector)
    before = store.feature_vector(image_id)

    with pytest.raises(ValueError):
        _annotate(store, image_id, [math.nan] * MODEL_DIM)

    assert store.feature_vector(image_id) == before
    store.close()
    reopened = ColumnStore.open(tmp_path / "s")
    assert reopened.feature_vector(image_id) == before
    reopened.close()


def test_store_returns_float32_list_after_flush_compact_and_reopen(tmp_path, small_images):
    vector = _model_like_vector(3)
    store = ColumnStore.open(tmp_path / "s")
    image_id = store.put("a.jpg", "", small_images[0]).image.id
    _annotate(store, image_id, vector)
    in_memtable = store.feature_vector(image_id)
    store.flush()
    store.compact()
    store.close()

    reopened = ColumnStore.open(tmp_path / "s")

    assert in_memtable == vectors.decode_list(vectors.encode(vector))
    assert reopened.feature_vector(image_id) == in_memtable
    reopened.close()


def test_similar_image_recall_of_real_photo_vectors_holds_in_int8_and_float16():
    exact = real_photo_vectors()

    for encoding in ("int8", "float16"):
        stored = np.stack([vectors.decode(vectors.encode(v, encoding)) for v in exact])

        assert stored.dtype == np.float32
        assert recall_at_k(exact, stored, k=10) >= 0.98, encoding


# --- the setting -------------------------------------------------------------------------------


def test_the_encoding_is_a_storage_setting():
    assert StorageConfig.from_env({}).store_options().vector_encoding == "int8"
    for name in ("int8", "float16", "float32"):
        config = StorageConfig.from_env({"STORAGE_VECTOR_ENCODING": name})
        assert config.store_options().vector_encoding == name
    assert StorageConfig.from_env({"STORAGE_VECTOR_ENCODING": " Float16 "}).vector_encoding == (
        "float16"
    )


@pytest.mark.parametrize("name", ["bf16", "int4", ""])
def test_an_unknown_encoding_is_refused_with_the_choices(name):
    with pytest.raises(vectors.VectorEncodingError, match="int8, float16 or float32") as e:
        StorageConfig.from_env({"STORAGE_VECTOR_ENCODING": name}).store_options()
    assert "STORAGE_VECTOR_ENCODING" in str(e.value)
    with pytest.raises(vectors.VectorEncodingError):
        StoreOptions(vector_encoding=name)
    with pytest.raises(vectors.VectorEncodingError):
        vectors.encode([1.0, 2.0], name)


@pytest.mark.parametrize(
    ("encoding", "raw_bytes"),
    [("int8", 5 + MODEL_DIM), ("float16", 1 + 2 * MODEL_DIM), ("float32", 4 * MODEL_DIM)],
)
def test_a_store_writes_the_encoding_it_was_opened_with(
    tmp_path, small_images, encoding, raw_bytes
):
    options = StoreOptions(vector_encoding=encoding)
    store = ColumnStore.open(tmp_path / "s", options)
    image_id = store.put("a.jpg", "", small_images[0]).image.id
    vector = _model_like_vector(4)
    _annotate(store, image_id, vector)
    store.flush()

    assert _vector_column(store)[0] == raw_bytes
    assert store.feature_vector(image_id) == vectors.decode_list(vectors.encode(vector, encoding))
    store.close()


def test_values_written_under_another_setting_read_and_compact_as_they_are(tmp_path, small_images):
    """A store of float16 vectors opened with int8: they read exactly as written, compaction
    copies them unchanged, and only new writes are int8."""
    old = ColumnStore.open(tmp_path / "s", StoreOptions(vector_encoding="float16"))
    ids = [old.put(f"{i}.jpg", "", im).image.id for i, im in enumerate(small_images[:2])]
    written = [_model_like_vector(10 + i) for i in range(2)]
    for image_id, vector in zip(ids, written, strict=True):
        _annotate(old, image_id, vector)
    old.flush()
    as_float16 = [old.feature_vector(i) for i in ids]
    old.close()

    store = ColumnStore.open(tmp_path / "s", StoreOptions(vector_encoding="int8"))
    store.compact()

    assert [store.feature_vector(i) for i in ids] == as_float16
    assert _vector_column(store)[0] == 2 * (1 + 2 * MODEL_DIM)
    _annotate(store, ids[1], written[1])
    store.flush()
    store.compact()
    assert store.feature_vector(ids[0]) == as_float16[0]
    assert store.feature_vector(ids[1]) == vectors.decode_list(vectors.encode(written[1], "int8"))
    assert _vector_column(store)[0] == (1 + 2 * MODEL_DIM) + (5 + MODEL_DIM)
    store.close()


def test_storage_does_not_start_with_an_unknown_encoding(tmp_path):
    env = {
        **os.environ,
        "STORAGE_DATA_DIR": str(tmp_path / "s"),
        "STORAGE_PORT": str(free_port()),
        "STORAGE_VECTOR_ENCODING": "bf16",
    }

    started = subprocess.run(
        [sys.executable, "-m", "storage_service"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert started.returncode == 2
    assert "Traceback" not in started.stderr
    lines = started.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("storage: not started:"), started.stderr
    assert "'bf16'" in lines[0] and "STORAGE_VECTOR_ENCODING" in lines[0]
    assert not (tmp_path / "s").exists()
