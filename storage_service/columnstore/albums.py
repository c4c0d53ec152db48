"""Albums: named, ordered lists of one owner's images, in a small durable table of their own.

On disk, in the column store's data dir (under its LOCK), `albums/000001.log`, ... written in
the write-ahead log's block format (wal.py: a CRC-32C per fragment, torn tails dropped, damage
skipped and reported). Each record is one change, a JSON object:

    {"op": "set", "album": {"id", "name", "owner", "created", "updated", "images": [...]}}
    {"op": "rename", "id", "name", "at"}
    {"op": "add" | "remove", "id", "images": [...], "at"}
    {"op": "delete", "id"}

A change is appended, fsynced, and only then applied to the in-memory table and acknowledged
(as the image store does). Opening replays every log in order; each open writes a new log.
When the logs hold many more records than there are albums, a checkpoint starts the next log
with one "set" per album (members that no longer exist left out), fsyncs it and its directory,
and only then deletes the older logs: a crash in between replays both, and a "set" overwrites
what came before, so nothing is lost or applied twice. A log in which open found damage is not
deleted but moved to the data dir's `quarantine/` (as `albums-000001.log.<ms>`), as the image
store keeps its own damaged logs; `verify()` checks every record of the logs in use.

An album holds ids only. Reads look the ids up in the image store: deleted (or purged) images
drop out, trashed ones are left out of pages and counts but stay members, so a restore brings
them back. Only the album owner's own images can be added.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import secrets
import threading
import time
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from storage_service.columnstore import wal as wal_mod
from storage_service.columnstore.errors import (
    DataLossError,
    InvalidRequestError,
    StoreClosedError,
    StoreError,
)
from storage_service.columnstore.fs import FileSystem, OsFileSystem
from storage_service.columnstore.model import DamagedItem, ImageMeta

log = logging.getLogger(__name__)

DIR_NAME = "albums"
MAX_NAME_CHARS = 200
MAX_BATCH = 1000
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# A checkpoint is written when the logs hold more records than this plus 4 per album.
CHECKPOINT_RECORDS = 1000


class AlbumNotFoundError(StoreError):
    reason = "ALBUM_NOT_FOUND"

    def __init__(self, album_id: str) -> None:
        super().__init__(f"no album with id {album_id[:64]!r}")
        self.album_id = album_id


class AlbumExistsError(StoreError):
    """The owner already has an album of that name (names are compared case-insensitively)."""

    reason = "ALBUM_EXISTS"


class ImageLookup(Protocol):
    """What albums need of the image store (ColumnStore has it)."""

    def get_many(self, image_ids: Iterable[str]) -> list[ImageMeta | None]: ...

    @property
    def is_closing(self) -> bool: ...

    @property
    def head_seq(self) -> int:
        """Grows with every put, annotate and delete (a cached view is stale after one)."""


@dataclass
class _Album:
    id: str
    name: str
    owner: str
    created_ms: int
    updated_ms: int
    images: list[str] = field(default_factory=list)
    members: set[str] = field(default_factory=set)
    # Bumped by every change applied (keys the cached view).
    version: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "owner": self.owner,
            "created": self.created_ms,
            "updated": self.updated_ms,
            "images": self.images,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> _Album:
        images = [str(i) for i in d.get("images", [])]
        return cls(
            str(d["id"]),
            str(d["name"]),
            str(d.get("owner", "")),
            int(d["created"]),
            int(d["updated"]),
            images,
            set(images),
        )


@dataclass(frozen=True)
class Album:
    """An album as readers see it: counts and cover reflect live, untrashed members."""

    id: str
    name: str
    owner: str
    created_ms: int
    updated_ms: int
    image_count: int
    cover_image_id: str


@dataclass(frozen=True)
class AlbumPage:
    album: Album
    image_ids: tuple[str, ...]
    images: tuple[ImageMeta, ...]
    next_page_token: str


@dataclass(frozen=True)
class AlbumsCheck:
    """What a verify of the album table's files read and found damaged (paths relative to the
    data dir, as the image store's verify names its files)."""

    files_checked: int = 0
    records_checked: int = 0
    bytes_checked: int = 0
    damaged: tuple[DamagedItem, ...] = ()


@dataclass(frozen=True)
class AddResult:
    album: Album
    added: tuple[str, ...]
    already: tuple[str, ...]
    not_found: tuple[str, ...]


@dataclass(frozen=True)
class RemoveResult:
    album: Album
    removed: tuple[str, ...]
    not_in_album: tuple[str, ...]


def check_name(name: str) -> str:
    """The name as stored (surrounding spaces trimmed); InvalidRequestError when unusable."""
    name = name.strip()
    if not name:
        raise InvalidRequestError("an album needs a name")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidRequestError(
            f"an album name is {len(name)} characters, over the limit of {MAX_NAME_CHARS}"
        )
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in name):
        raise InvalidRequestError("an album name cannot hold control characters")
    return name


def _check_batch(image_ids: Sequence[str]) -> None:
    if len(image_ids) > MAX_BATCH:
        raise InvalidRequestError(
            f"{len(image_ids)} image ids in one call, over the limit of {MAX_BATCH}"
        )


def _encode_token(index: int) -> str:
    return base64.urlsafe_b64encode(f"a:{index}".encode()).decode().rstrip("=")


def _decode_token(token: str) -> int:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        if not text.startswith("a:"):
            raise ValueError(text)
        return max(0, int(text[2:]))
    except (ValueError, binascii.Error, UnicodeDecodeError) as e:
        raise InvalidRequestError("page_token is not one this service issued") from e


class AlbumStore:
    """The album table. Open with `AlbumStore.open(data_dir, images)` while the image store
    that holds `data_dir`'s LOCK is open; thread-safe."""

    def __init__(self, directory: Path, images: ImageLookup, fs: FileSystem) -> None:
        self._dir = directory
        self._images = images
        self._fs = fs
        # Guards everything below; held across a change's fsync so changes apply in log order.
        self._lock = threading.Lock()
        self._albums: dict[str, _Album] = {}
        # album id -> ((album object, its version, image store head seq), its view)
        self._views: dict[str, tuple[tuple[int, int, int], Album]] = {}
        self._next_seq = 1
        self._records = 0
        self._damaged_records = 0
        # Logs in which open found damage: moved to quarantine/ (never deleted) when retired.
        self._damaged_logs: set[int] = set()
        self._quarantined: list[str] = []
        self._wal: wal_mod.WriteAheadLog | None = None
        self._old_logs: list[int] = []

    @classmethod
    def open(cls, data_dir: Path, images: ImageLookup, fs: FileSystem | None = None) -> AlbumStore:
        store = cls(Path(data_dir) / DIR_NAME, images, fs or OsFileSystem())
        store._recover()
        return store

    # --- recovery and checkpoints --------------------------------------------------------------

    def _recover(self) -> None:
        fs = self._fs
        fs.mkdir(self._dir)
        numbers = wal_mod.log_numbers(self._dir)
        empty: list[int] = []
        for number in numbers:
            records, damage = wal_mod.read_log(wal_mod.log_path(self._dir, number), fs)
            for d in damage:
                if not d.is_tail:
                    self._damaged_records += 1
                    self._damaged_logs.add(number)
                log.error(
                    "album log damage: records not replayed",
                    extra={"path": str(d.path), "offset": d.offset, "reason": d.reason},
                )
            if not records and number not in self._damaged_logs:
                empty.append(number)
            for seq, payload in records:
                self._next_seq = max(self._next_seq, seq + 1)
                try:
                    self._apply(json.loads(payload))
                except (ValueError, KeyError, TypeError) as e:
                    self._damaged_records += 1
                    self._damaged_logs.add(number)
                    log.error("album record does not decode", extra={"seq": seq, "error": str(e)})
                    continue
                self._records += 1
        self._wal = wal_mod.WriteAheadLog(self._dir, max([0, *numbers]) + 1, fs=fs)
        # The new log is durable (file and directory): logs that held nothing can go.
        for number in empty:
            fs.unlink(wal_mod.log_path(self._dir, number))
        self._old_logs = [n for n in numbers if n not in empty]
        if self._old_logs:
            fs.sync_dir(self._dir)
        # Each open starts a new (preallocated) log: fold the older ones into it at once.
        if self._old_logs or self._records > CHECKPOINT_RECORDS + 4 * len(self._albums):
            self._checkpoint()

    def _checkpoint(self) -> None:
        """Rewrite the table as one "set" per album into a new log, then drop the old logs.
        Lock held (or not yet shared)."""
        assert self._wal is not None
        old = [*self._old_logs, self._wal.number]
        self._wal.rotate()
        self._old_logs = old
        gone = self._gone_ids({i for a in self._albums.values() for i in a.images})
        position = self._wal.synced
        for album in self._albums.values():
            if gone & album.members:
                album.images = [i for i in album.images if i not in gone]
                album.members -= gone
                album.version += 1
            position = self._append({"op": "set", "album": album.to_json()})
        self._wal.sync(position)
        # Oldest first, each made durable before the next: whatever a crash leaves is a
        # suffix of the history (a delete is never lost while the create before it stays).
        for number in sorted(old):
            path = wal_mod.log_path(self._dir, number)
            if not self._fs.exists(path):
                continue
            if number in self._damaged_logs:
                self._quarantine(path)
            else:
                self._fs.unlink(path)
            self._fs.sync_dir(self._dir)
        self._old_logs = []
        self._records = len(self._albums)
        log.info("album table checkpointed", extra={"albums": len(self._albums)})

    def _quarantine(self, path: Path) -> None:
        """Move a retired log with damage to the data dir's quarantine/ (as the image store
        does with its own), never deleting it: what could not be read stays for an operator."""
        qdir = self._dir.parent / "quarantine"
        self._fs.mkdir(qdir)
        target = qdir / f"{DIR_NAME}-{path.name}.{_now_ms()}"
        self._fs.rename(path, target)
        self._fs.sync_dir(qdir)
        self._quarantined.append(f"quarantine/{target.name}")
        log.warning("album log with damage moved to quarantine", extra={"to": str(target)})

    def _gone_ids(self, ids: set[str]) -> set[str]:
        """Ids with no image any more (deleted or purged; damaged ones are kept)."""
        ordered = list(ids)
        metas = self._lookup(ordered)
        return {i for i, m in zip(ordered, metas, strict=True) if m is None}

    def _apply(self, record: dict[str, Any]) -> None:
        op = record["op"]
        if op == "set":
            album = _Album.from_json(record["album"])
            self._albums[album.id] = album
            return
        album_or_none = self._albums.get(str(record["id"]))
        if album_or_none is None:
            return  # a change to an album a later checkpoint no longer has
        album = album_or_none
        album.version += 1
        if op == "delete":
            del self._albums[album.id]
            self._views.pop(album.id, None)
        elif op == "rename":
            album.name = str(record["name"])
            album.updated_ms = int(record["at"])
        elif op == "add":
            for image_id in record["images"]:
                if image_id not in album.members:
                    album.members.add(image_id)
                    album.images.append(image_id)
            album.updated_ms = int(record["at"])
        elif op == "remove":
            dropped = set(record["images"]) & album.members
            if dropped:
                album.images = [i for i in album.images if i not in dropped]
                album.members -= dropped
            album.updated_ms = int(record["at"])
        else:
            raise ValueError(f"unknown album op {op!r}")

    # --- writes --------------------------------------------------------------------------------

    def _append(self, record: dict[str, Any]) -> wal_mod.LogPosition:
        assert self._wal is not None
        seq = self._next_seq
        self._next_seq += 1
        payload = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()
        return self._wal.append(seq, [payload])

    def _write(self, record: dict[str, Any]) -> None:
        """Log `record`, fsync, then apply it. Lock held."""
        if self._wal is None or self._images.is_closing:
            raise StoreClosedError("the album table is closed")
        position = self._append(record)
        self._wal.sync(position)
        self._apply(record)
        self._records += 1
        if self._records > CHECKPOINT_RECORDS + 4 * len(self._albums):
            try:
                self._checkpoint()
            except OSError as e:  # the change itself is durable; the next write tries again
                log.warning("album checkpoint failed", extra={"error": str(e)})

    def _album(self, album_id: str) -> _Album:
        album = self._albums.get(album_id)
        if album is None:
            raise AlbumNotFoundError(album_id)
        return album

    def _check_unique(self, owner: str, name: str, except_id: str = "") -> None:
        folded = name.casefold()
        for album in self._albums.values():
            if album.owner == owner and album.id != except_id and album.name.casefold() == folded:
                raise AlbumExistsError(f"there is already an album named {name[:80]!r}")

    def _owned(self, owner: str, image_ids: Sequence[str]) -> tuple[list[str], list[str]]:
        """(ids of the owner's live images, the rest), each once, in request order."""
        unique = list(dict.fromkeys(image_ids))
        metas = self._lookup(unique)
        found, missing = [], []
        for image_id, meta in zip(unique, metas, strict=True):
            if meta is not None and meta is not _DAMAGED and meta.owner == owner:
                found.append(image_id)
            else:
                missing.append(image_id)
        return found, missing

    def create(self, name: str, owner: str, image_ids: Sequence[str] = ()) -> Album:
        name = check_name(name)
        _check_batch(image_ids)
        with self._lock:
            self._check_unique(owner, name)
            found, _missing = self._owned(owner, image_ids)
            now = int(time.time() * 1000)
            album_id = f"{now:012x}{secrets.token_hex(6)}"
            record = {
                "op": "set",
                "album": _Album(album_id, name, owner, now, now, found).to_json(),
            }
            self._write(record)
            return self._view(self._albums[album_id])

    def rename(self, album_id: str, name: str) -> Album:
        name = check_name(name)
        with self._lock:
            album = self._album(album_id)
            self._check_unique(album.owner, name, except_id=album_id)
            self._write({"op": "rename", "id": album_id, "name": name, "at": _now_ms()})
            return self._view(album)

    def delete(self, album_id: str) -> Album:
        with self._lock:
            view = self._view(self._album(album_id))
            self._write({"op": "delete", "id": album_id})
            return view

    def add(self, album_id: str, image_ids: Sequence[str]) -> AddResult:
        _check_batch(image_ids)
        with self._lock:
            album = self._album(album_id)
            found, missing = self._owned(album.owner, image_ids)
            added = [i for i in found if i not in album.members]
            already = [i for i in found if i in album.members]
            if added:
                self._write({"op": "add", "id": album_id, "images": added, "at": _now_ms()})
            return AddResult(self._view(album), tuple(added), tuple(already), tuple(missing))

    def remove(self, album_id: str, image_ids: Sequence[str]) -> RemoveResult:
        _check_batch(image_ids)
        with self._lock:
            album = self._album(album_id)
            unique = list(dict.fromkeys(image_ids))
            removed = [i for i in unique if i in album.members]
            absent = [i for i in unique if i not in album.members]
            if removed:
                self._write({"op": "remove", "id": album_id, "images": removed, "at": _now_ms()})
            return RemoveResult(self._view(album), tuple(removed), tuple(absent))

    # --- reads ---------------------------------------------------------------------------------

    def _lookup(self, image_ids: Sequence[str]) -> list[ImageMeta | None]:
        """Metadata per id; `_DAMAGED` for ids whose rows cannot be read."""
        try:
            return self._images.get_many(image_ids)
        except DataLossError:
            out: list[ImageMeta | None] = []
            for image_id in image_ids:
                try:
                    out.extend(self._images.get_many([image_id]))
                except DataLossError:
                    out.append(_DAMAGED)
            return out

    def _visible(self, album: _Album) -> list[tuple[str, ImageMeta]]:
        metas = self._lookup(album.images)
        return [
            (i, m)
            for i, m in zip(album.images, metas, strict=True)
            if m is not None and m is not _DAMAGED and not m.trashed_at_ms
        ]

    def _view(self, album: _Album) -> Album:
        """The album with its count and cover; reused while neither the album nor the image
        store changed (the gallery asks for every album on each page)."""
        head = self._images.head_seq  # read first: a change after it only costs a recompute
        cached = self._views.get(album.id)
        if cached is not None and cached[0] == (id(album), album.version, head):
            return cached[1]
        view = self._compute_view(album)
        self._views[album.id] = ((id(album), album.version, head), view)
        return view

    def _compute_view(self, album: _Album) -> Album:
        visible = self._visible(album)
        return Album(
            album.id,
            album.name,
            album.owner,
            album.created_ms,
            album.updated_ms,
            len(visible),
            visible[0][0] if visible else "",
        )

    def get(self, album_id: str) -> Album:
        with self._lock:
            return self._view(self._album(album_id))

    def member_ids(self, album_id: str) -> list[str]:
        """Every live, untrashed member in album order (a search allow-list)."""
        with self._lock:
            return [i for i, _ in self._visible(self._album(album_id))]

    def page(self, album_id: str, page_size: int = 0, page_token: str = "") -> AlbumPage:
        size = DEFAULT_PAGE_SIZE if page_size <= 0 else min(page_size, MAX_PAGE_SIZE)
        start = _decode_token(page_token) if page_token else 0
        with self._lock:
            album = self._album(album_id)
            view = self._view(album)
            chosen: list[tuple[str, ImageMeta]] = []
            index = start
            while index < len(album.images) and len(chosen) <= size:
                chunk = album.images[index : index + size + 1]
                metas = self._lookup(chunk)
                for offset, (image_id, meta) in enumerate(zip(chunk, metas, strict=True)):
                    if meta is None or meta is _DAMAGED or meta.trashed_at_ms:
                        continue
                    if len(chosen) == size:
                        # One more visible member exists: the next page starts there.
                        return AlbumPage(
                            view,
                            tuple(i for i, _ in chosen),
                            tuple(m for _, m in chosen),
                            _encode_token(index + offset),
                        )
                    chosen.append((image_id, meta))
                index += len(chunk)
        return AlbumPage(view, tuple(i for i, _ in chosen), tuple(m for _, m in chosen), "")

    def token_at(self, album_id: str, image_id: str) -> str:
        """A page token whose page starts at member `image_id` (a reply cut short)."""
        with self._lock:
            album = self._album(album_id)
            return _encode_token(album.images.index(image_id) if image_id in album.members else 0)

    def list(
        self, owner: str = "", page_size: int = 0, page_token: str = "", image_id: str = ""
    ) -> tuple[list[Album], str, int]:
        """(albums by name, case-insensitive, then id; next page token; total count); only
        `owner`'s, only those holding `image_id`, when given."""
        size = DEFAULT_PAGE_SIZE if page_size <= 0 else min(page_size, MAX_PAGE_SIZE)
        start = _decode_token(page_token) if page_token else 0
        with self._lock:
            albums = sorted(
                (
                    a
                    for a in self._albums.values()
                    if (not owner or a.owner == owner) and (not image_id or image_id in a.members)
                ),
                key=lambda a: (a.name.casefold(), a.id),
            )
            page = [self._view(a) for a in albums[start : start + size]]
        more = start + size < len(albums)
        return page, _encode_token(start + size) if more else "", len(albums)

    def find_by_name(self, owner: str, name: str) -> Album | None:
        folded = name.strip().casefold()
        with self._lock:
            for album in self._albums.values():
                if album.owner == owner and album.name.casefold() == folded:
                    return self._view(album)
        return None

    @property
    def damaged_records(self) -> int:
        return self._damaged_records

    @property
    def count(self) -> int:
        """How many albums the table holds (every owner's)."""
        with self._lock:
            return len(self._albums)

    def verify(self) -> AlbumsCheck:
        """Read every record of every album log and check it (checksums, then that it decodes
        to a change); the damage found when the table was opened is reported too, since the
        checkpoint at open folded those logs away. Holds the table's lock (the logs are small):
        no change or checkpoint runs meanwhile."""
        with self._lock:
            check = verify_logs(self._dir.parent, self._fs)
        if self._damaged_records:
            kept = ", ".join(self._quarantined) or "logged at that time"
            known = DamagedItem(
                f"{DIR_NAME}/",
                f"{self._damaged_records} damaged album log record(s) found when the table was "
                f"opened were not replayed (the damaged log kept: {kept})",
            )
            check = AlbumsCheck(
                check.files_checked,
                check.records_checked,
                check.bytes_checked,
                (*check.damaged, known),
            )
        return check

    def close(self) -> None:
        with self._lock:
            if self._wal is not None:
                with contextlib.suppress(OSError, StoreError):
                    self._wal.close()
                self._wal = None


def verify_logs(data_dir: Path, fs: FileSystem | None = None) -> AlbumsCheck:
    """Check every record of the album logs under `data_dir` (none when the table was never
    created). A torn tail is what a crash mid-append leaves and is not damage; anything else
    that fails its checksum, and any intact record that does not decode to a change, is
    reported with its file and offset or seq. Reads only."""
    fs = fs or OsFileSystem()
    directory = Path(data_dir) / DIR_NAME
    if not fs.exists(directory):
        return AlbumsCheck()
    files = records = size = 0
    found: list[DamagedItem] = []
    for number in wal_mod.log_numbers(directory):
        path = wal_mod.log_path(directory, number)
        name = f"{DIR_NAME}/{path.name}"
        files += 1
        try:
            intact, damage = wal_mod.read_log(path, fs)
        except FileNotFoundError:
            files -= 1  # retired between listing and reading
            continue
        except OSError as e:
            found.append(DamagedItem(name, f"unreadable: {e}"))
            continue
        with contextlib.suppress(OSError):
            size += path.stat().st_size
        for d in damage:
            if not d.is_tail:
                found.append(
                    DamagedItem(
                        name,
                        f"{d.reason} at offset {d.offset} ({d.length} B): album changes there "
                        "are not replayed",
                    )
                )
        for seq, payload in intact:
            records += 1
            try:
                record = json.loads(payload)
                _check_record(record)
            except (ValueError, KeyError, TypeError) as e:
                found.append(DamagedItem(name, f"record seq {seq} is not an album change: {e}"))
    return AlbumsCheck(files, records, size, tuple(found))


def _check_record(record: Any) -> None:
    """Raise ValueError/KeyError/TypeError unless `record` is a change replay can apply."""
    op = record["op"]
    if op == "set":
        _Album.from_json(record["album"])
    elif op in ("rename", "add", "remove", "delete"):
        str(record["id"])
        if op == "rename":
            str(record["name"])
        if op in ("add", "remove") and not isinstance(record["images"], list):
            raise TypeError("images is not a list")
        if op != "delete":
            int(record["at"])
    else:
        raise ValueError(f"unknown album op {op!r}")


def _now_ms() -> int:
    return int(time.time() * 1000)


# Stands for "this image's row is damaged": kept as a member, never shown.
_DAMAGED: Any = object()
