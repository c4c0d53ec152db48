"""The change feed's history: (seq, kind, image id) of every retained change, in seq order.

Compact on purpose (issue 13: about a million images in a few hundred MB): appended changes
collect in a short Python tail and are frozen into numpy chunks (8 bytes of seq, 1 of kind and
32 of id per change, about 41 MB per million changes), so the history never holds a Python
object per change. Only the store touches it, under its lock; changes arrive in increasing
seq order (rows become visible in seq order), and `trim_below` drops whole prefixes when the
retention horizon advances.
"""

from __future__ import annotations

import bisect

import numpy as np

CHUNK = 8192
ID_DTYPE = "S32"


class ChangeHistory:
    def __init__(self) -> None:
        # Frozen chunks: (seqs int64, kinds uint8, ids S32), each sorted by seq.
        self._chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        # First seq of each chunk (for bisect), and how many leading rows of chunk 0 are gone.
        self._firsts: list[int] = []
        self._start = 0
        self._tail_seqs: list[int] = []
        self._tail_kinds: list[int] = []
        self._tail_ids: list[bytes] = []
        self._long_ids: dict[int, str] = {}
        self.last_seq = 0

    def __len__(self) -> int:
        frozen = sum(len(c[0]) for c in self._chunks) - self._start
        return frozen + len(self._tail_seqs)

    def append(self, seq: int, kind: int, image_id: str) -> None:
        if seq <= self.last_seq:
            raise ValueError(f"change {seq} arrives after {self.last_seq}: out of order")
        raw = image_id.encode()
        if len(raw) > 32:  # never for ids the store makes; kept exact all the same
            self._long_ids[seq] = image_id
        self._tail_seqs.append(seq)
        self._tail_kinds.append(kind)
        self._tail_ids.append(raw[:32])
        self.last_seq = seq
        if len(self._tail_seqs) >= CHUNK:
            self._freeze_tail()

    def _freeze_tail(self) -> None:
        if not self._tail_seqs:
            return
        self._chunks.append(
            (
                np.asarray(self._tail_seqs, dtype=np.int64),
                np.asarray(self._tail_kinds, dtype=np.uint8),
                np.asarray(self._tail_ids, dtype=ID_DTYPE),
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
        for old in [s for s in self._long_ids if s < seq]:
            del self._long_ids[old]

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
            for j in range(lo, hi):
                seq = int(seqs[j])
                image_id = self._long_ids.get(seq) or ids[j].decode()
                out.append((seq, int(kinds[j]), image_id))
        if len(out) < limit and self._tail_seqs:
            lo = bisect.bisect_right(self._tail_seqs, after_seq)
            for j in range(lo, min(len(self._tail_seqs), lo + limit - len(out))):
                seq = self._tail_seqs[j]
                image_id = self._long_ids.get(seq) or self._tail_ids[j].decode()
                out.append((seq, self._tail_kinds[j], image_id))
        return out

    def nbytes(self) -> int:
        """Approximate memory of the history (for stats and the memory test)."""
        frozen = sum(a.nbytes + b.nbytes + c.nbytes for a, b, c in self._chunks)
        return frozen + len(self._tail_seqs) * 100
