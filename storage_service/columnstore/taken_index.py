"""Images in date-taken order: a sorted array of fixed-width keys, so a page of a listing by
date taken costs a binary search and a slice, never a sort or a scan of every image.

The date taken is EXIF DateTimeOriginal (the `taken_at` string image_check.py keeps, read as
UTC), else the upload time. An image's key is kept once, in the store's per-slot arrays:

    key   u64   (taken_ms + 2**42) << 21 | crc32(id) & 0x1FFFFF

and each index (every image, and one per owner) holds two fixed-width numbers an entry
(8 bytes), sorted by their slot's key, which a binary search reads through the slot:

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


# The epoch of an entry detach() re-pointed: no slot has it, so the entry is always skipped.
DEAD = 0xFFFFFFFF

# The store's per-slot date-taken keys (its current array: it is replaced as it grows).
KeysOf = Callable[[], np.ndarray]


class TakenIndex:
    """(slot, epoch) entries sorted by their slot's key (`keys_of()[slot]`, kept once per slot
    by the store). Not thread-safe: the store's lock guards it.

    The caller must not change a slot's key while an entry reads its key through it: a
    deleted image's slot is `detach`ed before it is reused, and a trashed image keeps its
    key (its stale entries keep their place in the order)."""

    def __init__(self, keys_of: KeysOf) -> None:
        self._keys_of = keys_of
        self._slots = np.empty(0, dtype=np.int32)
        self._epochs = np.empty(0, dtype=np.uint32)
        self._pending: list[tuple[int, int, int]] = []
        # Entries the caller has made stale (bumped epoch) still in the arrays.
        self._stale = 0

    def __len__(self) -> int:
        return len(self._slots) + len(self._pending) - self._stale

    @property
    def nbytes(self) -> int:
        return self._slots.nbytes + self._epochs.nbytes

    def add(self, key: int, slot: int, epoch: int) -> None:
        """Add an entry; `key` is `keys_of()[slot]` (passed to spare a lookup)."""
        self._pending.append((key, slot, epoch))
        if len(self._pending) >= _MERGE_AT:
            self._merge()

    def removed(self) -> None:
        """One entry went stale (its slot's epoch was bumped)."""
        self._stale += 1

    def bulk_load(self, keys: np.ndarray, slots: np.ndarray, epochs: np.ndarray) -> None:
        """Replace the content at once (at open): one sort, not one insert per image.
        `keys` are the slots' keys (as keys_of() holds them); only the order is kept."""
        order = np.argsort(keys, kind="stable")
        self._slots = slots[order].astype(np.int32)
        self._epochs = epochs[order].astype(np.uint32)
        self._pending = []
        self._stale = 0

    def _search(self, key: int, right: bool, lo: int = 0, hi: int = -1) -> int:
        """searchsorted of `key` in the entries' keys (read through their slots)."""
        keys, slots = self._keys_of().data, self._slots.data
        hi = len(self._slots) if hi < 0 else hi
        while lo < hi:
            mid = (lo + hi) // 2
            at = keys[slots[mid]]
            if at < key or (right and at == key):
                lo = mid + 1
            else:
                hi = mid
        return lo

    def detach(self, slot: int) -> None:
        """Before `slot` gets another key (a deleted image's slot, reused later): every entry
        of it, stale by then, is re-pointed at a slot with the same key (another entry of its
        run) or at its neighbour's slot, which keeps the order, with the epoch DEAD (never
        current; dropped at the next compaction). O(log n + entries with that key): entries
        still waiting to be merged are dropped from the wait list, not merged first."""
        if self._pending:
            kept = [p for p in self._pending if p[1] != slot]
            # Each is stale (the slot's epoch was bumped for it) and counted so.
            self._stale = max(0, self._stale - (len(self._pending) - len(kept)))
            self._pending = kept
        n = len(self._slots)
        if not n:
            return
        key = int(self._keys_of()[slot])
        lo = self._search(key, right=False)
        hi = self._search(key, right=True, lo=lo)
        mine = self._slots[lo:hi] == slot
        if not mine.any():
            return
        others = self._slots[lo:hi][~mine]
        if len(others):
            target = int(others[0])
        elif lo > 0:
            target = int(self._slots[lo - 1])
        elif hi < n:
            target = int(self._slots[hi])
        else:  # every entry is one of this slot's (all stale): none is left
            self._stale = max(0, self._stale - n)
            self._slots, self._epochs = self._slots[:0], self._epochs[:0]
            return
        at = lo + np.flatnonzero(mine)
        self._slots[at] = target
        self._epochs[at] = DEAD

    def _merge(self) -> None:
        if not self._pending:
            return
        self._pending.sort()
        at = np.fromiter(
            (self._search(p[0], right=True) for p in self._pending), np.int64, len(self._pending)
        )
        slots = np.fromiter((p[1] for p in self._pending), np.int32, len(self._pending))
        epochs = np.fromiter((p[2] for p in self._pending), np.uint32, len(self._pending))
        self._slots = np.insert(self._slots, at, slots)
        self._epochs = np.insert(self._epochs, at, epochs)
        self._pending = []

    def compact(self, current: Accept, *, force: bool = False) -> None:
        """Drop stale entries when they are many, or every one with `force` (lock held,
        O(n) numpy)."""
        self._merge()
        if not self._stale or (not force and self._stale * 4 < max(len(self._slots), 1024)):
            return
        keep = current(self._slots, self._epochs)
        self._slots, self._epochs = self._slots[keep], self._epochs[keep]
        self._stale = 0

    def count(self, lo: int, hi: int, accept: Accept) -> int:
        """Entries with lo <= key < hi that `accept` takes (O(range) numpy)."""
        self._merge()
        a = self._search(lo, right=False)
        b = len(self._slots) if hi >= 1 << 64 else self._search(hi, right=False)
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
        n = len(self._slots)
        top = n if hi >= 1 << 64 else self._search(hi, right=False)
        bottom = self._search(lo, right=False)
        if after is not None:
            key, slot = after
            run_start = self._search(key, right=False)
            run_end = self._search(key, right=True, lo=run_start)
            found = np.nonzero(self._slots[run_start:run_end] == slot)[0]
            if descending:
                # Entries with the same key sort by insertion; the token's own entry and those
                # before it are skipped (a key shared by two ids is a 1-in-2M event per ms).
                end = run_start
                if slot >= 0 and len(found):
                    end = run_start + int(found[0])
                top = min(top, end)
            else:
                start = run_end
                if slot >= 0 and len(found):
                    start = run_start + int(found[-1]) + 1
                bottom = max(bottom, start)
        out: list[tuple[int, int]] = []
        keys = self._keys_of()
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
            for slot in self._slots[a:b][idx[: size - len(out)]].tolist():
                out.append((int(keys[slot]), slot))
            chunk *= 4
        return out
