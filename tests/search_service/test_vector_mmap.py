"""Vector rows held by a snapshot are read-only memory maps of its file, not anonymous copies:
after a restart, and after each snapshot for the whole chunks it wrote. Real snapshot files on
disk, read back through the durable index; /proc tells what is mapped, open and resident."""

from __future__ import annotations

import gc
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from search_service import snapshot, vector_index
from search_service.durable_index import SNAPSHOT_NAME, DurableIndex
from search_service.engine import EngineParams
from search_service.snapshot import flatten, mapping_of, read_snapshot, unflatten, write_snapshot
from search_service.vector_index import AnnParams, VectorIndex
from tests.search_service.documents import DIM, doc, unit
from tests.search_service.memory_support import anon_kb, status_kb

CHUNK = 8  # rows per chunk in these tests (the service's 16,384 would need that many puts)
DOCS = 44  # five whole chunks and four rows in a sixth


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(vector_index, "CHUNK_ROWS", CHUNK)


def _filled(path: Path, params: EngineParams, count: int = DOCS) -> DurableIndex:
    index = DurableIndex.open(path, params, snapshot_every=10**9, snapshot_interval_s=3600)
    for i in range(count):
        index.put(doc(f"img{i}", vector=unit(i)))
    return index


def _answers(index: DurableIndex, queries: range) -> list[list[tuple[str, float]]]:
    return [list(index.similar(vector=unit(q), k=5).hits) for q in queries]


def _held_snapshots(directory: Path) -> tuple[list[str], list[str]]:
    """Lines of /proc/self/maps and targets of /proc/self/fd naming a snapshot in
    `directory`."""
    with open("/proc/self/maps") as f:
        maps = [line.strip() for line in f if str(directory) in line]
    fds = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if str(directory) in target:
            fds.append(target)
    return maps, fds


@pytest.mark.parametrize("threshold", [10**9, 20], ids=["exact", "faiss"])
def test_a_restart_maps_the_whole_chunks_and_answers_the_same(tmp_path, threshold):
    params = EngineParams(vector_dim=DIM, ann=AnnParams(threshold=threshold))
    index = _filled(tmp_path, params)
    index.remove("img7")
    before = _answers(index, range(DOCS))
    index.close()

    reopened = DurableIndex.open(tmp_path, params)

    vectors = reopened._index.vectors
    chunks = vectors._vectors.chunks
    assert vectors.mapped_chunks() == DOCS // CHUNK == 5
    for chunk in chunks[:5] + vectors._factors.chunks[:5]:
        mapping = mapping_of(chunk)
        assert mapping is not None and not chunk.flags.writeable
    assert mapping_of(chunks[5]) is None  # the partial last chunk is copied: it takes rows
    assert _answers(reopened, range(DOCS)) == before
    assert reopened.similar(vector=unit(3), k=1).approximate == (threshold == 20)
    reopened.close()


def test_rows_removed_and_updated_after_a_restart_read_their_new_values(tmp_path):
    params = EngineParams(vector_dim=DIM, ann=AnnParams(threshold=20))
    _filled(tmp_path, params).close()
    index = DurableIndex.open(tmp_path, params)
    assert index._index.vectors.mapped_chunks() == 5

    index.remove("img3")  # its row is in a mapped chunk
    fresh = unit(1000)
    index.put(doc("img5", vector=fresh))  # an update of a mapped row: a new row at the end
    index.put(doc("new", vector=unit(2000)))

    def check(ix: DurableIndex) -> None:
        assert "img3" not in [h[0] for h in ix.similar(vector=unit(3), k=DOCS).hits]
        assert ix.similar(vector=fresh, k=1).hits[0] == ("img5", pytest.approx(1.0, abs=2e-3))
        old_hits = ix.similar(vector=unit(5), k=3).hits
        assert old_hits[0][0] != "img5" or old_hits[0][1] < 0.9
        assert ix.similar("new", k=1).hits  # by id: its own vector, from the new row
        assert ix.similar(vector=unit(2000), k=1).hits[0][0] == "new"

    check(index)
    index.close()
    reopened = DurableIndex.open(tmp_path, params)
    check(reopened)
    reopened.close()


def test_snapshots_replacing_the_file_leave_no_deleted_file_mapped_or_open(tmp_path):
    params = EngineParams(vector_dim=DIM)
    _filled(tmp_path, params).close()
    index = DurableIndex.open(tmp_path, params, snapshot_every=10**9, snapshot_interval_s=3600)
    assert index._index.vectors.mapped_chunks() == 5
    for round_ in range(2):
        for i in range(20):
            index.put(doc(f"more{round_}-{i}", vector=unit(5000 + 100 * round_ + i)))
        index.snapshot()
        gc.collect()

        maps, fds = _held_snapshots(tmp_path)
        assert not [m for m in maps if "(deleted)" in m], maps
        assert not [f for f in fds if "(deleted)" in f], fds
        inode = os.stat(tmp_path / SNAPSHOT_NAME).st_ino
        assert maps and all(int(m.split()[4]) == inode for m in maps)
        rows = DOCS + 20 * (round_ + 1)
        # the rows added since the restart are mapped too, once a snapshot holds them
        assert index._index.vectors.mapped_chunks() == rows // CHUNK
    assert index.similar(vector=unit(5107), k=1).hits[0][0] == "more1-7"
    index.put(doc("last", vector=unit(9999)))  # into the last chunk, still anonymous
    assert index.similar(vector=unit(9999), k=1).hits[0][0] == "last"
    index.close()


def test_mapped_rows_take_no_anonymous_memory(tmp_path, monkeypatch):
    """64 MB of int8 rows in the service's real chunk size: a restore from the file adds far
    less than that to RssAnon; read into memory (mapping switched off) it adds all of it."""
    monkeypatch.setattr(vector_index, "CHUNK_ROWS", 16_384)
    dim, rows = 1024, 4 * 16_384
    vectors = VectorIndex(dim, AnnParams(threshold=10**9))
    rng = np.random.default_rng(1)
    for start in range(0, rows, 4096):
        vectors.add_many(start, list(rng.standard_normal((4096, dim)).astype(np.float32)))
    path = tmp_path / "x.snap"
    write_snapshot(path, flatten({"engine": {"vectors": vectors.frozen_state()}}))
    query = rng.standard_normal(dim).astype(np.float32)
    expected = vectors.search(query, 10, np.ones(rows, np.bool_))
    del vectors
    gc.collect()

    def restored_anon_mb() -> tuple[float, VectorIndex]:
        anon = anon_kb()
        state = unflatten(read_snapshot(path))["engine"]["vectors"]
        restored = VectorIndex.restore(state, dim, AnnParams(threshold=10**9))
        del state
        gc.collect()
        hits = restored.search(query, 10, np.ones(rows, np.bool_))  # reads every row
        assert hits.docs.tolist() == expected.docs.tolist()
        assert hits.similarities.tolist() == expected.similarities.tolist()
        return (anon_kb() - anon) / 1024, restored

    mapped_mb, restored = restored_anon_mb()
    assert restored.mapped_chunks() == 4
    del restored
    gc.collect()
    monkeypatch.setattr(snapshot, "MAPPED_SECTIONS", frozenset())
    copied_mb, restored = restored_anon_mb()
    assert restored.mapped_chunks() == 0

    assert copied_mb > 60, copied_mb
    assert mapped_mb < 16, mapped_mb


def test_the_format_4_fixture_loads_with_its_rows_mapped(tmp_path, monkeypatch):
    """fixtures/index-v4.snap (the real features of eight photos, one array of rows) with
    chunks of four rows: both chunks are maps of the file and every photo still finds
    itself."""
    fixtures = Path(__file__).with_name("fixtures")
    monkeypatch.setattr(vector_index, "CHUNK_ROWS", 4)
    features = np.load(fixtures / "index-v4-features.npy")
    shutil.copy(fixtures / "index-v4.snap", tmp_path / SNAPSHOT_NAME)

    index = DurableIndex.open(tmp_path, EngineParams(vector_dim=features.shape[1]))

    assert index._index.vectors.mapped_chunks() == 2
    for name, v in zip(("chelsea", "coffee", "rocket"), features, strict=False):
        assert index.similar(vector=v, k=1).hits[0][0] == name
    index.close()


def test_searches_running_while_snapshots_swap_the_chunks_find_the_same_rows(tmp_path):
    """Each snapshot swaps whole chunks for maps of the new file while a thread searches:
    every answer it gets is the one found before (rows read from either array are equal)."""
    params = EngineParams(vector_dim=DIM)
    _filled(tmp_path, params, 64).close()
    index = DurableIndex.open(tmp_path, params, snapshot_every=10**9, snapshot_interval_s=3600)
    queries = range(0, 64, 3)

    def answers() -> list[list[tuple[str, float]]]:  # the first 64 documents' hits
        out = []
        for q in queries:
            hits = index.similar(vector=unit(q), k=64 + 6 * CHUNK).hits
            out.append([h for h in hits if not h[0].startswith("far")][:5])
        return out

    expected = answers()
    stop = threading.Event()
    seen: list[bool] = []

    def search() -> None:
        while not stop.is_set():
            seen.append(answers() == expected)

    thread = threading.Thread(target=search)
    thread.start()
    try:
        for round_ in range(6):
            for i in range(CHUNK):  # a new whole chunk each round, far from every query
                index.put(doc(f"far{round_}-{i}", vector=-unit(i % 3)))
            index.snapshot()
    finally:
        stop.set()
        thread.join()
    assert seen and all(seen)
    assert index._index.vectors.mapped_chunks() == (64 + 6 * CHUNK) // CHUNK
    index.close()


def _vm_flags(directory: Path, arrays: list[np.ndarray] | None = None) -> list[set[str]]:
    """VmFlags of each mapping of a file in `directory` (/proc/self/smaps); with `arrays`,
    only of the mappings holding one of them (the document store maps the same file)."""
    addresses = [a.__array_interface__["data"][0] for a in arrays or []]
    out, inside = [], False
    with open("/proc/self/smaps") as f:
        for line in f:
            if line[0] in "0123456789abcdef" and "-" in line.split()[0]:
                start, end = (int(x, 16) for x in line.split()[0].split("-"))
                inside = str(directory) in line and (
                    arrays is None or any(start <= a < end for a in addresses)
                )
            elif inside and line.startswith("VmFlags:"):
                out.append(set(line.split()[1:]))
    return out


def test_mapped_rows_are_read_a_page_at_a_time_except_while_scanned(tmp_path):
    """Rescoring reads random rows: the maps ask for no read-around (MADV_RANDOM, "rr" in
    smaps); an exact scan asks for read-ahead while it runs and gives it back."""
    params = EngineParams(vector_dim=DIM)
    _filled(tmp_path, params).close()
    index = DurableIndex.open(tmp_path, params)
    assert index._index.vectors.mapped_chunks() == 5

    flags = _vm_flags(tmp_path)
    assert flags and all("rr" in f and "sr" not in f for f in flags), flags
    vectors = index._index.vectors
    rows = vectors._vectors.chunks + vectors._factors.chunks
    with vectors._scanning():
        scanned = _vm_flags(tmp_path, [c for c in rows if mapping_of(c) is not None])
        assert scanned and all("sr" in f and "rr" not in f for f in scanned)
    hits = vectors.search(unit(4), 1, vectors.present(), exact=True)
    assert hits.docs.tolist() == [4]
    assert all("rr" in f for f in _vm_flags(tmp_path))
    index.snapshot()  # the new file's maps too
    gc.collect()
    assert all("rr" in f for f in _vm_flags(tmp_path))
    index.close()


def test_a_snapshot_gives_back_the_anonymous_memory_of_the_rows_it_maps(tmp_path, monkeypatch):
    """64 MB of rows added in memory: once a snapshot holds them, RssAnon falls by about that
    much (their chunks become maps of the file and the anonymous ones are freed)."""
    monkeypatch.setattr(vector_index, "CHUNK_ROWS", 16_384)
    dim, rows = 1024, 4 * 16_384
    # A 20 MB block freed: glibc's malloc then serves blocks up to that size from its heap,
    # where a freed 16 MB chunk may stay resident (a service frees such blocks all the time).
    big = np.ones(20 << 20, np.uint8)
    del big
    vectors = VectorIndex(dim, AnnParams(threshold=10**9))
    rng = np.random.default_rng(2)
    for start in range(0, rows, 4096):
        vectors.add_many(start, list(rng.standard_normal((4096, dim)).astype(np.float32)))
    gc.collect()
    before = status_kb("RssAnon")

    write_snapshot(tmp_path / "x.snap", flatten({"engine": {"vectors": vectors.frozen_state()}}))
    gc.collect()

    assert vectors.mapped_chunks() == 4
    assert (before - status_kb("RssAnon")) / 1024 > 56
    query = rng.standard_normal(dim).astype(np.float32)
    assert vectors.search(query, 3, np.ones(rows, np.bool_)).docs.size == 3
