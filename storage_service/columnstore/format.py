"""The on-disk byte layout of a segment file: pure encoding and decoding, no file I/O.

A segment holds rows column by column. Every column is its own block; every block (and every
value of a blob column) carries a CRC-32, so one flipped bit is reported, never served. All
integers are little-endian.

    offset 0
    +-------------------------------------------------------------+
    | block "seq"      zstd(byte-shuffled int64[rows])            |  small columns: one zstd
    | block "kind"     zstd(uint8[rows])                          |  frame each (or raw when
    | block "id"       zstd(u32 lengths[rows] shuffled | utf-8)   |  compression would not
    | ...              one block per small column                 |  help, flag bit 0 clear)
    +-------------------------------------------------------------+
    | block "data"     value 0 | value 1 | ... | value n-1        |  blob columns: each value
    |                  index: n x BlobEntry (21 bytes)            |  its own frame, raw when it
    | block "thumb_small", "thumb_preview", "feature_vector" ...  |  does not shrink (JPEG...)
    +-------------------------------------------------------------+
    | backup directory b"IRCOLDIR" | length u32 | crc32 u32 |      |
    |                  | the same JSON as below (read when the    |
    |                  | directory or trailer is damaged)         |
    +-------------------------------------------------------------+
    | directory        UTF-8 JSON: rows, and per column: kind,    |
    |                  offset, length, raw, crc32, flags,         |
    |                  (blob columns) index_offset, stored        |
    +-------------------------------------------------------------+
    | trailer (28 B)   dir_offset u64 | dir_length u32 |          |
    |                  dir_crc32 u32 | format_version u16 |       |
    |                  reserved u16 | magic b"IRCOLSEG"           |
    +-------------------------------------------------------------+

    BlobEntry: offset u64 (from segment start) | stored u32 | raw u32 | crc32 u32 | flags u8

Flags: bit 0 = zstd-compressed, bit 1 = byte-shuffled before compression, bit 2 (blob values)
= lost before this segment was written (a compaction copied a damaged value as damaged).
The directory also names the segment (segment_id, seq_min, seq_max, covers, replaces) and
holds a second copy of the id block (`id_backup`): see segment_writer.py. Segments written
since issue 13 also carry the index of what they hold, so opening a store reads these and the
fixed-width columns, never the rows: `ix_taken` (date taken, ms), `ix_filename` and `ix_sha256`
(64-bit hashes, see `key_hash`), each an i64 block; and `row_meta`, a blob column whose value
per row is the JSON of that row's small columns (defaults left out), so one image's metadata
is one read of a few hundred bytes. A column missing from
the directory (added to the schema after the segment was written) reads as its default.
"""

from __future__ import annotations

import hashlib
import json
import struct
import threading
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import zstandard

from storage_service.columnstore.schema import FIXED_DTYPES, Kind

MAGIC = b"IRCOLSEG"
FORMAT_VERSION = 1
TRAILER = struct.Struct("<QIIHH8s")

FLAG_COMPRESSED = 1
FLAG_SHUFFLED = 2
# A blob value that could not be read when this segment was written (a damaged value in a
# segment a compaction merged): no bytes are stored, reads answer data loss.
FLAG_DAMAGED = 4

BLOB_ENTRY = np.dtype(
    [("offset", "<u8"), ("stored", "<u4"), ("raw", "<u4"), ("crc", "<u4"), ("flags", "u1")]
)

# Chosen by measurement (benchmarks/storage_bench.py prints the table): on our metadata blocks
# level 9 gives ~8% smaller blocks than level 3 at a cost that does not matter for blocks of a
# few hundred KiB written in the background; blob values use level 3 because they are large and
# usually do not compress at all.
SMALL_COLUMN_LEVEL = 9
BLOB_LEVEL = 3
# A blob is compressed only when a sample of it shrinks by at least this much.
BLOB_SAMPLE_BYTES = 64 * 1024
BLOB_MIN_SAVING = 0.05


def key_hash(text: str) -> int:
    """A 64-bit hash of a filename or sha256 (signed, to fit an i64 column): what the
    in-memory indexes keep instead of the strings themselves."""
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def checksum(data: bytes | memoryview) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def shuffle(raw: bytes, width: int) -> bytes:
    """Byte-shuffle: all first bytes, then all second bytes... (helps zstd on numbers)."""
    if width == 1 or not raw:
        return raw
    return np.frombuffer(raw, np.uint8).reshape(-1, width).T.tobytes()


def unshuffle(data: bytes, width: int) -> bytes:
    if width == 1 or not data:
        return data
    return np.frombuffer(data, np.uint8).reshape(width, -1).T.tobytes()


_local = threading.local()


def _compress(raw: bytes, level: int) -> bytes:
    # One compressor per thread and level: making one costs more than a small frame.
    compressors = getattr(_local, "compressors", None)
    if compressors is None:
        compressors = _local.compressors = {}
    compressor = compressors.get(level)
    if compressor is None:
        compressor = compressors[level] = zstandard.ZstdCompressor(level=level)
    return compressor.compress(raw)


def _decompress(stored: bytes, raw_length: int) -> bytes:
    # One decompressor per thread: making one costs more than decompressing a small frame.
    decompressor = getattr(_local, "zstd", None)
    if decompressor is None:
        decompressor = _local.zstd = zstandard.ZstdDecompressor()
    return decompressor.decompress(stored, max_output_size=max(raw_length, 1))


# --- small columns ---------------------------------------------------------------------------


def encode_values(kind: Kind, values: Sequence[Any]) -> tuple[bytes, int]:
    """Plain (uncompressed) bytes of a small column, and the width to shuffle them by."""
    if kind in FIXED_DTYPES:
        arr = np.asarray(values, dtype=FIXED_DTYPES[kind])
        return arr.tobytes(), arr.dtype.itemsize
    if kind is Kind.JSON:
        values = [json.dumps(v, separators=(",", ":"), ensure_ascii=False) for v in values]
    encoded = [str(v).encode() for v in values]
    lengths = np.asarray([len(e) for e in encoded], dtype="<u4")
    return shuffle(lengths.tobytes(), 4) + b"".join(encoded), 1


def decode_values(kind: Kind, raw: bytes, rows: int) -> list[Any]:
    if kind in FIXED_DTYPES:
        dtype = np.dtype(FIXED_DTYPES[kind])
        return np.frombuffer(raw, dtype=dtype, count=rows).tolist()
    lengths = np.frombuffer(unshuffle(raw[: 4 * rows], 4), dtype="<u4")
    out: list[Any] = []
    pos = 4 * rows
    for length in lengths.tolist():
        text = raw[pos : pos + length].decode()
        pos += length
        out.append(json.loads(text) if kind is Kind.JSON else text)
    return out


def encode_block(kind: Kind, values: Sequence[Any]) -> tuple[bytes, int, int]:
    """(stored bytes, raw length, flags) of one small column block."""
    raw, width = encode_values(kind, values)
    # Fixed-width numbers are shuffled whole; strings shuffled their length prefix above.
    shuffled = shuffle(raw, width)
    flags = FLAG_SHUFFLED if width > 1 else 0
    stored = _compress(shuffled, SMALL_COLUMN_LEVEL)
    if len(stored) < len(shuffled):
        return stored, len(raw), flags | FLAG_COMPRESSED
    return shuffled, len(raw), flags


def decode_block(kind: Kind, stored: bytes, raw_length: int, flags: int, rows: int) -> list[Any]:
    data = _decompress(stored, raw_length) if flags & FLAG_COMPRESSED else stored
    if flags & FLAG_SHUFFLED:
        data = unshuffle(data, np.dtype(FIXED_DTYPES[kind]).itemsize)
    return decode_values(kind, data, rows)


# --- blob values -----------------------------------------------------------------------------


_COMPRESSED_MAGICS = (b"\xff\xd8\xff", b"\x89PNG", b"RIFF", b"GIF8")


def encode_blob(raw: bytes, shuffle_width: int = 1) -> tuple[bytes, int]:
    """(stored bytes, flags) of one blob value: compressed only when that pays off."""
    if not raw:
        return b"", 0
    if shuffle_width == 1 and raw.startswith(_COMPRESSED_MAGICS):
        return raw, 0  # JPEG, PNG, WebP, GIF: already compressed, not worth a trial
    flags = 0
    data = raw
    if shuffle_width > 1 and len(raw) % shuffle_width == 0:
        data = shuffle(raw, shuffle_width)
        flags |= FLAG_SHUFFLED
    sample = data[:BLOB_SAMPLE_BYTES]
    if len(_compress(sample, BLOB_LEVEL)) > len(sample) * (1 - BLOB_MIN_SAVING):
        return data, flags
    stored = _compress(data, BLOB_LEVEL)
    if len(stored) > len(data) * (1 - BLOB_MIN_SAVING):
        return data, flags
    return stored, flags | FLAG_COMPRESSED


def decode_blob(stored: bytes, raw_length: int, flags: int, shuffle_width: int = 1) -> bytes:
    data = _decompress(stored, raw_length) if flags & FLAG_COMPRESSED else stored
    if flags & FLAG_SHUFFLED:
        data = unshuffle(data, shuffle_width)
    return data


# --- directory and trailer -------------------------------------------------------------------


def encode_directory(directory: dict[str, Any]) -> bytes:
    return json.dumps(directory, separators=(",", ":")).encode()


BACKUP_MAGIC = b"IRCOLDIR"
BACKUP_HEADER = struct.Struct("<8sII")  # magic, directory length, directory crc32


def encode_backup_directory(directory: bytes) -> bytes:
    """The framed second copy of the directory, written just before the first."""
    return BACKUP_HEADER.pack(BACKUP_MAGIC, len(directory), checksum(directory)) + directory


def find_backup_directory(data: bytes) -> bytes | None:
    """The last intact backup directory in a segment's bytes, or None."""
    at = data.rfind(BACKUP_MAGIC)
    while at >= 0:
        if at + BACKUP_HEADER.size <= len(data):
            _magic, length, crc = BACKUP_HEADER.unpack_from(data, at)
            start = at + BACKUP_HEADER.size
            body = data[start : start + length]
            if len(body) == length and checksum(body) == crc:
                return body
        at = data.rfind(BACKUP_MAGIC, 0, at)
    return None


def encode_trailer(dir_offset: int, directory: bytes) -> bytes:
    return TRAILER.pack(dir_offset, len(directory), checksum(directory), FORMAT_VERSION, 0, MAGIC)


def decode_trailer(trailer: bytes) -> tuple[int, int, int, int]:
    """(dir_offset, dir_length, dir_crc, version); ValueError when this is no segment."""
    if len(trailer) != TRAILER.size:
        raise ValueError("file too short for a segment trailer")
    dir_offset, dir_length, dir_crc, version, _reserved, magic = TRAILER.unpack(trailer)
    if magic != MAGIC:
        raise ValueError(f"bad magic {magic!r}")
    if version > FORMAT_VERSION:
        raise ValueError(f"segment format version {version} is newer than {FORMAT_VERSION}")
    return dir_offset, dir_length, dir_crc, version
