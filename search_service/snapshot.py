"""The on-disk snapshot format of the search index: one file, written whole or not at all.

Byte layout (little-endian):

    header   magic b"IRSEARCH" | u32 format version | u32 section count
    section  u16 name length | name (utf-8) | u8 kind | u64 payload length | u32 crc32(payload)
             | payload
    kind     0 raw bytes, 1 numpy array (.npy bytes), 2 JSON (zstd-compressed), 3 absent (None)

A reader that finds another version raises IndexFormatError before reading any section, so a
changed format is detected rather than misread; a bad checksum raises it too. Writes go to a
temporary file that is fsynced and renamed over the old one, then the directory is fsynced.

Sections are written as streams: a large array goes out in slices straight from its memory
(no second copy, and the GIL is let go between slices, so searches run alongside), JSON is
compressed a slice at a time, and a section's value may be a callable that is evaluated only
when its turn comes (the index hands over a frozen view whose costly parts are built here, off
its locks). The section header is written first with a placeholder length and checksum and
patched once the payload is out.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import mmap
import os
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import zstandard

from search_service.errors import IndexFormatError

MAGIC = b"IRSEARCH"
# 2: concepts, taken and camera fields; date column.
# 3: "seq" is storage's change-feed seq (issue 12), no longer search's own journal seq: an older
#    snapshot is not read (its seq means nothing to the feed); the feed replays from 0.
# 4: documents as columns (doc_store.py) instead of one JSON list; a version 3 snapshot is
#    still read (its documents rebuilt one by one) and the next snapshot is written as 4.
# 5: the keyword index's terms and suggestion table as arrays and NUL-separated text instead
#    of JSON in its meta (inverted_index.py): a few C calls to write and read instead of
#    seconds of Python at 1M documents; a version 4 snapshot is still read.
FORMAT_VERSION = 5
READABLE_VERSIONS = (3, 4, 5)
# Array sections read as read-only memory maps of the snapshot file instead of copies in
# anonymous memory (the int8 vector rows and their factors: 1.3 KB of the 3.4 KB a document
# takes): the kernel pages them in as they are read and may drop them under memory pressure.
# Their owner never writes to them (rows are only appended); see map_section.
# Since this session also the document store's columns (doc_store.py: strings as blobs and
# offsets, the number columns, labels as kinds and probabilities; about 410 B a document): a raw
# section (a blob) maps as a read-only uint8 array. The bytes on disk are the same as before.
_DOC_MAPPED = (
    *(
        f"{name}_{part}"
        for name in (
            "image_id",
            "filename",
            "owner",
            "ocr_text",
            "sha256",
            "camera_make",
            "camera_model",
            "extras",
        )
        for part in ("blob", "offsets")
    ),
    "moderation_score",
    "status",
    "created_at_unix_ms",
    "taken_at_unix_s",
    "favourite",
    "label_offsets",
    "label_kinds",
    "label_probs",
)
MAPPED_SECTIONS = frozenset(
    {
        "engine.vectors.rows",
        "engine.vectors.factors",
        *(f"engine.doc_columns.{name}" for name in _DOC_MAPPED),
    }
)
_HEADER = struct.Struct("<8sII")
_SECTION = struct.Struct("<BQI")
_RAW, _ARRAY, _JSON, _NONE = 0, 1, 2, 3
_JSON_SLICE = 500
# Bytes written (or checked) per call; a pause between two (2 MB: the kernel's copy of a
# slice into the page cache is a millisecond or so of a CPU a search may want).
_WRITE_SLICE = 2 << 20
_COMPRESS_SLICE = 1 << 20
# Python work between two chances for other threads to take the interpreter lock (Pacer), and
# the sleep that gives them the chance.
_PACE_S = 0.001
_PAUSE_S = 0.0001
# The longest a pause waits for the searches in flight to end (Foreground): a steady stream
# of searches slows a snapshot's work to about _PACE_S in every YIELD_MAX_S, never stops it.
YIELD_MAX_S = 0.01


class Foreground:
    """The searches in flight in this process (each inside `with FOREGROUND:`). A snapshot's
    pauses (Pacer, and between the slices it writes) wait while one is in flight, up to
    YIELD_MAX_S at a time: a search then has the interpreter lock and a CPU to itself instead
    of taking turns with the snapshot's work at each of its numpy calls (at 1M documents on 2
    cores a search that needs 40 ms of CPU took 90-140 ms while a snapshot was written, half
    of it waiting for a CPU). Between searches the snapshot goes on."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self.active = 0
        # Pauses that found a search in flight and waited for it (tests, the stall probe).
        self.waits = 0
        # When the last search started (time.monotonic()).
        self.last_started = float("-inf")

    def __enter__(self) -> None:
        with self._cond:
            self.active += 1
            self.last_started = time.monotonic()

    def searched_within(self, seconds: float) -> bool:
        """True while a search is in flight or one started in the last `seconds`."""
        return bool(self.active) or time.monotonic() - self.last_started < seconds

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self.active -= 1
            if not self.active:
                self._cond.notify_all()

    def wait_idle(self, timeout: float) -> None:
        """Return once no search is in flight, or after `timeout` seconds."""
        if not self.active:
            return
        with self._cond:
            if self.active:
                self.waits += 1
                self._cond.wait_for(lambda: not self.active, timeout)


FOREGROUND = Foreground()
_yielding = threading.local()


@contextlib.contextmanager
def yielding() -> Iterator[None]:
    """The calling thread's pauses wait for the searches in flight (Foreground) while inside
    this: a snapshot writing its frozen view, with no lock held (a pause under a lock that a
    search waits for would only make both wait)."""
    was = getattr(_yielding, "on", False)
    _yielding.on = True
    try:
        yield
    finally:
        _yielding.on = was


def pause() -> None:
    """A snapshot's pause: a chance for a thread waiting for the interpreter lock to take it,
    and inside yielding(), a wait while a search is in flight (Foreground)."""
    time.sleep(_PAUSE_S)
    if getattr(_yielding, "on", False):
        FOREGROUND.wait_idle(YIELD_MAX_S)


class Pacer:
    """Called often from a long Python loop of a snapshot: every _PACE_S of it, pauses (see
    pause()) so that a thread waiting for the interpreter lock takes it now. Otherwise that
    thread waits for the switch interval (5 ms) each time it wants the lock back, and a search
    that lets go of it a few dozen times (numpy calls) waited a hundred milliseconds or more
    while a snapshot ran."""

    def __init__(self) -> None:
        self._due = time.perf_counter() + _PACE_S

    def __call__(self) -> None:
        if time.perf_counter() >= self._due:
            pause()
            self._due = time.perf_counter() + _PACE_S


class JsonChunks:
    """A JSON value already encoded, as the byte pieces of one document (written as a JSON
    section without ever being one string)."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        self.pieces = pieces


class ArrayParts:
    """One array given as parts stacked along its first axis (the chunks of a ChunkedRows):
    written as one .npy array section, each part straight from its memory, so the file holds
    the same bytes as for the whole array and no whole copy is ever made."""

    def __init__(
        self,
        parts: list[np.ndarray],
        dtype: Any,
        row_shape: tuple[int, ...],
        on_written: Callable[[Path, str], None] | None = None,
    ) -> None:
        self.parts = parts
        self.dtype = np.dtype(dtype)
        self.row_shape = row_shape
        # Called with the snapshot's path and the section's name once the snapshot holding
        # these parts is in place (renamed and its directory synced).
        self.on_written = on_written
        for part in parts:
            if part.dtype != self.dtype or part.shape[1:] != row_shape:
                raise ValueError("array parts differ in dtype or row shape")

    @property
    def shape(self) -> tuple[int, ...]:
        return (sum(len(p) for p in self.parts), *self.row_shape)

    def to_array(self) -> np.ndarray:
        if not self.parts:
            return np.empty(self.shape, self.dtype)
        return np.concatenate(self.parts)


class BytesParts:
    """One raw (bytes) section given as parts written one after another: the file holds the
    same bytes as for b"".join(parts), and no joined copy is ever made."""

    def __init__(self, parts: list[Any]) -> None:
        self.parts = parts

    def to_bytes(self) -> bytes:
        return b"".join(memoryview(p).cast("B") for p in self.parts)


class Deferred:
    """A section's value made when its turn comes (make()), and on_written(path, name) called
    once the snapshot holding it is in place (renamed and its directory synced)."""

    def __init__(
        self, make: Callable[[], Any], on_written: Callable[[Path, str], None] | None = None
    ) -> None:
        self.make = make
        self.on_written = on_written

    def __call__(self) -> Any:
        return self.make()


def write_snapshot(path: Path, sections: dict[str, Any], version: int = FORMAT_VERSION) -> int:
    """Write `sections` (name -> bytes, ndarray, JSON-ready value or None); returns file size."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(_HEADER.pack(MAGIC, version, len(sections)))
        for name, value in sections.items():
            _write_section(f, name, value)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    fsync_dir(path.parent)
    _written(path, sections)
    return path.stat().st_size


def read_snapshot(path: Path) -> dict[str, Any]:
    with path.open("rb") as f:
        head = f.read(_HEADER.size)
        if len(head) < _HEADER.size:
            raise IndexFormatError(f"{path} is truncated")
        magic, version, count = _HEADER.unpack(head)
        if magic != MAGIC:
            raise IndexFormatError(f"{path} is not a search index snapshot")
        if version not in READABLE_VERSIONS:
            raise IndexFormatError(
                f"{path} has format version {version}; this build reads versions "
                f"{', '.join(map(str, READABLE_VERSIONS))}"
            )
        return dict(_read_section(f, path) for _ in range(count))


def _write_section(f: BinaryIO, name: str, value: Any) -> None:
    if callable(value):
        value = value()
    encoded = name.encode()
    f.write(struct.pack("<H", len(encoded)) + encoded)
    at = f.tell()
    f.write(_SECTION.pack(_NONE, 0, 0))
    pieces: Iterator[bytes | memoryview]
    if value is None:
        kind, pieces = _NONE, iter(())
    elif isinstance(value, bytes | bytearray | memoryview):
        kind, pieces = _RAW, _slices(memoryview(value).cast("B"))
    elif isinstance(value, np.ndarray):
        kind, pieces = _ARRAY, _array_pieces(value)
    elif isinstance(value, ArrayParts):
        kind, pieces = _ARRAY, _parts_pieces(value)
    elif isinstance(value, BytesParts):
        kind, pieces = _RAW, (s for p in value.parts for s in _slices(memoryview(p).cast("B")))
    elif isinstance(value, JsonChunks):
        kind, pieces = _JSON, _compressed(iter(value.pieces))
    else:
        kind, pieces = _JSON, _compressed(_json_pieces(value))
    length, crc = 0, 0
    pace = Pacer()
    for piece in pieces:
        f.write(piece)
        length += len(piece)
        crc = zlib.crc32(piece, crc)
        pace()
    end = f.tell()
    f.seek(at)
    f.write(_SECTION.pack(kind, length, crc))
    f.seek(end)


def _array_pieces(value: np.ndarray) -> Iterator[bytes | memoryview]:
    """The .npy bytes of `value`: its header, then its memory in slices (no full copy)."""
    arr = np.ascontiguousarray(value)
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, np.lib.format.header_data_from_array_1_0(arr))
    yield head.getvalue()
    flat = memoryview(arr.reshape(-1).view(np.uint8).data) if arr.size else memoryview(b"")
    yield from _slices(flat)


def _parts_pieces(value: ArrayParts) -> Iterator[bytes | memoryview]:
    """The .npy bytes of the parts stacked: one header for the whole, then each part's memory
    in slices."""
    head = io.BytesIO()
    header = {
        "descr": np.lib.format.dtype_to_descr(value.dtype),
        "fortran_order": False,
        "shape": value.shape,
    }
    np.lib.format.write_array_header_1_0(head, header)
    yield head.getvalue()
    for part in value.parts:
        arr = np.ascontiguousarray(part)
        if arr.size:
            yield from _slices(memoryview(arr.reshape(-1).view(np.uint8).data))


def _slices(flat: memoryview) -> Iterator[memoryview]:
    for start in range(0, len(flat), _WRITE_SLICE):
        yield flat[start : start + _WRITE_SLICE]


def _compressed(pieces: Iterator[bytes]) -> Iterator[bytes]:
    """The pieces as one zstd stream, fed _COMPRESS_SLICE at a time (one call over a large
    piece would hold the GIL for all of it)."""
    compressor = zstandard.ZstdCompressor(level=3).compressobj()
    for piece in pieces:
        view = memoryview(piece)
        for start in range(0, len(view), _COMPRESS_SLICE):
            out = compressor.compress(view[start : start + _COMPRESS_SLICE])
            if out:
                yield out
    yield compressor.flush()


def _json_pieces(value: Any) -> Iterator[bytes]:
    """`value` as compact JSON (the bytes of one json.dumps), in pieces: a dict with string
    keys and a long list are encoded a part at a time, so no single call holds the GIL for
    the whole of a large value (searches run alongside a snapshot)."""
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        items = list(value.items())
        if any(_large(v) for _, v in items) or len(items) > _JSON_SLICE:
            yield b"{"
            for start in range(0, len(items), _JSON_SLICE):
                part = items[start : start + _JSON_SLICE]
                if not any(_large(v) for _, v in part):  # small values: one call for all
                    yield (b"," if start else b"") + _json_bytes(dict(part))[1:-1]
                    continue
                for i, (k, v) in enumerate(part):
                    yield (b"," if start or i else b"") + _json_bytes(k) + b":"
                    yield from _json_pieces(v)
            yield b"}"
            return
    if isinstance(value, list) and len(value) > _JSON_SLICE:
        yield b"["
        for start in range(0, len(value), _JSON_SLICE):
            encoded = _json_bytes(value[start : start + _JSON_SLICE])[1:-1]
            if encoded:
                yield (b"," if start else b"") + encoded
        yield b"]"
        return
    yield _json_bytes(value)


def _large(value: Any) -> bool:
    return isinstance(value, dict | list) and len(value) > _JSON_SLICE


def json_list_pieces(items: Callable[[int, int], list[Any]], count: int) -> JsonChunks:
    """A JSON list of `count` items, made `_JSON_SLICE` at a time by items(start, stop)."""

    def pieces() -> Iterator[bytes]:
        yield b"["
        for start in range(0, count, _JSON_SLICE):
            part = json.dumps(
                items(start, min(count, start + _JSON_SLICE)),
                separators=(",", ":"),
                ensure_ascii=False,
            )[1:-1]
            if part:
                yield ((b"," if start else b"") + part.encode())
        yield b"]"

    return JsonChunks(pieces())


def _json_bytes(value: Any) -> bytes:
    """`value` as compact JSON. A long list is encoded a slice at a time (the same bytes as one
    json.dumps): one C call over 100k documents holds the GIL for a second or more, and
    searches run alongside a snapshot."""
    if not isinstance(value, list) or len(value) <= _JSON_SLICE:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    parts = [
        json.dumps(value[i : i + _JSON_SLICE], separators=(",", ":"), ensure_ascii=False)[1:-1]
        for i in range(0, len(value), _JSON_SLICE)
    ]
    return ("[" + ",".join(parts) + "]").encode()


def _read_section(f: BinaryIO, path: Path) -> tuple[str, Any]:
    try:
        (name_len,) = struct.unpack("<H", f.read(2))
        name = f.read(name_len).decode()
        kind, length, crc = _SECTION.unpack(f.read(_SECTION.size))
    except (struct.error, UnicodeDecodeError) as exc:
        raise IndexFormatError(f"{path} is truncated or damaged") from exc
    if kind in (_ARRAY, _RAW) and name in MAPPED_SECTIONS:
        return name, _read_mapped(f, path, name, length, crc, kind)
    # Read straight into memory an array can then use as is (np.empty: not zeroed first).
    payload = np.empty(length, np.uint8)
    view = memoryview(payload.data)
    if f.readinto(view) != length or zlib.crc32(view) != crc:  # type: ignore[attr-defined]
        raise IndexFormatError(f"{path}: section {name!r} is damaged (checksum mismatch)")
    if kind == _NONE:
        return name, None
    if kind == _RAW:
        return name, payload.tobytes()
    if kind == _ARRAY:
        return name, _array(payload, path, name)
    if kind == _JSON:
        # decompressobj: a streamed frame does not say its size up front
        data = zstandard.ZstdDecompressor().decompressobj().decompress(view)
        return name, json.loads(data)
    raise IndexFormatError(f"{path}: section {name!r} has unknown kind {kind}")


def _npy_header(head: io.BytesIO, path: Path, name: str) -> tuple[Any, bool, np.dtype, int]:
    """Shape, Fortran order, dtype and element count from an .npy header; `head` is left at
    the first byte of the data. Object arrays are refused (they would need pickle)."""
    try:
        major, _minor = np.lib.format.read_magic(head)
        if major == 1:
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(head)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(head)
    except ValueError as exc:
        raise IndexFormatError(f"{path}: section {name!r} is not an array") from exc
    if dtype.hasobject:
        raise IndexFormatError(f"{path}: section {name!r} holds objects")
    return shape, fortran, dtype, int(np.prod(shape, dtype=np.int64))


def _array(payload: np.ndarray, path: Path, name: str) -> np.ndarray:
    """An .npy payload as an array over the payload's own memory (no copy)."""
    head = io.BytesIO(payload[:4096].tobytes())
    shape, fortran, dtype, count = _npy_header(head, path, name)
    arr = np.frombuffer(payload.data, dtype=dtype, count=count, offset=head.tell())
    return arr.reshape(shape, order="F" if fortran else "C")


def _written(path: Path, sections: dict[str, Any]) -> None:
    """Tell the sections that asked (ArrayParts.on_written, Deferred.on_written) that `path`
    now holds them. The snapshot is in place already: a failing hook is logged, not raised."""
    for name, value in sections.items():
        hook = getattr(value, "on_written", None)
        if isinstance(value, ArrayParts | Deferred) and hook is not None:
            try:
                hook(path, name)
            except (OSError, ValueError, IndexFormatError):
                logging.getLogger(__name__).exception(
                    "snapshot written, but mapping its section failed",
                    extra={"path": str(path), "section": name},
                )


def _read_mapped(
    f: BinaryIO, path: Path, name: str, length: int, crc: int, kind: int = _ARRAY
) -> np.ndarray:
    """An array (or raw) section checked against its checksum (read once, a slice at a time,
    through the page cache: no anonymous copy), then mapped read-only from the file (a raw one
    as a uint8 array); `f` is left past it."""
    start = f.tell()
    buf = bytearray(min(length, _WRITE_SLICE))
    view = memoryview(buf)
    done, got_crc = 0, 0
    while done < length:
        n = f.readinto(view[: min(len(buf), length - done)])  # type: ignore[attr-defined]
        if not n:
            break
        got_crc = zlib.crc32(view[:n], got_crc)
        done += n
    if done != length or got_crc != crc:
        raise IndexFormatError(f"{path}: section {name!r} is damaged (checksum mismatch)")
    if kind == _RAW:
        return _map_raw(f.fileno(), start, length)
    return _map_array(f.fileno(), path, name, start, length)


def map_section(path: Path, name: str) -> np.ndarray:
    """Array section `name` of the snapshot at `path`, mapped read-only (not read, not checked:
    for a snapshot this process has just written)."""
    return map_sections(path, [name])[name]


def map_sections(path: Path, names: Iterable[str]) -> dict[str, np.ndarray]:
    """Sections `names` of the snapshot at `path` (arrays, and raw ones as uint8 arrays), mapped
    read-only, found in one pass over the section headers (not read, not checked: for a
    snapshot this process has just written)."""
    wanted = set(names)
    out: dict[str, np.ndarray] = {}
    with path.open("rb") as f:
        head = f.read(_HEADER.size)
        if len(head) < _HEADER.size or head[:8] != MAGIC:
            raise IndexFormatError(f"{path} is not a search index snapshot")
        for _ in range(_HEADER.unpack(head)[2]):
            (name_len,) = struct.unpack("<H", f.read(2))
            found = f.read(name_len).decode()
            kind, length, _crc = _SECTION.unpack(f.read(_SECTION.size))
            if found in wanted:
                if kind == _ARRAY:
                    out[found] = _map_array(f.fileno(), path, found, f.tell(), length)
                elif kind == _RAW:
                    out[found] = _map_raw(f.fileno(), f.tell(), length)
            f.seek(length, os.SEEK_CUR)
    missing = wanted - set(out)
    if missing:
        raise IndexFormatError(f"{path} has no array section {sorted(missing)[0]!r}")
    return out


def _map_raw(fd: int, start: int, length: int) -> np.ndarray:
    """Bytes [start, start + length) of the file as a read-only uint8 array over a private
    mapping of that range (see _map_array)."""
    if length == 0:
        return np.frombuffer(b"", np.uint8)
    aligned = start - start % mmap.ALLOCATIONGRANULARITY
    mapped = mmap.mmap(fd, start + length - aligned, access=mmap.ACCESS_READ, offset=aligned)
    return np.frombuffer(mapped, np.uint8, count=length, offset=start - aligned)


def mapping_of(arr: Any) -> mmap.mmap | None:
    """The read-only memory map of a file an array is a view of, if any (an array made in
    memory may be an anonymous map of its own: that is writeable, and not this)."""
    if not isinstance(arr, np.ndarray) or arr.flags.writeable:
        return None
    base: Any = arr
    while base is not None:
        if isinstance(base, mmap.mmap):
            return base
        base = getattr(base, "base", None)
        if isinstance(base, memoryview):
            base = base.obj
    return None


def _map_array(fd: int, path: Path, name: str, start: int, length: int) -> np.ndarray:
    """The .npy payload at [start, start + length) of the file as a read-only array over a
    private mapping of just that range (the mapping keeps its own descriptor of the file, so
    the file stays readable after a rename over it until every view of the array is gone)."""
    aligned = start - start % mmap.ALLOCATIONGRANULARITY
    head_len = min(length, 4096)
    head = io.BytesIO(os.pread(fd, head_len, start))
    shape, fortran, dtype, count = _npy_header(head, path, name)
    if count * dtype.itemsize + head.tell() > length:
        raise IndexFormatError(f"{path}: section {name!r} is shorter than its array")
    if count == 0:
        return np.empty(shape, dtype, order="F" if fortran else "C")
    data_end = start + head.tell() + count * dtype.itemsize
    mapped = mmap.mmap(fd, data_end - aligned, access=mmap.ACCESS_READ, offset=aligned)
    arr = np.frombuffer(mapped, dtype=dtype, count=count, offset=start + head.tell() - aligned)
    return arr.reshape(shape, order="F" if fortran else "C")


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def flatten(state: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested state dicts as flat snapshot sections ("keywords.ids_blob"); JSON-ready leaves
    (dicts of plain values) stay one JSON section. Callables are leaves (evaluated when
    written)."""
    out: dict[str, Any] = {}
    for key, value in state.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and any(
            isinstance(v, np.ndarray | bytes | dict | JsonChunks | ArrayParts | BytesParts)
            or callable(v)
            for v in value.values()
        ):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def unflatten(sections: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in sections.items():
        node = out
        *parents, leaf = name.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out
