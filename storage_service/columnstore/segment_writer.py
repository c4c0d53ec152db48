"""Writes rows into an immutable segment file (layout in format.py); the file appears whole.

Besides the columns, the directory describes the segment itself, so a lost MANIFEST can be
rebuilt from the files: `segment_id`, `seq_min`/`seq_max` of its rows, `covers` (the ranges of
sequence numbers whose every log record this segment accounts for: flushed here, or dropped by
a merge), and `replaces` (the segments a compaction merged into it). The id column is written
twice (`id` and `id_backup`, separate checksums), so one damaged block cannot hide which images
a segment holds. A second copy of the directory (framed, with its own CRC) precedes the
first, so a damaged footer or trailer does not make the segment unreadable.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zstandard

from storage_service.columnstore import format as fmt
from storage_service.columnstore.errors import DataLossError
from storage_service.columnstore.fs import FileSystem, OsFileSystem
from storage_service.columnstore.row import RowSource
from storage_service.columnstore.schema import BLOB_COLUMNS, SMALL_COLUMNS, Kind
from storage_service.columnstore.taken_index import date_taken_ms

log = logging.getLogger(__name__)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Out:
    """Sequential writes through a FileSystem file, buffered into large writes."""

    def __init__(self, f: Any, rate_bytes_per_s: int = 0) -> None:
        self._f = f
        self._buf: list[bytes] = []
        self._buffered = 0
        self._flushed = 0
        # A background merge sleeps so it writes no faster than this (0: no limit).
        self._rate = rate_bytes_per_s
        self._started = time.monotonic()

    def tell(self) -> int:
        return self._flushed + self._buffered

    def write(self, data: bytes) -> None:
        self._buf.append(data)
        self._buffered += len(data)
        if self._buffered >= 4 << 20:
            self.flush()

    def flush(self) -> None:
        data = memoryview(b"".join(self._buf))
        self._buf, self._buffered = [], 0
        while data:
            written = self._f.pwrite(data, self._flushed)
            data = data[written:]
            self._flushed += written
        if self._rate > 0:
            ahead = self._flushed / self._rate - (time.monotonic() - self._started)
            if ahead > 0:
                time.sleep(ahead)


def _row_meta_block(
    out: _Out, directory: dict[str, Any], small: dict[str, list[Any]], count: int
) -> None:
    """`row_meta`: per row, the JSON of its small columns (defaults left out), each value
    its own checksummed frame like a blob's."""
    defaults = [(c.name, c.default) for c in SMALL_COLUMNS]
    zstd = zstandard.ZstdCompressor(level=fmt.BLOB_LEVEL)
    start = out.tell()
    entries = np.zeros(count, dtype=fmt.BLOB_ENTRY)
    for i in range(count):
        record = {}
        for name, default in defaults:
            value = small[name][i]
            if value != default or name == "id":
                record[name] = value
        raw = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()
        packed = zstd.compress(raw)
        stored, flags = (packed, fmt.FLAG_COMPRESSED) if len(packed) < len(raw) else (raw, 0)
        entries[i] = (out.tell(), len(stored), len(raw), fmt.checksum(stored), flags)
        out.write(stored)
    index = entries.tobytes()
    index_offset = out.tell()
    out.write(index)
    directory["columns"]["row_meta"] = {
        "kind": Kind.BLOB.value,
        "offset": start,
        "length": out.tell() - start,
        "index_offset": index_offset,
        "raw": int(entries["raw"].sum()),
        "stored": int(entries["stored"].sum()),
        "crc": fmt.checksum(index),
        "flags": 0,
    }


def write_segment(
    path: Path,
    rows: Sequence[RowSource],
    *,
    fs: FileSystem | None = None,
    covers: Sequence[tuple[int, int]] = (),
    replaces: Sequence[int] = (),
    rate_bytes_per_s: int = 0,
    with_index: bool = True,
) -> list[tuple[int, str, str]]:
    """Write `rows` to `path` via a temporary file, fsync it, rename it, fsync the directory.

    A blob that cannot be read (a damaged value in a segment being merged) is written as a
    damaged marker, not fatal: returns (row, column, detail) of each. On any failure the
    temporary file is removed and the error raised.
    """
    fs = fs or OsFileSystem()
    tmp = path.with_suffix(".tmp")
    seqs = [int(r.value("seq")) for r in rows]
    directory: dict[str, Any] = {
        "rows": len(rows),
        "segment_id": int(path.stem),
        "seq_min": min(seqs, default=0),
        "seq_max": max(seqs, default=0),
        "covers": [list(c) for c in covers],
        "replaces": list(replaces),
        "columns": {},
    }
    damaged: list[tuple[int, str, str]] = []
    f = fs.open_write(tmp, create=True, truncate=True)
    try:
        out = _Out(f, rate_bytes_per_s)

        def small_block(name: str, kind: Kind, values: Sequence[Any]) -> None:
            stored, raw_length, flags = fmt.encode_block(kind, values)
            directory["columns"][name] = {
                "kind": kind.value,
                "offset": out.tell(),
                "length": len(stored),
                "raw": raw_length,
                "crc": fmt.checksum(stored),
                "flags": flags,
            }
            out.write(stored)

        small: dict[str, list[Any]] = {}
        for column in SMALL_COLUMNS:
            values = [r.value(column.name) for r in rows]
            small[column.name] = values
            small_block(column.name, column.kind, values)
            if column.name == "id":
                small_block("id_backup", column.kind, values)
        # The segment's index (what opening a store reads instead of the rows); without it,
        # the layout of segments written before issue 13 (tests read those).
        if with_index:
            small_block(
                "ix_taken",
                Kind.I64,
                [
                    date_taken_ms(exif or {}, int(created))[0]
                    for exif, created in zip(small["exif"], small["created_at_ms"], strict=True)
                ],
            )
            small_block("ix_filename", Kind.I64, [fmt.key_hash(v) for v in small["filename"]])
            small_block("ix_sha256", Kind.I64, [fmt.key_hash(v) for v in small["sha256"]])
            _row_meta_block(out, directory, small, len(rows))
        for column in BLOB_COLUMNS:
            width = 4 if column.kind is Kind.VECTOR else 1
            start = out.tell()
            entries = np.zeros(len(rows), dtype=fmt.BLOB_ENTRY)
            for i, row in enumerate(rows):
                try:
                    raw = row.blob(column.name)
                except DataLossError as e:
                    damaged.append((i, column.name, str(e)))
                    entries[i] = (out.tell(), 0, 0, fmt.checksum(b""), fmt.FLAG_DAMAGED)
                    continue
                stored, flags = fmt.encode_blob(raw, width)
                entries[i] = (out.tell(), len(stored), len(raw), fmt.checksum(stored), flags)
                out.write(stored)
            index = entries.tobytes()
            index_offset = out.tell()
            out.write(index)
            directory["columns"][column.name] = {
                "kind": column.kind.value,
                "offset": start,
                "length": out.tell() - start,
                "index_offset": index_offset,
                "raw": int(entries["raw"].sum()),
                "stored": int(entries["stored"].sum()),
                "crc": fmt.checksum(index),
                "flags": 0,
            }
        encoded = fmt.encode_directory(directory)
        out.write(fmt.encode_backup_directory(encoded))
        dir_offset = out.tell()
        out.write(encoded)
        out.write(fmt.encode_trailer(dir_offset, encoded))
        out.flush()
        f.sync()
        f.close()
        fs.rename(tmp, path)
        fs.sync_dir(path.parent)
    except BaseException:
        f.close()
        try:
            if fs.exists(tmp):
                fs.unlink(tmp)
        except OSError:
            log.warning("could not remove a partial segment", extra={"path": str(tmp)})
        raise
    return damaged
