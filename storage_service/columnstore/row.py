"""One row as the log and the memtable hold it, and its encoding as a log record payload.

Payload layout: u32 header length | UTF-8 JSON header (small column values, and the name and
length of each blob) | the blobs' bytes, in header order.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any, Protocol

from storage_service.columnstore.schema import BY_NAME, RowKind

_LEN = struct.Struct("<I")


class RowSource(Protocol):
    """What a segment writer needs of a row: small values now, blobs when it gets to them."""

    def value(self, column: str) -> Any: ...

    def blob(self, column: str) -> bytes: ...


@dataclass
class Row:
    seq: int
    kind: RowKind
    values: dict[str, Any]
    blobs: dict[str, bytes] = field(default_factory=dict)

    @property
    def image_id(self) -> str:
        return str(self.values["id"])

    def value(self, column: str) -> Any:
        if column == "seq":
            return self.seq
        if column == "kind":
            return int(self.kind)
        return self.values.get(column, BY_NAME[column].default)

    def blob(self, column: str) -> bytes:
        return self.blobs.get(column, b"")

    @property
    def size_bytes(self) -> int:
        return 256 + sum(len(b) for b in self.blobs.values())

    def encode(self) -> list[bytes]:
        """The payload as parts (joined by the log), so large blobs are never copied."""
        header = json.dumps(
            {
                "kind": int(self.kind),
                "values": self.values,
                "blobs": [[name, len(data)] for name, data in self.blobs.items()],
            },
            separators=(",", ":"),
        ).encode()
        return [_LEN.pack(len(header)), header, *self.blobs.values()]

    @classmethod
    def decode(cls, seq: int, payload: bytes) -> Row:
        (header_length,) = _LEN.unpack_from(payload)
        header = json.loads(payload[4 : 4 + header_length])
        pos = 4 + header_length
        blobs: dict[str, bytes] = {}
        for name, length in header["blobs"]:
            blobs[name] = payload[pos : pos + length]
            pos += length
        if pos != len(payload):
            raise ValueError("row payload length does not match its header")
        return cls(seq, RowKind(header["kind"]), header["values"], blobs)
