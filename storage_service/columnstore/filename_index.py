"""An exact-match secondary index: key (a filename, a sha256, an owner, a status) -> image ids,
kept sorted, so lookups, counts and pages cost O(page), never a scan of every image.

Ids start with their creation time in hex, so sorting ids sorts by age. The index lives in
memory and is rebuilt from the segments' filename and sha256 columns at every open, so it can
never disagree with them after a crash.
"""

from __future__ import annotations

import bisect


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
