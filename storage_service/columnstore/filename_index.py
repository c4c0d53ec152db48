"""Exact-match secondary indexes: key (an owner, a status, a filename) -> images, kept sorted
by id, so lookups, counts and pages cost O(page), never a scan of every image.

Ids start with their creation time in hex, so sorting ids sorts by age. The indexes live in
memory and are rebuilt from the segments at every open, so they can never disagree with them
after a crash.

`SlotIndex` (the store's listings) keeps slots, 4 bytes an entry, in an `array('i')` per key,
ordered by the slots' ids (read from the store's IdArray): no Python object per image. A slot
must leave every list before its id changes (the store removes a deleted image from its lists
before it frees the slot). `FilenameIndex` keeps id strings (for the few images of damaged
segments, which have no slot).
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Sequence

import numpy as np


class FilenameIndex:
    def __init__(self) -> None:
        self._ids: dict[str, list[str]] = {}

    def add(self, key: str, image_id: str) -> None:
        ids = self._ids.setdefault(key, [])
        i = bisect.bisect_left(ids, image_id)
        if i == len(ids) or ids[i] != image_id:
            ids.insert(i, image_id)

    def remove(self, key: str, image_id: str) -> None:
        ids = self._ids.get(key)
        if not ids:
            return
        i = bisect.bisect_left(ids, image_id)
        if i < len(ids) and ids[i] == image_id:
            del ids[i]
        if not ids:
            del self._ids[key]

    def lookup(self, key: str, limit: int = 0) -> list[str]:
        """Ids under `key`, newest first; `limit` 0 means all."""
        ids = self._ids.get(key, [])
        newest_first = ids[::-1]
        return newest_first[:limit] if limit > 0 else newest_first

    def ids(self, key: str) -> list[str]:
        """The ids under `key`, oldest first (the index's own list: do not modify)."""
        return self._ids.get(key, [])

    def count(self, key: str) -> int:
        return len(self._ids.get(key, ()))

    def __len__(self) -> int:
        return sum(len(v) for v in self._ids.values())

    def load(self, key: str, sorted_ids: list[str]) -> None:
        """Set the ids under `key` at once (sorted, oldest first), at open."""
        if sorted_ids:
            self._ids[key] = sorted_ids
        else:
            self._ids.pop(key, None)


class SlotIndex:
    """key -> slots sorted by their ids (`ids[slot]`), oldest first."""

    def __init__(self, ids: Sequence[str]) -> None:
        self._ids = ids
        self._slots: dict[str, array[int]] = {}

    def add(self, key: str, slot: int) -> None:
        slots = self._slots.get(key)
        if slots is None:
            slots = self._slots[key] = array("i")
        ids = self._ids
        image_id = ids[slot]
        # New images have the newest ids: appended, no search.
        if not slots or ids[slots[-1]] < image_id:
            slots.append(slot)
            return
        i = bisect.bisect_left(slots, image_id, key=ids.__getitem__)
        if i == len(slots) or slots[i] != slot:
            slots.insert(i, slot)

    def remove(self, key: str, slot: int) -> None:
        """Unlist `slot` (while `ids[slot]` is still the id it was listed under)."""
        slots = self._slots.get(key)
        if not slots:
            return
        i = bisect.bisect_left(slots, self._ids[slot], key=self._ids.__getitem__)
        if i < len(slots) and slots[i] == slot:
            del slots[i]
        if not slots:
            del self._slots[key]

    def slots(self, key: str) -> Sequence[int]:
        """The slots under `key`, oldest id first (the index's own array: do not modify)."""
        return self._slots.get(key, _EMPTY)

    def before(self, key: str, image_id: str) -> int:
        """How many slots under `key` have an id below `image_id` (a page token's place)."""
        slots = self._slots.get(key, _EMPTY)
        return bisect.bisect_left(slots, image_id, key=self._ids.__getitem__)

    def count(self, key: str) -> int:
        return len(self._slots.get(key, ()))

    def __len__(self) -> int:
        return sum(len(v) for v in self._slots.values())

    @property
    def nbytes(self) -> int:
        return sum(v.itemsize * len(v) for v in self._slots.values())

    def load(self, key: str, sorted_slots: np.ndarray) -> None:
        """Set the slots under `key` at once (sorted by id), at open."""
        if len(sorted_slots):
            slots = array("i")
            slots.frombytes(np.ascontiguousarray(sorted_slots, dtype=np.intc).tobytes())
            self._slots[key] = slots
        else:
            self._slots.pop(key, None)


_EMPTY: array[int] = array("i")


# A discarded entry of the sorted arrays (dropped at the next pass).
DISCARDED = -1


class HashIndex:
    """64-bit key hash -> slots, in fixed-width arrays (12 bytes an entry, no Python object per
    image): a sorted pair of arrays, and a short list of recent additions merged in when it
    grows. A lookup returns candidate slots and the caller keeps those still live whose full
    key matches (a hash collision or a stale entry is simply dropped there). `discard` removes
    one entry (a deleted image's, before its slot is reused): from the recent additions at
    once, in the sorted arrays by marking it, and the marked ones are dropped in one pass once
    they are an eighth of the entries, so churn never grows the index.
    """

    MERGE_AT = 4096

    def __init__(self) -> None:
        self._keys = np.empty(0, dtype=np.int64)
        self._slots = np.empty(0, dtype=np.int32)
        self._recent: dict[int, list[int]] = {}
        self._recent_count = 0
        self._discarded = 0

    @property
    def nbytes(self) -> int:
        return self._keys.nbytes + self._slots.nbytes

    def __len__(self) -> int:
        return len(self._keys) - self._discarded + self._recent_count

    def bulk_load(self, keys: np.ndarray, slots: np.ndarray) -> None:
        order = np.argsort(keys, kind="stable")
        self._keys = keys[order].astype(np.int64)
        self._slots = slots[order].astype(np.int32)
        self._recent, self._recent_count = {}, 0
        self._discarded = 0

    def add(self, key: int, slot: int) -> None:
        self._recent.setdefault(key, []).append(slot)
        self._recent_count += 1
        if self._recent_count >= self.MERGE_AT:
            self._merge()

    def _merge(self) -> None:
        keys = np.fromiter(
            (k for k, slots in self._recent.items() for _ in slots), np.int64, self._recent_count
        )
        slots = np.fromiter(
            (s for ss in self._recent.values() for s in ss), np.int32, self._recent_count
        )
        order = np.argsort(keys, kind="stable")
        keys, slots = keys[order], slots[order]
        at = np.searchsorted(self._keys, keys, side="right")
        self._keys = np.insert(self._keys, at, keys)
        self._slots = np.insert(self._slots, at, slots)
        self._recent, self._recent_count = {}, 0

    def lookup(self, key: int) -> list[int]:
        """Candidate slots under `key` (may include dead slots and collisions)."""
        k = np.int64(key)
        a = int(np.searchsorted(self._keys, k, side="left"))
        b = int(np.searchsorted(self._keys, k, side="right"))
        found = self._slots[a:b].tolist() if b > a else []
        if self._discarded and DISCARDED in found:
            found = [s for s in found if s != DISCARDED]
        return found + self._recent.get(key, [])

    def discard(self, key: int, slot: int) -> None:
        """Remove the entry (key, slot) if there is one."""
        recent = self._recent.get(key)
        if recent is not None and slot in recent:
            recent.remove(slot)
            self._recent_count -= 1
            if not recent:
                del self._recent[key]
            return
        k = np.int64(key)
        a = int(np.searchsorted(self._keys, k, side="left"))
        b = int(np.searchsorted(self._keys, k, side="right"))
        hits = np.flatnonzero(self._slots[a:b] == slot)
        if not len(hits):
            return
        self._slots[a + int(hits[0])] = DISCARDED
        self._discarded += 1
        if 8 * self._discarded > len(self._keys):
            keep = self._slots != DISCARDED
            self._keys, self._slots = self._keys[keep], self._slots[keep]
            self._discarded = 0

    def prune(self, live: np.ndarray) -> None:
        """Drop entries whose slot is not live (`live`: bool per slot)."""
        if self._recent_count:
            self._merge()
        keep = (self._slots != DISCARDED) & live[np.maximum(self._slots, 0)]
        self._keys, self._slots = self._keys[keep], self._slots[keep]
        self._discarded = 0
