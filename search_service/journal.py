"""The journal: every change since the last snapshot, one line each, fsynced before it counts.

Line layout: `<crc32 of the JSON, 8 hex digits> <JSON>\n`, JSON one of
    {"seq": n, "op": "put", "doc": {...}, "vec": "<base64 float32 bytes>" | null}
    {"seq": n, "op": "del", "id": "<image id>"}
Sequence numbers grow by one. A snapshot records the last sequence number it holds; replay
skips lines at or below it, and stops at a torn or damaged last line (a crash mid-append).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from search_service.document import Document

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JournalEntry:
    seq: int
    doc: Document | None = None
    removed_id: str = ""


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = path.open("ab")
        self.entries = 0

    def append_put(self, seq: int, doc: Document) -> None:
        vec = doc.feature_vector
        vec_b64 = (
            base64.b64encode(np.asarray(vec, np.float32).tobytes()).decode()
            if vec is not None
            else None
        )
        self._append({"seq": seq, "op": "put", "doc": doc.to_json(), "vec": vec_b64})

    def append_remove(self, seq: int, image_id: str) -> None:
        self._append({"seq": seq, "op": "del", "id": image_id})

    def _append(self, record: dict[str, Any]) -> None:
        body = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()
        self._file.write(b"%08x " % zlib.crc32(body) + body + b"\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.entries += 1

    def reset(self) -> None:
        """Empty the journal (its entries are now in a snapshot)."""
        self._file.close()
        with self.path.open("wb") as f:
            os.fsync(f.fileno())
        self._file = self.path.open("ab")
        self.entries = 0

    def close(self) -> None:
        self._file.close()


def replay(path: Path, after_seq: int) -> Iterator[JournalEntry]:
    """Entries with a sequence number above `after_seq`, in order."""
    if not path.exists():
        return
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            entry = _parse(line)
            if entry is None:
                log.warning("journal ends in a damaged line; ignoring it", extra={"line": number})
                return
            if entry.seq > after_seq:
                yield entry


def _parse(line: bytes) -> JournalEntry | None:
    if not line.endswith(b"\n") or len(line) < 10:
        return None
    crc, body = line[:8], line[9:-1]
    try:
        if int(crc, 16) != zlib.crc32(body):
            return None
        record = json.loads(body)
    except ValueError:
        return None
    if record["op"] == "del":
        return JournalEntry(record["seq"], removed_id=record["id"])
    vec = record["vec"]
    vector = np.frombuffer(base64.b64decode(vec), np.float32).copy() if vec else None
    return JournalEntry(record["seq"], doc=Document.from_json(record["doc"], vector))
