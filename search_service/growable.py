"""A numpy array that grows by appending, with amortised doubling of its capacity."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt


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
        read before an append fills it)."""
        out = cls.__new__(cls)
        out._data = np.empty((max(1024, len(arr)), *arr.shape[1:]), dtype=arr.dtype)
        out._data[: len(arr)] = arr
        out._size = len(arr)
        return out
