"""The write-ahead log: every change is appended here and fsynced before it is acknowledged.

Files are `wal/000007.log`. Format 2 (written now) is LevelDB's block format, in its
"recyclable" variant: the file starts with the 8-byte magic `IRWAL002`, then is a sequence of
32 KiB blocks; a logical record (seq u64 | row payload) is cut into fragments that never cross
a block boundary, each with an 11-byte header

    crc32c u32 | length u16 | type u8 (FULL 1, FIRST 2, MIDDLE 3, LAST 4) | log_number u32

where the CRC (CRC-32C, computed by the CPU's instruction, so checksumming a put's megabytes
costs microseconds) covers type, log_number and the fragment's bytes. A block's last < 11 bytes are
zero padding. A reader that meets a damaged fragment resynchronises at the next valid record
start (found by searching for a FULL or FIRST fragment header of this log whose CRC checks
out): one flipped byte costs the record it hit, never the rest of the file. Damage is counted
and reported; a stretch followed by intact records of the same log is damage, a stretch after
the last one is the torn tail a crash leaves (the write it held was never acknowledged).

Format 1 (records back to back, `payload_length u32 | crc32 u32 | seq u64 | log_number u32 |
payload`) is still read, so data dirs written before keep working; new records are always
format 2, and a format-1 file is never appended to.

Group commit: writers append under a short lock, then call `sync(position)`. The first writer
to need an fsync becomes the leader and fsyncs everything written so far; writers whose records
that fsync covered return without one of their own, so concurrent writers share fsyncs. Before
its fsync the leader waits for the other writers in flight (begin_write .. append) to append,
at most 1 ms, and not at all when it is the only writer, so a lone writer is never delayed
(`group_wait`). An adaptive wait (a fraction of the recent fsync time, a moving average) is
there too, off by default: the same rounds with both measured no faster with it and took more
fsyncs per put (docs/storage.md).

Cheap fsyncs: an fsync after appending to a growing file must also commit the new size and
block allocation to the file system journal, which costs about as much again as the data. So
log files are written in place over blocks that already exist: the first one is zero-filled
when the store opens (when the disk has room for it), and a log file the store no longer needs
is kept as `recycle.wal` and becomes the next log file. Old fragments left in a recycled file
carry another log number, so they are never taken for this log's records.
"""

from __future__ import annotations

import errno
import logging
import re
import struct
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from storage_service.columnstore.errors import StorageFullError, StoreClosedError
from storage_service.columnstore.fs import File, FileSystem, OsFileSystem, read_file

log = logging.getLogger(__name__)

# Format 1 record header (read only).
RECORD_HEADER = struct.Struct("<IIQI")
_SEQ_AND_NUMBER = struct.Struct("<QI")
# A record longer than this is damage, not data (images are capped far below it).
MAX_RECORD_BYTES = 1 << 30

MAGIC = b"IRWAL002"
BLOCK_SIZE = 32 * 1024
FRAGMENT_HEADER = struct.Struct("<IHBI")
_SEQ = struct.Struct("<Q")
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4

PREALLOCATE_BYTES = 4 * 1024 * 1024
_IOV_MAX = 512
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


def encode_v1_record(seq: int, number: int, payload: bytes) -> bytes:
    """One format-1 record (only tests write format 1 now: to check it is still read)."""
    crc = _record_crc(seq, number, payload)
    return RECORD_HEADER.pack(len(payload), crc, seq, number) + payload


def _crc32c(data: bytes | memoryview, crc: int = 0) -> int:
    """CRC-32C (Castagnoli; the CPU computes it: ~7x faster than zlib's CRC-32 on a put's
    bytes). Imported on first use, so what imports the column store without writing logs (the
    gateway's policy checks) does not need the package."""
    global _crc32c_impl
    if _crc32c_impl is None:
        import crc32c

        _crc32c_impl = crc32c.crc32c
    return _crc32c_impl(data, crc)


_crc32c_impl: Callable[[bytes | memoryview, int], int] | None = None


def _fragment_crc(kind: int, number: int, data: bytes | memoryview) -> int:
    """CRC-32C of type, log number and the fragment's bytes."""
    return _crc32c(data, _crc32c(bytes([kind]) + number.to_bytes(4, "little")))


def _layout(length: int, offset: int) -> list[tuple[int, int, int]]:
    """(padding before, fragment length, type) of each fragment of a `length`-byte record
    written at file `offset`."""
    out: list[tuple[int, int, int]] = []
    pos, left_to_write, first = offset, length, True
    while True:
        pad = 0
        room = BLOCK_SIZE - pos % BLOCK_SIZE
        if room < FRAGMENT_HEADER.size:
            pad, pos, room = room, pos + room, BLOCK_SIZE
        take = min(room - FRAGMENT_HEADER.size, left_to_write)
        last = take == left_to_write
        kind = (FULL if last else FIRST) if first else (LAST if last else MIDDLE)
        out.append((pad, take, kind))
        pos += FRAGMENT_HEADER.size + take
        left_to_write -= take
        first = False
        if last:
            return out


def encode_record_buffers(
    seq: int, number: int, parts: Sequence[bytes], offset: int
) -> tuple[list[bytes | memoryview], int]:
    """One logical record written at file `offset` as a list of buffers (padding, fragment
    headers, and slices of the payload parts, never copied: images are megabytes) for one
    vectored write, and its length."""
    pieces = [memoryview(_SEQ.pack(seq)), *(memoryview(p) for p in parts if len(p))]
    length = sum(p.nbytes for p in pieces)
    out: list[bytes | memoryview] = []
    total = 0
    piece, piece_pos = 0, 0
    for pad, take, kind in _layout(length, offset):
        if pad:
            out.append(bytes(pad))
        header_at = len(out)
        out.append(b"")
        crc = _crc32c(bytes([kind]) + number.to_bytes(4, "little"))
        need = take
        while need:
            src = pieces[piece]
            n = min(need, src.nbytes - piece_pos)
            chunk = src[piece_pos : piece_pos + n]
            crc = _crc32c(chunk, crc)
            out.append(chunk)
            need -= n
            piece_pos += n
            if piece_pos == src.nbytes:
                piece, piece_pos = piece + 1, 0
        out[header_at] = FRAGMENT_HEADER.pack(crc, take, kind, number)
        total += pad + FRAGMENT_HEADER.size + take
    return out, total


def encode_record(seq: int, number: int, parts: Sequence[bytes], offset: int) -> bytes:
    """The bytes of one logical record written at file `offset` (fragments and padding)."""
    return b"".join(encode_record_buffers(seq, number, parts, offset)[0])


@dataclass(frozen=True)
class Damage:
    """A stretch of a log file that was not replayed."""

    path: Path
    offset: int
    length: int
    reason: str

    @property
    def is_tail(self) -> bool:
        return "tail" in self.reason


def _v1_valid_at(data: bytes, pos: int, number: int) -> int | None:
    """End offset of a whole, checksum-valid record of log `number` at `pos`, else None."""
    if pos + RECORD_HEADER.size > len(data):
        return None
    length, crc, seq, record_number = RECORD_HEADER.unpack_from(data, pos)
    end = pos + RECORD_HEADER.size + length
    if record_number != number or length > MAX_RECORD_BYTES or end > len(data):
        return None
    payload = memoryview(data)[pos + RECORD_HEADER.size : end]
    return end if _record_crc(seq, number, payload) == crc else None


def _v1_unused_from(data: bytes, pos: int, number: int) -> bool:
    """True when nothing of log `number` was ever written at `pos`: zeros, or the old records
    of a recycled file (another log number)."""
    if not any(data[pos : pos + RECORD_HEADER.size]):
        return not any(data[pos:])
    if pos + RECORD_HEADER.size > len(data):
        return False
    return bool(RECORD_HEADER.unpack_from(data, pos)[3] != number)


def _read_v1(path: Path, number: int, data: bytes) -> tuple[list[tuple[int, bytes]], list[Damage]]:
    """Format 1 (before block framing): records back to back."""
    records: list[tuple[int, bytes]] = []
    damage: list[Damage] = []
    pos = 0
    while pos < len(data):
        end = _v1_valid_at(data, pos, number)
        if end is not None:
            seq = RECORD_HEADER.unpack_from(data, pos)[2]
            records.append((seq, data[pos + RECORD_HEADER.size : end]))
            pos = end
            continue
        if _v1_unused_from(data, pos, number):
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
                and _v1_valid_at(data, candidate, number) is not None
            ):
                skip_to = candidate
        if skip_to is None:
            damage.append(Damage(path, pos, len(data) - pos, "torn or corrupt tail dropped"))
            break
        damage.append(Damage(path, pos, skip_to - pos, "corrupt record skipped"))
        pos = skip_to
    return records, damage


def _fragment_at(data: bytes, pos: int, number: int) -> tuple[int, int, int] | None:
    """(type, start, end) of a checksum-valid fragment of log `number` at `pos`, else None."""
    block_end = (pos // BLOCK_SIZE + 1) * BLOCK_SIZE
    if pos + FRAGMENT_HEADER.size > min(block_end, len(data)):
        return None
    crc, length, kind, record_number = FRAGMENT_HEADER.unpack_from(data, pos)
    start = pos + FRAGMENT_HEADER.size
    end = start + length
    if record_number != number or kind not in (FULL, FIRST, MIDDLE, LAST):
        return None
    if end > min(block_end, len(data)):
        return None
    if _fragment_crc(kind, number, memoryview(data)[start:end]) != crc:
        return None
    return kind, start, end


def _next_record_start(data: bytes, pos: int, number: int) -> int:
    """Where the next valid FULL or FIRST fragment of log `number` starts at or after `pos`
    (len(data) when none): the resynchronisation point after damage. Searches for the
    type-and-log-number bytes of a header (a C-speed find), then checks the CRC, so one damaged
    record costs that record alone, not the rest of its block."""
    pattern = re.compile(b"[\x01\x02]" + re.escape(number.to_bytes(4, "little")))
    for match in pattern.finditer(data, pos + 6):
        start = match.start() - 6
        if _fragment_at(data, start, number) is not None:
            return start
    return len(data)


def _read_v2(
    path: Path, number: int, data: bytes, starts: list[int] | None = None
) -> tuple[list[tuple[int, bytes]], list[Damage]]:
    records: list[tuple[int, bytes]] = []
    damage: list[Damage] = []
    pos = len(MAGIC)
    pending: list[memoryview] = []
    pending_start = -1
    bad_from = -1  # start of a stretch not yet accounted for (damage, or the unused end)
    view = memoryview(data)

    def account(end: int) -> None:
        nonlocal bad_from
        if bad_from >= 0:
            damage.append(Damage(path, bad_from, end - bad_from, "corrupt record skipped"))
            bad_from = -1

    while pos < len(data):
        block_end = (pos // BLOCK_SIZE + 1) * BLOCK_SIZE
        if block_end - pos < FRAGMENT_HEADER.size:
            pos = block_end
            continue
        found = _fragment_at(data, pos, number)
        if found is None:
            # Damage, zeros (unused), or another log's old fragments (a recycled file). If the
            # length field still leads to a valid fragment in this block, skip only this one;
            # else resynchronise at the next block. What it was is known once we see whether
            # any valid fragment of this log follows.
            if bad_from < 0:
                bad_from = pending_start if pending else pos
            pending = []
            pos = _next_record_start(data, pos + 1, number)
            continue
        kind, start, end = found
        if kind in (FULL, FIRST):
            if pending:  # a record whose LAST never came
                if bad_from < 0:
                    bad_from = pending_start
                pending = []
            account(pos)
            pending_start = pos
            pending = [view[start:end]]
        elif not pending:
            # MIDDLE or LAST of a record whose start was damaged: part of that damage.
            if bad_from < 0:
                bad_from = pos
            pos = end
            continue
        else:
            pending.append(view[start:end])
        pos = end
        if kind in (FULL, LAST):
            account(pending_start)
            payload = b"".join(pending)
            pending = []
            if len(payload) < _SEQ.size:
                damage.append(Damage(path, pending_start, end - pending_start, "short record"))
                continue
            records.append((_SEQ.unpack_from(payload)[0], payload[_SEQ.size :]))
            if starts is not None:
                starts.append(pending_start)
    if pending and bad_from < 0:
        bad_from = pending_start
    # Nothing of this log follows: zeros or old fragments are the unused end; anything else
    # is the torn tail of a write a crash cut short (never acknowledged).
    if (
        bad_from >= 0
        and any(data[bad_from : bad_from + FRAGMENT_HEADER.size])
        and _looks_like_ours(data, bad_from, number)
    ):
        damage.append(Damage(path, bad_from, len(data) - bad_from, "torn or corrupt tail dropped"))
    return records, damage


def _looks_like_ours(data: bytes, pos: int, number: int) -> bool:
    """True when the bytes at `pos` claim to be a fragment of log `number` (a torn write),
    not zeros or another log's leftovers."""
    if pos + FRAGMENT_HEADER.size > len(data):
        return any(data[pos:])
    _crc, _length, kind, record_number = FRAGMENT_HEADER.unpack_from(data, pos)
    return record_number == number or kind not in (0, FULL, FIRST, MIDDLE, LAST)


def read_log(
    path: Path, fs: FileSystem | None = None
) -> tuple[list[tuple[int, bytes]], list[Damage]]:
    """All intact (seq, payload) records of one log file (either format), and what was
    dropped."""
    number = int(path.stem)
    data = read_file(fs or OsFileSystem(), path)
    if data[: len(MAGIC)] == MAGIC:
        return _read_v2(path, number, data)
    if not any(data[: RECORD_HEADER.size]) and not any(data[:BLOCK_SIZE]):
        return [], []  # created, never written
    return _read_v1(path, number, data)


def record_offsets(path: Path) -> list[int]:
    """File offset of each intact record's first fragment header (format 2; for tests that
    aim damage at a record)."""
    data = path.read_bytes()
    starts: list[int] = []
    _read_v2(path, int(path.stem), data, starts)
    return starts


# How long an fsync waits at most for the concurrent writers still building their records (a
# few put preparations: a fraction of a millisecond each); none when this writer is the only
# one in flight (see group_wait).
GROUP_WAIT_S = 0.001
# With a fraction > 0 the wait is at most that fraction of the recent fsync time (a moving
# average), still capped at GROUP_WAIT_S. Off: measured no faster, with more fsyncs per put.
GROUP_WAIT_FRACTION = 0.0
# Weight of the newest fsync in the moving average of fsync times.
FSYNC_AVERAGE_WEIGHT = 0.2


def group_wait(active: int, fsync_average_s: float, fraction: float, max_s: float) -> float:
    """Seconds an fsync about to start waits for the other writers in flight to append: none
    when `active` (writers between begin_write and end_write, this one included) is 1, so a
    lone writer is never delayed; else `max_s`, or with `fraction` > 0 that fraction of the
    recent fsync time, capped at `max_s` (waiting longer than an fsync costs more than the
    straggler's own fsync would)."""
    if active <= 1 or max_s <= 0:
        return 0.0
    if fraction <= 0:
        return max_s
    return min(max_s, fraction * max(fsync_average_s, 0.0))


def _write_all(f: File, buffers: list[bytes | memoryview], length: int, offset: int) -> int:
    """Write `buffers` back to back at `offset` with vectored writes; returns `length`."""
    done = 0
    for i in range(0, len(buffers), _IOV_MAX):
        group = buffers[i : i + _IOV_MAX]
        size = sum(len(b) for b in group)
        written = f.pwritev(group, offset + done)
        if written < size:  # a short write: finish this group plainly
            rest = memoryview(b"".join(group))[written:]
            while rest:
                n = f.pwrite(rest, offset + done + size - len(rest))
                rest = rest[n:]
        done += size
    assert done == length
    return done


class WriteAheadLog:
    """The log file currently appended to, with group commit and rotation."""

    def __init__(
        self,
        wal_dir: Path,
        number: int,
        *,
        zero_fill_bytes: int = 0,
        fs: FileSystem | None = None,
    ) -> None:
        """Start log file `number`; with `zero_fill_bytes`, write that much of it with zeros
        first (unless a recycled file is at hand, or the disk is short of room) so early
        fsyncs are cheap too."""
        self._dir = wal_dir
        self._fs: FileSystem = fs or OsFileSystem()
        self._append_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._failed: OSError | None = None
        self._file: File | None = None
        # fsyncs done by sync(): fewer than synced writes when writers share them.
        self.fsyncs = 0
        # Called with the seconds of each fsync sync() does (metrics; no prometheus here).
        self.on_fsync: Callable[[float], None] | None = None
        # Group commit: writers between begin_write() and end_write() (a put from its start
        # until its record is durable), and records appended since the last fsync's target.
        # An fsync waits up to group_wait_s until every such writer has appended, so one
        # fsync covers all of them rather than the first alone (the others would each do
        # their own next).
        self._writers = threading.Condition(threading.Lock())
        self._active = 0
        self._unsynced = 0
        self._syncing = False
        # The wait: group_wait(active writers, fsync_average_s, group_wait_fraction,
        # group_wait_s).
        self.group_wait_s = GROUP_WAIT_S
        self.group_wait_fraction = GROUP_WAIT_FRACTION
        self.fsync_average_s = 0.0
        # fsyncs that waited for other writers, and those of them the wait ran out on.
        self.group_waits = 0
        self.group_waits_timed_out = 0
        self._open(number, zero_fill_bytes)
        self._synced: LogPosition = (number, 0)

    @property
    def failed(self) -> OSError | None:
        return self._failed

    def _open(self, number: int, zero_fill_bytes: int = 0) -> None:
        """Create log `number` and make its name and magic durable; on failure the previous
        file (if any) stays current."""
        path = log_path(self._dir, number)
        spare = self._dir / RECYCLE_NAME
        fs = self._fs
        if fs.exists(spare):
            fs.rename(spare, path)
            f = fs.open_write(path)
            allocated = f.size()
        else:
            f = fs.open_write(path, create=True, truncate=True)
            allocated = 0
            # Zero-fill only with room to spare: a nearly full disk must still open.
            if zero_fill_bytes > 0 and fs.free_bytes(self._dir) > 4 * zero_fill_bytes:
                try:
                    for offset in range(0, zero_fill_bytes, len(_ZEROS)):
                        f.pwrite(_ZEROS, offset)
                    allocated = f.size()
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        f.close()
                        raise
                    log.warning("disk short of space: log file not zero-filled")
                    f.truncate(0)
                    allocated = 0
        try:
            f.pwrite(MAGIC, 0)
            f.sync()
            fs.sync_dir(self._dir)
        except BaseException:
            f.close()
            raise
        if self._file is not None:
            self._file.close()
        self._file = f
        self.number = number
        self._offset = len(MAGIC)
        self._allocated = allocated
        self._reserve(0)

    def _reserve(self, length: int) -> None:
        assert self._file is not None
        if self._offset + length > self._allocated or self._allocated == 0:
            grow = max(PREALLOCATE_BYTES, self._offset + length - self._allocated)
            try:
                self._file.allocate(self._allocated, grow)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                # No room to preallocate: plain appends may still fit (a nearly full disk);
                # the write itself says when they do not.
                return
            self._allocated += grow

    def append(self, seq: int, parts: Sequence[bytes]) -> LogPosition:
        """Write one record whose payload is `parts` joined (not yet durable); returns the
        position `sync` must reach. StorageFullError when the disk has no room for it (the
        log is unchanged and stays usable)."""
        with self._append_lock:
            if self._failed is not None or self._file is None:
                raise StoreClosedError(f"the log is closed or failed: {self._failed}")
            buffers, length = encode_record_buffers(seq, self.number, parts, self._offset)
            self._reserve(length)
            offset = self._offset
            try:
                offset += _write_all(self._file, buffers, length, offset)
            except OSError as e:
                # Nothing past self._offset counts: the next record is written over it.
                if e.errno == errno.ENOSPC:
                    raise StorageFullError("storage is full: the log write failed") from e
                self._failed = e
                raise
            self._offset = offset
            with self._writers:
                self._unsynced += 1
                if self._unsynced >= self._active:
                    self._writers.notify_all()
            return (self.number, self._offset)

    def begin_write(self) -> None:
        """A writer starts a write it will append and sync (end_write once it is durable or
        given up), so concurrent fsyncs wait for its record."""
        with self._writers:
            self._active += 1

    def end_write(self) -> None:
        with self._writers:
            self._active -= 1
            if self._unsynced >= self._active:
                self._writers.notify_all()

    def _all_appended(self) -> bool:
        return self._unsynced >= self._active

    def _group_wait_s(self) -> float:
        """How long the fsync about to start waits for the writers still building (lock held)."""
        return group_wait(
            self._active, self.fsync_average_s, self.group_wait_fraction, self.group_wait_s
        )

    def sync(self, position: LogPosition) -> None:
        """Return once `position` is on disk, sharing one fsync among concurrent callers:
        one caller does the fsync while the others wait for it (not for a lock each in turn),
        and first waits (at most _group_wait_s()) for the writers still building their
        records, so that fsync covers theirs too. After a failed fsync the log refuses every later
        write (the page cache may have dropped what it held) and raises OSError."""
        while self._synced < position:
            with self._writers:
                while True:
                    if self._synced >= position:
                        return
                    if self._failed is not None:
                        raise self._failed
                    if not self._syncing:
                        break
                    self._writers.wait(0.05)
                self._syncing = True
                wait_s = self._group_wait_s()
                if wait_s > 0 and not self._all_appended():
                    self.group_waits += 1
                    if not self._writers.wait_for(self._all_appended, wait_s):
                        self.group_waits_timed_out += 1
            try:
                self._fsync_appended()
            finally:
                with self._writers:
                    self._syncing = False
                    self._writers.notify_all()

    def _fsync_appended(self) -> None:
        """fsync everything appended so far (the one caller sync() lets through)."""
        with self._sync_lock:
            if self._failed is not None:
                raise self._failed
            with self._append_lock:
                target = (self.number, self._offset)
                f = self._file
                with self._writers:
                    self._unsynced = 0
            assert f is not None
            started = time.perf_counter()
            try:
                f.sync()
            except OSError as e:
                self._failed = e
                raise
            self.fsyncs += 1
            took = time.perf_counter() - started
            self._note_fsync(took)
            if self.on_fsync is not None:
                self.on_fsync(took)
            self._synced = max(self._synced, target)

    def _note_fsync(self, seconds: float) -> None:
        """Fold one fsync's time into the moving average the group wait is a fraction of."""
        if self.fsync_average_s <= 0:
            self.fsync_average_s = seconds
        else:
            self.fsync_average_s += FSYNC_AVERAGE_WEIGHT * (seconds - self.fsync_average_s)

    @property
    def synced(self) -> LogPosition:
        return self._synced

    def rotate(self) -> int:
        """Make the current file durable and start the next; returns the new file number.
        On failure nothing changes (a failed fsync leaves the log failed)."""
        with self._sync_lock, self._append_lock:
            assert self._file is not None
            if self._failed is None:
                try:
                    self._file.sync()
                except OSError as e:
                    self._failed = e
                    raise
                self._synced = (self.number, self._offset)
            self._open(self.number + 1)
            self._failed = None
            self._synced = (self.number, self._offset)
            with self._writers:
                self._unsynced = 0
                self._writers.notify_all()
            return self.number

    def recycle(self, path: Path) -> None:
        """Keep an obsolete log file as the next one to write over, or delete it."""
        with self._append_lock:
            spare = self._dir / RECYCLE_NAME
            if self._fs.exists(spare) or not self._fs.exists(path):
                if self._fs.exists(path):
                    self._fs.unlink(path)
            else:
                self._fs.rename(path, spare)

    def close(self) -> None:
        with self._sync_lock, self._append_lock:
            if self._file is not None:
                try:
                    if self._failed is None:
                        self._file.sync()
                finally:
                    self._file.close()
                    self._file = None
