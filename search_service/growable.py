"""Numpy rows that grow by appending: one array with amortised doubling of its capacity
(GrowableArray), or fixed-size chunks that never move a row (ChunkedRows)."""

from __future__ import annotations

import mmap
from typing import Any

import numpy as np
import numpy.typing as npt

# A ChunkedRows chunk this large or larger is a memory map of its own (see _new_chunk).
_OWN_MAP_BYTES = 1 << 20


class GrowableArray:
    """Rows of a fixed shape and dtype; `view()` is the filled part (no copy)."""

    def __init__(self, dtype: Any, row_shape: tuple[int, ...] = (), capacity: int = 1024) -> None:
        self._data = np.zeros((capacity, *row_shape), dtype=dtype)
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def append(self, row: Any) -> int:
        self._reserve(self._size + 1)
        self._data[self._size] = row
        self._size += 1
        return self._size - 1

    def extend(self, rows: npt.ArrayLike) -> None:
        arr = np.asarray(rows, dtype=self._data.dtype)
        self._reserve(self._size + len(arr))
        self._data[self._size : self._size + len(arr)] = arr
        self._size += len(arr)

    def view(self) -> npt.NDArray[Any]:
        return self._data[: self._size]

    def __getitem__(self, index: Any) -> Any:
        return self.view()[index]

    def __setitem__(self, index: Any, value: Any) -> None:
        self.view()[index] = value

    def reserve(self, extra: int) -> None:
        """Room for `extra` more rows. Growing copies every row into a new array, which
        readers see only once it is complete: a writer may call this before it takes the lock
        readers wait on (appends then find the room made), as long as no other writer changes
        the array meanwhile."""
        self._reserve(self._size + extra)

    def _reserve(self, size: int) -> None:
        if size <= len(self._data):
            return
        capacity = max(size, 2 * len(self._data), 1024)
        grown = np.zeros((capacity, *self._data.shape[1:]), dtype=self._data.dtype)
        grown[: self._size] = self._data[: self._size]
        self._data = grown

    @classmethod
    def from_array(cls, arr: npt.NDArray[Any]) -> GrowableArray:
        """A copy of `arr` (one pass: the room past its end is left unwritten, it is never
        read before an append fills it). Room for as many rows again, as the first append's
        doubling would make: left unwritten, it costs no memory until rows fill it, and the
        first write after a restart copies nothing (it copied every per-document array, tens
        of milliseconds at 1M documents, under the lock searches wait on)."""
        out = cls.__new__(cls)
        out._data = np.empty((max(1024, 2 * len(arr)), *arr.shape[1:]), dtype=arr.dtype)
        out._data[: len(arr)] = arr
        out._size = len(arr)
        return out


class ChunkedRows:
    """Rows of a fixed shape and dtype in chunks of `chunk_rows` rows, appended at the end.

    Growing adds a chunk and never moves or copies a row that is there (a GrowableArray copies
    every row when it doubles: 1.3 GB of int8 vectors at 1M, which the write that grows it
    waited for). A row's chunk is `row >> shift`, its place in it `row & mask`. Readers take
    `len()` before the chunk list, and a writer adds a chunk before it counts rows in it, so a
    reader that runs alongside one writer sees every row below the length it took, whole."""

    def __init__(
        self, dtype: Any, row_shape: tuple[int, ...] = (), chunk_rows: int = 16384
    ) -> None:
        if chunk_rows <= 0 or chunk_rows & (chunk_rows - 1):
            raise ValueError("chunk_rows must be a power of two")
        self.dtype = np.dtype(dtype)
        self.row_shape = row_shape
        self.chunk_rows = chunk_rows
        self.shift = chunk_rows.bit_length() - 1
        self.chunks: list[npt.NDArray[Any]] = []
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def _new_chunk(self) -> npt.NDArray[Any]:
        # Pages are mapped when first written, so a new chunk costs no copy and nearly no
        # time; a row is never read before an append fills it. A large chunk is a mapping of
        # its own (private, anonymous), so that dropping it always gives its memory back: the
        # C allocator, once one such block has been freed, takes blocks up to 32 MB from its
        # heap instead, and a chunk freed there (swapped for a map of a snapshot file) stayed
        # resident.
        shape = (self.chunk_rows, *self.row_shape)
        nbytes = int(np.prod(shape, dtype=np.int64)) * self.dtype.itemsize
        if nbytes < _OWN_MAP_BYTES:
            return np.empty(shape, self.dtype)
        memory = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE)
        return np.frombuffer(memory, self.dtype).reshape(shape)

    def extend(self, rows: npt.ArrayLike) -> None:
        arr = np.asarray(rows, dtype=self.dtype)
        done = 0
        while done < len(arr):
            chunk, at = divmod(self._size, self.chunk_rows)
            if chunk == len(self.chunks):
                self.chunks.append(self._new_chunk())
            take = min(self.chunk_rows - at, len(arr) - done)
            self.chunks[chunk][at : at + take] = arr[done : done + take]
            done += take
            self._size += take

    def reserve(self, extra: int) -> None:
        """Chunks for `extra` more rows, added now (empty: no row is copied), so that a writer
        may make them before it takes the lock readers wait on."""
        while len(self.chunks) * self.chunk_rows < self._size + extra:
            self.chunks.append(self._new_chunk())

    def blocks(self, size: int | None = None) -> list[tuple[int, npt.NDArray[Any]]]:
        """(first row, rows) per chunk, covering rows [0, size) (default: all): views, no
        copy."""
        size = self._size if size is None else size
        chunks = self.chunks
        out = []
        for i in range(0, -(-size // self.chunk_rows)):
            start = i * self.chunk_rows
            out.append((start, chunks[i][: min(self.chunk_rows, size - start)]))
        return out

    def take(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[Any]:
        """The given rows (any order, repeats allowed), as one new array."""
        rows = np.asarray(rows, np.int64)
        out = np.empty((rows.size, *self.row_shape), self.dtype)
        if not rows.size:
            return out
        chunk_of = rows >> self.shift
        within = rows & (self.chunk_rows - 1)
        first, last = int(chunk_of.min()), int(chunk_of.max())
        if first == last:
            out[:] = self.chunks[first][within]
            return out
        if np.all(rows[1:] >= rows[:-1]):  # in order (rescoring sorts them): cut at chunk edges
            edges = np.searchsorted(chunk_of, np.arange(first, last + 2)).tolist()
            for c, (a, b) in enumerate(zip(edges[:-1], edges[1:], strict=True), first):
                if b > a:
                    out[a:b] = self.chunks[c][within[a:b]]
            return out
        order = np.argsort(chunk_of, kind="stable")
        bounds = np.flatnonzero(np.diff(chunk_of[order])) + 1
        for part in np.split(order, bounds):
            out[part] = self.chunks[int(chunk_of[part[0]])][within[part]]
        return out

    def to_array(self) -> npt.NDArray[Any]:
        """All rows as one contiguous array (a copy)."""
        if not self._size:
            return np.empty((0, *self.row_shape), self.dtype)
        return np.concatenate([b for _, b in self.blocks()])

    @classmethod
    def from_array(cls, arr: npt.NDArray[Any], chunk_rows: int = 16384) -> ChunkedRows:
        """Rows of `arr`: whole chunks are views of its memory (no copy; `arr` is never written
        to), the rows of a last partial chunk are copied into a chunk of their own."""
        out = cls(arr.dtype, tuple(arr.shape[1:]), chunk_rows)
        whole = len(arr) // chunk_rows
        out.chunks = [arr[i * chunk_rows : (i + 1) * chunk_rows] for i in range(whole)]
        out._size = whole * chunk_rows
        out.extend(arr[whole * chunk_rows :])
        return out
