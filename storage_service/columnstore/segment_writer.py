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

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from storage_service.columnstore import format as fmt
from storage_service.columnstore.errors import DataLossError
from storage_service.columnstore.fs import FileSystem, OsFileSystem
from storage_service.columnstore.row import RowSource
from storage_service.columnstore.schema import BLOB_COLUMNS, SMALL_COLUMNS, Kind

log = logging.getLogger(__name__)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Out:
    """Sequential writes through a FileSystem file, buffered into large writes."""

    def __init__(self, f: Any) -> None:
        self._f = f
        self._buf: list[bytes] = []
        self._buffered = 0
        self._flushed = 0

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


def write_segment(
    path: Path,
    rows: Sequence[RowSource],
    *,
    fs: FileSystem | None = None,
    covers: Sequence[tuple[int, int]] = (),
    replaces: Sequence[int] = (),
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
        out = _Out(f)
        for column in SMALL_COLUMNS:
            values = [r.value(column.name) for r in rows]
            stored, raw_length, flags = fmt.encode_block(column.kind, values)
            names = [column.name, "id_backup"] if column.name == "id" else [column.name]
            for name in names:
                directory["columns"][name] = {
                    "kind": column.kind.value,
                    "offset": out.tell(),
                    "length": len(stored),
                    "raw": raw_length,
                    "crc": fmt.checksum(stored),
                    "flags": flags,
                }
                out.write(stored)
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
