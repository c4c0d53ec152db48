"""The segment format on its own: layout, compression choices, checksums, schema evolution."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest

from storage_service.columnstore import format as fmt
from storage_service.columnstore.errors import DataLossError
from storage_service.columnstore.row import Row
from storage_service.columnstore.schema import COLUMNS, Kind, RowKind
from storage_service.columnstore.segment_reader import SegmentReader
from storage_service.columnstore.segment_writer import write_segment


def _rows(photo_jpegs: dict[str, bytes]) -> list[Row]:
    rows = []
    for seq, (name, data) in enumerate(photo_jpegs.items(), start=1):
        values = {
            "id": f"{seq:032x}",
            "filename": f"{name}.jpg",
            "owner": "alice",
            "created_at_ms": 1_700_000_000_000 + seq,
            "byte_size": len(data),
            "exif": {"camera_make": "Canon"},
            "tags": ["a", name],
            "moderation_score": 0.25,
        }
        vector = np.linspace(0, 1, 16, dtype="<f4").tobytes()
        rows.append(
            Row(
                seq,
                RowKind.PUT,
                values,
                {"data": data, "feature_vector": vector, "thumb_small": b"\0" * 5000},
            )
        )
    return rows


def test_segment_round_trips_every_column(tmp_path, photo_jpegs):
    rows = _rows(photo_jpegs)
    path = tmp_path / "000001.seg"

    write_segment(path, rows)
    segment = SegmentReader(path)

    assert segment.row_count == len(rows)
    assert segment.column("seq") == [r.seq for r in rows]
    assert segment.column("filename") == [r.values["filename"] for r in rows]
    assert segment.column("exif") == [{"camera_make": "Canon"}] * len(rows)
    assert segment.column("moderation_score") == [0.25] * len(rows)
    assert segment.column("ocr_text") == [""] * len(rows)
    for i, row in enumerate(rows):
        assert segment.blob("data", i) == row.blobs["data"]
        assert segment.blob("feature_vector", i) == row.blobs["feature_vector"]
        assert segment.blob("thumb_preview", i) == b""


def test_footer_has_magic_and_format_version(tmp_path, photo_jpegs):
    path = tmp_path / "000001.seg"
    write_segment(path, _rows(photo_jpegs))

    trailer = path.read_bytes()[-fmt.TRAILER.size :]
    dir_offset, dir_length, _crc, version, _reserved, magic = fmt.TRAILER.unpack(trailer)

    assert magic == b"IRCOLSEG"
    assert version == fmt.FORMAT_VERSION
    directory = json.loads(path.read_bytes()[dir_offset : dir_offset + dir_length])
    index = {"id_backup", "ix_taken", "ix_filename", "ix_sha256", "row_meta"}
    assert set(directory["columns"]) == {c.name for c in COLUMNS} | index
    # Self-describing: a lost MANIFEST can be rebuilt from the segments themselves.
    assert directory["segment_id"] == 1 and directory["rows"] == len(_rows(photo_jpegs))
    assert directory["seq_min"] >= 0 and directory["seq_max"] >= directory["seq_min"]


def test_jpeg_bytes_are_stored_raw_and_zeros_compressed(tmp_path, photo_jpegs):
    rows = _rows(photo_jpegs)
    path = tmp_path / "000001.seg"
    write_segment(path, rows)

    sizes = SegmentReader(path).column_bytes()

    raw_jpeg = sum(len(r.blobs["data"]) for r in rows)
    assert sizes["data"] == (raw_jpeg, raw_jpeg)
    assert sizes["thumb_small"][1] < sizes["thumb_small"][0] / 50
    assert sizes["filename"][1] <= sizes["filename"][0]


def test_fixed_width_columns_are_byte_shuffled():
    values = np.arange(1000, dtype="<i8")

    stored, raw_length, flags = fmt.encode_block(Kind.I64, values.tolist())

    assert flags & fmt.FLAG_SHUFFLED and flags & fmt.FLAG_COMPRESSED
    assert raw_length == 8000
    assert fmt.decode_block(Kind.I64, stored, raw_length, flags, 1000) == values.tolist()
    assert fmt.unshuffle(fmt.shuffle(values.tobytes(), 8), 8) == values.tobytes()


def test_flipped_byte_in_a_block_is_data_loss_naming_the_segment(tmp_path, photo_jpegs):
    path = tmp_path / "000007.seg"
    write_segment(path, _rows(photo_jpegs))
    offset, length = SegmentReader(path).blob_location("data", 2)
    raw = bytearray(path.read_bytes())
    raw[offset + length // 3] ^= 1
    path.write_bytes(bytes(raw))

    segment = SegmentReader(path)

    with pytest.raises(DataLossError, match="000007.seg"):
        segment.blob("data", 2)
    assert segment.blob("data", 1) == _rows(photo_jpegs)[1].blobs["data"]


def test_flipped_byte_in_a_small_column_is_data_loss(tmp_path, photo_jpegs):
    path = tmp_path / "000003.seg"
    write_segment(path, _rows(photo_jpegs))
    with open(path, "r+b") as f:  # the "seq" block is the first in the file
        f.seek(2)
        byte = f.read(1)
        f.seek(2)
        f.write(bytes([byte[0] ^ 0xFF]))

    with pytest.raises(DataLossError, match="seq"):
        SegmentReader(path).column("seq")


def test_file_that_is_not_a_segment_is_refused(tmp_path):
    path = tmp_path / "000001.seg"
    path.write_bytes(os.urandom(100))

    with pytest.raises(DataLossError, match="magic"):
        SegmentReader(path)


def test_column_added_after_a_segment_was_written_reads_as_its_default(tmp_path, photo_jpegs):
    path = tmp_path / "000001.seg"
    write_segment(path, _rows(photo_jpegs))
    data = path.read_bytes()
    dir_offset, dir_length, _crc, version, _r, magic = fmt.TRAILER.unpack(data[-fmt.TRAILER.size :])
    directory = json.loads(data[dir_offset : dir_offset + dir_length])
    del directory["columns"]["ocr_text"]  # as if ocr_text had been added to the schema later
    encoded = fmt.encode_directory(directory)
    path.write_bytes(data[:dir_offset] + encoded + fmt.encode_trailer(dir_offset, encoded))

    segment = SegmentReader(path)

    assert not segment.has_column("ocr_text")
    assert segment.column("ocr_text") == [""] * segment.row_count
    assert segment.column("filename")[0] == "chelsea.jpg"
    assert struct.calcsize("<QIIHH8s") == fmt.TRAILER.size


def test_row_meta_reads_what_only_the_json_module_reads(tmp_path):
    # row_meta is written by json.dumps and read by orjson (faster): values orjson refuses
    # (infinity or NaN, an integer past 64 bits) still read, through json.
    odd = {
        "id": "0" * 32,
        "filename": "odd.jpg",
        "moderation_score": float("inf"),
        "exif": {"n": 2**70},
    }
    plain = {"id": "1" * 32, "filename": "plain.jpg", "tags": ["é", "x"]}
    rows = [Row(1, RowKind.PUT, odd, {"data": b"x"}), Row(2, RowKind.PUT, plain, {"data": b"y"})]
    path = tmp_path / "000001.seg"
    write_segment(path, rows)
    reader = SegmentReader(path)
    got = reader.row_values(0)
    assert got["filename"] == "odd.jpg"
    assert got["moderation_score"] == float("inf")
    assert got["exif"] == {"n": 2**70}
    assert reader.row_values(1)["tags"] == ["é", "x"]
    assert reader.row_values(1)["filename"] == "plain.jpg"
