"""The document store's columns held by a snapshot are read-only memory maps of its file: after
a restart, and after each snapshot (the fold: the documents it froze are read from the file
from then on, the rows added since stay rows). Real snapshot files on disk; /proc tells what is
mapped and resident."""

from __future__ import annotations

import gc
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from search_service import doc_store, snapshot
from search_service.doc_store import DocumentStore
from search_service.document import Document, Label, Status
from search_service.durable_index import SNAPSHOT_NAME, DurableIndex
from search_service.engine import EngineParams
from search_service.errors import ImageNotFoundError
from search_service.snapshot import flatten, mapping_of, read_snapshot, unflatten, write_snapshot
from tests.search_service.documents import DIM, doc, unit
from tests.search_service.memory_support import anon_kb

PARAMS = EngineParams(vector_dim=DIM)


def _photo(i: int) -> Document:
    """Every field set, labels of a shared table, odd text now and then."""
    return Document(
        image_id=f"img{i}",
        filename=f"IMG_{i}.jpg" if i % 7 else "nul\0inside.jpg",
        owner=f"owner{i % 3}",
        labels=(
            Label("tiger cat", 0.5 + i / 1e4, ("tabby",), 282),
            Label(f"kind{i % 5}", 1 / (i + 3), (), -1),
        ),
        tags=("pets", f"t{i}") if i % 2 else (),
        ocr_text=f"Menu {i} café" if i % 3 == 0 else "",
        moderation_score=i / 1000,
        status=Status.PENDING if i % 4 else Status.READY,
        sha256=f"{i:064x}",
        created_at_unix_ms=1_700_000_000_000 + i,
        taken_at_unix_s=1_600_000_000 + i,
        camera_make="Canon",
        camera_model="EOS 80D",
        colours=(("orange", 0.4),) if i % 2 else (),
        favourite=bool(i % 2),
    )


def _odd(i: int) -> Document:
    """Labels kept as they came (more kinds than the table holds; see doc_store._encode)."""
    return Document(f"odd{i}", labels=(Label("new kind", 0.7, ("syn",), 5),))


def _filled(count: int, removed: tuple[int, ...] = ()) -> DocumentStore:
    store = DocumentStore()
    for i in range(count):
        store.append(_photo(i))
    for d in removed:
        store[d] = None
    return store


def _snap(store: DocumentStore, path: Path) -> None:
    """Write the store's frozen columns as a snapshot holds them (engine.doc_columns)."""
    write_snapshot(path, flatten({"engine": {"doc_columns": store.frozen_columns()}}))


def _restored(path: Path) -> DocumentStore:
    return DocumentStore.from_columns(unflatten(read_snapshot(path))["engine"]["doc_columns"])


def _all(store: DocumentStore) -> list[Document | None]:
    store._recent.clear()  # read from the store itself, not its cache of recent documents
    return [store[d] for d in range(len(store))]


def _maps(directory: Path) -> list[str]:
    with open("/proc/self/maps") as f:
        return [line.strip() for line in f if str(directory) in line]


def _base_arrays(store: DocumentStore) -> list[np.ndarray]:
    base = store._s.base
    assert base is not None
    return [
        *base._blobs.values(),
        *base._offsets.values(),
        *base._numbers.values(),
        base.label_offsets,
        base.label_kinds,
        base.label_probs,
    ]


def test_a_snapshot_folds_the_store_onto_its_file_and_documents_read_the_same(tmp_path):
    store = _filled(40, removed=(3, 11))
    store.append(_odd(0))
    expected = _all(store)
    counts = store.label_counts(0.05)
    path = tmp_path / "x.snap"

    _snap(store, path)

    assert store.folds == 1 and store.mapped_count == 41 and store._s.rows == []
    assert all(mapping_of(a) is not None for a in _base_arrays(store) if a.size)
    assert not store._s.base.label_kinds.flags.writeable  # type: ignore[union-attr]
    assert _maps(tmp_path)  # the file is mapped
    assert _all(store) == expected
    assert store.label_counts(0.05) == counts
    assert store.field(5, "sha256") == f"{5:064x}" and store.field(4, "status") == Status.READY
    store._recent.clear()
    assert [lb.name for lb in store.light(1, 0.3).labels] == ["tiger cat"]
    assert store.image_ids()[:3] == ["img0", "img1", "img2"]
    restarted = _restored(path)
    assert restarted.mapped_count == 41
    assert _all(restarted) == expected


def test_removals_after_the_freeze_and_after_the_fold_read_as_removed(tmp_path):
    store = _filled(30)
    frozen = store.frozen_columns()
    store[4] = None  # after the freeze, before the snapshot is in place
    store.append(_photo(30))
    store[30] = None  # a row added after the freeze, removed
    path = tmp_path / "x.snap"
    write_snapshot(path, flatten({"engine": {"doc_columns": frozen}}))

    assert store.folds == 1 and store.mapped_count == 30 and len(store._s.rows) == 1
    assert store[4] is None and store[30] is None and store[5] is not None
    store[5] = None  # in the mapped base: the store's own alive copy, never the file
    assert store[5] is None
    assert [d for d in range(31) if store[d] is None] == [4, 5, 30]
    assert store.label_counts(0.0)["tiger cat"] == 28
    # the file still says what was frozen: the removals are the running store's
    assert _restored(path)[4] is not None and _restored(path)[5] is not None
    _snap(store, path)
    assert [d for d in range(31) if _restored(path)[d] is None] == [4, 5, 30]


def test_documents_added_after_a_fold_fold_again_and_load_after_a_restart(tmp_path):
    path = tmp_path / "x.snap"
    store = _filled(20, removed=(2,))
    _snap(store, path)
    first_inode = os.stat(path).st_ino
    for i in range(20, 35):
        store.append(_photo(i))
    store.append(_odd(1))
    store[7] = None  # in the first mapping
    store[25] = None  # a row
    expected = _all(store)

    _snap(store, path)  # a second fold, over the first mapping
    gc.collect()

    assert store.folds == 2 and store.mapped_count == 36 and store._s.rows == []
    assert _all(store) == expected
    maps = _maps(tmp_path)
    assert maps and not [m for m in maps if "(deleted)" in m], maps
    assert all(int(m.split()[4]) == os.stat(path).st_ino != first_inode for m in maps)
    store.append(_photo(99))
    expected.append(_photo(99))
    restarted = _restored(path)
    assert _all(restarted) == expected[:-1]
    assert restarted.label_counts(0.0)["tiger cat"] == 32  # 35 photos, 2, 7 and 25 removed
    assert _all(store) == expected


def test_the_fold_needs_the_view_it_froze(tmp_path):
    """A snapshot of another store's columns (or one written before a later fold) is not
    folded onto: the store keeps reading what it holds."""
    store = _filled(10)
    _snap(store, tmp_path / "a.snap")
    stale = store.frozen_columns()  # 10 documents
    store.append(_photo(10))
    _snap(store, tmp_path / "b.snap")  # folds 11
    store.append(_photo(11))
    write_snapshot(tmp_path / "c.snap", flatten({"engine": {"doc_columns": stale}}))
    del stale  # it holds the base it froze (a.snap's maps)
    other = _filled(12)
    _snap(other, tmp_path / "d.snap")
    with pytest.raises(ValueError):  # 12 documents in the file, 11 frozen
        store._fold(tmp_path / "d.snap", "engine.doc_columns.", 11, 0)
    gc.collect()

    assert store.folds == 2 and store.mapped_count == 11 and len(store._s.rows) == 1
    assert _all(store) == [_photo(i) for i in range(12)]
    maps = _maps(tmp_path)
    assert {m.split()[-1] for m in maps} == {str(tmp_path / n) for n in ("b.snap", "d.snap")}


def test_a_durable_index_folds_at_each_snapshot_and_restarts_mapped(tmp_path):
    index = DurableIndex.open(tmp_path, PARAMS, snapshot_every=10**9, snapshot_interval_s=3600)
    for i in range(30):
        index.put(doc(f"img{i}", (("cat", 0.9), ("dog", 0.1 + i / 100)), vector=unit(i)))
    index.snapshot()
    docs = index._index._docs
    assert docs.folds == 1 and docs.mapped_count == 30
    index.remove("img3")
    index.put(doc("img4", (("bird", 0.8),), vector=unit(104)))  # an update: a new number
    index.put(doc("new", (("cat", 0.7),), vector=unit(200)))
    before = [index.get(f"img{i}") for i in (0, 4, 29)] + [index.get("new")]
    hits = index.search("cat", semantic=False, limit=50).hits
    index.close()

    reopened = DurableIndex.open(tmp_path, PARAMS)
    docs = reopened._index._docs
    assert docs.mapped_count == 32 and docs._s.rows == []
    assert [reopened.get(f"img{i}") for i in (0, 4, 29)] + [reopened.get("new")] == before
    assert reopened.search("cat", semantic=False, limit=50).hits == hits
    with pytest.raises(ImageNotFoundError):
        reopened.get("img3")
    reopened.close()


def test_readers_during_folds_see_every_document_as_before(tmp_path):
    """A thread reads every document while snapshots fold the store under it: each read gives
    the document it gave before (no reader sees half of a swap)."""
    store = _filled(200, removed=(5, 50))
    expected = _all(store)
    stop = threading.Event()
    wrong: list[int] = []
    reads = [0]

    def read() -> None:
        while not stop.is_set():
            for d in range(len(expected)):
                store._recent.pop(d, None)
                if store[d] != expected[d]:
                    wrong.append(d)
            reads[0] += 1

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for round_ in range(8):
            for i in range(5):
                store.append(_photo(1000 + 10 * round_ + i))
            _snap(store, tmp_path / "x.snap")
    finally:
        stop.set()
        thread.join()
    assert reads[0] and not wrong
    assert store.folds == 8 and store.mapped_count == 240


def test_mapped_columns_take_no_anonymous_memory_after_a_restart(tmp_path, monkeypatch):
    """About 48 MB of columns (long text): loaded mapped they add far less than that to
    RssAnon; read into memory (mapping switched off) they add all of it."""
    store = DocumentStore()
    text = "word " * 150
    count = 60_000
    kinds = np.zeros(count * 2, np.int64)
    probs = np.full(count * 2, 0.5)
    store.label_kinds([Label("a", 0.5, (), 1), Label("b", 0.5, (), 2)])
    kinds[1::2] = 1
    store.extend(
        [Document(f"id{i:08d}", ocr_text=f"{i} {text}", filename=text) for i in range(count)],
        kinds,
        probs,
    )
    path = tmp_path / "x.snap"
    monkeypatch.setattr(doc_store, "FOLD_AFTER_SNAPSHOT", False)
    _snap(store, path)
    sample = [store[d] for d in range(0, count, 997)]
    del store
    gc.collect()

    def restored_anon_mb() -> tuple[float, DocumentStore]:
        anon = anon_kb()
        loaded = _restored(path)
        assert [loaded[d] for d in range(0, count, 997)] == sample
        assert len(loaded.image_ids()) == count
        gc.collect()
        return (anon_kb() - anon) / 1024, loaded

    mapped_mb, loaded = restored_anon_mb()
    assert loaded.mapped_count == count
    del loaded
    gc.collect()
    monkeypatch.setattr(snapshot, "MAPPED_SECTIONS", frozenset())
    copied_mb, loaded = restored_anon_mb()
    assert loaded.mapped_count == 0

    assert copied_mb > 40, copied_mb
    assert mapped_mb < 10, mapped_mb


def test_the_format_4_fixture_loads_its_documents_mapped(tmp_path, monkeypatch):
    """fixtures/index-v4.snap (an older format, the same column bytes): its documents are
    maps of the file and read as they do copied."""
    fixtures = Path(__file__).with_name("fixtures")
    shutil.copy(fixtures / "index-v4.snap", tmp_path / SNAPSHOT_NAME)
    dim = np.load(fixtures / "index-v4-features.npy").shape[1]
    index = DurableIndex.open(tmp_path, EngineParams(vector_dim=dim))
    docs = index._index._docs
    assert docs.mapped_count == len(docs) > 0
    mapped = _all(docs)
    index.close()
    shutil.copy(fixtures / "index-v4.snap", tmp_path / SNAPSHOT_NAME)
    monkeypatch.setattr(snapshot, "MAPPED_SECTIONS", frozenset())
    index = DurableIndex.open(tmp_path, EngineParams(vector_dim=dim))
    assert index._index._docs.mapped_count == 0
    assert _all(index._index._docs) == mapped
    index.close()


def test_mapped_columns_are_read_a_page_at_a_time(tmp_path):
    """Documents are read at random: the maps ask for no read-around (MADV_RANDOM, "rr")."""
    store = _filled(20)
    _snap(store, tmp_path / "x.snap")
    flags = []
    inside = False
    with open("/proc/self/smaps") as f:
        for line in f:
            if line[0] in "0123456789abcdef" and "-" in line.split()[0]:
                inside = str(tmp_path) in line
            elif inside and line.startswith("VmFlags:"):
                flags.append(set(line.split()[1:]))
    assert flags and all("rr" in f for f in flags), flags
