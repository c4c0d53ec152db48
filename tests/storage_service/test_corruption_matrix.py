"""Flipped, zeroed and truncated bytes in every kind of file the store keeps, and missing files:
each case with the outcome issue 11 requires. Nothing the store acknowledged is ever silently
gone: it reads back byte-exact, or answers DataLossError naming what is damaged, or (when not
even its id can be read) is counted in `unreadable_count`; no file is deleted by start-up, and
`verify()` reports the damage.
"""

from __future__ import annotations

import json
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from storage_service.columnstore import format as fmt
from storage_service.columnstore import wal
from storage_service.columnstore.errors import DataLossError, ImageNotFoundError
from storage_service.columnstore.manifest import Manifest
from storage_service.columnstore.model import ThumbnailSize
from storage_service.columnstore.segment_reader import SegmentReader
from storage_service.columnstore.store import ColumnStore, StoreOptions

OPTS = StoreOptions(memtable_bytes=1 << 30, compact_min_segments=1000, compact_dead_fraction=2.0)


@dataclass
class Layout:
    data_dir: Path
    # Images in the first segment, the second segment and the log (unflushed), in put order.
    seg1: list[str]
    seg2: list[str]
    logged: list[str]
    data: dict[str, bytes]
    names: dict[str, str]

    @property
    def all(self) -> list[str]:
        return self.seg1 + self.seg2 + self.logged

    def segment(self, n: int) -> Path:
        return sorted((self.data_dir / "segments").glob("*.seg"))[n]


@pytest.fixture
def layout(tmp_path, small_images) -> Layout:
    store = ColumnStore.open(tmp_path / "s", OPTS)
    data: dict[str, bytes] = {}
    names: dict[str, str] = {}

    def put_some(images, prefix):
        ids = []
        for i, image in enumerate(images):
            name = f"{prefix}{i}.jpg"
            image_id = store.put(name, "", image).image.id
            data[image_id], names[image_id] = image.data, name
            ids.append(image_id)
        return ids

    seg1 = put_some(small_images[:4], "a")
    store.flush()
    seg2 = put_some(small_images[4:7], "b")
    store.flush()
    logged = put_some(small_images[7:10], "c")
    # A kill -9 now: the data dir as it is (the last three only in the log).
    crashed = tmp_path / "crashed"
    shutil.copytree(store.data_dir, crashed)
    store.close()
    (crashed / "LOCK").unlink()
    return Layout(crashed, seg1, seg2, logged, data, names)


def _flip(path: Path, offset: int, mask: int = 0x10) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= mask
    path.write_bytes(bytes(raw))


def _zero(path: Path, offset: int, length: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset : offset + length] = bytes(length)
    path.write_bytes(bytes(raw))


def _row_of(path: Path, image_id: str) -> int:
    return SegmentReader(path).ids().index(image_id)


def _readable(store: ColumnStore, ids) -> list[str]:
    return [i for i in ids if _reads_back(store, i)]


def _reads_back(store: ColumnStore, image_id: str) -> bool:
    try:
        store.get(image_id)
        store.read_data(image_id)
        store.thumbnail(image_id, ThumbnailSize.SMALL)
    except (DataLossError, ImageNotFoundError):
        return False
    return True


def _assert_data_loss(store: ColumnStore, image_id: str, names: str) -> None:
    with pytest.raises(DataLossError, match=names):
        store.get(image_id)
        store.read_data(image_id)


def _all_files(data_dir: Path) -> set[str]:
    return {p.name for p in data_dir.rglob("*") if p.is_file()}


# --- segments --------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["flip", "zero"])
def test_damaged_image_bytes_answer_data_loss_for_that_image_only(layout, how):
    seg = layout.segment(0)
    victim = layout.seg1[1]
    offset, length = SegmentReader(seg).blob_location("data", _row_of(seg, victim))
    if how == "flip":
        _flip(seg, offset + length // 2)
    else:
        _zero(seg, offset + 100, 64)

    store = ColumnStore.open(layout.data_dir, OPTS)

    with pytest.raises(DataLossError, match=seg.name):
        store.read_data(victim)
    assert store.get(victim).filename == layout.names[victim]  # its metadata is fine
    assert _readable(store, layout.all) == [i for i in layout.all if i != victim]
    report = store.verify()
    assert [(d.path, d.image_ids) for d in report.damaged] == [(f"segments/{seg.name}", (victim,))]
    store.close()


@pytest.mark.parametrize("column", ["filename", "seq", "status"])
def test_a_damaged_small_column_makes_every_image_of_that_segment_data_loss(layout, column):
    seg = layout.segment(0)
    offset, length = SegmentReader(seg).block_location(column)
    _flip(seg, offset + length // 2)

    store = ColumnStore.open(layout.data_dir, OPTS)

    for image_id in layout.seg1:
        _assert_data_loss(store, image_id, seg.name)
    assert _readable(store, layout.all) == layout.seg2 + layout.logged
    page = store.list_images(page_size=100)
    assert page.unreadable_count == len(layout.seg1)
    assert store.stats().unreadable_rows == len(layout.seg1)
    if column != "filename":  # the names are known: a lookup by name does not hide them
        with pytest.raises(DataLossError):
            store.find_by_filename(layout.names[layout.seg1[0]])
    assert store.find_by_filename(layout.names[layout.seg2[0]])[0].id == layout.seg2[0]
    damaged = {i for d in store.verify().damaged for i in d.image_ids}
    assert damaged == set(layout.seg1)
    # It is left out of compaction, and compaction of the rest still works.
    store.compact()
    assert _readable(store, layout.all) == layout.seg2 + layout.logged
    store.close()
    assert seg.exists()


def test_a_damaged_id_column_is_read_from_its_backup_copy(layout):
    seg = layout.segment(0)
    offset, length = SegmentReader(seg).block_location("id")
    _flip(seg, offset + length // 2)

    store = ColumnStore.open(layout.data_dir, OPTS)

    assert _readable(store, layout.all) == layout.all
    assert [d.path for d in store.verify().damaged] == [f"segments/{seg.name}"]
    store.close()


def test_both_id_copies_damaged_counts_the_rows_as_unreadable(layout):
    seg = layout.segment(0)
    reader = SegmentReader(seg)
    for block in ("id", "id_backup"):
        offset, length = reader.block_location(block)
        _flip(seg, offset + length // 2)

    store = ColumnStore.open(layout.data_dir, OPTS)

    assert _readable(store, layout.all) == layout.seg2 + layout.logged
    assert store.list_images().unreadable_count == len(layout.seg1)
    store.close()


@pytest.mark.parametrize("where", ["magic", "trailer offset", "directory", "zeroed footer"])
def test_a_damaged_footer_is_read_from_its_backup_copy(layout, where):
    seg = layout.segment(0)
    size = seg.stat().st_size
    dir_offset, dir_length = fmt.TRAILER.unpack(seg.read_bytes()[-fmt.TRAILER.size :])[:2]
    if where == "magic":
        _flip(seg, size - 3)
    elif where == "trailer offset":
        _flip(seg, size - fmt.TRAILER.size + 1)
    elif where == "directory":
        _flip(seg, dir_offset + 10)
    else:
        _zero(seg, dir_offset, size - dir_offset)

    store = ColumnStore.open(layout.data_dir, OPTS)

    assert _readable(store, layout.all) == layout.all
    report = store.verify()
    assert [(d.path, d.image_ids) for d in report.damaged] == [(f"segments/{seg.name}", ())]
    assert "backup" in report.damaged[0].detail
    store.close()


@pytest.mark.parametrize("where", ["truncate", "garbage", "missing"])
def test_an_unreadable_or_missing_segment_is_counted_never_hidden_or_deleted(layout, where):
    seg = layout.segment(0)
    size = seg.stat().st_size
    if where == "truncate":
        seg.write_bytes(seg.read_bytes()[: size // 2])
    elif where == "garbage":
        seg.write_bytes(bytes(range(256)) * (size // 256))
    else:
        seg.unlink()

    store = ColumnStore.open(layout.data_dir, OPTS)

    assert _readable(store, layout.all) == layout.seg2 + layout.logged
    assert store.list_images().unreadable_count == len(layout.seg1)
    assert seg.exists() == (where != "missing")  # kept for inspection or repair
    report = store.verify()
    assert [d.path for d in report.damaged] == [f"segments/{seg.name}"]
    store.compact()
    store.close()
    assert seg.exists() == (where != "missing")


def test_a_damaged_thumbnail_does_not_block_compaction(layout):
    seg = layout.segment(0)
    victim = layout.seg1[2]
    offset, length = SegmentReader(seg).blob_location("thumb_small", _row_of(seg, victim))
    _flip(seg, offset + length // 2)
    store = ColumnStore.open(layout.data_dir, OPTS)

    report = store.compact()

    assert report.segments_after == 1
    assert store.read_data(victim)[1] == layout.data[victim]  # the row and its image kept
    with pytest.raises(DataLossError, match="damaged"):
        store.thumbnail(victim, ThumbnailSize.SMALL)
    assert _readable(store, layout.all) == [i for i in layout.all if i != victim]
    store.close()
    reopened = ColumnStore.open(layout.data_dir, OPTS)
    with pytest.raises(DataLossError):
        reopened.thumbnail(victim, ThumbnailSize.SMALL)
    assert [i for d in reopened.verify().damaged for i in d.image_ids] == [victim]
    reopened.close()


def test_an_unknown_file_among_the_segments_goes_to_quarantine(layout):
    stray = layout.data_dir / "segments" / "000099.seg"
    stray.write_bytes(b"not named by the manifest")
    store = ColumnStore.open(layout.data_dir, OPTS)
    assert not stray.exists()
    assert [p.read_bytes() for p in (layout.data_dir / "quarantine").iterdir()] == [
        b"not named by the manifest"
    ]
    assert store.stats().quarantined_files == 1
    assert _readable(store, layout.all) == layout.all
    store.close()


# --- the manifest ----------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["missing", "flip", "truncate", "zero"])
def test_a_missing_or_damaged_manifest_is_rebuilt_from_the_segments(layout, how):
    manifest = layout.data_dir / "MANIFEST"
    if how == "missing":
        manifest.unlink()
    elif how == "flip":
        _flip(manifest, 12)
    elif how == "truncate":
        manifest.write_bytes(manifest.read_bytes()[:20])
    else:
        _zero(manifest, 0, manifest.stat().st_size)
    files_before = {n for n in _all_files(layout.data_dir) if n.endswith(".seg")}

    store = ColumnStore.open(layout.data_dir, OPTS)

    assert _readable(store, layout.all) == layout.all
    assert store.stats().unreadable_rows == 0
    store.put("after.jpg", "", _first_image(store, layout))  # and it goes on working
    store.close()
    assert files_before <= _all_files(layout.data_dir) | _quarantined(layout)
    reopened = ColumnStore.open(layout.data_dir, OPTS)
    assert _readable(reopened, layout.all) == layout.all
    reopened.close()


def _first_image(store: ColumnStore, layout: Layout):
    from storage_service.columnstore.image_check import prepare_image

    return prepare_image(layout.data[layout.seg1[0]])


def _quarantined(layout: Layout) -> set[str]:
    qdir = layout.data_dir / "quarantine"
    names = set()
    for p in qdir.iterdir() if qdir.exists() else ():
        names.add(p.name.split("-", 1)[1].rsplit(".", 1)[0])
    return names


def _write_manifest(data_dir: Path, body: dict) -> None:
    encoded = json.dumps(body, separators=(",", ":")).encode()
    (data_dir / "MANIFEST").write_bytes(encoded + f"\n{zlib.crc32(encoded):08x}\n".encode())


def test_a_manifest_naming_the_wrong_segment_deletes_nothing(layout):
    loaded = Manifest.load(layout.data_dir)
    assert loaded is not None
    first = min(loaded.segments)
    _write_manifest(
        layout.data_dir,
        {
            "version": 2,
            "segments": [s + 100 if s == first else s for s in loaded.segments],
            "next_segment_id": loaded.next_segment_id + 100,
            "wal_min": 999,  # a raised wal_min must not make the log disappear either
            "rows": {str(first + 100): 4},
        },
    )
    seg_bytes = layout.segment(0).read_bytes()

    store = ColumnStore.open(layout.data_dir, OPTS)

    # The unnamed file is quarantined (not deleted); the named one is missing: counted.
    assert [p.read_bytes() for p in (layout.data_dir / "quarantine").iterdir()] == [seg_bytes]
    assert store.list_images().unreadable_count == 4
    assert _readable(store, layout.all) == layout.seg2 + layout.logged
    store.close()


# --- the log ---------------------------------------------------------------------------------


def _log(layout: Layout) -> Path:
    (path,) = [p for p in (layout.data_dir / "wal").glob("*.log") if wal.read_log(p)[0]]
    return path


@pytest.mark.parametrize("where", ["crc", "length", "type", "log number", "payload", "zero"])
def test_a_damaged_log_record_costs_that_record_and_the_log_is_kept(layout, where):
    path = _log(layout)
    # The first fragment header of the second logged record (seg1 and seg2 are flushed).
    header = wal.record_offsets(path)[1]
    field = {"crc": 0, "length": 4, "type": 6, "log number": 7, "payload": 200, "zero": 0}[where]
    if where == "zero":
        _zero(path, header, 300)
    else:
        _flip(path, header + field)

    store = ColumnStore.open(layout.data_dir, OPTS)

    # Only the damaged record is lost; the one after it is replayed.
    assert _readable(store, layout.all) == [i for i in layout.all if i != layout.logged[1]]
    assert store.stats().damaged_log_records == 1
    assert any("wal/" in d.path for d in store.verify().damaged)
    store.flush()
    store.close()
    # The damaged log is not deleted once its records are in a segment: it is quarantined.
    quarantined = [p.name for p in (layout.data_dir / "quarantine").iterdir()]
    assert any(n.startswith(f"wal-{path.name}") for n in quarantined), quarantined


def test_a_torn_log_tail_drops_only_the_unacknowledged_end(layout):
    path = _log(layout)
    raw = path.read_bytes()
    cut = raw.find(layout.data[layout.logged[2]][:64]) + 500
    path.write_bytes(raw[:cut])

    store = ColumnStore.open(layout.data_dir, OPTS)

    assert _readable(store, layout.all) == layout.all[:-1]
    store.close()


def test_a_rebuilt_manifest_leaves_out_segments_a_compaction_replaced(tmp_path, small_images):
    # A crash after a compaction installed its output but before it unlinked every input,
    # and then the MANIFEST is lost: the leftover input must not bring a deleted image back.
    data_dir = tmp_path / "s"
    store = ColumnStore.open(data_dir, OPTS)
    gone = store.put("gone.jpg", "", small_images[0]).image.id
    kept = store.put("kept.jpg", "", small_images[1]).image.id
    store.flush()
    first = sorted((data_dir / "segments").glob("*.seg"))[0]
    leftover = first.read_bytes()
    store.delete(gone)
    store.flush()
    store.compact()
    store.close()
    first.write_bytes(leftover)
    (data_dir / "MANIFEST").unlink()

    reopened = ColumnStore.open(data_dir, OPTS)

    with pytest.raises(ImageNotFoundError):
        reopened.get(gone)
    assert reopened.read_data(kept)[1] == small_images[1].data
    assert not first.exists() and reopened.stats().quarantined_files == 1
    reopened.close()
