"""ColumnStore: the image table on disk (segments + log + manifest) and its in-memory view.

Write path: validate under the store lock, append the record to the log, apply it to the
in-memory view (an index of every live image: its small columns, and where its bytes live, in
the memtable or in a segment), release the lock, then wait for the log's group commit. A write
is acknowledged only once its record is fsynced. Readers take the lock only to look up where
things are; they read blob bytes from immutable segments (or memtable rows) without it, so they
never see half a write and never wait for disk behind a writer.

Background: when the memtable passes `memtable_bytes`, the log rotates and a flusher thread
writes the frozen rows to a new segment, installs it in the MANIFEST and deletes the log files
it covered. When there are `compact_min_segments` segments (or many tombstones), the same thread
merges all of them into one (compaction.py); readers keep using the old files until they are
done with them.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import contextlib
import dataclasses
import logging
import secrets
import threading
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from storage_service.columnstore import wal as wal_mod
from storage_service.columnstore.compaction import merge_segments, pick_tier, segment_rows
from storage_service.columnstore.errors import (
    DataLossError,
    ImageNotFoundError,
    InvalidRequestError,
    StoreClosedError,
)
from storage_service.columnstore.filename_index import FilenameIndex
from storage_service.columnstore.manifest import Manifest
from storage_service.columnstore.model import (
    ANNOTATION_FIELDS,
    AnalysisStatus,
    AnnotationUpdate,
    ColumnStat,
    CompactionReport,
    Feedback,
    ImageMeta,
    Label,
    Page,
    PreparedImage,
    PutResult,
    StoreStats,
    Thumbnail,
    ThumbnailSize,
)
from storage_service.columnstore.row import Row
from storage_service.columnstore.schema import COLUMNS, RowKind
from storage_service.columnstore.segment_reader import SegmentReader
from storage_service.columnstore.segment_writer import write_segment

log = logging.getLogger(__name__)

BlobSource = Row | SegmentReader
BlobRef = tuple[BlobSource, int]

MAX_PAGE_SIZE = 1000
# The first log file is written with zeros up to this size at open (see wal.py).
WAL_ZERO_FILL = 32 * 1024 * 1024
DEFAULT_PAGE_SIZE = 50


@dataclass(frozen=True)
class StoreOptions:
    # The memtable is written to a segment once its rows hold this many bytes.
    memtable_bytes: int = 64 * 1024 * 1024
    # Background compaction merges the segments of one size tier once there are this many.
    compact_min_segments: int = 4
    # ...or once this fraction of segment rows are tombstones or superseded versions.
    compact_dead_fraction: float = 0.3
    # Writers wait when this many frozen memtables are still being flushed.
    max_frozen_memtables: int = 2


@dataclass
class _Entry:
    meta: ImageMeta
    image: BlobRef
    vector: BlobRef | None


@dataclass
class _Frozen:
    rows: list[Row]
    # Every record of these rows is in log files numbered below this.
    wal_min: int


def _dead_counts(kinds: Iterable[int]) -> tuple[int, int]:
    """(tombstones, rows a merge removes): a tombstone also removes the row it deletes."""
    tombstones = annotations = 0
    for kind in kinds:
        tombstones += kind == RowKind.DELETE
        annotations += kind == RowKind.ANNOTATE
    return tombstones, 2 * tombstones + annotations


def _read(ref: BlobRef, column: str) -> bytes:
    source, index = ref
    if isinstance(source, Row):
        return source.blob(column)
    return source.blob(column, index)


def _labels_from(values: list[dict[str, Any]]) -> tuple[Label, ...]:
    return tuple(
        Label(v["name"], float(v["p"]), tuple(v.get("syn", ())), int(v.get("ci", -1)))
        for v in values
    )


def _labels_to(labels: Iterable[Label]) -> list[dict[str, Any]]:
    return [
        {"name": lb.name, "p": lb.probability, "syn": list(lb.synonyms), "ci": lb.class_index}
        for lb in labels
    ]


def _feedback_from(values: list[dict[str, Any]]) -> tuple[Feedback, ...]:
    return tuple(Feedback(v["label"], v["comment"], v["by"], int(v["at"])) for v in values)


def _feedback_to(items: Iterable[Feedback]) -> list[dict[str, Any]]:
    return [
        {"label": f.label, "comment": f.comment, "by": f.reported_by, "at": f.created_at_ms}
        for f in items
    ]


def _annotations_of(values: dict[str, Any]) -> dict[str, Any]:
    return {
        "labels": _labels_from(values["labels"]),
        "moderation_score": float(values["moderation_score"]),
        "ocr_text": values["ocr_text"],
        "tags": tuple(values["tags"]),
        "status": AnalysisStatus(values["status"]),
        "status_detail": values["status_detail"],
        "feedback": _feedback_from(values["feedback"]),
        "has_feature_vector": bool(values["has_feature_vector"]),
    }


def _meta_from(values: dict[str, Any]) -> ImageMeta:
    full = {c.name: values.get(c.name, c.default) for c in COLUMNS}
    return ImageMeta(
        id=full["id"],
        filename=full["filename"],
        owner=full["owner"],
        content_type=full["content_type"],
        format=full["format"],
        created_at_ms=int(full["created_at_ms"]),
        sha256=full["sha256"],
        byte_size=int(full["byte_size"]),
        width=int(full["width"]),
        height=int(full["height"]),
        exif=dict(full["exif"]),
        thumb_content_type=full["thumb_content_type"],
        thumb_small_size=(int(full["thumb_small_w"]), int(full["thumb_small_h"])),
        thumb_preview_size=(int(full["thumb_preview_w"]), int(full["thumb_preview_h"])),
        **_annotations_of(full),
    )


def _annotation_values(meta: ImageMeta) -> dict[str, Any]:
    return {
        "labels": _labels_to(meta.labels),
        "moderation_score": meta.moderation_score,
        "ocr_text": meta.ocr_text,
        "tags": list(meta.tags),
        "status": int(meta.status),
        "status_detail": meta.status_detail,
        "feedback": _feedback_to(meta.feedback),
        "has_feature_vector": int(meta.has_feature_vector),
    }


def _encode_token(image_id: str) -> str:
    return base64.urlsafe_b64encode(f"v1:{image_id}".encode()).decode()


def _decode_token(token: str) -> str:
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as e:
        raise InvalidRequestError(f"page_token {token!r} is not one we issued") from e
    if not text.startswith("v1:"):
        raise InvalidRequestError(f"page_token {token!r} is not one we issued")
    return text[3:]


class ColumnStore:
    """The durable, thread-safe image table. Open with `ColumnStore.open(data_dir)`."""

    def __init__(self, data_dir: Path, options: StoreOptions) -> None:
        self.data_dir = data_dir
        self.options = options
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._compaction_lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._damaged: dict[str, str] = {}
        self._order: list[str] = []
        self._filenames = FilenameIndex()
        self._shas = FilenameIndex()
        self._raw_image_bytes = 0
        self._segments: list[SegmentReader] = []
        self._unreadable: list[int] = []
        # Per segment: (tombstones, rows that compaction would drop or merge).
        self._segment_dead: dict[int, tuple[int, int]] = {}
        self._memtable: list[Row] = []
        self._memtable_bytes = 0
        self._frozen: list[_Frozen] = []
        self._next_seq = 1
        self._last_id_ms = 0
        self._id_counter = 0
        self._closing = False
        self._closed = False
        self._manifest = Manifest()
        self._wal: wal_mod.WriteAheadLog
        self._flusher: threading.Thread
        self._compactor: threading.Thread
        self._compact_wanted = threading.Event()

    # --- opening -------------------------------------------------------------------------------

    @classmethod
    def open(cls, data_dir: Path | str, options: StoreOptions | None = None) -> ColumnStore:
        """Open (or create) the store in `data_dir`: load segments, replay the log."""
        store = cls(Path(data_dir), options or StoreOptions())
        store._recover()
        return store

    def _recover(self) -> None:
        started = time.perf_counter()
        seg_dir = self.data_dir / "segments"
        wal_dir = self.data_dir / "wal"
        seg_dir.mkdir(parents=True, exist_ok=True)
        wal_dir.mkdir(parents=True, exist_ok=True)
        self._manifest = Manifest.load(self.data_dir)
        live = set(self._manifest.segments)
        for path in list(seg_dir.iterdir()):
            # Leftovers of a flush or compaction a crash interrupted before the manifest named them.
            if path.suffix == ".tmp" or (path.suffix == ".seg" and int(path.stem) not in live):
                log.info("removing unreferenced file", extra={"path": str(path)})
                path.unlink()
        versions: list[tuple[int, int, dict[str, Any], BlobSource, int]] = []
        for segment_id in sorted(self._manifest.segments):
            segment = self._load_segment(seg_dir / f"{segment_id:06d}.seg", versions)
            if segment is not None:
                self._segments.append(segment)
            else:
                self._unreadable.append(segment_id)
        max_seq = max((v[0] for v in versions), default=0)
        replayed = 0
        numbers = [n for n in wal_mod.log_numbers(wal_dir) if n >= self._manifest.wal_min]
        for number in wal_mod.log_numbers(wal_dir):
            if number < self._manifest.wal_min:
                wal_mod.log_path(wal_dir, number).unlink()
        for number in numbers:
            records, damage = wal_mod.read_log(wal_mod.log_path(wal_dir, number))
            for d in damage:
                log.error(
                    "write-ahead log damage: records not replayed",
                    extra={
                        "path": str(d.path),
                        "offset": d.offset,
                        "bytes": d.length,
                        "reason": d.reason,
                    },
                )
            for seq, payload in records:
                if seq <= max_seq:
                    continue
                row = Row.decode(seq, payload)
                self._memtable.append(row)
                self._memtable_bytes += row.size_bytes
                versions.append((seq, int(row.kind), row.values, row, 0))
                replayed += 1
        versions.sort(key=lambda v: v[0])
        for seq, kind, values, source, index in versions:
            self._apply(RowKind(kind), values, source, index)
            self._next_seq = max(self._next_seq, seq + 1)
        if not self._memtable:
            # Nothing in the old logs is missing from the segments: start clean.
            for number in numbers:
                wal_mod.log_path(wal_dir, number).unlink()
        next_log = max([self._manifest.wal_min, *[n + 1 for n in numbers]])
        self._wal = wal_mod.WriteAheadLog(
            wal_dir, next_log, zero_fill_bytes=min(self.options.memtable_bytes, WAL_ZERO_FILL)
        )
        self._flusher = threading.Thread(target=self._flush_loop, name="store-flusher", daemon=True)
        self._flusher.start()
        self._compactor = threading.Thread(
            target=self._compact_loop, name="store-compactor", daemon=True
        )
        self._compactor.start()
        log.info(
            "column store open",
            extra={
                "data_dir": str(self.data_dir),
                "segments": len(self._segments),
                "images": len(self._entries),
                "replayed_records": replayed,
                "open_s": round(time.perf_counter() - started, 3),
            },
        )

    def _load_segment(
        self, path: Path, versions: list[tuple[int, int, dict[str, Any], BlobSource, int]]
    ) -> SegmentReader | None:
        try:
            segment = SegmentReader(path)
        except (DataLossError, OSError) as e:
            log.error("segment unreadable, its rows are not served", extra={"error": str(e)})
            return None
        try:
            rows = segment_rows(segment)
        except DataLossError as e:
            log.error("segment column damaged", extra={"error": str(e)})
            self._mark_damaged(segment)
            return segment
        for i, values in enumerate(rows):
            versions.append((values["seq"], values["kind"], values, segment, i))
        self._segment_dead[segment.segment_id] = _dead_counts(v["kind"] for v in rows)
        return segment

    def _mark_damaged(self, segment: SegmentReader) -> None:
        """A segment whose small columns fail: its ids (if readable) answer DATA_LOSS."""
        try:
            ids = segment.column("id")
        except DataLossError:
            log.error("segment ids unreadable", extra={"segment": segment.name})
            return
        for image_id in ids:
            self._damaged[image_id] = segment.name

    # --- applying changes to the in-memory view -------------------------------------------------

    def _apply(self, kind: RowKind, values: dict[str, Any], source: BlobSource, index: int) -> None:
        image_id = values["id"]
        if kind is RowKind.PUT:
            meta = _meta_from(values)
            vector = (source, index) if meta.has_feature_vector else None
            old = self._entries.get(image_id)
            if old is not None:  # a merged row replacing its versions: keep the newest
                return
            self._entries[image_id] = _Entry(meta, (source, index), vector)
            self._filenames.add(meta.filename, image_id)
            self._shas.add(meta.sha256, image_id)
            bisect.insort(self._order, image_id)
            self._raw_image_bytes += meta.byte_size
        elif kind is RowKind.ANNOTATE:
            entry = self._entries.get(image_id)
            if entry is None:
                return
            full = {c.name: values.get(c.name, c.default) for c in COLUMNS}
            entry.meta = dataclasses.replace(entry.meta, **_annotations_of(full))
            entry.vector = (source, index) if entry.meta.has_feature_vector else None
        else:
            gone = self._entries.pop(image_id, None)
            if gone is None:
                return
            self._filenames.remove(gone.meta.filename, image_id)
            self._shas.remove(gone.meta.sha256, image_id)
            i = bisect.bisect_left(self._order, image_id)
            if i < len(self._order) and self._order[i] == image_id:
                del self._order[i]
            self._raw_image_bytes -= gone.meta.byte_size

    def _write(self, row: Row) -> wal_mod.LogPosition:
        """Log and apply `row`; call with the lock held, then `sync` the position unlocked."""
        position = self._wal.append(row.seq, row.encode())
        self._apply(row.kind, row.values, row, 0)
        self._memtable.append(row)
        self._memtable_bytes += row.size_bytes
        if self._memtable_bytes >= self.options.memtable_bytes:
            self._freeze()
        return position

    def _freeze(self) -> None:
        if not self._memtable:
            return
        new_log = self._wal.rotate()
        self._frozen.append(_Frozen(self._memtable, new_log))
        self._memtable = []
        self._memtable_bytes = 0
        self._cond.notify_all()
        while len(self._frozen) > self.options.max_frozen_memtables and not self._closed:
            self._cond.wait(timeout=1.0)

    def _check_writable(self) -> None:
        if self._closing or self._closed:
            raise StoreClosedError("the store is closed")

    def _entry(self, image_id: str) -> _Entry:
        entry = self._entries.get(image_id)
        if entry is None:
            if image_id in self._damaged:
                raise DataLossError(self._damaged[image_id], f"metadata of {image_id!r} lost")
            raise ImageNotFoundError(image_id)
        return entry

    def _take_seq(self) -> int:
        seq = self._next_seq
        self._next_seq += 1
        return seq

    def _new_id(self) -> tuple[str, int]:
        now_ms = int(time.time() * 1000)
        if now_ms <= self._last_id_ms:
            now_ms = self._last_id_ms
            self._id_counter += 1
        else:
            self._last_id_ms = now_ms
            self._id_counter = 0
        # Time first, so ids sort by age (newest-first listing is a reverse scan).
        return f"{now_ms:012x}{self._id_counter:04x}{secrets.token_hex(8)}", now_ms

    # --- writes --------------------------------------------------------------------------------

    def put(
        self, filename: str, owner: str, image: PreparedImage, *, keep_duplicate: bool = True
    ) -> PutResult:
        """Store one image. With `keep_duplicate=False`, when an image with the same sha256 and
        the same owner is live, nothing is written and that image is returned with
        `already_stored=True` (decided under the store lock, so two identical concurrent puts
        keep exactly one copy)."""
        values: dict[str, Any] = {
            "filename": filename,
            "owner": owner,
            "content_type": image.content_type,
            "format": image.format,
            "sha256": image.sha256,
            "byte_size": len(image.data),
            "width": image.width,
            "height": image.height,
            "exif": image.exif,
            "thumb_content_type": image.thumb_content_type,
            "thumb_small_w": image.thumb_small_size[0],
            "thumb_small_h": image.thumb_small_size[1],
            "thumb_preview_w": image.thumb_preview_size[0],
            "thumb_preview_h": image.thumb_preview_size[1],
            "labels": [],
            "moderation_score": 0.0,
            "ocr_text": "",
            "tags": [],
            "status": int(AnalysisStatus.PENDING),
            "status_detail": "",
            "feedback": [],
            "has_feature_vector": 0,
        }
        blobs = {
            "data": image.data,
            "thumb_small": image.thumb_small,
            "thumb_preview": image.thumb_preview,
        }
        with self._lock:
            self._check_writable()
            if not keep_duplicate:
                for other in self._shas.lookup(image.sha256):
                    existing = self._entries[other].meta
                    if existing.owner == owner:
                        return PutResult(existing, (), already_stored=True)
            image_id, created_ms = self._new_id()
            values["id"] = image_id
            values["created_at_ms"] = created_ms
            duplicates = tuple(self._shas.lookup(image.sha256))
            row = Row(self._take_seq(), RowKind.PUT, values, blobs)
            position = self._write(row)
            meta = self._entries[image_id].meta
        self._wal.sync(position)
        return PutResult(meta, duplicates)

    def update_annotations(self, image_id: str, update: AnnotationUpdate) -> ImageMeta:
        unknown = update.fields - ANNOTATION_FIELDS
        if unknown:
            raise InvalidRequestError(
                f"update_mask names unknown field(s) {sorted(unknown)}; "
                f"known: {sorted(ANNOTATION_FIELDS)}"
            )
        if "status" in update.fields and update.status is AnalysisStatus.UNSPECIFIED:
            raise InvalidRequestError("status must be PENDING, READY or FAILED")
        with self._lock:
            self._check_writable()
            entry = self._entry(image_id)
            meta = entry.meta
            changes: dict[str, Any] = {}
            for name in ("labels", "moderation_score", "ocr_text", "status", "status_detail"):
                if name in update.fields:
                    changes[name] = getattr(update, name)
            tags = list(update.tags) if "tags" in update.fields else list(meta.tags)
            for tag in update.add_tags:
                if tag not in tags:
                    tags.append(tag)
            tags = [t for t in tags if t not in set(update.remove_tags)]
            changes["tags"] = tuple(tags)
            changes["feedback"] = meta.feedback + update.add_feedback
            if "feature_vector" in update.fields:
                vector = np.asarray(update.feature_vector or (), dtype="<f4").tobytes()
            else:
                vector = _read(entry.vector, "feature_vector") if entry.vector else b""
            changes["has_feature_vector"] = bool(vector)
            new_meta = dataclasses.replace(meta, **changes)
            values = {"id": image_id, **_annotation_values(new_meta)}
            row = Row(self._take_seq(), RowKind.ANNOTATE, values, {"feature_vector": vector})
            position = self._write(row)
            result = self._entries[image_id].meta
        self._wal.sync(position)
        return result

    def delete(self, image_id: str) -> ImageMeta:
        with self._lock:
            self._check_writable()
            meta = self._entry(image_id).meta
            row = Row(self._take_seq(), RowKind.DELETE, {"id": image_id})
            position = self._write(row)
        self._wal.sync(position)
        return meta

    # --- reads ---------------------------------------------------------------------------------

    def get(self, image_id: str) -> ImageMeta:
        with self._lock:
            return self._entry(image_id).meta

    def get_many(self, image_ids: Iterable[str]) -> list[ImageMeta | None]:
        """Metadata of each id in order; None for ids not stored (damaged ones raise)."""
        with self._lock:
            out: list[ImageMeta | None] = []
            for image_id in image_ids:
                entry = self._entries.get(image_id)
                if entry is None and image_id in self._damaged:
                    self._entry(image_id)
                out.append(entry.meta if entry is not None else None)
            return out

    def find_by_sha256(self, sha256: str, owner: str | None = None) -> list[ImageMeta]:
        """Live images with these bytes (newest first), only `owner`'s when it is given."""
        with self._lock:
            metas = [self._entries[i].meta for i in self._shas.lookup(sha256)]
        return [m for m in metas if owner is None or m.owner == owner]

    def read_data(self, image_id: str) -> tuple[ImageMeta, bytes]:
        with self._lock:
            entry = self._entry(image_id)
            meta, ref = entry.meta, entry.image
        return meta, _read(ref, "data")

    def feature_vector(self, image_id: str) -> list[float]:
        with self._lock:
            ref = self._entry(image_id).vector
        if ref is None:
            return []
        return np.frombuffer(_read(ref, "feature_vector"), dtype="<f4").tolist()

    def thumbnail(self, image_id: str, size: ThumbnailSize) -> Thumbnail:
        with self._lock:
            entry = self._entry(image_id)
            meta, ref = entry.meta, entry.image
        if size is ThumbnailSize.PREVIEW:
            if meta.thumb_preview_size == (0, 0):
                return Thumbnail(_read(ref, "data"), meta.content_type, meta.width, meta.height)
            w, h = meta.thumb_preview_size
            return Thumbnail(_read(ref, "thumb_preview"), meta.thumb_content_type, w, h)
        w, h = meta.thumb_small_size
        return Thumbnail(_read(ref, "thumb_small"), meta.thumb_content_type, w, h)

    def find_by_filename(self, filename: str, limit: int = 0) -> list[ImageMeta]:
        with self._lock:
            return [self._entries[i].meta for i in self._filenames.lookup(filename, limit)]

    def list_images(
        self,
        page_size: int = 0,
        page_token: str = "",
        owner: str = "",
        status: AnalysisStatus = AnalysisStatus.UNSPECIFIED,
    ) -> Page:
        size = DEFAULT_PAGE_SIZE if page_size <= 0 else min(page_size, MAX_PAGE_SIZE)
        after = _decode_token(page_token) if page_token else None

        def wanted(meta: ImageMeta) -> bool:
            return (not owner or meta.owner == owner) and (
                status is AnalysisStatus.UNSPECIFIED or meta.status == status
            )

        with self._lock:
            end = bisect.bisect_left(self._order, after) if after is not None else len(self._order)
            found: list[ImageMeta] = []
            i = end - 1
            while i >= 0 and len(found) <= size:
                meta = self._entries[self._order[i]].meta
                if wanted(meta):
                    found.append(meta)
                i -= 1
            if owner or status is not AnalysisStatus.UNSPECIFIED:
                total = sum(1 for e in self._entries.values() if wanted(e.meta))
            else:
                total = len(self._order)
        more = len(found) > size
        page = found[:size]
        token = _encode_token(page[-1].id) if more and page else ""
        return Page(tuple(page), token, total)

    def stats(self) -> StoreStats:
        with self._lock:
            segments = list(self._segments)
            tombstones = sum(self._segment_dead.get(s.segment_id, (0, 0))[0] for s in segments)
            pending = [*self._memtable, *(r for f in self._frozen for r in f.rows)]
            memtable_rows = len(pending)
            deleted = tombstones + sum(1 for r in pending if r.kind is RowKind.DELETE)
            images, raw = len(self._entries), self._raw_image_bytes
        columns: dict[str, list[int]] = {c.name: [0, 0] for c in COLUMNS}
        for segment in segments:
            for name, (raw_b, stored_b) in segment.column_bytes().items():
                if name in columns:
                    columns[name][0] += raw_b
                    columns[name][1] += stored_b
        wal_bytes = sum(p.stat().st_size for p in (self.data_dir / "wal").iterdir())
        manifest = self.data_dir / "MANIFEST"
        manifest_bytes = manifest.stat().st_size if manifest.exists() else 0
        return StoreStats(
            image_count=images,
            deleted_count=deleted,
            segment_count=len(segments),
            disk_bytes=sum(s.file_bytes for s in segments) + wal_bytes + manifest_bytes,
            raw_image_bytes=raw,
            wal_bytes=wal_bytes,
            memtable_rows=memtable_rows,
            columns=tuple(ColumnStat(n, r, s) for n, (r, s) in columns.items()),
        )

    # --- flushing and compaction ---------------------------------------------------------------

    def flush(self) -> None:
        """Write the memtable to a segment now and wait until it is installed."""
        with self._lock:
            self._check_writable()
            self._freeze()
            while self._frozen:
                self._cond.wait(timeout=1.0)

    def _flush_loop(self) -> None:
        while True:
            with self._lock:
                while not self._frozen and not self._closing:
                    self._cond.wait()
                if not self._frozen:
                    return
                job = self._frozen[0]
            try:
                self._flush_one(job)
            except Exception:  # noqa: BLE001 - keep the log; retry rather than lose the rows
                log.exception("memtable flush failed; will retry")
                time.sleep(1.0)
                continue
            if self._pick_compaction():
                self._compact_wanted.set()

    def _compact_loop(self) -> None:
        # Its own thread, so flushes (and the writers waiting on them) go on while it merges.
        while True:
            self._compact_wanted.wait()
            self._compact_wanted.clear()
            if self._closing or self._closed:
                return
            try:
                self.compact(background=True)
            except StoreClosedError:
                return
            except Exception:  # noqa: BLE001 - keep serving; the next flush asks again
                log.exception("background compaction failed")

    def _manifest_segments(self) -> tuple[int, ...]:
        # Unreadable segments stay listed, so their files are kept for inspection or repair.
        return tuple(s.segment_id for s in self._segments) + tuple(self._unreadable)

    def _allocate_segment_path(self) -> Path:
        with self._lock:
            segment_id = self._manifest.next_segment_id
            self._manifest = dataclasses.replace(self._manifest, next_segment_id=segment_id + 1)
        return self.data_dir / "segments" / f"{segment_id:06d}.seg"

    def _flush_one(self, job: _Frozen) -> None:
        path = self._allocate_segment_path()
        write_segment(path, job.rows)
        segment = SegmentReader(path)
        with self._lock:
            self._segments.append(segment)
            self._segment_dead[segment.segment_id] = _dead_counts(r.kind for r in job.rows)
            self._manifest = Manifest(
                self._manifest_segments(), self._manifest.next_segment_id, job.wal_min
            )
            self._manifest.save(self.data_dir)
            for i, row in enumerate(job.rows):
                entry = self._entries.get(row.image_id)
                if entry is None:
                    continue
                # Point the live view at the segment, so the memtable rows can be freed.
                if entry.image[0] is row:
                    entry.image = (segment, i)
                if entry.vector is not None and entry.vector[0] is row:
                    entry.vector = (segment, i)
            for number in wal_mod.log_numbers(self.data_dir / "wal"):
                if number < job.wal_min:
                    self._wal.recycle(wal_mod.log_path(self.data_dir / "wal", number))
            self._frozen.pop(0)
            self._cond.notify_all()
        log.info("memtable flushed", extra={"segment": segment.name, "rows": len(job.rows)})

    def _pick_compaction(self) -> list[SegmentReader]:
        """What the background policy merges now: every segment when many rows are dead,
        else a full size tier, else nothing."""
        with self._lock:
            segments = list(self._segments)
            rows = sum(s.row_count for s in segments)
            dead = sum(self._segment_dead.get(s.segment_id, (0, 0))[1] for s in segments)
        if len(segments) > 1 and rows > 0 and dead / rows >= self.options.compact_dead_fraction:
            return segments
        return pick_tier(
            segments, self.options.memtable_bytes, max(2, self.options.compact_min_segments)
        )

    def compact(
        self, segment_ids: Collection[int] | None = None, *, background: bool = False
    ) -> CompactionReport:
        """Merge segments, dropping deleted rows and old versions: all of them (the Compact
        call), those named, or what the background policy picks."""
        with self._compaction_lock:
            with self._lock:
                self._check_writable()
                if background:
                    old = self._pick_compaction()
                else:
                    old = [
                        s
                        for s in self._segments
                        if segment_ids is None or s.segment_id in segment_ids
                    ]
                segments_before = len(self._segments)
            if background and not old:
                return CompactionReport(segments_before, segments_before, 0, 0, 0)
            bytes_before = sum(s.file_bytes for s in old)
            if not old:
                return CompactionReport(0, 0, 0, 0, 0)
            merged, dropped = merge_segments(old)
            new_segment: SegmentReader | None = None
            if merged:
                path = self._allocate_segment_path()
                write_segment(path, merged)
                new_segment = SegmentReader(path)
            with self._lock:
                old_ids = {s.segment_id for s in old}
                keep = [s for s in self._segments if s.segment_id not in old_ids]
                self._segments = ([new_segment] if new_segment else []) + keep
                for s in old:
                    self._segment_dead.pop(s.segment_id, None)
                if new_segment is not None:
                    self._segment_dead[new_segment.segment_id] = _dead_counts(
                        r.values["kind"] for r in merged
                    )
                    for i, row in enumerate(merged):
                        entry = self._entries.get(row.values["id"])
                        if entry is None:
                            continue
                        if isinstance(entry.image[0], SegmentReader) and (
                            entry.image[0].segment_id in old_ids
                        ):
                            entry.image = (new_segment, i)
                        vec = entry.vector
                        if (
                            vec is not None
                            and isinstance(vec[0], SegmentReader)
                            and vec[0].segment_id in old_ids
                        ):
                            entry.vector = (new_segment, i)
                self._manifest = dataclasses.replace(
                    self._manifest, segments=self._manifest_segments()
                )
                self._manifest.save(self.data_dir)
                segments_after = len(self._segments)
            for s in old:
                s.retire()
            bytes_after = new_segment.file_bytes if new_segment else 0
            log.info(
                "compacted",
                extra={
                    "segments_before": len(old),
                    "rows_dropped": dropped,
                    "bytes_before": bytes_before,
                    "bytes_after": bytes_after,
                },
            )
            return CompactionReport(
                segments_before, segments_after, bytes_before, bytes_after, dropped
            )

    # --- closing -------------------------------------------------------------------------------

    def close(self) -> None:
        """Flush the memtable, stop the flusher and close the log. Idempotent."""
        with self._lock:
            if self._closed or self._closing:
                return
            with contextlib.suppress(StoreClosedError):
                self._freeze()
            self._closing = True
            self._cond.notify_all()
        self._flusher.join()
        self._compact_wanted.set()
        self._compactor.join()
        with self._lock:
            self._wal.close()
            if not self._memtable and not self._frozen:
                # Every record is in a segment now: the next open starts with an empty log.
                for path in (self.data_dir / "wal").iterdir():
                    path.unlink()
            self._closed = True
            self._cond.notify_all()
        log.info("column store closed", extra={"data_dir": str(self.data_dir)})

    def __enter__(self) -> ColumnStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def directory_bytes(path: Path) -> int:
    """Bytes of every file under `path` (for tests and benchmarks)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
