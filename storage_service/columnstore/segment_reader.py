"""Reads one immutable segment: small columns whole, blob values one at a time by row, and
one row's metadata (`row_values`) from its `row_meta` frame. Segments written before they
carried an index and `row_meta` are read all the same: their index is computed from the
columns once per open, and their rows come from decoded columns kept in a small LRU shared by
every reader (bounded in rows, so old segments never pin the whole store in memory)."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from storage_service.columnstore import format as fmt
from storage_service.columnstore.errors import DataLossError
from storage_service.columnstore.fs import FileSystem, OsFileSystem
from storage_service.columnstore.id_array import pack_column
from storage_service.columnstore.schema import BY_NAME, FIXED_DTYPES, SMALL_COLUMNS, Kind
from storage_service.columnstore.taken_index import date_taken_ms

# Rows of older segments (without row_meta) kept decoded, across every reader.
LEGACY_CACHE_ROWS = 200_000
_legacy_lock = threading.Lock()
_legacy: OrderedDict[tuple[int, int], list[dict[str, Any]]] = OrderedDict()
_legacy_rows = 0


def _loads(data: bytes) -> dict[str, Any]:
    """A row_meta record (written by json.dumps): orjson reads one in a quarter of the time
    (what a get by id spends most on after decoding), json what orjson refuses (NaN or
    infinity, integers past 64 bits)."""
    try:
        record: dict[str, Any] = orjson.loads(data)
    except orjson.JSONDecodeError:
        record = json.loads(data)
    return record


def _legacy_rows_of(reader: SegmentReader) -> list[dict[str, Any]]:
    global _legacy_rows
    key = (id(reader), reader.segment_id)
    with _legacy_lock:
        rows = _legacy.get(key)
        if rows is not None:
            _legacy.move_to_end(key)
            return rows
    columns = {
        c.name: reader.ids() if c.name == "id" else reader.column(c.name) for c in SMALL_COLUMNS
    }
    rows = [{n: v[i] for n, v in columns.items()} for i in range(reader.row_count)]
    with _legacy_lock:
        _legacy[key] = rows
        _legacy_rows += len(rows)
        while _legacy_rows > LEGACY_CACHE_ROWS and len(_legacy) > 1:
            _old, dropped = _legacy.popitem(last=False)
            _legacy_rows -= len(dropped)
    return rows


class SegmentReader:
    """An open segment file. Readers may outlive `retire()`: the descriptor stays valid after
    the file is unlinked and is closed when the last reference goes."""

    def __init__(self, path: Path, fs: FileSystem | None = None) -> None:
        self.path = path
        self.name = f"{path.parent.name}/{path.name}"
        self.segment_id = int(path.stem)
        self._fs = fs or OsFileSystem()
        self._file = self._fs.open_read(path)
        try:
            self.file_bytes = self._file.size()
            self._directory = self._read_directory()
        except BaseException:
            self._file.close()
            raise
        self.row_count: int = self._directory["rows"]
        self._columns: dict[str, dict[str, Any]] = self._directory["columns"]
        self._blob_index: dict[str, np.ndarray] = {}
        # What the segment says of itself (absent in segments written before they did).
        self.described = "segment_id" in self._directory
        self.seq_min: int = self._directory.get("seq_min", 0)
        self.seq_max: int = self._directory.get("seq_max", 0)
        self.covers: list[tuple[int, int]] = [
            (int(a), int(b)) for a, b in self._directory.get("covers", ())
        ]
        self.replaces: list[int] = [int(i) for i in self._directory.get("replaces", ())]

    def _read_directory(self) -> dict[str, Any]:
        """The directory; from its backup copy when the footer is damaged (then
        `footer_damage` says what was wrong)."""
        self.footer_damage = ""
        try:
            return self._read_main_directory()
        except DataLossError as e:
            data = self._file.pread(self.file_bytes, 0)
            backup = fmt.find_backup_directory(data)
            if backup is None:
                raise
            self.footer_damage = str(e)
            directory: dict[str, Any] = json.loads(backup)
            return directory

    def _read_main_directory(self) -> dict[str, Any]:
        if self.file_bytes < fmt.TRAILER.size:
            raise DataLossError(self.name, "file too short for a segment")
        trailer = self._file.pread(fmt.TRAILER.size, self.file_bytes - fmt.TRAILER.size)
        try:
            dir_offset, dir_length, dir_crc, _version = fmt.decode_trailer(trailer)
        except ValueError as e:
            raise DataLossError(self.name, str(e)) from e
        if dir_offset + dir_length > self.file_bytes:
            raise DataLossError(self.name, "directory out of bounds (truncated file?)")
        encoded = self._file.pread(dir_length, dir_offset)
        if len(encoded) != dir_length or fmt.checksum(encoded) != dir_crc:
            raise DataLossError(self.name, "directory checksum mismatch")
        try:
            directory: dict[str, Any] = json.loads(encoded)
        except ValueError as e:
            raise DataLossError(self.name, f"directory does not parse: {e}") from e
        return directory

    def __del__(self) -> None:
        f = getattr(self, "_file", None)
        if f is not None:
            try:  # noqa: SIM105 - contextlib may be torn down at interpreter exit too
                f.close()
            except Exception:  # noqa: BLE001 - at interpreter exit `os` may be torn down
                pass

    def retire(self) -> None:
        """Remove the file; open readers keep working until they drop this object."""
        if self._fs.exists(self.path):
            self._fs.unlink(self.path)

    def _pread(self, length: int, offset: int) -> bytes:
        # An OSError (EIO...) propagates as it is: it may pass, unlike a checksum failure.
        data = self._file.pread(length, offset)
        if len(data) != length:
            raise DataLossError(self.name, f"short read at offset {offset}")
        return data

    def has_column(self, name: str) -> bool:
        return name in self._columns

    def array(self, name: str) -> np.ndarray:
        """A fixed-width small column as a numpy array (verified; default-filled when the
        segment predates the column)."""
        column = BY_NAME.get(name)
        kind = column.kind if column is not None else Kind.I64
        dtype = np.dtype(FIXED_DTYPES[kind])
        entry = self._columns.get(name)
        if entry is None:
            default = column.default if column is not None else 0
            return np.full(self.row_count, default, dtype=dtype)
        stored = self._pread(entry["length"], entry["offset"])
        if fmt.checksum(stored) != entry["crc"]:
            raise DataLossError(self.name, f"column {name!r} block checksum mismatch")
        try:
            data = fmt._decompress(stored, entry["raw"]) if entry["flags"] & 1 else stored
            if entry["flags"] & fmt.FLAG_SHUFFLED:
                data = fmt.unshuffle(data, dtype.itemsize)
            return np.frombuffer(data, dtype=dtype, count=self.row_count).copy()
        except Exception as e:  # noqa: BLE001 - any decode failure of verified bytes is loss
            raise DataLossError(self.name, f"column {name!r} does not decode: {e}") from e

    def check_small_blocks(self) -> None:
        """Checksum every small column block (without decoding): DataLossError naming the
        first damaged one. The id column is left to `ids()`, which falls back to its copy."""
        for column in SMALL_COLUMNS:
            entry = self._columns.get(column.name)
            if entry is None or column.name == "id":
                continue
            stored = self._pread(entry["length"], entry["offset"])
            if fmt.checksum(stored) != entry["crc"]:
                raise DataLossError(self.name, f"column {column.name!r} block checksum mismatch")

    @property
    def has_index(self) -> bool:
        return "row_meta" in self._columns and "ix_taken" in self._columns

    def index_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(date taken ms, filename hash, sha256 hash) per row: the segment's own index, or
        computed from its columns when it predates one."""
        if "ix_taken" in self._columns:
            return self.array("ix_taken"), self.array("ix_filename"), self.array("ix_sha256")
        exifs = self.column("exif")
        created = self.column("created_at_ms")
        taken = np.fromiter(
            (date_taken_ms(e or {}, int(c))[0] for e, c in zip(exifs, created, strict=True)),
            np.int64,
            self.row_count,
        )
        names = np.fromiter(
            (fmt.key_hash(v) for v in self.column("filename")), np.int64, self.row_count
        )
        shas = np.fromiter(
            (fmt.key_hash(v) for v in self.column("sha256")), np.int64, self.row_count
        )
        return taken, names, shas

    def row_values(self, row: int) -> dict[str, Any]:
        """One row's small columns (those at their default may be left out)."""
        if "row_meta" not in self._columns:
            return _legacy_rows_of(self)[row]
        return _loads(self.blob("row_meta", row))

    def column(self, name: str) -> list[Any]:
        """All values of a small column, verified; the default for columns added later."""
        entry = self._columns.get(name)
        if entry is None:
            return [BY_NAME[name].default] * self.row_count
        stored = self._pread(entry["length"], entry["offset"])
        if fmt.checksum(stored) != entry["crc"]:
            raise DataLossError(self.name, f"column {name!r} block checksum mismatch")
        try:
            return fmt.decode_block(
                Kind(entry["kind"]), stored, entry["raw"], entry["flags"], self.row_count
            )
        except Exception as e:  # noqa: BLE001 - any decode failure of verified bytes is loss
            raise DataLossError(self.name, f"column {name!r} does not decode: {e}") from e

    def ids(self) -> list[str]:
        """The id column, from its backup copy when the first copy is damaged."""
        try:
            return self.column("id")
        except DataLossError:
            if "id_backup" not in self._columns:
                raise
        return self._column_block("id_backup", Kind.STR)

    def id_table(self) -> tuple[np.ndarray, dict[int, str]]:
        """The id column as fixed-width bytes (id_array.pack_column: u8[rows, 16], and the
        rows whose id is not 32 lowercase hex digits), from its backup copy when the first
        copy is damaged: what opening a store reads, with no Python string per id."""
        try:
            return self._id_block("id")
        except DataLossError:
            if "id_backup" not in self._columns:
                raise
        return self._id_block("id_backup")

    def _id_block(self, name: str) -> tuple[np.ndarray, dict[int, str]]:
        entry = self._columns[name]
        stored = self._pread(entry["length"], entry["offset"])
        if fmt.checksum(stored) != entry["crc"]:
            raise DataLossError(self.name, f"column {name!r} block checksum mismatch")
        try:
            compressed = entry["flags"] & fmt.FLAG_COMPRESSED
            data = fmt._decompress(stored, entry["raw"]) if compressed else stored
            rows = self.row_count
            lengths = np.frombuffer(fmt.unshuffle(bytes(data[: 4 * rows]), 4), dtype="<u4")
            body = bytes(data[4 * rows :])
            if int(lengths.sum()) != len(body):
                raise ValueError("id lengths do not match the block")
            return pack_column(lengths, body)
        except Exception as e:  # noqa: BLE001 - any decode failure of verified bytes is loss
            raise DataLossError(self.name, f"column {name!r} does not decode: {e}") from e

    def _column_block(self, name: str, kind: Kind) -> list[Any]:
        entry = self._columns[name]
        stored = self._pread(entry["length"], entry["offset"])
        if fmt.checksum(stored) != entry["crc"]:
            raise DataLossError(self.name, f"column {name!r} block checksum mismatch")
        try:
            return fmt.decode_block(kind, stored, entry["raw"], entry["flags"], self.row_count)
        except Exception as e:  # noqa: BLE001 - any decode failure of verified bytes is loss
            raise DataLossError(self.name, f"column {name!r} does not decode: {e}") from e

    def verify(self, progress: Callable[[int], None] | None = None) -> list[tuple[str, int, str]]:
        """Read and check every block and every blob value: (column, row or -1, detail) of
        each one that fails. `progress(bytes)` is called as bytes are checked."""
        problems: list[tuple[str, int, str]] = []
        if self.footer_damage:
            problems.append(("footer", -2, f"{self.footer_damage} (read from its backup copy)"))
        for name, entry in self._columns.items():
            if "index_offset" not in entry:
                try:
                    self._column_block(name, Kind(entry["kind"]))
                except DataLossError as e:
                    problems.append((name, -1, str(e)))
                if progress:
                    progress(int(entry["length"]))
                continue
            try:
                index = self._index(name)
            except DataLossError as e:
                problems.append((name, -1, str(e)))
                if progress:
                    progress(int(entry["length"]))
                continue
            assert index is not None
            for row in range(self.row_count):
                try:
                    self.blob(name, row)
                except DataLossError as e:
                    problems.append((name, row, str(e)))
                if progress:
                    progress(int(index[row]["stored"]))
        return problems

    def _index(self, name: str) -> np.ndarray | None:
        index = self._blob_index.get(name)
        if index is None:
            entry = self._columns.get(name)
            if entry is None:
                return None
            raw = self._pread(self.row_count * fmt.BLOB_ENTRY.itemsize, entry["index_offset"])
            if fmt.checksum(raw) != entry["crc"]:
                raise DataLossError(self.name, f"column {name!r} index checksum mismatch")
            index = np.frombuffer(raw, dtype=fmt.BLOB_ENTRY)
            self._blob_index[name] = index
        return index

    def blob(self, name: str, row: int) -> bytes:
        """One value of a blob column, verified; never returns bytes that fail their CRC."""
        index = self._index(name)
        if index is None:
            return bytes(BY_NAME[name].default)
        offset, stored_length, raw_length, crc, flags = index[row].tolist()
        if flags & fmt.FLAG_DAMAGED:
            raise DataLossError(
                self.name, f"column {name!r} row {row} was already damaged when merged here"
            )
        stored = self._pread(stored_length, offset)
        if fmt.checksum(stored) != crc:
            raise DataLossError(self.name, f"column {name!r} row {row} checksum mismatch")
        column = BY_NAME.get(name)
        width = 4 if column is not None and column.kind is Kind.VECTOR else 1
        try:
            data = fmt.decode_blob(stored, raw_length, flags, width)
        except Exception as e:  # noqa: BLE001
            raise DataLossError(self.name, f"column {name!r} row {row} does not decode") from e
        if len(data) != raw_length:
            raise DataLossError(self.name, f"column {name!r} row {row} has the wrong length")
        return data

    def blob_location(self, name: str, row: int) -> tuple[int, int]:
        """(file offset, stored length) of one blob value: lets tests aim at its bytes."""
        index = self._index(name)
        assert index is not None
        return int(index[row]["offset"]), int(index[row]["stored"])

    def block_location(self, name: str) -> tuple[int, int]:
        """(file offset, stored length) of a column's block."""
        entry = self._columns[name]
        return int(entry["offset"]), int(entry["length"])

    def column_bytes(self) -> dict[str, tuple[int, int]]:
        """Per column: (raw bytes, stored bytes)."""
        out: dict[str, tuple[int, int]] = {}
        for name, entry in self._columns.items():
            stored = entry.get("stored", entry["length"])
            out[name] = (entry["raw"], stored)
        return out
