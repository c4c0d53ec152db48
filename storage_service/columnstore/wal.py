"""The write-ahead log: every change is appended here and fsynced before it is acknowledged.

Files are `wal/000007.log`; each holds records

    payload_length u32 | crc32 u32 | seq u64 | log_number u32 | payload

where the CRC covers seq, log_number and payload.

Group commit: writers append under a short lock, then call `sync(position)`. The first writer
to need an fsync becomes the leader and fsyncs everything written so far; writers whose records
that fsync covered return without one of their own, so concurrent writers share fsyncs.

Cheap fsyncs: an fsync after appending to a growing file must also commit the new size and
block allocation to the file system journal, which costs about as much again as the data. So
log files are written in place over blocks that already exist: the first one is zero-filled
when the store opens, and a log file the flusher no longer needs is kept as `recycle.wal` and
becomes the next log file. Old records left in a recycled file carry another log number, so
replay stops at them (as at zeros) rather than taking them for data or for damage.

On start, `read_log` replays a file. A torn tail (a record cut short by a crash, or whose
checksum fails) is dropped and reported, never applied. A damaged record in the middle of a
file is skipped alone when the record after it checks out, so one flipped byte costs one record.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from storage_service.columnstore.errors import StoreClosedError

log = logging.getLogger(__name__)

RECORD_HEADER = struct.Struct("<IIQI")
_SEQ_AND_NUMBER = struct.Struct("<QI")
# A record longer than this is damage, not data (images are capped far below it).
MAX_RECORD_BYTES = 1 << 30
PREALLOCATE_BYTES = 4 * 1024 * 1024
RECYCLE_NAME = "recycle.wal"
_ZEROS = bytes(1024 * 1024)

LogPosition = tuple[int, int]  # (file number, end offset)


def log_path(wal_dir: Path, number: int) -> Path:
    return wal_dir / f"{number:06d}.log"


def log_numbers(wal_dir: Path) -> list[int]:
    return sorted(int(p.stem) for p in wal_dir.glob("*.log") if p.stem.isdigit())


def _record_crc(seq: int, number: int, *parts: bytes | memoryview) -> int:
    crc = zlib.crc32(_SEQ_AND_NUMBER.pack(seq, number))
    for part in parts:
        crc = zlib.crc32(part, crc)
    return crc & 0xFFFFFFFF


def encode_record_header(seq: int, number: int, parts: Sequence[bytes]) -> bytes:
    length = sum(len(p) for p in parts)
    return RECORD_HEADER.pack(length, _record_crc(seq, number, *parts), seq, number)


@dataclass(frozen=True)
class Damage:
    """A stretch of a log file that was not replayed."""

    path: Path
    offset: int
    length: int
    reason: str


def _valid_at(data: bytes, pos: int, number: int) -> int | None:
    """End offset of a whole, checksum-valid record of log `number` at `pos`, else None."""
    if pos + RECORD_HEADER.size > len(data):
        return None
    length, crc, seq, record_number = RECORD_HEADER.unpack_from(data, pos)
    end = pos + RECORD_HEADER.size + length
    if record_number != number or length > MAX_RECORD_BYTES or end > len(data):
        return None
    payload = memoryview(data)[pos + RECORD_HEADER.size : end]
    return end if _record_crc(seq, number, payload) == crc else None


def _unused_from(data: bytes, pos: int, number: int) -> bool:
    """True when nothing of log `number` was ever written at `pos`: zeros, or the old records
    of a recycled file (another log number)."""
    if not any(data[pos : pos + RECORD_HEADER.size]):
        return not any(data[pos:])
    if pos + RECORD_HEADER.size > len(data):
        return False
    return bool(RECORD_HEADER.unpack_from(data, pos)[3] != number)


def read_log(path: Path) -> tuple[list[tuple[int, bytes]], list[Damage]]:
    """All intact (seq, payload) records of one log file, and what was dropped."""
    number = int(path.stem)
    data = path.read_bytes()
    records: list[tuple[int, bytes]] = []
    damage: list[Damage] = []
    pos = 0
    while pos < len(data):
        end = _valid_at(data, pos, number)
        if end is not None:
            seq = RECORD_HEADER.unpack_from(data, pos)[2]
            records.append((seq, data[pos + RECORD_HEADER.size : end]))
            pos = end
            continue
        if _unused_from(data, pos, number):
            break
        # Damaged here. If its length field still leads to a valid record, only this record
        # is lost; otherwise everything from here on (a torn tail).
        skip_to = None
        if pos + RECORD_HEADER.size <= len(data):
            (length,) = struct.unpack_from("<I", data, pos)
            candidate = pos + RECORD_HEADER.size + length
            if (
                length <= MAX_RECORD_BYTES
                and candidate < len(data)
                and _valid_at(data, candidate, number) is not None
            ):
                skip_to = candidate
        if skip_to is None:
            damage.append(Damage(path, pos, len(data) - pos, "torn or corrupt tail dropped"))
            break
        damage.append(Damage(path, pos, skip_to - pos, "corrupt record skipped"))
        pos = skip_to
    return records, damage


class WriteAheadLog:
    """The log file currently appended to, with group commit and rotation."""

    def __init__(self, wal_dir: Path, number: int, *, zero_fill_bytes: int = 0) -> None:
        """Start log file `number`; with `zero_fill_bytes`, write that much of it with zeros
        first (unless a recycled file is at hand) so early fsyncs are cheap too."""
        self._dir = wal_dir
        self._append_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._failed: OSError | None = None
        # fsyncs done by sync(): fewer than synced writes when writers share them.
        self.fsyncs = 0
        self._open(number, zero_fill_bytes)
        self._synced: LogPosition = (number, 0)

    def _open(self, number: int, zero_fill_bytes: int = 0) -> None:
        self.number = number
        path = log_path(self._dir, number)
        spare = self._dir / RECYCLE_NAME
        self._offset = 0
        if spare.exists():
            spare.replace(path)
            self._fd = os.open(path, os.O_WRONLY)
            self._allocated = os.fstat(self._fd).st_size
        else:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            self._allocated = 0
            for offset in range(0, zero_fill_bytes, len(_ZEROS)):
                os.pwrite(self._fd, _ZEROS, offset)
            if zero_fill_bytes > 0:
                self._allocated = os.fstat(self._fd).st_size
                os.fdatasync(self._fd)
        self._reserve(0)
        dir_fd = os.open(self._dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _reserve(self, length: int) -> None:
        if self._offset + length > self._allocated or self._allocated == 0:
            grow = max(PREALLOCATE_BYTES, self._offset + length - self._allocated)
            os.posix_fallocate(self._fd, self._allocated, grow)
            self._allocated += grow

    def append(self, seq: int, parts: Sequence[bytes]) -> LogPosition:
        """Write one record whose payload is `parts` joined (not yet durable); returns the
        position `sync` must reach."""
        with self._append_lock:
            header = encode_record_header(seq, self.number, parts)
            if self._failed is not None or self._fd < 0:
                raise StoreClosedError(f"the log is closed or failed: {self._failed}")
            self._reserve(len(header) + sum(len(p) for p in parts))
            for part in (header, *parts):
                view = memoryview(part)
                while view:
                    written = os.pwrite(self._fd, view, self._offset)
                    view = view[written:]
                    self._offset += written
            return (self.number, self._offset)

    def sync(self, position: LogPosition) -> None:
        """Return once `position` is on disk, sharing one fsync among concurrent callers."""
        if self._synced >= position:
            return
        with self._sync_lock:
            if self._synced >= position:
                return
            with self._append_lock:
                target = (self.number, self._offset)
                fd = self._fd
            try:
                os.fdatasync(fd)
            except OSError as e:
                # After a failed fsync the page cache may have dropped our writes: refuse more.
                self._failed = e
                raise StoreClosedError(f"log fsync failed: {e}") from e
            self.fsyncs += 1
            self._synced = target

    def rotate(self) -> int:
        """Make the current file durable and start the next; returns the new file number."""
        with self._sync_lock, self._append_lock:
            os.fdatasync(self._fd)
            os.close(self._fd)
            self._synced = (self.number, self._offset)
            self._open(self.number + 1)
            return self.number

    def recycle(self, path: Path) -> None:
        """Keep an obsolete log file as the next one to write over, or delete it."""
        with self._append_lock:
            spare = self._dir / RECYCLE_NAME
            if spare.exists() or not path.exists():
                path.unlink(missing_ok=True)
            else:
                path.replace(spare)

    def close(self) -> None:
        with self._sync_lock, self._append_lock:
            if self._fd >= 0:
                os.fdatasync(self._fd)
                os.close(self._fd)
                self._fd = -1
