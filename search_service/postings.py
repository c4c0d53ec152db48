"""Posting lists: sorted document numbers stored as delta + varint bytes, weights as one byte.

Byte layout of one posting list (two growable buffers, appended to in document order):

    ids:     varint(d0) varint(d1 - d0) varint(d2 - d1) ...   7 bits per byte, low bits first,
                                                              high bit set = more bytes follow
    weights: q0 q1 q2 ...                                     one byte per posting, 1..255

Document numbers only ever grow (an update gets a fresh number), so adding a posting appends a
few bytes. Decoding is vectorised with numpy: a 100k-entry list decodes in well under a
millisecond, which is why postings stay compressed in memory instead of as Python lists.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

WEIGHT_LEVELS = 255


def encode_varints(values: npt.ArrayLike) -> bytes:
    """Little-endian base-128 varints of non-negative integers (vectorised)."""
    v = np.asarray(values, dtype=np.uint64)
    if v.size == 0:
        return b""
    return _encode(v, _widths(v))


def _widths(v: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
    """Bytes each value needs: 1 + number of further 7-bit groups."""
    widths = np.ones(v.shape, dtype=np.int64)
    rest = v >> np.uint64(7)
    while rest.any():
        widths += rest > 0
        rest >>= np.uint64(7)
    return widths


def _encode(v: npt.NDArray[np.uint64], widths: npt.NDArray[np.int64]) -> bytes:
    ends = np.cumsum(widths)
    starts = ends - widths
    out = np.zeros(int(ends[-1]), dtype=np.uint8)
    for k in range(int(widths.max())):
        has = widths > k
        chunk = (v[has] >> np.uint64(7 * k)) & np.uint64(0x7F)
        more = (widths[has] > k + 1).astype(np.uint8) << 7
        out[starts[has] + k] = chunk.astype(np.uint8) | more
    return out.tobytes()


def decode_varints(data: bytes | bytearray | memoryview) -> npt.NDArray[np.int64]:
    """Inverse of encode_varints."""
    b = np.frombuffer(data, dtype=np.uint8)
    if b.size == 0:
        return np.zeros(0, dtype=np.int64)
    last = (b & 0x80) == 0
    ends = np.flatnonzero(last)
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    group = np.repeat(np.arange(ends.size), ends - starts + 1)
    shift = (np.arange(b.size) - starts[group]) * 7
    parts = (b & 0x7F).astype(np.int64) << shift
    return np.add.reduceat(parts, starts)


def encode_varint(value: int) -> bytes:
    """One varint, for the append path (plain Python is faster than numpy for one value)."""
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _varint_count(data: bytes) -> int:
    """How many varints `data` holds (bytes without the continuation bit end one)."""
    return int(np.count_nonzero((np.frombuffer(data, np.uint8) & 0x80) == 0))


def quantise_weight(weight: float, scale: float) -> int:
    """A weight in (0, scale] as one byte 1..255 (never 0: a posting always counts)."""
    return max(1, min(WEIGHT_LEVELS, round(weight / scale * WEIGHT_LEVELS)))


class PostingList:
    """The documents holding one term in one field, with a per-document weight."""

    __slots__ = ("_ids", "_weights", "_last", "count")

    def __init__(self) -> None:
        self._ids = bytearray()
        self._weights = bytearray()
        self._last = -1
        self.count = 0

    def append(self, doc: int, weight_q: int) -> None:
        last = self._last
        if doc <= last:
            raise ValueError(f"postings must be added in order: {doc} after {last}")
        delta = doc - last if last >= 0 else doc
        if delta < 0x80:  # one byte, the common case for frequent terms
            self._ids.append(delta)
        else:
            self._ids += encode_varint(delta)
        self._weights.append(weight_q)
        self._last = doc
        self.count += 1

    def decode(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
        """Document numbers (ascending) and their quantised weights."""
        ids = np.cumsum(decode_varints(self._ids))
        return ids, np.frombuffer(bytes(self._weights), dtype=np.uint8)

    @property
    def nbytes(self) -> int:
        return len(self._ids) + len(self._weights)

    def raw(self) -> tuple[bytes, bytes]:
        return bytes(self._ids), bytes(self._weights)

    def prefix_before(self, docno: int) -> tuple[bytes, bytes, int]:
        """(id bytes, weight bytes, last document) of the postings of documents numbered below
        `docno`. Safe while another thread appends (each copy is atomic under the GIL, and an
        append only adds at the end)."""
        ids_b = bytes(self._ids)
        weights_b = bytes(self._weights)
        last = self._last
        if last < docno:  # nothing at or past docno had been added when ids_b was copied
            return ids_b, weights_b[: _varint_count(ids_b)], last
        ids = np.cumsum(decode_varints(ids_b))
        keep = int(np.searchsorted(ids, docno))
        if keep == 0:
            return b"", b"", -1
        ends = np.flatnonzero((np.frombuffer(ids_b, np.uint8) & 0x80) == 0)
        return ids_b[: int(ends[keep - 1]) + 1], weights_b[:keep], int(ids[keep - 1])

    def sizes(
        self, held: dict[PostingList, tuple[int, int, int]]
    ) -> tuple[bytearray, bytearray, int]:
        """(id bytes, weight bytes, last document) as the list stood when the view `held`
        was taken: appends made since recorded the sizes before they changed them
        (append_runs), so this reads no more than a few lengths and copies two prefixes. Safe
        while another thread appends: the sizes are read before `held` is asked, and an append
        records in `held` before it changes anything."""
        sizes = len(self._ids), len(self._weights), self._last
        before = held.get(self)
        n_ids, n_weights, last = sizes if before is None else before
        return self._ids[:n_ids], self._weights[:n_weights], last

    @classmethod
    def from_arrays(cls, ids: npt.ArrayLike, weights_q: npt.ArrayLike) -> PostingList:
        """Bulk build from ascending document numbers (the fast path for loads and rebuilds)."""
        ids_arr = np.asarray(ids, dtype=np.int64)
        plist = cls()
        if ids_arr.size:
            deltas = np.diff(ids_arr, prepend=0)
            if (deltas[1:] <= 0).any() or deltas[0] < 0:
                raise ValueError("document numbers must be strictly ascending")
            plist._ids = bytearray(encode_varints(deltas))
            plist._last = int(ids_arr[-1])
        plist._weights = bytearray(np.asarray(weights_q, dtype=np.uint8).tobytes())
        plist.count = int(ids_arr.size)
        return plist

    @classmethod
    def from_raw(cls, ids_bytes: bytes, weights: bytes, last: int) -> PostingList:
        plist = cls()
        plist._ids = bytearray(ids_bytes)
        plist._weights = bytearray(weights)
        plist._last = last
        plist.count = len(weights)
        return plist

    @property
    def last(self) -> int:
        return self._last


def append_runs(
    plists: list[PostingList],
    bounds: npt.NDArray[np.int64],
    docs: npt.NDArray[np.int64],
    weights_q: npt.NDArray[np.uint8],
    held: dict[PostingList, tuple[int, int, int]] | None = None,
) -> None:
    """Append docs[bounds[i]:bounds[i + 1]] (ascending, all above the list's last document)
    with their weights to plists[i], for every i: the deltas of all the runs are varint-encoded
    in one vectorised call, so a batch of documents costs one slice per touched list.

    `held` (a snapshot's view, see `sizes`): each list not in it yet gets its sizes recorded
    there before anything is appended to it."""
    if not plists:
        return
    lasts = np.fromiter((p._last for p in plists), np.int64, len(plists))
    append_encoded(plists, encode_runs(lasts, bounds, docs, weights_q), held)


# Runs encoded for appending (encode_runs): per list, its id bytes, weight bytes, new last
# document and number of postings.
EncodedRuns = tuple[list[bytes], list[bytes], list[int], list[int]]


def encode_runs(
    lasts: npt.NDArray[np.int64],
    bounds: npt.NDArray[np.int64],
    docs: npt.NDArray[np.int64],
    weights_q: npt.NDArray[np.uint8],
) -> EncodedRuns:
    """The bytes append_runs would append to lists whose last documents are `lasts` (-1:
    empty), a list of them per list: made without touching a list, so a writer can make them
    before it takes the lock searches wait on and append them under it (append_encoded), as
    long as no other writer appends to those lists meanwhile."""
    starts = bounds[:-1]
    if (docs[starts] <= lasts).any():
        raise ValueError("postings must be added in order")
    prev = np.empty_like(docs)
    prev[1:] = docs[:-1]
    prev[starts] = np.maximum(lasts, 0)
    deltas = (docs - prev).astype(np.uint64)
    widths = _widths(deltas)
    data = _encode(deltas, widths)
    byte_bounds = np.zeros(deltas.size + 1, np.int64)
    np.cumsum(widths, out=byte_bounds[1:])
    byte_at = byte_bounds[bounds].tolist()
    at = bounds.tolist()
    weights = np.ascontiguousarray(weights_q, np.uint8).tobytes()
    return (
        [data[b0:b1] for b0, b1 in zip(byte_at, byte_at[1:], strict=False)],
        [weights[a0:a1] for a0, a1 in zip(at, at[1:], strict=False)],
        docs[bounds[1:] - 1].tolist(),
        np.diff(bounds).tolist(),
    )


def append_encoded(
    plists: list[PostingList],
    encoded: EncodedRuns,
    held: dict[PostingList, tuple[int, int, int]] | None = None,
) -> None:
    """Append encode_runs' bytes to the lists they were made for (`held`: see append_runs)."""
    if held is not None:
        for plist in plists:
            if plist not in held:
                held[plist] = (len(plist._ids), len(plist._weights), plist._last)
    for plist, ids_b, weights_b, last, count in zip(plists, *encoded, strict=True):
        plist._ids += ids_b
        plist._weights += weights_b
        plist._last = last
        plist.count += count
