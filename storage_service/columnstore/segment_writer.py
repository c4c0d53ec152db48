"""Writes rows into an immutable segment file (layout in format.py); the file appears whole."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from storage_service.columnstore import format as fmt
from storage_service.columnstore.row import RowSource
from storage_service.columnstore.schema import BLOB_COLUMNS, SMALL_COLUMNS, Kind


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_segment(path: Path, rows: Sequence[RowSource]) -> None:
    """Write `rows` to `path` via a temporary file, fsync it, rename it, fsync the directory."""
    tmp = path.with_suffix(".tmp")
    directory: dict[str, Any] = {"rows": len(rows), "columns": {}}
    with tmp.open("wb") as f:
        for column in SMALL_COLUMNS:
            stored, raw_length, flags = fmt.encode_block(
                column.kind, [r.value(column.name) for r in rows]
            )
            directory["columns"][column.name] = {
                "kind": column.kind.value,
                "offset": f.tell(),
                "length": len(stored),
                "raw": raw_length,
                "crc": fmt.checksum(stored),
                "flags": flags,
            }
            f.write(stored)
        for column in BLOB_COLUMNS:
            width = 4 if column.kind is Kind.VECTOR else 1
            start = f.tell()
            entries = np.zeros(len(rows), dtype=fmt.BLOB_ENTRY)
            for i, row in enumerate(rows):
                raw = row.blob(column.name)
                stored, flags = fmt.encode_blob(raw, width)
                entries[i] = (f.tell(), len(stored), len(raw), fmt.checksum(stored), flags)
                f.write(stored)
            index = entries.tobytes()
            index_offset = f.tell()
            f.write(index)
            directory["columns"][column.name] = {
                "kind": column.kind.value,
                "offset": start,
                "length": f.tell() - start,
                "index_offset": index_offset,
                "raw": int(entries["raw"].sum()),
                "stored": int(entries["stored"].sum()),
                "crc": fmt.checksum(index),
                "flags": 0,
            }
        encoded = fmt.encode_directory(directory)
        dir_offset = f.tell()
        f.write(encoded)
        f.write(fmt.encode_trailer(dir_offset, encoded))
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    fsync_dir(path.parent)
