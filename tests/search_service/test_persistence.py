"""The index survives restarts: a snapshot that holds the feed seq it reflects, atomic files,
format version checks."""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from search_service.durable_index import SNAPSHOT_NAME, DurableIndex, FeedChange
from search_service.engine import EngineParams, Filters, SearchIndex
from search_service.errors import IndexFormatError, InvalidDocumentError
from search_service.snapshot import (
    FORMAT_VERSION,
    _json_pieces,
    flatten,
    read_snapshot,
    unflatten,
    write_snapshot,
)
from search_service.vector_index import AnnParams
from tests.conftest import REPO_ROOT
from tests.search_service.documents import DIM, doc, unit

PARAMS = EngineParams(vector_dim=DIM)


def _fill(index: DurableIndex) -> None:
    index.put(doc("cat", (("tiger cat", 0.9),), vector=unit(1), sha256="a", tags=("pets",)))
    index.put(doc("coffee", (("espresso", 0.95),), vector=unit(2), ocr_text="Menu"))
    index.put(doc("gone", (("tiger cat", 0.7),), vector=unit(3)))
    index.remove("gone")


def _ids(index: DurableIndex, query: str) -> list[str]:
    return [h.image_id for h in index.search(query).hits]


def test_snapshot_round_trips_every_section_kind(tmp_path):
    path = tmp_path / "x.snap"
    sections = {
        "raw": b"\x00\x01",
        "arr": np.arange(5, dtype=np.int16),
        "js": {"a": [1]},
        "n": None,
    }

    write_snapshot(path, sections)
    loaded = read_snapshot(path)

    assert loaded["raw"] == b"\x00\x01"
    assert loaded["arr"].tolist() == [0, 1, 2, 3, 4] and loaded["arr"].dtype == np.int16
    assert loaded["js"] == {"a": [1]} and loaded["n"] is None
    assert not (tmp_path / "x.snap.tmp").exists()


def test_large_sections_written_in_pieces_read_back_the_same(tmp_path):
    surface = {f"word{i}é": [i % 3, f"Word{i}"] for i in range(1_234)}
    meta = {
        "terms": [[i % 4, f"t{i}"] for i in range(1_700)],
        "length_sums": {"labels": 1.5, "ocr": 2.0},
        "live": 7,
        "surface": surface,
        "nested": {"empty": {}, "list": [], "deep": [{"x": [1.5, None]}] * 600},
    }
    blob = bytes(range(256)) * (40_000 + 3)  # more than one write slice (8 MB)
    path = tmp_path / "x.snap"

    write_snapshot(path, {"meta": meta, "many": {f"k{i}": i for i in range(1_001)}, "raw": blob})
    loaded = read_snapshot(path)

    assert loaded["meta"] == meta and list(loaded["meta"]["surface"]) == list(surface)
    assert loaded["many"] == {f"k{i}": i for i in range(1_001)}
    assert loaded["raw"] == blob
    for value in (meta, surface, [1] * 1_201, {"a": 1}, [], {}, "s", {1: 2}):
        pieces = list(_json_pieces(value))
        assert (
            b"".join(pieces)
            == json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        )
    assert len(list(_json_pieces(meta))) > 5  # written a part at a time, not one call


def test_snapshot_of_another_format_version_is_refused(tmp_path):
    path = tmp_path / "x.snap"
    write_snapshot(path, {"a": b"1"}, version=FORMAT_VERSION + 1)

    with pytest.raises(IndexFormatError, match="version"):
        read_snapshot(path)


def test_damaged_snapshot_is_detected_by_its_checksum(tmp_path):
    path = tmp_path / "x.snap"
    write_snapshot(path, {"a": b"hello world"})
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))

    with pytest.raises(IndexFormatError, match="checksum"):
        read_snapshot(path)


def test_closed_index_reopens_with_the_same_answers(tmp_path):
    index = DurableIndex.open(tmp_path, PARAMS)
    _fill(index)
    index.close()

    reopened = DurableIndex.open(tmp_path, PARAMS)

    assert _ids(reopened, "cat") == ["cat"]
    assert _ids(reopened, "menu") == ["coffee"]
    assert _ids(reopened, "pets") == ["cat"]
    assert [i for i, _ in reopened.similar(vector=unit(1), k=1).hits] == ["cat"]
    assert reopened.suggest("tig") == [("tiger", 1, "labels"), ("tiger cat", 1, "labels")]
    assert len(reopened) == 2


def test_snapshot_holds_the_feed_seq_it_reflects_and_nothing_after(tmp_path):
    index = DurableIndex.open(tmp_path, PARAMS)
    index.apply(
        [
            FeedChange(1, "cat", doc("cat", (("tiger cat", 0.9),))),
            FeedChange(2, "coffee", doc("coffee", (("espresso", 0.95),))),
            FeedChange(3, "coffee"),
        ]
    )
    index.snapshot()
    index.apply([FeedChange(4, "moped", doc("moped", (("moped", 0.8),)))])
    # No close(): the process dies here. Seq 4 is not in the snapshot: the feed replays it.
    del index

    reopened = DurableIndex.open(tmp_path, PARAMS)

    assert reopened.applied_seq == 3
    assert _ids(reopened, "cat") == ["cat"]
    assert _ids(reopened, "espresso") == [] and _ids(reopened, "moped") == []


def test_changes_at_or_below_the_applied_seq_are_not_applied_again(tmp_path):
    index = DurableIndex.open(tmp_path, PARAMS)
    index.apply([FeedChange(5, "cat", doc("cat", (("tiger cat", 0.9),)))])

    # A replay that starts earlier (a delete of seq 4 that came before the put) is skipped.
    index.apply([FeedChange(4, "cat"), FeedChange(6, "dog", doc("dog", (("beagle", 0.9),)))])

    assert index.applied_seq == 6
    assert _ids(index, "cat") == ["cat"] and _ids(index, "beagle") == ["dog"]
    assert len(index) == 2


def test_a_feed_page_putting_each_image_twice_indexes_its_last_version_once(tmp_path):
    """Storage's feed puts an image (not analysed yet) and then its analysis, usually in one
    page: the index takes each image once, as its last version, with one document number
    each (none left dead for compaction), and a delete between two puts of an image counts."""
    index = DurableIndex.open(tmp_path, PARAMS)
    changes, seq = [], 0
    for i in range(40):
        changes.append(FeedChange(seq := seq + 1, f"img{i}", doc(f"img{i}")))
        changes.append(FeedChange(seq := seq + 1, f"img{i}", doc(f"img{i}", (("beagle", 0.9),))))
    changes.append(FeedChange(seq := seq + 1, "img0"))  # deleted, then put again as a moped
    changes.append(FeedChange(seq := seq + 1, "img0", doc("img0", (("moped", 0.9),))))
    changes.append(FeedChange(seq := seq + 1, "img1"))  # deleted at the end of the page

    index.apply(changes)

    assert index.applied_seq == seq
    assert len(index) == 39
    beagles = [h.image_id for h in index.search("beagle", limit=100, semantic=False).hits]
    assert sorted(beagles) == sorted(f"img{i}" for i in range(2, 40))
    assert _ids(index, "moped") == ["img0"]
    assert index._index.numbered == 41  # img0 twice (deleted in between), the others once


def test_a_document_the_index_cannot_take_is_left_out_without_stopping_the_feed(tmp_path):
    index = DurableIndex.open(tmp_path, PARAMS)
    bad = doc("bad", (("moped", 0.9),), vector=np.ones(DIM + 1, np.float32))

    rejected = index.apply([FeedChange(1, "bad", bad), FeedChange(2, "ok", doc("ok"))])

    assert len(rejected) == 1 and rejected[0].startswith("bad:")
    assert index.applied_seq == 2 and len(index) == 1
    assert _ids(index, "moped") == []


def test_snapshots_are_taken_every_n_changes(tmp_path):
    index = DurableIndex.open(tmp_path, PARAMS, snapshot_every=3, snapshot_interval_s=3600)
    index.apply([FeedChange(1, "a", doc("a")), FeedChange(2, "b", doc("b"))])
    assert not index.maybe_snapshot() and not (tmp_path / SNAPSHOT_NAME).exists()

    index.apply([FeedChange(3, "c", doc("c"))])

    assert index.maybe_snapshot() and index.wait_for_snapshots(30)
    assert _read_seq(tmp_path) == 3


def test_snapshots_are_taken_after_the_interval_with_a_single_change(tmp_path):
    index = DurableIndex.open(tmp_path, PARAMS, snapshot_every=1000, snapshot_interval_s=0.0)
    assert not index.maybe_snapshot()  # nothing unsaved: nothing written

    index.apply([FeedChange(7, "a", doc("a"))])

    assert index.maybe_snapshot() and index.wait_for_snapshots(30)
    assert _read_seq(tmp_path) == 7


def _read_seq(directory) -> int:
    return int(read_snapshot(directory / SNAPSHOT_NAME)["seq"])


def test_unreadable_format_starts_empty_at_seq_zero_so_the_feed_replays_it(tmp_path):
    index = DurableIndex.open(tmp_path, PARAMS)
    _fill(index)
    index.apply([FeedChange(9, "x", doc("x"))])
    index.close()
    path = tmp_path / SNAPSHOT_NAME
    data = bytearray(path.read_bytes())
    data[8:12] = struct.pack("<I", FORMAT_VERSION + 1)
    path.write_bytes(bytes(data))

    reopened = DurableIndex.open(tmp_path, PARAMS)

    assert len(reopened) == 0
    assert reopened.applied_seq == 0 and reopened.started_empty_from_unusable


def test_rebuild_replaces_the_index_and_persists_it(tmp_path):
    index = DurableIndex.open(tmp_path, PARAMS)
    _fill(index)

    result = index.rebuild([doc("new", (("moped", 0.8),)), doc("new2", (("moped", 0.6),))])

    assert (result.indexed, result.skipped_count) == (2, 0)
    assert _ids(index, "cat") == []
    assert DurableIndex.open(tmp_path, PARAMS).search("moped").total == 2


def test_a_resync_rebuild_records_the_listing_seq_with_its_snapshot(tmp_path):
    index = DurableIndex.open(tmp_path, PARAMS)
    index.apply([FeedChange(3, "old", doc("old"))])

    index.rebuild([doc("new", (("moped", 0.8),))], seq=42)

    assert index.applied_seq == 42 and _read_seq(tmp_path) == 42
    assert _ids(index, "moped") == ["new"] and len(index) == 1


def test_writes_made_while_a_rebuild_streams_in_are_kept(tmp_path):
    index = DurableIndex.open(tmp_path, PARAMS)
    _fill(index)

    def streamed():
        yield doc("cat", (("tiger cat", 0.9),), vector=unit(1), sha256="a")
        # Meanwhile the gateway indexes a new upload, re-tags the cat and deletes the coffee.
        index.put(doc("moped", (("moped", 0.8),), vector=unit(4)))
        index.put(doc("cat", (("tiger cat", 0.9),), vector=unit(1), sha256="a", tags=("sofa",)))
        index.remove("coffee")
        yield doc("coffee", (("espresso", 0.95),), vector=unit(2))

    count = index.rebuild(streamed()).indexed
    reopened = DurableIndex.open(tmp_path, PARAMS)

    assert count == 2
    for searched in (index, reopened):
        assert _ids(searched, "moped") == ["moped"]
        assert _ids(searched, "sofa") == ["cat"]
        assert _ids(searched, "espresso") == []
        assert len(searched) == 2


def test_rebuild_skips_and_reports_a_bad_document_instead_of_failing(tmp_path):
    index = DurableIndex.open(tmp_path, PARAMS)
    _fill(index)
    bad = doc("bad", (("moped", 0.9),), vector=np.ones(DIM + 3, np.float32))
    unreadable = InvalidDocumentError("#3: unknown status 9")

    result = index.rebuild([doc("new", (("moped", 0.8),)), bad, unreadable, doc("n2")])

    assert (result.indexed, result.skipped_count) == (2, 2)
    assert result.skipped == [
        f"bad: feature_vector must have {DIM} values, got {DIM + 3}",
        "#3: unknown status 9",
    ]
    assert _ids(index, "cat") == []  # the rebuild replaced the index
    assert _ids(index, "moped") == ["new"]


def test_a_second_process_cannot_open_the_same_data_dir(tmp_path):
    index = DurableIndex.open(tmp_path, PARAMS)
    _fill(index)
    script = (
        "import sys; from pathlib import Path; from search_service.durable_index import "
        "DurableIndex; from search_service.dir_lock import DataDirLockedError\n"
        "try:\n    DurableIndex.open(Path(sys.argv[1]))\n"
        "except DataDirLockedError as e:\n    print(e); sys.exit(3)\n"
    )

    def other_process() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", script, str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO_ROOT,
        )

    refused = other_process()
    assert refused.returncode == 3, refused.stderr
    assert f"in use by another search process (pid {os.getpid()})" in refused.stdout
    assert _ids(index, "cat") == ["cat"]  # nothing of ours was touched

    index.close()
    assert other_process().returncode == 0  # free once the holder has closed


def test_approximate_vector_index_is_saved_and_loaded(tmp_path):
    params = EngineParams(vector_dim=DIM, ann=AnnParams(threshold=20))
    index = DurableIndex.open(tmp_path, params)
    for i in range(60):
        index.put(doc(f"img{i}", vector=unit(i)))
    index.close()

    reopened = DurableIndex.open(tmp_path, params)

    result = reopened.similar(vector=unit(42), k=1)
    assert result.approximate
    assert result.hits[0][0] == "img42"
    assert reopened.stats().vector_backend == "faiss"


def test_direct_writes_snapshot_every_n_changes_too(tmp_path):
    index = DurableIndex.open(tmp_path, PARAMS, snapshot_every=3, snapshot_interval_s=3600)

    _fill(index)  # three puts and a remove

    assert index.wait_for_snapshots(30)  # written by the index's snapshot thread
    assert (tmp_path / SNAPSHOT_NAME).exists()
    assert DurableIndex.open(tmp_path, PARAMS).search("espresso").total == 1


def test_a_frozen_view_saves_the_index_as_it_was_while_writes_go_on(tmp_path):
    """What a snapshot writes is the index at the moment it froze its view: writes applied
    after that (the snapshot no longer holds them off) are not in it, half or whole."""
    index = DurableIndex.open(None, PARAMS)
    _fill(index)
    engine = index._index
    frozen = engine.frozen_state()

    index.put(doc("later", (("tiger cat", 0.8),), vector=unit(7), tags=("pets",)))
    index.put(doc("later2", (("tiger cat", 0.8),), tags=("pets",)))
    index.remove("coffee")
    index.put(doc("cat", (("tiger cat", 0.5),), vector=unit(8), tags=("renamed",)))
    write_snapshot(tmp_path / "x.snap", flatten({"engine": frozen}))

    restored = SearchIndex.from_state(
        unflatten(read_snapshot(tmp_path / "x.snap"))["engine"], PARAMS
    )
    assert sorted(restored._ids) == ["cat", "coffee"]
    assert [h.image_id for h in restored.search("espresso").hits] == ["coffee"]
    assert [h.image_id for h in restored.search("pets").hits] == ["cat"]
    assert restored.search("renamed").total == 0
    assert restored.similar(vector=unit(1), k=1).hits[0][0] == "cat"
    assert [s[0] for s in restored.suggest("pet")] == ["pets"]
    assert restored.suggest("pet")[0][1] == 1


def test_the_approximate_index_saved_apart_is_caught_up_on_load(tmp_path):
    params = EngineParams(vector_dim=DIM, ann=AnnParams(threshold=20))
    index = DurableIndex.open(tmp_path, params, snapshot_every=10**6)
    for i in range(40):
        index.put(doc(f"img{i}", vector=unit(i)))
    index.snapshot()  # saves the approximate index for the first time
    (saved,) = tmp_path.glob("vectors-*.ann")
    for i in range(40, 45):  # too few to save it again: the next snapshot names the same file
        index.put(doc(f"img{i}", vector=unit(i)))
    index.remove("img3")
    index.snapshot()
    assert list(tmp_path.glob("vectors-*.ann")) == [saved]
    index._unsaved = 0  # as after a crash: no final save at close
    index.close()

    reopened = DurableIndex.open(tmp_path, params)

    assert reopened.stats().vector_backend == "faiss"
    found = reopened.similar(vector=unit(44), k=1)
    assert found.approximate and found.hits[0][0] == "img44"  # added after the file was saved
    assert "img3" not in [h[0] for h in reopened.similar(vector=unit(3), k=5).hits]
    reopened.put(doc("img50", vector=unit(50)))
    reopened.close()  # the final snapshot saves the grown index and drops the old file
    assert [p.name for p in tmp_path.glob("vectors-*.ann")] != [saved.name]
    assert DurableIndex.open(tmp_path, params).similar(vector=unit(50), k=1).hits[0][0] == "img50"


def test_a_snapshot_of_the_earlier_format_loads_and_is_rewritten_as_columns(tmp_path, caplog):
    """fixtures/index-v3.snap was written by the build before documents were stored as columns
    (documents as JSON): upgrading keeps the library searchable without a replay."""
    shutil.copy(Path(__file__).with_name("fixtures") / "index-v3.snap", tmp_path / SNAPSHOT_NAME)

    with caplog.at_level(logging.INFO, logger="search_service.durable_index"):
        index = DurableIndex.open(tmp_path, PARAMS)

    assert "earlier format" in caplog.text
    assert not index.started_empty_from_unusable
    assert sorted(index._index._ids) == ["cat", "coffee", "fav"]
    assert _ids(index, "espresso") == ["coffee"] and _ids(index, "catamount") == ["fav"]
    assert _ids(index, "pets") == ["cat"] and _ids(index, "grey") == ["fav"]
    favourites = Filters(favourites_only=True)
    assert [h.image_id for h in index.search("catamount", favourites).hits] == ["fav"]
    assert index.search("espresso", favourites).total == 0
    assert index.get("fav").favourite and index.get("fav").colours == (("grey", 0.5),)
    index.put(doc("dog", (("beagle", 0.8),)))
    index.close()
    assert read_snapshot_version(tmp_path / SNAPSHOT_NAME) == FORMAT_VERSION
    reopened = DurableIndex.open(tmp_path, PARAMS)
    assert sorted(reopened._index._ids) == ["cat", "coffee", "dog", "fav"]
    assert reopened.get("fav") == index.get("fav")
    assert _ids(reopened, "catamount") == ["fav"] and _ids(reopened, "beagle") == ["dog"]
    assert reopened.similar(vector=unit(1), k=1).hits[0][0] == "cat"
    reopened.close()


def read_snapshot_version(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[8:12], "little")


V4_PHOTOS = ("chelsea", "coffee", "rocket", "astronaut", "motorcycle", "camera", "china", "flower")


def test_a_format_4_snapshot_with_one_array_of_vector_rows_loads_into_chunks(tmp_path):
    """fixtures/index-v4.snap was written by the build that kept the int8 rows as one array
    (fixtures/make_index_v4.py), with the real EfficientNet features of eight real photos
    ("camera" removed): it loads, each photo's feature finds that photo, and the next snapshot
    writes the same rows and factors byte for byte (the format did not change)."""
    fixtures = Path(__file__).with_name("fixtures")
    features = np.load(fixtures / "index-v4-features.npy")
    shutil.copy(fixtures / "index-v4.snap", tmp_path / SNAPSHOT_NAME)
    old = read_snapshot(fixtures / "index-v4.snap")
    params = EngineParams(vector_dim=features.shape[1])

    index = DurableIndex.open(tmp_path, params)

    assert not index.started_empty_from_unusable
    assert len(index) == 7 and len(index._index.vectors) == 7
    for name, v in zip(V4_PHOTOS, features, strict=True):
        hits = index.similar(vector=v, k=2).hits
        if name == "camera":
            assert "camera" not in [h[0] for h in hits]
        else:
            assert hits[0][0] == name and hits[0][1] == pytest.approx(1.0, abs=2e-3)
    vectors = index._index.vectors
    assert vectors._vectors.to_array().tobytes() == old["engine.vectors.rows"].tobytes()
    assert vectors._factors.to_array().tobytes() == old["engine.vectors.factors"].tobytes()
    near = features[1] + 0.05 * features[2]  # a new photo, close to coffee
    index.put(doc("coffee2", (("espresso", 0.9),), vector=near))
    index.close()

    new = read_snapshot(tmp_path / SNAPSHOT_NAME)
    assert read_snapshot_version(tmp_path / SNAPSHOT_NAME) == FORMAT_VERSION == 5
    rows, factors = new["engine.vectors.rows"], new["engine.vectors.factors"]
    assert rows.shape == (9, features.shape[1]) and rows.dtype == np.int8
    assert rows[:8].tobytes() == old["engine.vectors.rows"].tobytes()
    assert factors[:8].tobytes() == old["engine.vectors.factors"].tobytes()
    reopened = DurableIndex.open(tmp_path, params)
    assert [h[0] for h in reopened.similar("coffee2", k=1).hits] == ["coffee"]
    reopened.close()


def test_vector_rows_over_several_chunks_are_written_as_one_array_and_load_back(tmp_path):
    index = DurableIndex.open(tmp_path, PARAMS, snapshot_every=10**9)
    vectors = index._index.vectors
    per_chunk = vectors._vectors.chunk_rows
    n = 2 * per_chunk + 5
    index._index.put_many([doc(f"img{i}", vector=unit(i)) for i in range(n)])
    index.remove("img7")
    index._unsaved = 1
    index.snapshot()
    stored = np.concatenate([c for _, c in vectors._vectors.blocks()])

    saved = read_snapshot(tmp_path / SNAPSHOT_NAME)

    assert saved["engine.vectors.rows"].shape == (n, DIM)
    assert saved["engine.vectors.rows"].tobytes() == stored.tobytes()
    index.close()
    reopened = DurableIndex.open(tmp_path, PARAMS)
    chunks = reopened._index.vectors._vectors.chunks
    assert len(chunks) == 3
    # whole chunks are views of the loaded section (no copy), the partial last one is its own
    assert chunks[0].base is not None and chunks[1].base is chunks[0].base
    for i in (0, per_chunk - 1, per_chunk, n - 1):
        assert reopened.similar(vector=unit(i), k=1, exact=True).hits[0][0] == f"img{i}"
    assert "img7" not in [h[0] for h in reopened.similar(vector=unit(7), k=3, exact=True).hits]
    reopened.put(doc("after", vector=unit(10**6)))
    assert reopened.similar(vector=unit(10**6), k=1).hits[0][0] == "after"
    reopened.close()


def test_terms_and_suggestions_are_saved_as_arrays_and_text_and_load_back(tmp_path):
    """Format 5: the keyword index's terms and suggestion table as arrays and NUL-separated
    text (no JSON of them in its meta); a text that holds a NUL itself (none the tokenizer
    makes) sends the suggestion table to the meta's JSON, as format 4 kept it."""
    index = DurableIndex.open(tmp_path, PARAMS)
    _fill(index)
    index.put(doc("café", (("espresso", 0.6),), tags=("Zürich trip",), ocr_text="crème brûlée"))
    index.snapshot()

    sections = read_snapshot(tmp_path / SNAPSHOT_NAME)
    meta = json.loads(json.dumps(sections["engine.keywords.meta"]))
    assert "terms" not in meta and "surface" not in meta
    assert b"z\xc3\xbcrich trip\x00" in sections["engine.keywords.surface_text"]
    keywords = index._index.keywords
    reopened = DurableIndex.open(tmp_path, PARAMS)
    again = reopened._index.keywords
    assert again._surface == {t: [c, f, 0] for t, (c, f, _) in keywords._surface.items()}
    assert [k for k, _ in again._made] == [k for k, _ in keywords._made]
    assert _ids(reopened, "brûlée") == ["café"] and _ids(reopened, "zürich") == ["café"]
    assert (
        reopened.suggest("zü")
        == index.suggest("zü")
        == [("zürich", 1, "tags"), ("zürich trip", 1, "tags")]
    )
    reopened.close()

    index._index.keywords._surface["odd\0text"] = [1, {"tags": 1}, 0]
    index._unsaved = 1
    index.close()
    sections = read_snapshot(tmp_path / SNAPSHOT_NAME)
    assert sections["engine.keywords.surface_text"] is None
    assert sections["engine.keywords.meta"]["surface"]["odd\0text"] == [1, {"tags": 1}]
    last = DurableIndex.open(tmp_path, PARAMS)
    assert last._index.keywords._surface["odd\0text"] == [1, {"tags": 1}, 0]
    assert last.suggest("zü") == [("zürich", 1, "tags"), ("zürich trip", 1, "tags")]
    last.close()
