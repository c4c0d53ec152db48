"""The change feed's history: (seq, kind, image id) of every retained change, in seq order.

Compact on purpose (issue 13: about a million images in a few hundred MB): appended changes
collect in a short Python tail (at most CHUNK, ids as the strings they came as) and are frozen
into numpy chunks, so the history never holds a Python object per change. A frozen change
takes 8 bytes of seq, 1 of kind and 16 of id, about 25 MB per million changes: ids are kept as
id_array's 16 bytes (the 32 lowercase hex digits the store makes, as the bytes they spell,
packed a chunk at a time); an id of any other shape is kept exact as a string in a small side
table by seq, its 16 bytes zero. Only the store touches it, under its lock;
changes arrive in increasing seq order (rows become visible in seq order), and `trim_below`
drops whole prefixes when the retention horizon advances.
"""

from __future__ import annotations

import bisect

import numpy as np

from storage_service.columnstore.id_array import WIDTH, id_bytes, pack_ids

CHUNK = 8192
_ZERO = bytes(WIDTH)


class ChangeHistory:
    def __init__(self) -> None:
        # Frozen chunks: (seqs int64, kinds uint8, ids uint8 [n * WIDTH]), each sorted by seq.
        self._chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        # First seq of each chunk (for bisect), and how many leading rows of chunk 0 are gone.
        self._firsts: list[int] = []
        self._start = 0
        self._tail_seqs: list[int] = []
        self._tail_kinds: list[int] = []
        self._tail_ids: list[str] = []
        # seq -> id of frozen changes whose id is not 32 lowercase hex digits (never for ids
        # the store makes, kept exact all the same).
        self._odd: dict[int, str] = {}
        self.last_seq = 0

    def __len__(self) -> int:
        frozen = sum(len(c[0]) for c in self._chunks) - self._start
        return frozen + len(self._tail_seqs)

    def append(self, seq: int, kind: int, image_id: str) -> None:
        if seq <= self.last_seq:
            raise ValueError(f"change {seq} arrives after {self.last_seq}: out of order")
        self._tail_seqs.append(seq)
        self._tail_kinds.append(kind)
        self._tail_ids.append(image_id)
        self.last_seq = seq
        if len(self._tail_seqs) >= CHUNK:
            self._freeze_tail()

    def extend(
        self, seqs: np.ndarray, kinds: np.ndarray, ids: np.ndarray, odd: dict[int, str]
    ) -> None:
        """Append many changes at once (at open), in increasing seq order: `ids` u8[n, WIDTH]
        as id_array.pack_column makes them, `odd` {index: id} of the ids kept as strings.
        Frozen straight into chunks: no Python object per change."""
        if not len(seqs):
            return
        if int(seqs[0]) <= self.last_seq or (len(seqs) > 1 and bool(np.any(np.diff(seqs) <= 0))):
            raise ValueError(f"changes arrive out of order (after {self.last_seq})")
        self._freeze_tail()
        seqs = np.asarray(seqs, dtype=np.int64)
        kinds = np.asarray(kinds, dtype=np.uint8)
        flat = np.ascontiguousarray(ids, dtype=np.uint8).reshape(-1)
        for at in range(0, len(seqs), CHUNK):
            part = seqs[at : at + CHUNK].copy()
            self._chunks.append(
                (
                    part,
                    kinds[at : at + CHUNK].copy(),
                    flat[at * WIDTH : (at + CHUNK) * WIDTH].copy(),
                )
            )
            self._firsts.append(int(part[0]))
        for index, image_id in odd.items():
            self._odd[int(seqs[index])] = image_id
        self.last_seq = int(seqs[-1])

    def _freeze_tail(self) -> None:
        if not self._tail_seqs:
            return
        raw = pack_ids(self._tail_ids)
        if raw is None:  # some id is not 32 lowercase hex digits: one at a time
            parts = []
            for seq, image_id in zip(self._tail_seqs, self._tail_ids, strict=True):
                one = id_bytes(image_id)
                if one is None:
                    self._odd[seq] = image_id
                    one = _ZERO
                parts.append(one)
            raw = b"".join(parts)
        self._chunks.append(
            (
                np.asarray(self._tail_seqs, dtype=np.int64),
                np.asarray(self._tail_kinds, dtype=np.uint8),
                np.frombuffer(raw, dtype=np.uint8),
            )
        )
        self._firsts.append(self._tail_seqs[0])
        self._tail_seqs, self._tail_kinds, self._tail_ids = [], [], []

    def trim_below(self, seq: int) -> None:
        """Forget every change with a seq below `seq` (the new retention horizon)."""
        while self._chunks and int(self._chunks[0][0][-1]) < seq:
            self._chunks.pop(0)
            self._firsts.pop(0)
            self._start = 0
        if self._chunks:
            self._start = max(self._start, int(np.searchsorted(self._chunks[0][0], seq)))
        elif self._tail_seqs and self._tail_seqs[0] < seq:
            cut = bisect.bisect_left(self._tail_seqs, seq)
            del self._tail_seqs[:cut], self._tail_kinds[:cut], self._tail_ids[:cut]
        if self._odd:
            for old in [s for s in self._odd if s < seq]:
                del self._odd[old]

    def _decode(
        self, seqs: list[int], kinds: list[int], raw: bytes, out: list[tuple[int, int, str]]
    ) -> None:
        """Append (seq, kind, id) for each change, ids from their WIDTH bytes in `raw`."""
        text = raw.hex()
        step = 2 * WIDTH
        odd = self._odd
        for k, (seq, kind) in enumerate(zip(seqs, kinds, strict=True)):
            image_id = odd.get(seq) if odd else None
            if image_id is None:
                image_id = text[step * k : step * k + step]
            out.append((seq, kind, image_id))

    def after(self, after_seq: int, limit: int) -> list[tuple[int, int, str]]:
        """Up to `limit` changes with seq > after_seq, oldest first: (seq, kind, image id)."""
        out: list[tuple[int, int, str]] = []
        i = max(0, bisect.bisect_right(self._firsts, after_seq) - 1)
        for c in range(i, len(self._chunks)):
            if len(out) >= limit:
                return out
            seqs, kinds, ids = self._chunks[c]
            lo = int(np.searchsorted(seqs, after_seq, side="right"))
            if c == 0:
                lo = max(lo, self._start)
            hi = min(len(seqs), lo + limit - len(out))
            if lo < hi:
                self._decode(
                    seqs[lo:hi].tolist(),
                    kinds[lo:hi].tolist(),
                    ids[lo * WIDTH : hi * WIDTH].tobytes(),
                    out,
                )
        if len(out) < limit and self._tail_seqs:
            lo = bisect.bisect_right(self._tail_seqs, after_seq)
            hi = min(len(self._tail_seqs), lo + limit - len(out))
            tail = zip(
                self._tail_seqs[lo:hi], self._tail_kinds[lo:hi], self._tail_ids[lo:hi], strict=True
            )
            out.extend(tail)
        return out

    def nbytes(self) -> int:
        """Approximate memory of the history (for stats and the memory test): the frozen
        arrays' bytes, about 100 per change still in the tail and per odd id."""
        frozen = sum(a.nbytes + b.nbytes + c.nbytes for a, b, c in self._chunks)
        return frozen + 100 * (len(self._tail_seqs) + len(self._odd))
