"""Image id -> slot, in one fixed-width array (4 bytes a table entry, no Python object per
image): open addressing with linear probing, at most half full.

The table holds slots only, not keys: a slot's id is the store's `ids[slot]` (an IdArray of
fixed-width bytes, id_array.py), compared on lookup, so the ids are kept once (the store needs
them anyway). The probe start is the IdArray's stable hash of the id, computed from a string
key and from a stored slot's bytes alike (vectorised when many slots are placed at once).
Removal shifts the following entries back (no
tombstones), so a long-running store with churn never degrades. Building from many slots at
once (at open, or when the table grows) is vectorised: each round places, per free table
position, one of the keys that want it and moves the others one step on.

Not thread-safe: the store calls it with its lock held.
"""

from __future__ import annotations

from typing import overload

import numpy as np

from .id_array import IdArray

EMPTY = -1
_MIN_CAPACITY = 1024


class SlotMap:
    def __init__(self, ids: IdArray) -> None:
        # ids[slot] is the id of every slot in the table (the store's own list: shared).
        self._ids = ids
        self._count = 0
        self._alloc(_MIN_CAPACITY)

    def _alloc(self, capacity: int) -> None:
        self._table = np.full(capacity, EMPTY, dtype=np.int32)
        # Scalar access through a memoryview is several times faster than numpy indexing.
        self._view = self._table.data
        self._mask = capacity - 1

    @property
    def capacity(self) -> int:
        return len(self._table)

    @property
    def nbytes(self) -> int:
        return self._table.nbytes

    def __len__(self) -> int:
        return self._count

    @overload
    def get(self, key: str) -> int | None: ...
    @overload
    def get(self, key: str, default: int) -> int: ...
    def get(self, key: str, default: int | None = None) -> int | None:
        view, ids, mask = self._view, self._ids, self._mask
        h, raw = ids.key(key)
        i = h & mask
        while True:
            slot = view[i]
            if slot == EMPTY:
                return default
            if ids.matches(slot, key, raw):
                return slot
            i = (i + 1) & mask

    def __getitem__(self, key: str) -> int:
        slot = self.get(key)
        if slot is None:
            raise KeyError(key)
        return slot

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def add(self, key: str, slot: int) -> None:
        """Map `key` (not yet in the map; `ids[slot] == key` already) to `slot`."""
        if 2 * (self._count + 1) > len(self._table):
            self._rebuild(2 * len(self._table))
        view, mask = self._view, self._mask
        i = self._ids.key(key)[0] & mask
        while view[i] != EMPTY:
            i = (i + 1) & mask
        view[i] = slot
        self._count += 1

    def remove(self, key: str) -> int | None:
        """Unmap `key` (call before its slot's id changes); its slot, or None."""
        view, ids, mask = self._view, self._ids, self._mask
        h, raw = ids.key(key)
        i = h & mask
        while True:
            slot = view[i]
            if slot == EMPTY:
                return None
            if ids.matches(slot, key, raw):
                break
            i = (i + 1) & mask
        # Backward shift: move later entries of the probe run into the hole when their home
        # position does not lie cyclically in (hole, their position].
        hole, j = i, i
        while True:
            j = (j + 1) & mask
            moving = view[j]
            if moving == EMPTY:
                break
            home = ids.hash_at(moving) & mask
            if (hole < j and (home <= hole or home > j)) or (
                hole > j and (home <= hole and home > j)
            ):
                view[hole] = moving
                hole = j
        view[hole] = EMPTY
        self._count -= 1
        return slot

    def bulk_load(self, slots: np.ndarray) -> None:
        """Replace the map with these slots (their ids distinct), keyed by `ids[slot]`."""
        slots = np.asarray(slots, dtype=np.int32)
        capacity = _MIN_CAPACITY
        while 2 * len(slots) > capacity:
            capacity *= 2
        self._alloc(capacity)
        self._count = 0
        self._place(slots)

    def _rebuild(self, capacity: int) -> None:
        slots = self._table[self._table != EMPTY]
        self._alloc(capacity)
        self._count = 0
        self._place(slots)

    def _place(self, slots: np.ndarray) -> None:
        table, mask = self._table, self._mask
        pos = (self._ids.hashes(slots) & np.uint64(mask)).astype(np.int64)
        pending = slots
        while len(pending):
            free = np.flatnonzero(table[pos] == EMPTY)
            # Every key wanting a free position writes itself there and one of them stays;
            # the rest step on (the position is taken either way, so linear probing's order
            # holds).
            table[pos[free]] = pending[free]
            won = free[table[pos[free]] == pending[free]]
            lost = np.ones(len(pending), dtype=bool)
            lost[won] = False
            pending = pending[lost]
            pos = (pos[lost] + 1) & np.int64(mask)
        self._count += len(slots)
