"""MANIFEST: which segments are live and which log files still matter, replaced atomically.

Format 2: one line of JSON, then a line with its CRC-32 in hex. A manifest whose checksum
fails (or that is missing while segment files exist) is not trusted: the store rebuilds it from
the segments' own footers (see store.py) and keeps the damaged file in `quarantine/`. Format 1
(JSON without a checksum, written before) is still read.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from storage_service.columnstore.fs import (
    FileSystem,
    OsFileSystem,
    read_file,
    write_file_atomically,
)

MANIFEST_VERSION = 2
NAME = "MANIFEST"


class ManifestDamagedError(ValueError):
    """The MANIFEST exists but cannot be trusted (checksum, syntax)."""


@dataclass(frozen=True)
class Manifest:
    segments: tuple[int, ...] = ()
    next_segment_id: int = 1
    # Log files numbered below this are fully contained in segments (a hint: logs are removed
    # only when the segments cover every record in them, by sequence number).
    wal_min: int = 1
    # Rows per segment, so a segment that goes missing can still be counted as unreadable.
    rows: dict[int, int] = field(default_factory=dict)
    # The change feed's retention horizon: every change with a seq at or above it is still in
    # the segments and the log; compaction advances it when it drops older rows.
    feed_horizon: int = 0

    @classmethod
    def load(cls, data_dir: Path, fs: FileSystem | None = None) -> Manifest | None:
        """The manifest, or None when there is none; ManifestDamagedError when untrusted."""
        fs = fs or OsFileSystem()
        path = data_dir / NAME
        if not fs.exists(path):
            return None
        text = read_file(fs, path)
        lines = text.split(b"\n")
        try:
            if len(lines) >= 2 and lines[1]:
                if int(lines[1], 16) != zlib.crc32(lines[0]) & 0xFFFFFFFF:
                    raise ManifestDamagedError("MANIFEST checksum mismatch")
                raw = json.loads(lines[0])
            else:
                raw = json.loads(text)
                if raw.get("version", 0) != 1:
                    raise ManifestDamagedError("MANIFEST has no checksum")
            if raw.get("version", 0) > MANIFEST_VERSION:
                raise ManifestDamagedError(
                    f"MANIFEST version {raw['version']} is newer than this code"
                )
            return cls(
                tuple(int(s) for s in raw["segments"]),
                int(raw["next_segment_id"]),
                int(raw["wal_min"]),
                {int(k): int(v) for k, v in raw.get("rows", {}).items()},
                int(raw.get("feed_horizon", 0)),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            if isinstance(e, ManifestDamagedError):
                raise
            raise ManifestDamagedError(f"MANIFEST does not parse: {e}") from e

    def save(self, data_dir: Path, fs: FileSystem | None = None) -> None:
        """Write MANIFEST.tmp, fsync it, rename over MANIFEST, fsync the directory."""
        body = json.dumps(
            {
                "version": MANIFEST_VERSION,
                "segments": list(self.segments),
                "next_segment_id": self.next_segment_id,
                "wal_min": self.wal_min,
                "rows": {str(k): v for k, v in self.rows.items() if k in self.segments},
                "feed_horizon": self.feed_horizon,
            },
            separators=(",", ":"),
        ).encode()
        data = body + b"\n" + f"{zlib.crc32(body) & 0xFFFFFFFF:08x}".encode() + b"\n"
        write_file_atomically(fs or OsFileSystem(), data_dir / NAME, data)
