"""LAST_VERIFY: the last verify's report, kept in the data dir so a restart does not forget
damage a scrub found (the status page and GetStats.last_verify show it until the next verify
replaces it).

Format 1, as MANIFEST: one line of JSON, then a line with its CRC-32 in hex.

    {"version":1,"ok":false,"finished_at_ms":...,"duration_ms":...,"files_checked":...,
     "blocks_checked":...,"bytes_checked":...,
     "damaged":[{"path":"segments/000001.seg","detail":"...","image_ids":["..."]}]}
    5f1c09a2

Written whole (LAST_VERIFY.tmp, fsync, rename, fsync the directory), never edited in place.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

from storage_service.columnstore.fs import FileSystem, read_file, write_file_atomically
from storage_service.columnstore.model import DamagedItem, VerifyReport

NAME = "LAST_VERIFY"
VERSION = 1


class VerifyRecordDamagedError(ValueError):
    """LAST_VERIFY exists but cannot be trusted (checksum, syntax, a newer version)."""


def encode(report: VerifyReport) -> bytes:
    body = json.dumps(
        {
            "version": VERSION,
            "ok": report.ok,
            "finished_at_ms": report.finished_at_ms,
            "duration_ms": report.duration_ms,
            "files_checked": report.files_checked,
            "blocks_checked": report.blocks_checked,
            "bytes_checked": report.bytes_checked,
            "damaged": [
                {"path": d.path, "detail": d.detail, "image_ids": list(d.image_ids)}
                for d in report.damaged
            ],
        },
        separators=(",", ":"),
    ).encode()
    return body + b"\n" + f"{zlib.crc32(body) & 0xFFFFFFFF:08x}".encode() + b"\n"


def decode(data: bytes) -> VerifyReport:
    """The report `encode` wrote; VerifyRecordDamagedError when it cannot be trusted."""
    lines = data.split(b"\n")
    try:
        if len(lines) < 2 or int(lines[1], 16) != zlib.crc32(lines[0]) & 0xFFFFFFFF:
            raise VerifyRecordDamagedError(f"{NAME} checksum mismatch")
        raw = json.loads(lines[0])
        if raw.get("version", 0) > VERSION:
            raise VerifyRecordDamagedError(
                f"{NAME} version {raw['version']} is newer than this code"
            )
        return VerifyReport(
            files_checked=int(raw["files_checked"]),
            blocks_checked=int(raw["blocks_checked"]),
            bytes_checked=int(raw["bytes_checked"]),
            damaged=tuple(
                DamagedItem(str(d["path"]), str(d["detail"]), tuple(map(str, d["image_ids"])))
                for d in raw["damaged"]
            ),
            finished_at_ms=int(raw["finished_at_ms"]),
            duration_ms=int(raw.get("duration_ms", 0)),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        if isinstance(e, VerifyRecordDamagedError):
            raise
        raise VerifyRecordDamagedError(f"{NAME} does not parse: {e}") from e


def save(fs: FileSystem, data_dir: Path, report: VerifyReport) -> None:
    """Replace LAST_VERIFY with `report` atomically; OSError when the disk refuses."""
    write_file_atomically(fs, data_dir / NAME, encode(report))


def load(fs: FileSystem, data_dir: Path) -> VerifyReport | None:
    """The report LAST_VERIFY holds, or None when there is none (no verify ever ran here);
    VerifyRecordDamagedError when it cannot be trusted, OSError when it cannot be read."""
    path = data_dir / NAME
    if not fs.exists(path):
        return None
    return decode(read_file(fs, path))
