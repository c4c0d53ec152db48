"""Images in date-taken order: a sorted array of fixed-width keys, so a page of a listing by
date taken costs a binary search and a slice, never a sort or a scan of every image.

The date taken is EXIF DateTimeOriginal (the `taken_at` string image_check.py keeps, read as
UTC), else the upload time. Each entry is three fixed-width numbers (16 bytes):

    key   u64   (taken_ms + 2**42) << 21 | crc32(id) & 0x1FFFFF
    slot  i32   the image's slot in the store's view (what the caller resolves an entry to)
    epoch u32   the slot's epoch when the entry was added

The low bits order photos taken in the same millisecond by a hash of their id, so the order is
total and the same after a restart, and a page token (key, id) stays valid while images are
added or removed. Removal is lazy: the caller bumps the slot's epoch, and entries whose epoch
is no longer the slot's are skipped (and dropped once they are a quarter of the array). New
entries wait in a small buffer merged into the sorted arrays in one pass.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Callable

import numpy as np

TAKEN_OFFSET_MS = 1 << 42  # lets photos from 1830 on sort before the epoch, up to 2109
HASH_BITS = 21
_MERGE_AT = 512

# accept(slots, epochs) -> bool mask of the entries that are current and pass the filter.
Accept = Callable[[np.ndarray, np.ndarray], np.ndarray]


def parse_exif_time(text: str) -> int | None:
    """ms since the epoch of an EXIF date ("2021:07:04 18:30:00", read as UTC), or None."""
    # Parsed by hand: datetime.strptime consults the locale on every call (10x slower), and
    # this runs for every image read.
    text = text.strip()
    if len(text) < 19 or text[4] not in ":-" or text[10] not in " T":
        return None
    try:
        when = dt.datetime(
            int(text[0:4]),
            int(text[5:7]),
            int(text[8:10]),
            int(text[11:13]),
            int(text[14:16]),
            int(text[17:19]),
            tzinfo=dt.UTC,
        )
    except ValueError:
        return None
    if when.year < 1830:
        return None
    return int(when.timestamp() * 1000)


def date_taken_ms(exif: dict[str, str], created_at_ms: int) -> tuple[int, bool]:
    """(ms, is_upload_time): EXIF DateTimeOriginal when it parses, else the upload time."""
    taken = parse_exif_time(exif.get("taken_at", "")) if exif else None
    if taken is None:
        return created_at_ms, True
    return taken, False


def sort_key(taken_ms: int, image_id: str) -> int:
    taken = min(max(taken_ms + TAKEN_OFFSET_MS, 0), (1 << 43) - 1)
    return (taken << HASH_BITS) | (zlib.crc32(image_id.encode()) & ((1 << HASH_BITS) - 1))


def key_taken_ms(key: int) -> int:
    return (key >> HASH_BITS) - TAKEN_OFFSET_MS


def range_keys(taken_from_ms: int, taken_to_ms: int) -> tuple[int, int]:
    """[lo, hi) of keys for photos taken in [from, to); 0 leaves an end open."""
    lo = sort_key(taken_from_ms, "") & ~((1 << HASH_BITS) - 1) if taken_from_ms else 0
    hi = sort_key(taken_to_ms, "") & ~((1 << HASH_BITS) - 1) if taken_to_ms else 1 << 64
    return lo, hi


class TakenIndex:
    """(key, slot, epoch) entries sorted by key. Not thread-safe: the store's lock guards it."""

    def __init__(self) -> None:
        self._keys = np.empty(0, dtype=np.uint64)
        self._slots = np.empty(0, dtype=np.int32)
        self._epochs = np.empty(0, dtype=np.uint32)
        self._pending: list[tuple[int, int, int]] = []
        # Entries the caller has made stale (bumped epoch) still in the arrays.
        self._stale = 0

    def __len__(self) -> int:
        return len(self._keys) + len(self._pending) - self._stale

    @property
    def nbytes(self) -> int:
        return self._keys.nbytes + self._slots.nbytes + self._epochs.nbytes

    def add(self, key: int, slot: int, epoch: int) -> None:
        self._pending.append((key, slot, epoch))
        if len(self._pending) >= _MERGE_AT:
            self._merge()

    def removed(self) -> None:
        """One entry went stale (its slot's epoch was bumped)."""
        self._stale += 1

    def bulk_load(self, keys: np.ndarray, slots: np.ndarray, epochs: np.ndarray) -> None:
        """Replace the content at once (at open): one sort, not one insert per image."""
        order = np.argsort(keys, kind="stable")
        self._keys = keys[order].astype(np.uint64)
        self._slots = slots[order].astype(np.int32)
        self._epochs = epochs[order].astype(np.uint32)
        self._pending = []
        self._stale = 0

    def _merge(self) -> None:
        if not self._pending:
            return
        self._pending.sort()
        keys = np.fromiter((p[0] for p in self._pending), np.uint64, len(self._pending))
        slots = np.fromiter((p[1] for p in self._pending), np.int32, len(self._pending))
        epochs = np.fromiter((p[2] for p in self._pending), np.uint32, len(self._pending))
        at = np.searchsorted(self._keys, keys, side="right")
        self._keys = np.insert(self._keys, at, keys)
        self._slots = np.insert(self._slots, at, slots)
        self._epochs = np.insert(self._epochs, at, epochs)
        self._pending = []

    def compact(self, current: Accept) -> None:
        """Drop stale entries when they are many (lock held, O(n) numpy)."""
        self._merge()
        if self._stale * 4 < max(len(self._keys), 1024):
            return
        keep = current(self._slots, self._epochs)
        self._keys, self._slots, self._epochs = (
            self._keys[keep],
            self._slots[keep],
            self._epochs[keep],
        )
        self._stale = 0

    def count(self, lo: int, hi: int, accept: Accept) -> int:
        """Entries with lo <= key < hi that `accept` takes (O(range) numpy)."""
        self._merge()
        a = int(np.searchsorted(self._keys, np.uint64(lo), side="left"))
        b = int(np.searchsorted(self._keys, np.uint64(min(hi, (1 << 64) - 1)), side="left"))
        if hi >= 1 << 64:
            b = len(self._keys)
        if a >= b:
            return 0
        return int(np.count_nonzero(accept(self._slots[a:b], self._epochs[a:b])))

    def page(
        self,
        size: int,
        *,
        descending: bool,
        lo: int,
        hi: int,
        after: tuple[int, int] | None,
        accept: Accept,
    ) -> list[tuple[int, int]]:
        """Up to `size` (key, slot) in order, within [lo, hi), strictly after the entry
        `after` = (key, slot of the token's image or -1) in that order."""
        self._merge()
        keys = self._keys
        top = len(keys) if hi >= 1 << 64 else int(np.searchsorted(keys, np.uint64(hi), "left"))
        bottom = int(np.searchsorted(keys, np.uint64(lo), side="left"))
        if after is not None:
            key, slot = after
            k = np.uint64(key)
            if descending:
                # Entries with the same key sort by insertion; the token's own entry and those
                # before it are skipped (a key shared by two ids is a 1-in-2M event per ms).
                end = int(np.searchsorted(keys, k, side="left"))
                run_end = int(np.searchsorted(keys, k, side="right"))
                found = np.nonzero(self._slots[end:run_end] == slot)[0]
                if slot >= 0 and len(found):
                    end = end + int(found[0])
                top = min(top, end)
            else:
                start = int(np.searchsorted(keys, k, side="right"))
                run_start = int(np.searchsorted(keys, k, side="left"))
                found = np.nonzero(self._slots[run_start:start] == slot)[0]
                if slot >= 0 and len(found):
                    start = run_start + int(found[-1]) + 1
                bottom = max(bottom, start)
        out: list[tuple[int, int]] = []
        chunk = max(64, 2 * size)
        while len(out) < size and bottom < top:
            if descending:
                a, b = max(bottom, top - chunk), top
                top = a
            else:
                a, b = bottom, min(top, bottom + chunk)
                bottom = b
            mask = accept(self._slots[a:b], self._epochs[a:b])
            idx = np.nonzero(mask)[0]
            if descending:
                idx = idx[::-1]
            for i in idx[: size - len(out)].tolist():
                out.append((int(keys[a + i]), int(self._slots[a + i])))
            chunk *= 4
        return out
