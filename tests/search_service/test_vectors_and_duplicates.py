"""Similar images (exact and approximate) and duplicate groups."""

from __future__ import annotations

import logging
import struct
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest

from search_service.duplicates import near_groups
from search_service.durable_index import DurableIndex
from search_service.engine import EngineParams, Filters, SearchIndex
from search_service.errors import ImageNotFoundError, InvalidDocumentError, NoFeatureVectorError
from search_service.vector_index import AnnParams, VectorIndex
from tests.search_service.documents import DIM, doc, unit


def _near(v: np.ndarray, seed: int, noise: float) -> np.ndarray:
    w = v + noise * np.random.default_rng(seed).normal(size=v.size).astype(np.float32)
    return w / np.linalg.norm(w)


@pytest.fixture
def index() -> SearchIndex:
    """Ten images with random vectors; img1 is a slightly changed copy of img0."""
    ix = SearchIndex(EngineParams(vector_dim=DIM))
    base = unit(0)
    ix.put(doc("img0", vector=base, sha256="aaa"))
    ix.put(doc("img1", vector=_near(base, 1, 0.05), sha256="bbb"))
    for i in range(2, 10):
        ix.put(doc(f"img{i}", vector=unit(i), sha256=f"s{i}"))
    return ix


def test_similar_by_id_ranks_the_near_copy_first_and_excludes_itself(index):
    result = index.similar("img0", k=3)

    ids = [i for i, _ in result.hits]
    assert ids[0] == "img1"
    assert "img0" not in ids
    assert result.hits[0][1] > 0.95
    assert not result.approximate


def test_similar_by_vector_finds_the_image_itself(index):
    result = index.similar(vector=unit(5), k=1)

    assert result.hits[0][0] == "img5"
    assert result.hits[0][1] == pytest.approx(1.0, abs=1e-5)


def test_similar_respects_filters(index):
    index.put(doc("hidden", vector=unit(0), moderation=0.99))

    ids = [i for i, _ in index.similar(vector=unit(0), k=5).hits]
    ids_all = [
        i
        for i, _ in index.similar(vector=unit(0), k=5, filters=Filters(include_moderated=True)).hits
    ]

    assert "hidden" not in ids
    assert "hidden" in ids_all


def test_similar_to_unknown_or_unanalysed_image_is_an_error(index):
    index.put(doc("no-vector"))

    with pytest.raises(ImageNotFoundError):
        index.similar("missing")
    with pytest.raises(NoFeatureVectorError):
        index.similar("no-vector")
    with pytest.raises(InvalidDocumentError):
        index.similar(vector=np.zeros(DIM, np.float32))
    with pytest.raises(InvalidDocumentError):
        index.similar(vector=np.ones(DIM + 1, np.float32))


def test_approximate_index_recall_against_exact_search():
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(50, 64)).astype(np.float32)
    points = centres[rng.integers(0, 50, 4000)] + 0.5 * rng.normal(size=(4000, 64))
    vi = VectorIndex(64, AnnParams(threshold=1000))
    for i, p in enumerate(points.astype(np.float32)):
        vi.add(i, p)
    allowed = np.ones(4000, np.bool_)

    recall = []
    for q in rng.normal(size=(50, 64)).astype(np.float32):
        approx = vi.search(q, 10, allowed)
        exact = vi.search(q, 10, allowed, exact=True)
        assert approx.approximate and not exact.approximate
        recall.append(len(set(approx.docs) & set(exact.docs)) / 10)

    assert np.mean(recall) >= 0.95


def test_approximate_index_forgets_removed_vectors():
    vi = VectorIndex(DIM, AnnParams(threshold=10))
    for i in range(50):
        vi.add(i, unit(i))

    vi.remove(3)

    hits = vi.search(unit(3), 5, np.ones(50, np.bool_))
    assert hits.approximate
    assert 3 not in hits.docs.tolist()


def test_exact_copies_group_by_sha256_and_count_once_among_near_duplicates(index):
    index.put(doc("img0-copy", vector=unit(0), sha256="aaa"))

    found = index.duplicates(near_threshold=0.95)

    assert found.exact == [(["img0", "img0-copy"], "aaa")]
    assert len(found.near) == 1
    ids, min_similarity = found.near[0]
    assert ids == ["img0", "img1"]
    assert min_similarity >= 0.95


def test_near_duplicates_need_the_threshold(index):
    assert index.duplicates(near_threshold=0.9999).near == []


def test_duplicates_of_one_image_only(index):
    assert index.duplicates(image_id="img5").near == []
    assert index.duplicates(image_id="img1").near[0][0] == ["img0", "img1"]
    with pytest.raises(ImageNotFoundError):
        index.duplicates(image_id="missing")


def test_near_duplicates_through_the_approximate_index_match_exact_pairs():
    vi = VectorIndex(DIM, AnnParams(threshold=100))
    for i in range(300):
        vi.add(i, unit(i) if i % 3 else None)
    vi.add(300, _near(unit(1), 5, 0.02))
    vi.add(301, _near(unit(2), 6, 0.02))
    reps = np.flatnonzero(vi.present())

    via_ann = near_groups(reps, vi, 0.95, exact_pairs_limit=0)
    exact = near_groups(reps, vi, 0.95)

    assert vi.approximate
    assert [g.docs for g in via_ann] == [g.docs for g in exact] == [(1, 300), (2, 301)]


def test_background_build_catches_up_with_changes_made_during_it():
    vi = VectorIndex(DIM, AnnParams(threshold=200, build_in_background=True))
    for i in range(200):
        vi.add(i, unit(i))
    # The build started at the 200th vector; these land while it runs (or just after).
    vi.add(200, unit(1000))
    vi.remove(7)

    assert vi.wait_for_ann(timeout_s=30)
    everything = np.ones(201, np.bool_)
    assert vi.search(unit(1000), 1, everything).docs.tolist() == [200]
    assert 7 not in vi.search(unit(7), 5, everything).docs.tolist()
    assert vi.search(unit(7), 5, everything).approximate


# ---- compact vectors --------------------------------------------------------------------------


def test_vectors_are_kept_as_int8_and_come_back_within_rounding():
    vectors = VectorIndex(DIM)
    originals = [unit(i) for i in range(20)]
    vectors.add_many(0, [*originals[:10], None, *originals[10:]])

    assert vectors.bytes_per_vector == DIM + 4
    back = vectors.vector(3)
    assert back is not None and back.dtype == np.float32
    assert float(back @ originals[3]) > 0.999
    assert float(np.linalg.norm(back)) == pytest.approx(1.0, abs=1e-5)
    assert vectors.vector(10) is None  # the document without a vector
    found = vectors.search(originals[12], 3, np.ones(21, np.bool_), exact=True)
    assert found.docs[0] == 13 and found.similarities[0] == pytest.approx(1.0, abs=2e-3)


def test_a_batch_of_vectors_is_stored_byte_for_byte_as_one_at_a_time():
    rng = np.random.default_rng(7)
    batch: list[np.ndarray | None] = [
        rng.standard_normal(DIM).astype(np.float32) * float(rng.uniform(0.1, 9))
        for _ in range(2500)  # more than one quantisation block
    ]
    batch[3] = None
    batch[1700] = np.zeros(DIM, np.float32)  # all zeros: no row, as one at a time
    batch[2000] = rng.standard_normal(DIM).tolist()  # a list of Python floats
    one_by_one = VectorIndex(DIM)
    for docno, v in enumerate(batch):
        one_by_one.add(docno, v)
    batched = VectorIndex(DIM)
    batched.add_many(0, batch)

    for name in ("_vectors", "_factors"):
        a, b = getattr(one_by_one, name).to_array(), getattr(batched, name).to_array()
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), name
    for name in ("_row_of", "_row_doc", "_row_live"):
        a, b = getattr(one_by_one, name).view(), getattr(batched, name).view()
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), name
    assert len(batched) == 2498 and batched.vector(1700) is None and batched.vector(3) is None
    # the rows hold what the quantisation rule gives each vector alone
    v = np.asarray(batch[2000], np.float32)
    unit_v = v / np.linalg.norm(v)
    q = np.rint(unit_v * (127.0 / np.abs(unit_v).max())).astype(np.int8)
    assert batched._vectors.take(np.asarray([1998]))[0].tobytes() == q.tobytes()


def test_growing_past_a_chunk_boundary_moves_no_existing_row():
    """The int8 rows and their factors live in chunks: a write that needs a new chunk adds it
    and leaves every existing chunk (the same objects, the same bytes) where it was, so no
    write copies the vectors there are (1.3 GB at 1M rows before)."""
    vectors = VectorIndex(DIM)
    per_chunk = vectors._vectors.chunk_rows
    vectors.add_many(0, [unit(i) for i in range(per_chunk)])  # exactly one full chunk
    (first,) = vectors._vectors.chunks
    (first_factors,) = vectors._factors.chunks
    before = first.tobytes()

    vectors.add_many(per_chunk, [unit(per_chunk + i) for i in range(per_chunk + 3)])

    assert len(vectors._vectors.chunks) == 3 and len(vectors._factors.chunks) == 3
    assert vectors._vectors.chunks[0] is first and vectors._factors.chunks[0] is first_factors
    assert first.tobytes() == before
    everything = np.ones(2 * per_chunk + 3, np.bool_)
    for docno in (0, per_chunk - 1, per_chunk, 2 * per_chunk + 2):  # either side of each edge
        found = vectors.search(unit(docno), 1, everything, exact=True)
        assert found.docs.tolist() == [docno]
        assert found.similarities[0] == pytest.approx(1.0, abs=2e-3)
        assert float(vectors.vector(docno) @ unit(docno)) > 0.999
    # rows gathered from several chunks at once, in any order, come back in that order
    docs = np.asarray([2 * per_chunk + 1, 3, per_chunk + 7, 3], np.int64)
    expected = np.stack([unit(int(d)) for d in docs])
    assert np.all(np.sum(vectors.vectors_of(docs) * expected, axis=1) > 0.999)
    whole = vectors._vectors.to_array()
    for rows in (docs, np.sort(docs)):  # gathered out of order and in order
        assert vectors._vectors.take(rows).tobytes() == whole[rows].tobytes()
    # a narrow filter is answered by rescoring its few rows, taken from three chunks
    allowed = np.zeros(2 * per_chunk + 3, np.bool_)
    allowed[docs] = True
    found = vectors.search(unit(per_chunk + 7), 3, allowed)
    assert found.docs[0] == per_chunk + 7 and sorted(found.docs.tolist()) == sorted(set(docs))


def test_a_search_runs_while_a_write_that_adds_a_chunk_waits():
    """A write that grows the vector rows past a chunk no longer holds the durable index's
    search lock for a copy of every row: here the write is held in the middle of adding its
    chunk (no timing involved) and a search on another thread answers meanwhile."""
    index = DurableIndex.open(None, EngineParams(vector_dim=DIM))
    vectors = index._index.vectors
    per_chunk = vectors._vectors.chunk_rows
    index._index.put_many([doc(f"img{i}", vector=unit(i)) for i in range(per_chunk)])
    in_write, release = threading.Event(), threading.Event()
    real_new_chunk = vectors._vectors._new_chunk

    def slow_new_chunk() -> np.ndarray:
        in_write.set()
        assert release.wait(30)
        return real_new_chunk()

    vectors._vectors._new_chunk = slow_new_chunk  # type: ignore[method-assign]
    writer = threading.Thread(target=index.put, args=(doc("new", vector=unit(10**6)),))
    writer.start()
    assert in_write.wait(30)
    answered: list[str] = []
    reader = threading.Thread(
        target=lambda: answered.extend(h[0] for h in index.similar(vector=unit(9), k=1).hits)
    )
    reader.start()
    reader.join(5)
    blocked = reader.is_alive()
    release.set()
    writer.join(30)
    reader.join(30)
    assert not blocked, "a search waited for the write that grows the vector rows"
    assert answered == ["img9"]
    assert index.similar(vector=unit(10**6), k=1).hits[0][0] == "new"


def test_a_batch_with_a_vector_of_the_wrong_size_is_refused_whole():
    vectors = VectorIndex(DIM)
    with pytest.raises(ValueError, match=f"must have {DIM} values, got {DIM + 1}"):
        vectors.add_many(0, [unit(0), np.ones(DIM + 1, np.float32), unit(2)])
    assert len(vectors) == 0 and vectors.rows() == 0


def test_a_snapshot_with_float32_vectors_is_read_and_quantised():
    vectors = VectorIndex(DIM)
    vectors.add_many(0, [unit(i) for i in range(5)])
    old = vectors.state()
    del old["factors"]
    old["rows"] = np.stack([unit(i) for i in range(5)])  # as written before quantisation

    restored = VectorIndex.restore(old, DIM, AnnParams())

    assert float(restored.vector(4) @ unit(4)) > 0.999
    assert restored.search(unit(2), 1, np.ones(5, np.bool_)).docs.tolist() == [2]


def test_documents_keep_no_second_copy_of_their_vector_but_get_returns_it(index):
    assert all(d is None or d.feature_vector is None for d in index._docs)
    got = index.get("img4").feature_vector
    assert got is not None and float(got @ unit(4)) > 0.999


def test_a_batch_put_answers_as_puts_one_at_a_time():
    docs = [
        doc(f"img{i}", (("tiger cat", 0.5 + i / 100),), vector=unit(i), tags=(f"t{i % 3}",))
        for i in range(30)
    ]
    docs.append(doc("img3", (("espresso", 0.9),), vector=unit(99)))  # the same image again
    one_by_one = SearchIndex(EngineParams(vector_dim=DIM))
    for d in docs:
        one_by_one.put(d)
    batched = SearchIndex(EngineParams(vector_dim=DIM))
    batched.put_many(docs)

    for ix in (one_by_one, batched):
        assert len(ix) == 30
        assert [h.image_id for h in ix.search("espresso").hits] == ["img3"]
    assert [h.image_id for h in batched.search("t1 cat").hits] == [
        h.image_id for h in one_by_one.search("t1 cat").hits
    ]
    assert batched.similar("img5", k=3).hits == one_by_one.similar("img5", k=3).hits


def test_a_batch_with_a_bad_document_adds_none_of_it():
    ix = SearchIndex(EngineParams(vector_dim=DIM))
    bad = doc("bad", vector=np.ones(DIM + 1, np.float32))
    with pytest.raises(InvalidDocumentError):
        ix.put_many([doc("good", vector=unit(1)), bad])
    assert len(ix) == 0


@pytest.fixture(scope="module")
def real_features(vision_stub) -> np.ndarray:
    """EfficientNet features (unit length) of the real photos (and the search evaluation's)
    and 6 random crops of each, from the real vision service."""
    import io

    from PIL import Image

    from imagerepo.vision.v1 import vision_service_pb2 as vision_pb
    from tests.search_service import eval_set
    from tests.support import real_photo_paths

    paths = list(real_photo_paths().values())
    paths += [eval_set.photo_path(p) for p in eval_set.PHOTOS if eval_set.photo_path(p).exists()]
    rng = np.random.default_rng(7)
    features = []
    for path in dict.fromkeys(paths):
        with Image.open(path) as im:
            photo = im.convert("RGB")
        for _ in range(6):
            w, h = photo.size
            s = rng.uniform(0.5, 1.0)
            x, y = (
                int(rng.integers(0, w - int(w * s) + 1)),
                int(rng.integers(0, h - int(h * s) + 1)),
            )
            buf = io.BytesIO()
            photo.crop((x, y, x + int(w * s), y + int(h * s))).save(buf, "JPEG", quality=85)
            reply = vision_stub.Analyze(
                vision_pb.AnalyzeRequest(
                    image_data=buf.getvalue(), tasks=[vision_pb.ANALYSIS_TASK_FEATURES]
                ),
                timeout=120,
            )
            features.append(np.asarray(reply.feature_vector, np.float32))
    x = np.stack(features)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _recall_at_10(x: np.ndarray, stored: VectorIndex, exact: bool) -> float:
    """Mean recall@10 of each vector's neighbours (itself left out) against float32."""
    recalls = []
    for i, q in enumerate(x):
        truth = set(np.argsort(-(x @ q))[1:11].tolist())
        allowed = np.ones(len(x), np.bool_)
        allowed[i] = False
        found = stored.search(q, 10, allowed, exact=exact)
        assert found.approximate is not exact
        recalls.append(len(truth & set(found.docs.tolist())) / 10)
    return float(np.mean(recalls))


def test_int8_vectors_keep_the_neighbours_of_real_photo_features(real_features):
    """recall@10 of the stored (int8) vectors against float32 on EfficientNet features of real
    photos and crops of them, through the index's exact search (`make bench PART=scale`
    measures it on 1000+ vectors: 0.998)."""
    x = real_features
    stored = VectorIndex(x.shape[1])
    stored.add_many(0, list(x))

    assert stored.bytes_per_vector == x.shape[1] + 4
    assert _recall_at_10(x, stored, exact=True) >= 0.98


def test_the_approximate_index_keeps_the_neighbours_of_real_photo_features(real_features):
    """The faiss index (PCA 256, IVF, 4-bit codes) picks candidates that exact rescoring
    turns into the same neighbours as exact search of the int8 rows."""
    x = real_features
    stored = VectorIndex(x.shape[1], AnnParams(threshold=len(x) // 2))
    stored.add_many(0, list(x))
    assert stored.approximate

    approx = _recall_at_10(x, stored, exact=False)
    assert approx >= _recall_at_10(x, stored, exact=True) - 0.01
    assert approx >= 0.98


def test_an_approximate_hit_has_its_exact_similarity():
    vi = VectorIndex(DIM, AnnParams(threshold=100))
    vi.add_many(0, [unit(i) for i in range(300)])
    everything = np.ones(300, np.bool_)

    approx = vi.search(unit(5), 5, everything)
    exact = vi.search(unit(5), 5, everything, exact=True)

    assert approx.approximate
    assert approx.docs.tolist() == exact.docs.tolist()
    assert approx.similarities.tolist() == exact.similarities.tolist()


def test_a_filter_goes_into_the_approximate_scan_and_the_answer_is_not_short():
    vi = VectorIndex(DIM, AnnParams(threshold=100))
    vi.add_many(0, [unit(i) for i in range(2000)])
    odd = np.arange(2000) % 2 == 1

    hits = vi.search(unit(10), 20, odd)  # unit(10) itself is not allowed

    assert hits.approximate
    assert len(hits.docs) == 20
    assert all(d % 2 == 1 for d in hits.docs.tolist())
    exact = vi.search(unit(10), 20, odd, exact=True)
    assert len(set(hits.docs.tolist()) & set(exact.docs.tolist())) >= 18


def test_removed_vectors_are_purged_from_the_approximate_index_in_batches():
    vi = VectorIndex(DIM, AnnParams(threshold=100))
    vi.add_many(0, [unit(i) for i in range(3000)])
    assert vi._ann is not None and vi._ann.ntotal == 3000

    for d in range(1500):
        vi.remove(d)

    assert vi._ann.ntotal == 3000 - 1024  # one purge of 1024; the rest wait, filtered out
    hits = vi.search(unit(1200), 10, np.ones(3000, np.bool_))
    assert hits.approximate and min(hits.docs.tolist()) >= 1500
    vi.save_ann(Path(tempfile.mkdtemp()) / "v.ann")  # a save purges the rest
    assert vi._ann.ntotal == 1500


def test_the_approximate_index_is_trained_again_as_the_collection_grows():
    vi = VectorIndex(DIM, AnnParams(threshold=100, regrow_factor=4))
    vi.add_many(0, [unit(i) for i in range(150)])
    assert vi._ann is not None and vi._ann.trained_on == 150
    first = vi._ann

    vi.add_many(150, [unit(i) for i in range(150, 700)])

    assert vi._ann is not first and vi._ann.trained_on >= 600
    assert vi._ann.ntotal == 700
    assert vi.search(unit(650), 1, np.ones(700, np.bool_)).docs.tolist() == [650]


def test_an_hnswlib_index_file_from_before_is_replaced_by_a_rebuild(tmp_path, caplog):
    """Upgrading: the snapshot names a vectors-*.ann file hnswlib wrote; faiss cannot read it,
    so the index is built again from the stored vectors and similar search goes on."""
    params = EngineParams(vector_dim=DIM, ann=AnnParams(threshold=20))
    index = DurableIndex.open(tmp_path, params)
    for i in range(60):
        index.put(doc(f"img{i}", vector=unit(i)))
    index.close()
    (saved,) = tmp_path.glob("vectors-*.ann")
    # hnswlib's header: offsetLevel0, max_elements, cur_element_count, size_data_per_element,
    # label_offset, offsetData (size_t each), then the level-0 data.
    saved.write_bytes(struct.pack("<6Q", 0, 120, 60, 200, 192, 0) + bytes(200 * 60))

    with caplog.at_level(logging.WARNING, logger="search_service.vector_index"):
        reopened = DurableIndex.open(tmp_path, params)

    assert any("not a faiss index" in r.getMessage() for r in caplog.records)
    result = reopened.similar(vector=unit(42), k=1)
    assert result.approximate and result.hits[0][0] == "img42"
    assert reopened.stats().vector_backend == "faiss"


def test_a_state_holding_the_approximate_index_round_trips_and_an_old_blob_is_rebuilt(caplog):
    params = AnnParams(threshold=100)
    vi = VectorIndex(DIM, params)
    vi.add_many(0, [unit(i) for i in range(300)])
    vi.remove(7)
    state = vi.state()
    assert isinstance(state["ann"], bytes)

    restored = VectorIndex.restore(state, DIM, params)
    everything = np.ones(300, np.bool_)
    assert restored.search(unit(9), 1, everything).approximate
    assert restored.search(unit(9), 1, everything).docs.tolist() == [9]
    assert 7 not in restored.search(unit(7), 5, everything).docs.tolist()

    state["ann"] = struct.pack("<6Q", 0, 600, 300, 200, 192, 0)  # hnswlib's, from before
    with caplog.at_level(logging.WARNING, logger="search_service.vector_index"):
        rebuilt = VectorIndex.restore(state, DIM, params)
    assert any("not a faiss index" in r.getMessage() for r in caplog.records)
    assert rebuilt.search(unit(9), 1, everything).docs.tolist() == [9]
    assert rebuilt.search(unit(9), 1, everything).approximate
