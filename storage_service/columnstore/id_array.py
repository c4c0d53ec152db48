"""Image ids by slot in one fixed-width array: 16 bytes an id, no Python object per image.

The ids the store makes are 32 lowercase hex digits (creation ms, a counter, 8 random bytes:
`ColumnStore._new_id`), kept here as the 16 bytes they spell, so 1M ids take 16 MB instead of
the 89 MB of a list of strings. Any other id (a counter past four hex digits, an id written by
hand) is kept as a string in a small side table, as is "" (a free slot); its 16 bytes are zero.

    raw    u8[capacity * 16]   the id of slot s in raw[16*s : 16*s+16] (big-endian hex digits)
    odd    dict slot -> str    ids that are not 32 lowercase hex digits, and "" (free slots)

Reading `ids[slot]` builds the string on demand (bytes.hex). For the id -> slot map the hash
of an id is computed from its bytes, the same for a string key and for a stored slot, stable
across processes (not Python's randomised `hash()`), and vectorised for many slots at once.
Hex ids order the same as their bytes, so sorting slots by id is one numpy lexsort.

Not thread-safe: the store calls it with its lock held.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Sequence

import numpy as np

WIDTH = 16
_M64 = (1 << 64) - 1
_C1 = 0x9E3779B97F4A7C15
_C2 = 0xBF58476D1CE4E5B9


def id_bytes(image_id: str) -> bytes | None:
    """The 16 bytes a 32-digit lowercase hex id spells; None for any other id."""
    if len(image_id) != 2 * WIDTH:
        return None
    try:
        raw = bytes.fromhex(image_id)
    except ValueError:
        return None
    # fromhex also takes upper case and spaces: only the id's own spelling round-trips.
    return raw if len(raw) == WIDTH and raw.hex() == image_id else None


def pack_ids(ids: Sequence[str]) -> bytes | None:
    """The id_bytes of every id, joined, when each is 32 lowercase hex digits (one fromhex over
    them all); None when any is not."""
    joined = "".join(ids)
    if len(joined) != 2 * WIDTH * len(ids) or not all(len(i) == 2 * WIDTH for i in ids):
        return None
    try:
        raw = bytes.fromhex(joined)
    except ValueError:
        return None
    return raw if len(raw) == WIDTH * len(ids) and raw.hex() == joined else None


def pack_column(lengths: np.ndarray, body: bytes) -> tuple[np.ndarray, dict[int, str]]:
    """A string column's ids (`lengths` u32 per row, `body` their UTF-8 bytes back to back) as
    (u8[rows, WIDTH], {row: id} of the ids that are not 32 lowercase hex digits, their rows
    zero): one fromhex over the whole column when every id is hex, no Python string per id."""
    rows = len(lengths)
    out = np.zeros((rows, WIDTH), dtype=np.uint8)
    odd: dict[int, str] = {}
    if rows and bool(np.all(lengths == 2 * WIDTH)) and len(body) == 2 * WIDTH * rows:
        try:
            text = body.decode("ascii")
            raw = bytes.fromhex(text)
        except ValueError:
            raw = b""
        if len(raw) == WIDTH * rows and raw.hex() == text:
            out[:] = np.frombuffer(raw, dtype=np.uint8).reshape(rows, WIDTH)
            return out, odd
    pos = 0
    for row, length in enumerate(lengths.tolist()):
        image_id = body[pos : pos + length].decode()
        pos += length
        one = id_bytes(image_id)
        if one is None:
            odd[row] = image_id
        else:
            out[row] = np.frombuffer(one, dtype=np.uint8)
    return out, odd


def _mix(hi: int, lo: int) -> int:
    h = ((hi * _C1) ^ lo) & _M64
    h = ((h ^ (h >> 32)) * _C2) & _M64
    return h ^ (h >> 29)


def _odd_hash(image_id: str) -> int:
    digest = hashlib.blake2b(image_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def key_hash(image_id: str, raw: bytes | None) -> int:
    """The stable 64-bit hash of an id (`raw`: its id_bytes)."""
    if raw is None:
        return _odd_hash(image_id)
    return _mix(int.from_bytes(raw[:8], "big"), int.from_bytes(raw[8:], "big"))


class IdArray(Sequence[str]):
    """ids[slot] -> str, kept as fixed-width bytes (see the module docstring)."""

    def __init__(self) -> None:
        self._n = 0
        self._odd: dict[int, str] = {}
        self._raw = np.zeros(0, dtype=np.uint8)
        self._alloc(1024)

    def _alloc(self, capacity: int) -> None:
        raw = np.zeros(capacity * WIDTH, dtype=np.uint8)
        if self._n:
            raw[: self._n * WIDTH] = self._raw[: self._n * WIDTH]
        self._raw = raw
        # Slicing a memoryview is several times faster than numpy indexing for one id.
        self._view = raw.data

    @property
    def nbytes(self) -> int:
        return self._raw.nbytes + 100 * len(self._odd)

    @property
    def odd_count(self) -> int:
        """Slots whose id is kept as a string (odd ids and free slots)."""
        return len(self._odd)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, slot: int) -> str:  # type: ignore[override]
        if not 0 <= slot < self._n:
            raise IndexError(slot)
        if self._odd:
            odd = self._odd.get(slot)
            if odd is not None:
                return odd
        return self._view[WIDTH * slot : WIDTH * slot + WIDTH].hex()

    def __setitem__(self, slot: int, image_id: str) -> None:
        if not 0 <= slot < self._n:
            raise IndexError(slot)
        self._set(slot, image_id)

    def _set(self, slot: int, image_id: str) -> None:
        raw = id_bytes(image_id)
        if raw is None:
            self._odd[slot] = image_id
            raw = bytes(WIDTH)
        elif self._odd:
            self._odd.pop(slot, None)
        self._view[WIDTH * slot : WIDTH * slot + WIDTH] = raw

    def append(self, image_id: str) -> None:
        if self._n * WIDTH == len(self._raw):
            self._alloc(self._n + self._n // 8 + 4096)
        self._n += 1
        self._set(self._n - 1, image_id)

    def assign(self, ids: Sequence[str]) -> None:
        """Replace the content with `ids` (slot i gets ids[i]) in one pass."""
        self._n = 0
        self._odd = {}
        self._alloc(max(len(ids), 1024))
        self._n = len(ids)
        if not ids:
            return
        raw = pack_ids(ids)
        if raw is not None:
            self._raw[: len(raw)] = np.frombuffer(raw, dtype=np.uint8)
            return
        for slot, image_id in enumerate(ids):
            self._set(slot, image_id)

    def assign_raw(self, raw: np.ndarray, odd: dict[int, str]) -> None:
        """Replace the content with the ids in `raw` (u8[n, WIDTH], as pack_column makes) and
        `odd` ({slot: id} of the others): slot i gets row i. No Python object per id."""
        n = len(raw)
        self._n = 0
        self._odd = {}
        self._alloc(max(n, 1024))
        self._n = n
        self._raw[: n * WIDTH] = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1)
        for slot, image_id in odd.items():
            self._set(slot, image_id)

    # --- for the id -> slot map -------------------------------------------------------------

    def key(self, image_id: str) -> tuple[int, bytes | None]:
        """(hash, id_bytes) of a key, computed once per lookup."""
        raw = id_bytes(image_id)
        return key_hash(image_id, raw), raw

    def matches(self, slot: int, image_id: str, raw: bytes | None) -> bool:
        """Whether slot's id is `image_id` (`raw`: its id_bytes)."""
        if self._odd:
            odd = self._odd.get(slot)
            if odd is not None:
                return odd == image_id
        return raw is not None and self._view[WIDTH * slot : WIDTH * slot + WIDTH] == raw

    def hash_at(self, slot: int) -> int:
        """The hash of slot's id, from its stored bytes."""
        if self._odd:
            odd = self._odd.get(slot)
            if odd is not None:
                return _odd_hash(odd)
        at = WIDTH * slot
        view = self._view
        return _mix(
            int.from_bytes(view[at : at + 8], "big"), int.from_bytes(view[at + 8 : at + 16], "big")
        )

    def _words(self, slots: np.ndarray) -> np.ndarray:
        """(len(slots), 2) uint64: each id's two big-endian halves."""
        rows = self._raw[: self._n * WIDTH].reshape(self._n, WIDTH)[slots]
        return rows.view(">u8").astype(np.uint64)

    def hashes(self, slots: np.ndarray) -> np.ndarray:
        """key_hash of every slot's id (uint64), vectorised."""
        slots = np.asarray(slots, dtype=np.int64)
        words = self._words(slots)
        with np.errstate(over="ignore"):
            h = (words[:, 0] * np.uint64(_C1)) ^ words[:, 1]
            h = (h ^ (h >> np.uint64(32))) * np.uint64(_C2)
            h ^= h >> np.uint64(29)
        if self._odd:
            for i in self._odd_positions(slots).tolist():
                h[i] = _odd_hash(self._odd[int(slots[i])])
        return h

    def _odd_positions(self, slots: np.ndarray) -> np.ndarray:
        odd = np.fromiter(self._odd, np.int64, len(self._odd))
        return np.flatnonzero(np.isin(slots, odd))

    # --- bulk work at open ------------------------------------------------------------------

    def argsort(self, slots: np.ndarray) -> np.ndarray:
        """The order that sorts `slots` by their ids (stable: ties keep their order)."""
        slots = np.asarray(slots, dtype=np.int64)
        if self._odd and len(self._odd_positions(slots)):
            ids = [self[s] for s in slots.tolist()]
            return np.array(sorted(range(len(ids)), key=ids.__getitem__), dtype=np.int64)
        words = self._words(slots)
        return np.lexsort((words[:, 1], words[:, 0]))

    def crc32s(self, slots: np.ndarray) -> np.ndarray:
        """zlib.crc32 of every slot's id as ASCII (uint64), as taken_index.sort_key uses."""
        slots = np.asarray(slots, dtype=np.int64)
        out = np.empty(len(slots), dtype=np.uint64)
        table = self._raw[: self._n * WIDTH].reshape(self._n, WIDTH)
        step = 2 * WIDTH
        for at in range(0, len(slots), 65536):
            part = slots[at : at + 65536]
            text = memoryview(table[part].tobytes().hex().encode())
            out[at : at + len(part)] = [
                zlib.crc32(text[i : i + step]) for i in range(0, len(text), step)
            ]
        if self._odd:
            for i in self._odd_positions(slots).tolist():
                out[i] = zlib.crc32(self._odd[int(slots[i])].encode())
        return out
