"""MANIFEST: which segments are live and which log files still matter, replaced atomically."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from storage_service.columnstore.segment_writer import fsync_dir

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class Manifest:
    segments: tuple[int, ...] = ()
    next_segment_id: int = 1
    # Log files numbered below this are fully contained in segments.
    wal_min: int = 1

    @classmethod
    def load(cls, data_dir: Path) -> Manifest:
        path = data_dir / "MANIFEST"
        if not path.exists():
            return cls()
        raw = json.loads(path.read_text())
        if raw.get("version", 0) > MANIFEST_VERSION:
            raise ValueError(f"MANIFEST version {raw['version']} is newer than this code")
        return cls(tuple(raw["segments"]), raw["next_segment_id"], raw["wal_min"])

    def save(self, data_dir: Path) -> None:
        """Write MANIFEST.tmp, fsync it, rename over MANIFEST, fsync the directory."""
        tmp = data_dir / "MANIFEST.tmp"
        body = {
            "version": MANIFEST_VERSION,
            "segments": list(self.segments),
            "next_segment_id": self.next_segment_id,
            "wal_min": self.wal_min,
        }
        with tmp.open("w") as f:
            json.dump(body, f)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(data_dir / "MANIFEST")
        fsync_dir(data_dir)
