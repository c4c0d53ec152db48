"""ColumnStore: the image table on disk (segments + log + manifest) and its in-memory view.

Write path: validate under the store lock and append the record to the log (not yet visible),
release the lock, wait for the log's group commit, then apply every record that fsync made
durable to the in-memory view (an index of every live image: its small columns, and where its
bytes live, in the memtable or in a segment), in sequence order. So a row is visible only once
it is durable, and a failed fsync leaves nothing visible. Readers take the lock only to look up
where things are; they read blob bytes from immutable segments (or memtable rows) without it.

Background: when the memtable passes `memtable_bytes`, the log rotates and a flusher thread
writes the frozen rows to a new segment, installs it in the MANIFEST and retires the log files
whose every record (by sequence number) a segment now holds. When there are
`compact_min_segments` segments (or many tombstones), a compactor thread merges them
(compaction.py); readers keep using the old files until they are done with them.

Failures (see docs/storage.md): the first failed flush, compaction, log rotation or log fsync
is latched; every later write fails fast with it (StorageFullError for ENOSPC, else
BackgroundError) while reads go on; the flusher retries with backoff and clears the latch when
the work succeeds. The data dir is held with an exclusive LOCK. Start-up never deletes a file
it cannot account for: such files go to `quarantine/`. All file access goes through a
`FileSystem` (fs.py), so tests can inject faults and crashes.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import contextlib
import dataclasses
import errno
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from storage_service.columnstore import vectors
from storage_service.columnstore import wal as wal_mod
from storage_service.columnstore.compaction import merge_segments, pick_tier, segment_rows
from storage_service.columnstore.errors import (
    BackgroundError,
    DataDirLockedError,
    DataLossError,
    HistoryCompactedError,
    ImageNotFoundError,
    InvalidRequestError,
    LeaseLostError,
    StorageFullError,
    StoreClosedError,
    StoreError,
)
from storage_service.columnstore.feed import ChangeHistory
from storage_service.columnstore.filename_index import FilenameIndex
from storage_service.columnstore.fs import File, FileSystem, OsFileSystem, read_file
from storage_service.columnstore.manifest import Manifest, ManifestDamagedError
from storage_service.columnstore.model import (
    ANNOTATION_FIELDS,
    NO_ANALYSIS,
    AnalysisFailure,
    AnalysisResult,
    AnalysisState,
    AnalysisStatus,
    AnnotationUpdate,
    Change,
    ChangeKind,
    ChangesPage,
    ClaimedImage,
    Colour,
    ColumnStat,
    CompactionReport,
    DamagedItem,
    Feedback,
    ImageMeta,
    Label,
    ListOrder,
    Page,
    PreparedImage,
    PutResult,
    StoreStats,
    Thumbnail,
    ThumbnailSize,
    VerifyReport,
)
from storage_service.columnstore.row import Row
from storage_service.columnstore.schema import COLUMNS, RowKind
from storage_service.columnstore.segment_reader import SegmentReader
from storage_service.columnstore.segment_writer import write_segment
from storage_service.columnstore.taken_index import (
    TakenIndex,
    date_taken_ms,
    range_keys,
    sort_key,
)

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
    # A failed background flush/compaction/rotation is retried after this, doubling up to max.
    retry_initial_s: float = 0.2
    retry_max_s: float = 5.0
    # close() waits at most this long for the background threads (SIGTERM must not hang).
    close_timeout_s: float = 10.0
    # The change feed keeps at least this many recent seqs: compaction merges away superseded
    # rows and tombstones only below (head - this), and advances the horizon when it does.
    feed_retention_seqs: int = 1_000_000
    # A transient analysis failure is retried after initial * 2**(attempts - 1), capped.
    analysis_backoff_initial_ms: int = 2_000
    analysis_backoff_max_ms: int = 300_000
    # An image claimed this many times without a result (workers killed by it, or transient
    # failures every time) is marked FAILED instead of being claimed again; 0: no limit.
    analysis_max_attempts: int = 10
    # Observers (metrics): seconds of each log fsync, and of each memtable flush.
    on_fsync: Callable[[float], None] | None = None
    on_flush: Callable[[float], None] | None = None
    # Trashed images are restorable this long, then purge_trash deletes them for good (the
    # background thread checks every trash_check_s).
    trash_retention_ms: int = 30 * 86_400_000
    trash_check_s: float = 60.0


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
    # The sequence ranges the segment made of these rows accounts for.
    covers: list[tuple[int, int]] = field(default_factory=list)
    # Chosen at the first attempt, so retries do not use up new ids.
    segment_id: int | None = None


@dataclass
class _Pending:
    """A row written to the log whose fsync has not yet been seen."""

    row: Row
    position: wal_mod.LogPosition
    state: str = "pending"  # -> "applied" | "failed"
    # A put's metadata, built once.
    meta: ImageMeta | None = None


def _dead_counts(kinds: Iterable[int]) -> tuple[int, int]:
    """(tombstones, rows a merge removes): a tombstone also removes the row it deletes."""
    tombstones = annotations = 0
    for kind in kinds:
        tombstones += kind == RowKind.DELETE
        annotations += kind == RowKind.ANNOTATE
    return tombstones, 2 * tombstones + annotations


def _dead_seqs(rows: Iterable[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted seqs of a segment's annotation rows and of its tombstones, from (seq, kind):
    what a merge below a cutoff would drop is counted from them without reading the segment."""
    annotations: list[int] = []
    tombstones: list[int] = []
    for seq, kind in rows:
        if kind == RowKind.ANNOTATE:
            annotations.append(seq)
        elif kind == RowKind.DELETE:
            tombstones.append(seq)
    return np.sort(np.asarray(annotations, dtype=np.int64)), np.sort(
        np.asarray(tombstones, dtype=np.int64)
    )


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


def _colours_from(values: list[dict[str, Any]]) -> tuple[Colour, ...]:
    return tuple(Colour(v["name"], float(v["share"])) for v in values)


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
        "analysis": _analysis_of(values),
        "favourite": bool(values.get("favourite", 0)),
        "trashed_at_ms": int(values.get("trashed_at_ms", 0)),
        "colours": _colours_from(values.get("colours") or []),
    }


def _analysis_of(values: dict[str, Any]) -> AnalysisState:
    state = AnalysisState(
        int(values.get("attempts", 0)),
        values.get("last_error", ""),
        int(values.get("generation", 0)),
        values.get("lease_owner", ""),
        int(values.get("lease_expires_ms", 0)),
        int(values.get("next_attempt_ms", 0)),
    )
    if state.lease_owner or state.last_error or state.next_attempt_ms:
        return state
    # Settled states (no lease, no error) repeat a few (attempts, generation) pairs across
    # every image: one shared instance each, not an object per image.
    return _SETTLED.setdefault((state.attempts, state.generation), state)


_SETTLED: dict[tuple[int, int], AnalysisState] = {(0, 0): NO_ANALYSIS}


def _meta_from(values: dict[str, Any]) -> ImageMeta:
    full = {c.name: values.get(c.name, c.default) for c in COLUMNS}
    taken_ms, taken_is_upload = date_taken_ms(full["exif"], int(full["created_at_ms"]))
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
        taken_at_ms=taken_ms,
        taken_at_is_upload_time=taken_is_upload,
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
        "attempts": meta.analysis.attempts,
        "last_error": meta.analysis.last_error,
        "generation": meta.analysis.generation,
        "lease_owner": meta.analysis.lease_owner,
        "lease_expires_ms": meta.analysis.lease_expires_ms,
        "next_attempt_ms": meta.analysis.next_attempt_ms,
        "lease_only": 0,
        "favourite": int(meta.favourite),
        "trashed_at_ms": meta.trashed_at_ms,
        "colours": [{"name": c.name, "share": c.share} for c in meta.colours],
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


def _encode_taken_token(order: ListOrder, key: int, image_id: str) -> str:
    return base64.urlsafe_b64encode(f"t1:{int(order)}:{key}:{image_id}".encode()).decode()


def _decode_taken_token(token: str, order: ListOrder) -> tuple[int, str]:
    """(sort key, image id) of a date-taken listing's token issued for `order`."""
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
        tag, issued_for, key, image_id = text.split(":", 3)
        if tag != "t1":
            raise ValueError(tag)
        if int(issued_for) != int(order):
            raise InvalidRequestError("page_token was issued for another order")
        return int(key), image_id
    except (binascii.Error, UnicodeDecodeError, ValueError) as e:
        raise InvalidRequestError(f"page_token {token[:100]!r} is not one we issued") from e


class ColumnStore:
    """The durable, thread-safe image table. Open with `ColumnStore.open(data_dir)`."""

    def __init__(self, data_dir: Path, options: StoreOptions, fs: FileSystem | None = None) -> None:
        self.data_dir = data_dir
        self.options = options
        self._fs: FileSystem = fs or OsFileSystem()
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        # Writers waiting for an image's pending write to settle (see _wait_settled).
        self._settled = threading.Condition(self._lock)
        self._settle_waiters = 0
        self._compaction_lock = threading.Lock()
        self._lock_file: File | None = None
        self._entries: dict[str, _Entry] = {}
        # Image ids whose rows are in a damaged segment: id -> what is damaged.
        self._damaged: dict[str, str] = {}
        self._damaged_filenames = FilenameIndex()
        # Rows of segments so damaged that not even their ids can be read.
        self._unreadable_rows = 0
        # Every image ever applied has a slot (never reused): its epoch is bumped whenever
        # it leaves the listings (trash, delete), which makes its date-taken entries stale.
        self._slot_of: dict[str, int] = {}
        self._slot_ids: list[str] = []
        self._slot_epoch = np.zeros(1024, dtype=np.uint32)
        self._slot_status = np.zeros(1024, dtype=np.uint8)
        # Visible (not trashed) images by date taken: all of them, and per owner.
        self._taken_all = TakenIndex()
        self._taken_by_owner: dict[str, TakenIndex] = {}
        # While the store opens, date-taken entries are built once at the end.
        self._loading = False
        self._filenames = FilenameIndex()
        self._shas = FilenameIndex()
        self._by_status = FilenameIndex()
        # The starred images (key "1"), so the favourites page is O(page) like the others.
        self._favourites = FilenameIndex()
        # Images in the trash (key "1"), and every image not in it (key ""): listings page
        # through these, so trashed images cost nothing there.
        self._trash = FilenameIndex()
        self._visible = FilenameIndex()
        self._by_owner = FilenameIndex()
        self._by_owner_status = FilenameIndex()
        self._raw_image_bytes = 0
        self._segments: list[SegmentReader] = []
        # Segments the manifest names that cannot be read at all: id -> reason.
        self._unreadable: dict[int, str] = {}
        # Readable segments with a damaged small column: left out of compaction.
        self._damaged_segments: set[int] = set()
        # Per segment: (tombstones, rows that compaction would drop or merge).
        self._segment_dead: dict[int, tuple[int, int]] = {}
        # Per segment: sorted seqs of its annotation rows and tombstones (see _dead_seqs).
        self._segment_dead_seqs: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        # Per segment id: the sequence ranges it accounts for (see segment_writer.py).
        self._covers: dict[int, list[tuple[int, int]]] = {}
        self._memtable: list[Row] = []
        self._memtable_bytes = 0
        self._frozen: list[_Frozen] = []
        # Written to the log, not yet durable: invisible to readers until their fsync.
        self._pending: list[_Pending] = []
        self._pending_ids: dict[str, int] = {}
        self._pending_puts: dict[tuple[str, str], str] = {}
        # Sequence numbers of the records in each live log file: (lowest, highest).
        self._log_seqs: dict[int, tuple[int, int]] = {}
        self._damaged_logs: set[int] = set()
        self._damaged_log_records = 0
        self._freeze_from = 1
        self._next_seq = 1
        self._last_id_ms = 0
        self._id_counter = 0
        self._closing = False
        self._closed = False
        self._bg_error: tuple[str, BaseException] | None = None
        self._quarantined = 0
        self._damaged_blobs_copied = 0
        self._last_verify: VerifyReport | None = None
        self._manifest = Manifest()
        self._wal: wal_mod.WriteAheadLog
        self._flusher: threading.Thread
        self._compactor: threading.Thread
        self._compact_wanted = threading.Event()
        # The change feed: retained changes, newest change seq, retention horizon, and the
        # readers waiting for a new change (woken only when there are some).
        self._history = ChangeHistory()
        self._feed_head = 0
        self._horizon = 0
        self._feed_changed = threading.Condition(self._lock)
        self._feed_waiters = 0

    # --- opening -------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        data_dir: Path | str,
        options: StoreOptions | None = None,
        *,
        fs: FileSystem | None = None,
    ) -> ColumnStore:
        """Open (or create) the store in `data_dir`: take its LOCK, load segments, replay the
        log. DataDirLockedError when another process has it open."""
        store = cls(Path(data_dir), options or StoreOptions(), fs)
        store._take_lock()
        try:
            store._recover()
        except BaseException:
            store._release_lock()
            raise
        return store

    def _take_lock(self) -> None:
        self._fs.mkdir(self.data_dir)
        path = self.data_dir / "LOCK"
        try:
            self._lock_file = self._fs.lock(path)
        except BlockingIOError as e:
            holder = ""
            with contextlib.suppress(OSError, ValueError):
                holder = f" (pid {int(read_file(self._fs, path).split()[0])})"
            raise DataDirLockedError(
                f"data directory {self.data_dir} is in use by another process{holder}: "
                "stop that process first, or give this one another data directory"
            ) from e
        pid = f"{os.getpid()}\n".encode()
        self._lock_file.truncate(0)
        self._lock_file.pwrite(pid, 0)

    def _release_lock(self) -> None:
        if self._lock_file is not None:
            with contextlib.suppress(OSError):
                self._lock_file.close()
            self._lock_file = None

    def _quarantine(self, path: Path, why: str) -> None:
        """Move a file the store cannot account for out of the way, never deleting it."""
        qdir = self.data_dir / "quarantine"
        self._fs.mkdir(qdir)
        target = qdir / f"{path.parent.name}-{path.name}.{int(time.time() * 1000)}"
        self._fs.rename(path, target)
        self._fs.sync_dir(qdir)
        self._fs.sync_dir(path.parent)
        self._quarantined += 1
        log.warning(
            "file moved to quarantine", extra={"path": str(path), "to": str(target), "why": why}
        )

    def _rebuild_manifest(self, seg_dir: Path, why: str) -> Manifest:
        """A manifest made from the segment files' own footers."""
        log.warning("rebuilding MANIFEST from the segment files", extra={"why": why})
        found: dict[int, SegmentReader | None] = {}
        for name in self._fs.listdir(seg_dir):
            if name.endswith(".seg") and name[:-4].isdigit():
                try:
                    found[int(name[:-4])] = SegmentReader(seg_dir / name, self._fs)
                except (DataLossError, OSError) as e:
                    log.error("segment unreadable while rebuilding", extra={"error": str(e)})
                    found[int(name[:-4])] = None
        replaced = {r for s in found.values() if s is not None for r in s.replaces}
        for segment_id in sorted(replaced & set(found)):
            # A compaction's input whose output is here: its rows are in the output.
            found.pop(segment_id)
            self._quarantine(seg_dir / f"{segment_id:06d}.seg", "replaced by a compaction")
        rows = {i: s.row_count for i, s in found.items() if s is not None}
        return Manifest(tuple(sorted(found)), max([0, *found, *replaced]) + 1, 1, rows)

    def _recover(self) -> None:
        started = time.perf_counter()
        fs = self._fs
        seg_dir = self.data_dir / "segments"
        wal_dir = self.data_dir / "wal"
        fs.mkdir(seg_dir)
        fs.mkdir(wal_dir)
        # Partial outputs of a flush, compaction or manifest swap a crash interrupted.
        partial = [
            seg_dir / n for n in fs.listdir(seg_dir) if n[:-4].isdigit() and n.endswith(".tmp")
        ]
        if fs.exists(self.data_dir / "MANIFEST.tmp"):
            partial.append(self.data_dir / "MANIFEST.tmp")
        for path in partial:
            log.info("removing a partial output", extra={"path": str(path)})
            fs.unlink(path)
        rebuilt = False
        try:
            manifest = Manifest.load(self.data_dir, fs)
        except ManifestDamagedError as e:
            self._quarantine(self.data_dir / "MANIFEST", str(e))
            manifest, rebuilt = self._rebuild_manifest(seg_dir, str(e)), True
        if manifest is None:
            if any(n.endswith(".seg") for n in fs.listdir(seg_dir)):
                manifest = self._rebuild_manifest(seg_dir, "MANIFEST missing")
                rebuilt = True
            else:
                manifest = Manifest()
        self._manifest = manifest
        live = set(manifest.segments)
        for name in fs.listdir(seg_dir):
            stem = name[:-4]
            if not (name.endswith(".seg") and stem.isdigit() and int(stem) in live):
                # Most often a segment a crash left before the manifest named it (its rows
                # are still in the log); kept for inspection all the same.
                self._quarantine(seg_dir / name, "not named by the MANIFEST")
        versions: list[tuple[int, int, dict[str, Any], BlobSource, int]] = []
        for segment_id in sorted(manifest.segments):
            self._load_segment(seg_dir / f"{segment_id:06d}.seg", versions)
        covered = self._covered()
        replayed = 0
        numbers = wal_mod.log_numbers(wal_dir)
        uncovered_min: int | None = None
        max_seq = max((v[0] for v in versions), default=0)
        for number in numbers:
            path = wal_mod.log_path(wal_dir, number)
            records, damage = wal_mod.read_log(path, fs)
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
                if not d.is_tail:
                    self._damaged_logs.add(number)
                    self._damaged_log_records += 1
            if records:
                seqs = [seq for seq, _ in records]
                self._log_seqs[number] = (min(seqs), max(seqs))
            for seq, payload in records:
                max_seq = max(max_seq, seq)
                if _is_covered(covered, seq):
                    continue
                try:
                    row = Row.decode(seq, payload)
                except (ValueError, KeyError) as e:
                    log.error("log record does not decode", extra={"seq": seq, "error": str(e)})
                    self._damaged_logs.add(number)
                    self._damaged_log_records += 1
                    continue
                uncovered_min = seq if uncovered_min is None else min(uncovered_min, seq)
                self._memtable.append(row)
                self._memtable_bytes += row.size_bytes
                versions.append((seq, int(row.kind), row.values, row, 0))
                replayed += 1
        self._memtable.sort(key=lambda r: r.seq)
        versions.sort(key=lambda v: v[0])
        self._horizon = manifest.feed_horizon
        if rebuilt:
            # The recorded horizon is lost: treat everything the segments hold as compacted
            # (consumers resynchronise from a listing), which is always safe.
            segment_max = max((s.seq_max for s in self._segments), default=0)
            self._horizon = max(self._horizon, segment_max + 1)
            self._manifest = dataclasses.replace(self._manifest, feed_horizon=self._horizon)
        self._loading = True
        for seq, kind, values, source, index in versions:
            self._apply(RowKind(kind), values, source, index)
            if (
                seq >= self._horizon
                and not values.get("lease_only", 0)
                and seq > self._history.last_seq
            ):
                self._history.append(seq, kind, values["id"])
        self._loading = False
        self._build_taken_indexes()
        self._feed_head = max(self._history.last_seq, self._horizon - 1, 0)
        self._next_seq = max(self._next_seq, max_seq + 1)
        self._freeze_from = uncovered_min if uncovered_min is not None else self._next_seq
        next_log = max([manifest.wal_min, *[n + 1 for n in numbers]])
        self._wal = wal_mod.WriteAheadLog(
            wal_dir,
            next_log,
            zero_fill_bytes=min(self.options.memtable_bytes, WAL_ZERO_FILL),
            fs=fs,
        )
        self._wal.on_fsync = self.options.on_fsync
        if rebuilt:
            self._save_manifest()
        self._retire_logs()
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
                "unreadable_rows": self._unreadable_count(),
                "damaged_log_records": self._damaged_log_records,
                "open_s": round(time.perf_counter() - started, 3),
            },
        )

    def _load_segment(
        self, path: Path, versions: list[tuple[int, int, dict[str, Any], BlobSource, int]]
    ) -> None:
        segment_id = int(path.stem)
        try:
            segment = SegmentReader(path, self._fs)
        except (DataLossError, OSError) as e:
            reason = str(e) if self._fs.exists(path) else f"{path.name} is missing"
            log.error("segment unreadable, its rows answer data loss", extra={"error": reason})
            self._unreadable[segment_id] = reason
            self._unreadable_rows += self._manifest.rows.get(segment_id, 0)
            self._covers[segment_id] = []
            return
        self._segments.append(segment)
        self._covers[segment_id] = segment.covers if segment.described else [(1, segment.seq_max)]
        try:
            rows = segment_rows(segment)
        except DataLossError as e:
            log.error("segment column damaged", extra={"error": str(e)})
            self._mark_damaged(segment, str(e))
            return
        if not segment.described:
            self._covers[segment_id] = [(1, max((v["seq"] for v in rows), default=0))]
        for i, values in enumerate(rows):
            versions.append((values["seq"], values["kind"], values, segment, i))
        self._segment_dead[segment.segment_id] = _dead_counts(v["kind"] for v in rows)
        self._segment_dead_seqs[segment.segment_id] = _dead_seqs(
            (v["seq"], v["kind"]) for v in rows
        )

    def _build_taken_indexes(self) -> None:
        """The date-taken indexes of every visible image, in one sort each (at open)."""
        by_owner: dict[str, list[int]] = {}
        ids = self._visible.ids("")
        slots = np.fromiter((self._slot_of[i] for i in ids), np.int32, len(ids))
        keys = np.fromiter(
            (sort_key(self._entries[i].meta.taken_at_ms, i) for i in ids), np.uint64, len(ids)
        )
        for n, image_id in enumerate(ids):
            by_owner.setdefault(self._entries[image_id].meta.owner, []).append(n)
        self._taken_all.bulk_load(keys, slots, self._slot_epoch[slots])
        self._taken_by_owner = {}
        for owner, members in by_owner.items():
            at = np.asarray(members, dtype=np.int64)
            self._taken_index(owner).bulk_load(keys[at], slots[at], self._slot_epoch[slots[at]])

    def _mark_damaged(self, segment: SegmentReader, detail: str) -> None:
        """A segment whose small columns fail: its ids (from either copy) answer DATA_LOSS;
        when neither copy reads, its rows are counted as unreadable."""
        self._damaged_segments.add(segment.segment_id)
        try:
            ids = segment.ids()
        except DataLossError:
            log.error("segment ids unreadable", extra={"segment": segment.name})
            self._unreadable_rows += segment.row_count
            return
        try:
            filenames: list[str] = segment.column("filename")
        except DataLossError:
            filenames = [""] * len(ids)
        # "checksum failure in segments/000001.seg: column 'x' ..." -> "column 'x' ...".
        detail = detail.split(f"{segment.name}: ", 1)[-1]
        for image_id, filename in zip(ids, filenames, strict=False):
            self._damaged[image_id] = f"{segment.name}\0{detail}"
            if filename:
                self._damaged_filenames.add(filename, image_id)

    def _covered(self) -> list[tuple[int, int]]:
        """The union of every segment's covered sequence ranges, merged and sorted."""
        ranges = sorted(r for rs in self._covers.values() for r in rs)
        merged: list[tuple[int, int]] = []
        for lo, hi in ranges:
            if merged and lo <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
            else:
                merged.append((lo, hi))
        return merged

    # --- applying changes to the in-memory view -------------------------------------------------

    def _slot(self, image_id: str) -> int:
        slot = self._slot_of.get(image_id)
        if slot is None:
            slot = self._slot_of[image_id] = len(self._slot_ids)
            self._slot_ids.append(image_id)
            if slot >= len(self._slot_epoch):
                grow = len(self._slot_epoch)
                self._slot_epoch = np.concatenate([self._slot_epoch, np.zeros(grow, np.uint32)])
                self._slot_status = np.concatenate([self._slot_status, np.zeros(grow, np.uint8)])
        return slot

    def _taken_index(self, owner: str) -> TakenIndex:
        index = self._taken_by_owner.get(owner)
        if index is None:
            index = self._taken_by_owner[owner] = TakenIndex()
        return index

    def _index_add(self, meta: ImageMeta, taken: bool = True) -> None:
        if meta.trashed_at_ms:
            # In the trash: listed only there (not in listings, the queue or favourites).
            self._trash.add("1", meta.id)
            return
        self._visible.add("", meta.id)
        slot = self._slot(meta.id)
        self._slot_status[slot] = int(meta.status)
        if taken and not self._loading:
            key, epoch = sort_key(meta.taken_at_ms, meta.id), int(self._slot_epoch[slot])
            self._taken_all.add(key, slot, epoch)
            self._taken_index(meta.owner).add(key, slot, epoch)
        status = str(int(meta.status))
        self._by_status.add(status, meta.id)
        self._by_owner.add(meta.owner, meta.id)
        self._by_owner_status.add(f"{meta.owner}\0{status}", meta.id)
        if meta.favourite:
            self._favourites.add("1", meta.id)

    def _index_remove(self, meta: ImageMeta, taken: bool = True) -> None:
        slot = self._slot_of.get(meta.id)
        if taken and slot is not None and not meta.trashed_at_ms:
            self._slot_epoch[slot] += 1
            if not self._loading:
                self._taken_all.removed()
                self._taken_index(meta.owner).removed()
        status = str(int(meta.status))
        self._by_status.remove(status, meta.id)
        self._by_owner.remove(meta.owner, meta.id)
        self._by_owner_status.remove(f"{meta.owner}\0{status}", meta.id)
        self._favourites.remove("1", meta.id)
        self._trash.remove("1", meta.id)
        self._visible.remove("", meta.id)

    def _apply(
        self,
        kind: RowKind,
        values: dict[str, Any],
        source: BlobSource,
        index: int,
        meta: ImageMeta | None = None,
    ) -> None:
        image_id = values["id"]
        if kind is RowKind.PUT:
            meta = meta or _meta_from(values)
            vector = (source, index) if meta.has_feature_vector else None
            old = self._entries.get(image_id)
            if old is not None:  # a merged row replacing its versions: keep the newest
                return
            self._entries[image_id] = _Entry(meta, (source, index), vector)
            self._filenames.add(meta.filename, image_id)
            self._shas.add(meta.sha256, image_id)
            self._index_add(meta)
            self._raw_image_bytes += meta.byte_size
        elif kind is RowKind.ANNOTATE:
            entry = self._entries.get(image_id)
            if entry is None:
                return
            full = {c.name: values.get(c.name, c.default) for c in COLUMNS}
            old_meta = entry.meta
            entry.meta = dataclasses.replace(old_meta, **_annotations_of(full))
            new_key = (entry.meta.status, entry.meta.favourite, entry.meta.trashed_at_ms)
            if new_key != (old_meta.status, old_meta.favourite, old_meta.trashed_at_ms):
                # Still listed (a status or star change): its date-taken entries stay.
                moved = bool(old_meta.trashed_at_ms) != bool(entry.meta.trashed_at_ms)
                self._index_remove(old_meta, taken=moved)
                self._index_add(entry.meta, taken=moved)
            entry.vector = (source, index) if entry.meta.has_feature_vector else None
        else:
            gone = self._entries.pop(image_id, None)
            if gone is None:
                return
            self._filenames.remove(gone.meta.filename, image_id)
            self._shas.remove(gone.meta.sha256, image_id)
            self._index_remove(gone.meta)
            self._raw_image_bytes -= gone.meta.byte_size

    # --- the write path: log, fsync, then apply -------------------------------------------------

    def _submit(self, row: Row, owner_sha: tuple[str, str] | None = None) -> _Pending:
        """Append `row` to the log (lock held). It becomes visible only in `_commit`, once
        its record is durable."""
        try:
            position = self._wal.append(row.seq, row.encode())
        except StorageFullError:
            raise
        except OSError as e:
            self._latch("log write", e)
            self._check_writable()
            raise
        pending = _Pending(row, position)
        self._pending.append(pending)
        self._pending_ids[row.image_id] = self._pending_ids.get(row.image_id, 0) + 1
        if owner_sha is not None:
            self._pending_puts[owner_sha] = row.image_id
        lo, hi = self._log_seqs.get(position[0], (row.seq, row.seq))
        self._log_seqs[position[0]] = (min(lo, row.seq), max(hi, row.seq))
        return pending

    def _commit(self, pending: _Pending) -> None:
        """Wait for the record's group fsync, then make it (and every record before it)
        visible. A failed fsync leaves it invisible and latches the error."""
        try:
            self._wal.sync(pending.position)
        except OSError as e:
            with self._lock:
                self._latch("log fsync", e)
                self._drop_unsynced()
            raise self._error_for("log fsync", e) from e
        if pending.state == "applied":
            # Another writer of the same group commit applied it (and checked the memtable
            # size): no second trip through the lock.
            return
        with self._lock:
            self._apply_synced()
            if pending.state != "applied":
                raise BackgroundError(f"the write was not made durable: {self._bg_error}")
            if self._memtable_bytes >= self.options.memtable_bytes:
                self._freeze(wait=True)

    def _forget_pending(self, pending: _Pending) -> None:
        image_id = pending.row.image_id
        left = self._pending_ids.get(image_id, 1) - 1
        if left:
            self._pending_ids[image_id] = left
        else:
            self._pending_ids.pop(image_id, None)
        if pending.row.kind is RowKind.PUT:
            key = (pending.row.values["sha256"], pending.row.values["owner"])
            if self._pending_puts.get(key) == image_id:
                del self._pending_puts[key]

    def _apply_synced(self) -> None:
        """Apply, in sequence order, every pending row whose record is durable."""
        synced = self._wal.synced
        done = 0
        for pending in self._pending:
            if pending.position > synced:
                break
            row = pending.row
            self._apply(row.kind, row.values, row, 0, pending.meta)
            self._memtable.append(row)
            self._memtable_bytes += row.size_bytes
            if not row.values.get("lease_only"):
                self._history.append(row.seq, int(row.kind), row.image_id)
                self._feed_head = row.seq
            pending.state = "applied"
            self._forget_pending(pending)
            done += 1
        if done:
            del self._pending[:done]
            self._wake_settle_waiters()
            if self._feed_waiters:
                self._feed_changed.notify_all()

    def _wake_settle_waiters(self) -> None:
        # Only writers waiting for an image's earlier write are woken: notifying the flusher's
        # condition on every write cost a thread wake-up per put (~100 us on 2 busy cores).
        if self._settle_waiters:
            self._settled.notify_all()

    def _wait_settled(self) -> None:
        self._settle_waiters += 1
        try:
            self._settled.wait(timeout=1.0)
        finally:
            self._settle_waiters -= 1

    def _drop_unsynced(self) -> None:
        """After a failed fsync: rows not known durable are never applied."""
        synced = self._wal.synced
        keep = []
        for pending in self._pending:
            if pending.position > synced:
                pending.state = "failed"
                self._forget_pending(pending)
            else:
                keep.append(pending)
        self._pending = keep
        self._apply_synced()
        self._wake_settle_waiters()

    def _wait_not_pending(self, image_id: str) -> None:
        """Read-modify-write of one image waits until its earlier writes are settled."""
        while image_id in self._pending_ids:
            self._wait_settled()

    def _freeze(self, *, wait: bool = False, recovering: bool = False) -> None:
        """Rotate the log and hand the memtable to the flusher. A rotation failure is latched
        (raised only when `recovering`): the writes already made stay durable and visible."""
        if not self._memtable and not self._pending and self._wal.failed is None:
            return
        if self._wal.failed is not None:
            self._drop_unsynced()
        try:
            new_log = self._wal.rotate()
        except OSError as e:
            self._latch("log rotation", e)
            if recovering:
                raise
            return
        self._apply_synced()
        last = self._next_seq - 1
        if self._memtable or last >= self._freeze_from:
            self._frozen.append(
                _Frozen(
                    self._memtable,
                    new_log,
                    [(self._freeze_from, last)] if last >= self._freeze_from else [],
                )
            )
        self._freeze_from = last + 1
        self._memtable = []
        self._memtable_bytes = 0
        self._cond.notify_all()
        while (
            wait
            and len(self._frozen) > self.options.max_frozen_memtables
            and not self._closed
            and self._bg_error is None
        ):
            self._cond.wait(timeout=1.0)

    def _latch(self, what: str, error: BaseException) -> None:
        """Keep the first background failure; writes fail fast with it until it clears."""
        if self._bg_error is None:
            self._bg_error = (what, error)
            log.error(
                "background error latched: writes are refused until it clears",
                extra={"what": what, "error": str(error)},
            )
        self._cond.notify_all()

    def _clear_latch(self) -> None:
        if self._bg_error is not None:
            log.warning(
                "background error cleared: writes resume", extra={"what": self._bg_error[0]}
            )
            self._bg_error = None
            self._cond.notify_all()

    @staticmethod
    def _error_for(what: str, error: BaseException) -> StoreError:
        if isinstance(error, StorageFullError) or (
            isinstance(error, OSError) and error.errno == errno.ENOSPC
        ):
            return StorageFullError(f"storage is full ({what} failed); free space to resume")
        return BackgroundError(
            f"{what} failed ({error}); writes are refused until it succeeds again "
            "(retried in the background)"
        )

    def _check_writable(self) -> None:
        if self._closing or self._closed:
            raise StoreClosedError("the store is closed")
        if self._bg_error is not None:
            raise self._error_for(*self._bg_error)

    def _entry(self, image_id: str) -> _Entry:
        entry = self._entries.get(image_id)
        if entry is None:
            if image_id in self._damaged:
                name, detail = self._damaged[image_id].split("\0", 1)
                raise DataLossError(name, f"{detail}: metadata of {image_id!r} lost")
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
                # An identical put still in flight decides first.
                while (image.sha256, owner) in self._pending_puts:
                    self._wait_settled()
                for other in self._shas.lookup(image.sha256):
                    existing = self._entries[other].meta
                    if existing.owner == owner and not existing.trashed_at_ms:
                        return PutResult(existing, (), already_stored=True)
                self._check_writable()
            image_id, created_ms = self._new_id()
            values["id"] = image_id
            values["created_at_ms"] = created_ms
            # Copies in the trash do not count: they are not in the library any more.
            duplicates = tuple(
                i
                for i in self._shas.lookup(image.sha256)
                if not self._entries[i].meta.trashed_at_ms
            )
            row = Row(self._take_seq(), RowKind.PUT, values, blobs)
            meta = _meta_from(values)
            pending = self._submit(row, (image.sha256, owner))
            pending.meta = meta
        self._commit(pending)
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
            self._wait_not_pending(image_id)
            entry = self._entry(image_id)
            meta = entry.meta
            changes: dict[str, Any] = {}
            for name in (
                "labels",
                "moderation_score",
                "ocr_text",
                "status",
                "status_detail",
                "favourite",
            ):
                if name in update.fields:
                    changes[name] = getattr(update, name)
            if "trashed" in update.fields:
                now = int(time.time() * 1000)
                changes["trashed_at_ms"] = (meta.trashed_at_ms or now) if update.trashed else 0
            tags = list(update.tags) if "tags" in update.fields else list(meta.tags)
            for tag in update.add_tags:
                if tag not in tags:
                    tags.append(tag)
            tags = [t for t in tags if t not in set(update.remove_tags)]
            changes["tags"] = tuple(tags)
            changes["feedback"] = meta.feedback + update.add_feedback
            if "feature_vector" in update.fields:
                vector = vectors.encode(update.feature_vector)
            else:
                vector = _read(entry.vector, "feature_vector") if entry.vector else b""
            changes["has_feature_vector"] = bool(vector)
            if "status" in update.fields:
                # A status set by hand ends any claim: the claimer's completion is refused
                # (LEASE_LOST), and PENDING queues the image again from scratch.
                analysis = meta.analysis
                changes["analysis"] = AnalysisState(
                    0 if update.status is AnalysisStatus.PENDING else analysis.attempts,
                    "" if update.status is AnalysisStatus.PENDING else analysis.last_error,
                    analysis.generation + 1,
                )
            new_meta = dataclasses.replace(meta, **changes)
            values = {"id": image_id, **_annotation_values(new_meta)}
            row = Row(self._take_seq(), RowKind.ANNOTATE, values, {"feature_vector": vector})
            pending = self._submit(row)
        self._commit(pending)
        return new_meta

    def delete(self, image_id: str) -> ImageMeta:
        with self._lock:
            self._check_writable()
            self._wait_not_pending(image_id)
            meta = self._entry(image_id).meta
            row = Row(self._take_seq(), RowKind.DELETE, {"id": image_id})
            pending = self._submit(row)
        self._commit(pending)
        return meta

    def purge_trash(self, now_ms: int | None = None, everything: bool = False) -> list[str]:
        """Delete for good (tombstones; compaction reclaims the bytes) the images in the trash
        longer than the retention, or all of them with `everything` (empty trash). Returns
        their ids."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        cutoff = now - self.options.trash_retention_ms
        with self._lock:
            due = [
                i
                for i in self._trash.ids("1")
                if everything or self._entries[i].meta.trashed_at_ms <= cutoff
            ]
        purged = []
        for image_id in due:
            try:
                self.delete(image_id)
            except ImageNotFoundError:
                continue
            purged.append(image_id)
        if purged:
            log.info("trash purged", extra={"images": len(purged), "everything": everything})
        return purged

    # --- the analysis queue ----------------------------------------------------------------------

    def _backoff_ms(self, attempts: int) -> int:
        initial = self.options.analysis_backoff_initial_ms
        return int(
            min(initial * 2 ** max(0, min(attempts - 1, 40)), self.options.analysis_backoff_max_ms)
        )

    def claim_analysis(
        self, worker_id: str, max_images: int, lease_ms: int, now_ms: int | None = None
    ) -> list[ClaimedImage]:
        """Lease up to `max_images` PENDING images to `worker_id`, oldest first: those whose
        lease is free or expired and whose next attempt time has come. Each claim bumps the
        image's generation and attempts and sets the lease; it is durable before this returns,
        and decided under the store lock (an image with a write in flight, such as another
        worker's claim, is skipped), so two workers never hold the same image at once."""
        if not worker_id:
            raise InvalidRequestError("worker_id is required")
        if max_images <= 0 or lease_ms <= 0:
            raise InvalidRequestError("max_images and lease_ms must be positive")
        now = int(time.time() * 1000) if now_ms is None else now_ms
        pendings: list[tuple[_Pending, ImageMeta]] = []
        gave_up: list[_Pending] = []
        limit = self.options.analysis_max_attempts
        with self._lock:
            self._check_writable()
            # Rows are only submitted here (applied after their fsync, outside this loop), so
            # the PENDING index does not change under the iteration.
            for image_id in self._by_status.ids(str(int(AnalysisStatus.PENDING))):
                if len(pendings) >= max_images:
                    break
                if image_id in self._pending_ids:
                    continue
                entry = self._entries[image_id]
                state = entry.meta.analysis
                if (state.lease_owner and state.lease_expires_ms > now) or (
                    state.next_attempt_ms > now
                ):
                    continue
                vector = _read(entry.vector, "feature_vector") if entry.vector else b""
                if limit and state.attempts >= limit:
                    why = f"gave up after {state.attempts} attempts"
                    why += f": {state.last_error}" if state.last_error else ""
                    failed = dataclasses.replace(
                        entry.meta,
                        status=AnalysisStatus.FAILED,
                        status_detail=why[:1000],
                        analysis=AnalysisState(state.attempts, why[:1000], state.generation + 1),
                    )
                    values = {"id": image_id, **_annotation_values(failed)}
                    row = Row(
                        self._take_seq(), RowKind.ANNOTATE, values, {"feature_vector": vector}
                    )
                    gave_up.append(self._submit(row))
                    continue
                meta = dataclasses.replace(
                    entry.meta,
                    analysis=AnalysisState(
                        state.attempts + 1,
                        state.last_error,
                        state.generation + 1,
                        worker_id,
                        now + lease_ms,
                        0,
                    ),
                )
                values = {"id": image_id, **_annotation_values(meta), "lease_only": 1}
                row = Row(self._take_seq(), RowKind.ANNOTATE, values, {"feature_vector": vector})
                pendings.append((self._submit(row), meta))
        for pending in [*gave_up, *(p for p, _m in pendings)]:
            self._commit(pending)
        return [ClaimedImage(meta, meta.analysis.generation) for _p, meta in pendings]

    def complete_analysis(
        self,
        image_id: str,
        generation: int,
        outcome: AnalysisResult | AnalysisFailure,
        now_ms: int | None = None,
    ) -> ImageMeta:
        """Record a claimed image's analysis, only if `generation` is still the image's
        (LeaseLostError otherwise, and nothing changes). A result makes it READY; a permanent
        failure FAILED with the reason; a transient one leaves it PENDING with the lease
        released and the next attempt after a backoff that doubles with each attempt."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        with self._lock:
            self._check_writable()
            self._wait_not_pending(image_id)
            entry = self._entry(image_id)
            meta = entry.meta
            state = meta.analysis
            if state.generation != generation or meta.status is not AnalysisStatus.PENDING:
                raise LeaseLostError(
                    f"image {image_id[:40]!r} is at generation {state.generation} "
                    f"({meta.status.name}), not {generation}: its lease was lost; "
                    "nothing was changed"
                )
            vector = _read(entry.vector, "feature_vector") if entry.vector else b""
            if isinstance(outcome, AnalysisResult):
                vector = vectors.encode(outcome.feature_vector)
                new_meta = dataclasses.replace(
                    meta,
                    labels=tuple(outcome.labels),
                    moderation_score=float(outcome.moderation_score),
                    ocr_text=outcome.ocr_text,
                    colours=tuple(outcome.colours),
                    status=AnalysisStatus.READY,
                    status_detail="",
                    has_feature_vector=bool(vector),
                    analysis=AnalysisState(state.attempts, "", state.generation),
                )
            elif outcome.permanent:
                new_meta = dataclasses.replace(
                    meta,
                    status=AnalysisStatus.FAILED,
                    status_detail=outcome.reason,
                    analysis=AnalysisState(state.attempts, outcome.reason, state.generation),
                )
            else:
                new_meta = dataclasses.replace(
                    meta,
                    analysis=AnalysisState(
                        state.attempts,
                        outcome.reason,
                        state.generation,
                        next_attempt_ms=now + self._backoff_ms(state.attempts),
                    ),
                )
            values = {"id": image_id, **_annotation_values(new_meta)}
            row = Row(self._take_seq(), RowKind.ANNOTATE, values, {"feature_vector": vector})
            pending = self._submit(row)
        self._commit(pending)
        return new_meta

    # --- the change feed -----------------------------------------------------------------------

    @property
    def is_closing(self) -> bool:
        return self._closing or self._closed

    @property
    def head_seq(self) -> int:
        """The seq of the newest change in the feed (visible, so durable)."""
        return self._feed_head

    @property
    def horizon_seq(self) -> int:
        """The oldest seq the feed still serves: after_seq >= horizon_seq - 1 is answered."""
        return self._horizon

    def changes(self, after_seq: int, limit: int = 256) -> ChangesPage:
        """Up to `limit` changes with seq > after_seq, in seq order, each with the image's
        current metadata. after_seq 0 means from the oldest retained change;
        HistoryCompactedError when after_seq is older than the horizon allows, or newer than
        the head (a consumer of a replaced store)."""
        if after_seq < 0 or limit <= 0:
            raise InvalidRequestError("after_seq must be >= 0 and limit > 0")
        with self._lock:
            if 0 < after_seq < self._horizon - 1:
                raise HistoryCompactedError(after_seq, self._horizon)
            if after_seq > self._feed_head:
                # Only a consumer of another (replaced, restored) store can be ahead: it must
                # resynchronise, like one that fell behind the horizon.
                raise HistoryCompactedError(after_seq, self._horizon, self._feed_head)
            found = self._history.after(after_seq, limit)
            out = []
            for seq, kind, image_id in found:
                entry = self._entries.get(image_id) if kind != RowKind.DELETE else None
                out.append(Change(seq, ChangeKind(kind), image_id, entry.meta if entry else None))
            return ChangesPage(tuple(out), self._feed_head, self._horizon)

    def wait_for_change(self, after_seq: int, timeout_s: float) -> bool:
        """Wait until the feed has a change after `after_seq` (True), the timeout passes or the
        store closes (False). Rows become visible, and wake waiters, only after their fsync."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._feed_head <= after_seq:
                left = deadline - time.monotonic()
                if left <= 0 or self._closing or self._closed:
                    return False
                self._feed_waiters += 1
                try:
                    self._feed_changed.wait(timeout=left)
                finally:
                    self._feed_waiters -= 1
            return True

    def feature_vector_of(self, meta: ImageMeta) -> list[float]:
        """The feature vector of an image the caller already has metadata of ([] if none or
        deleted since)."""
        if not meta.has_feature_vector:
            return []
        try:
            return self.feature_vector(meta.id)
        except ImageNotFoundError:
            return []

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
        return vectors.decode_list(_read(ref, "feature_vector"))

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
        """Live images with this filename, newest first. DataLossError when an image of that
        name is in a damaged segment (it is never silently left out)."""
        with self._lock:
            damaged = [
                i for i in self._damaged_filenames.lookup(filename) if i not in self._entries
            ]
            if damaged:
                raise DataLossError(
                    self._damaged[damaged[0]].split("\0", 1)[0],
                    f"{len(damaged)} image(s) named {filename[:200]!r} are damaged "
                    f"(ids {', '.join(d[:40] for d in damaged[:5])})",
                )
            return [self._entries[i].meta for i in self._filenames.lookup(filename, limit)]

    def _unreadable_count(self) -> int:
        return self._unreadable_rows + sum(1 for i in self._damaged if i not in self._entries)

    def list_images(
        self,
        page_size: int = 0,
        page_token: str = "",
        owner: str = "",
        status: AnalysisStatus = AnalysisStatus.UNSPECIFIED,
        favourite_only: bool = False,
        trashed_only: bool = False,
        order: ListOrder = ListOrder.UPLOADED_NEWEST,
        taken_from_ms: int = 0,
        taken_to_ms: int = 0,
    ) -> Page:
        """Newest upload first, or by date taken (`order`, within [taken_from_ms,
        taken_to_ms) when given; 0 leaves an end open); O(page) for every filter (per-owner
        and per-status id lists, and date-taken indexes, are kept as rows are applied).
        `unreadable_count` says how many acknowledged rows cannot be read now (damaged
        segments), so they are never silently missing."""
        size = DEFAULT_PAGE_SIZE if page_size <= 0 else min(page_size, MAX_PAGE_SIZE)
        if order is not ListOrder.UPLOADED_NEWEST:
            return self._list_by_taken(
                size,
                page_token,
                owner,
                status,
                favourite_only or trashed_only,
                trashed_only,
                order,
                taken_from_ms,
                taken_to_ms,
            )
        if taken_from_ms or taken_to_ms:
            raise InvalidRequestError("a taken range needs a LIST_ORDER_TAKEN_* order")
        after = _decode_token(page_token) if page_token else None
        with self._lock:
            if favourite_only or trashed_only:
                # Few images are starred or trashed: filter that list by owner and status.
                ids = [
                    i
                    for i in (self._trash if trashed_only else self._favourites).ids("1")
                    if (not owner or self._entries[i].meta.owner == owner)
                    and (
                        status is AnalysisStatus.UNSPECIFIED
                        or self._entries[i].meta.status is status
                    )
                ]
            elif owner and status is not AnalysisStatus.UNSPECIFIED:
                ids = self._by_owner_status.ids(f"{owner}\0{int(status)}")
            elif owner:
                ids = self._by_owner.ids(owner)
            elif status is not AnalysisStatus.UNSPECIFIED:
                ids = self._by_status.ids(str(int(status)))
            else:
                ids = self._visible.ids("")
            end = bisect.bisect_left(ids, after) if after is not None else len(ids)
            chosen = ids[max(0, end - size - 1) : end][::-1]
            found = [self._entries[i].meta for i in chosen]
            total = len(ids)
            unreadable = self._unreadable_count()
            snapshot = self._feed_head
        more = len(found) > size
        page = found[:size]
        token = _encode_token(page[-1].id) if more and page else ""
        return Page(tuple(page), token, total, unreadable, snapshot)

    def _list_by_taken(
        self,
        size: int,
        page_token: str,
        owner: str,
        status: AnalysisStatus,
        small_list: bool,
        trashed_only: bool,
        order: ListOrder,
        taken_from_ms: int,
        taken_to_ms: int,
    ) -> Page:
        if taken_from_ms < 0 or taken_to_ms < 0:
            raise InvalidRequestError("taken_from and taken_to must not be negative")
        if taken_to_ms and taken_from_ms >= taken_to_ms:
            raise InvalidRequestError("taken_from must be before taken_to")
        descending = order is ListOrder.TAKEN_NEWEST
        after = _decode_taken_token(page_token, order) if page_token else None
        lo, hi = range_keys(taken_from_ms, taken_to_ms)
        with self._lock:
            if small_list:
                # The trash and the favourites are small: filter and sort them here.
                ranked = sorted(
                    (sort_key(m.taken_at_ms, m.id), m.id, m)
                    for m in (
                        self._entries[i].meta
                        for i in (self._trash if trashed_only else self._favourites).ids("1")
                    )
                    if (not owner or m.owner == owner)
                    and (status is AnalysisStatus.UNSPECIFIED or m.status is status)
                )
                ranked = [r for r in ranked if lo <= r[0] < hi]
                if descending:
                    ranked.reverse()
                total = len(ranked)
                if after is not None:
                    ranked = [
                        r
                        for r in ranked
                        if ((r[0], r[1]) < after if descending else (r[0], r[1]) > after)
                    ]
                found = [r[2] for r in ranked[: size + 1]]
            else:
                index = (
                    (self._taken_by_owner.get(owner) or TakenIndex())
                    if owner
                    else (self._taken_all)
                )
                epochs = self._slot_epoch
                wanted = int(status)
                slot_status = self._slot_status

                def accept(slots: np.ndarray, entry_epochs: np.ndarray) -> np.ndarray:
                    ok = epochs[slots] == entry_epochs
                    if wanted:
                        ok &= slot_status[slots] == wanted
                    return ok

                index.compact(lambda sl, ep: epochs[sl] == ep)
                token_at = None
                if after is not None:
                    token_at = (after[0], self._slot_of.get(after[1], -1))
                picked = index.page(
                    size + 1, descending=descending, lo=lo, hi=hi, after=token_at, accept=accept
                )
                found = [self._entries[self._slot_ids[slot]].meta for _key, slot in picked]
                if not wanted and not taken_from_ms and not taken_to_ms:
                    total = len(index)
                else:
                    total = index.count(lo, hi, accept)
            unreadable = self._unreadable_count()
            snapshot = self._feed_head
        more = len(found) > size
        page = found[:size]
        token = ""
        if more and page:
            last = page[-1]
            token = _encode_taken_token(order, sort_key(last.taken_at_ms, last.id), last.id)
        return Page(tuple(page), token, total, unreadable, snapshot)

    def stats(self) -> StoreStats:
        with self._lock:
            segments = list(self._segments)
            tombstones = sum(self._segment_dead.get(s.segment_id, (0, 0))[0] for s in segments)
            pending = [*self._memtable, *(r for f in self._frozen for r in f.rows)]
            memtable_rows = len(pending)
            deleted = tombstones + sum(1 for r in pending if r.kind is RowKind.DELETE)
            images, raw = len(self._entries), self._raw_image_bytes
            unreadable = self._unreadable_count()
            bg = f"{self._bg_error[0]}: {self._bg_error[1]}" if self._bg_error else ""
            pending_ids = self._by_status.ids(str(int(AnalysisStatus.PENDING)))
            pending_count = len(pending_ids)
            oldest_ms = self._entries[pending_ids[0]].meta.created_at_ms if pending_ids else 0
            head, horizon = self._feed_head, self._horizon
        columns: dict[str, list[int]] = {c.name: [0, 0] for c in COLUMNS}
        for segment in segments:
            for name, (raw_b, stored_b) in segment.column_bytes().items():
                if name in columns:
                    columns[name][0] += raw_b
                    columns[name][1] += stored_b
        wal_dir = self.data_dir / "wal"
        wal_bytes = 0
        for name in self._fs.listdir(wal_dir):
            with contextlib.suppress(OSError):
                wal_bytes += (wal_dir / name).stat().st_size
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
            unreadable_rows=unreadable,
            background_error=bg,
            quarantined_files=self._quarantine_count(),
            damaged_log_records=self._damaged_log_records,
            head_seq=head,
            horizon_seq=horizon,
            pending_count=pending_count,
            oldest_pending_age_ms=max(0, int(time.time() * 1000) - oldest_ms) if oldest_ms else 0,
        )

    def _quarantine_count(self) -> int:
        """Files in quarantine/ now (kept there until an operator removes them)."""
        qdir = self.data_dir / "quarantine"
        try:
            return len(self._fs.listdir(qdir)) if self._fs.exists(qdir) else 0
        except OSError:
            return self._quarantined

    def count(self, owner: str = "", status: AnalysisStatus = AnalysisStatus.UNSPECIFIED) -> int:
        """How many live images match, without a scan."""
        return self.list_images(1, "", owner, status).total_count

    # --- verify (scrub) ------------------------------------------------------------------------

    @property
    def last_verify(self) -> VerifyReport | None:
        return self._last_verify

    def verify(self, progress: Callable[[int, int], None] | None = None) -> VerifyReport:
        """Read and check every block of every segment, the MANIFEST and the log files;
        `progress(done, total)` in bytes. Reports what is damaged and the image ids affected.
        Runs without the store lock (segments are immutable; readers keep going)."""
        with self._lock:
            segments = list(self._segments)
            unreadable = dict(self._unreadable)
            damaged_known = dict(self._damaged)
        wal_dir = self.data_dir / "wal"
        logs = [wal_mod.log_path(wal_dir, n) for n in wal_mod.log_numbers(wal_dir)]
        manifest_path = self.data_dir / "MANIFEST"
        total = sum(s.file_bytes for s in segments)
        for path in [*logs, manifest_path]:
            with contextlib.suppress(OSError):
                total += path.stat().st_size
        done = 0
        blocks = 0
        found: list[DamagedItem] = []

        def advance(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(min(done, total), total)

        for segment_id, reason in sorted(unreadable.items()):
            lost = tuple(i for i, why in damaged_known.items() if f"{segment_id:06d}.seg" in why)
            found.append(DamagedItem(f"segments/{segment_id:06d}.seg", reason, lost))
        for segment in segments:
            before = done
            problems = segment.verify(lambda n: advance(n))
            advance(max(0, segment.file_bytes - (done - before)))  # index, footer, trailer
            blocks += len(segment.column_bytes()) + segment.row_count * 4
            if not problems:
                continue
            ids: list[str] = []
            with contextlib.suppress(DataLossError):
                ids = segment.ids()
            for _column, row, detail in problems:
                if row == -2:  # the footer, read from its backup: no image lost
                    affected: tuple[str, ...] = ()
                elif row >= 0:
                    affected = (ids[row],) if row < len(ids) else ()
                else:
                    affected = tuple(ids)
                found.append(DamagedItem(segment.name, detail, affected))
        try:
            Manifest.load(self.data_dir, self._fs)
        except ManifestDamagedError as e:
            found.append(DamagedItem("MANIFEST", str(e)))
        with contextlib.suppress(OSError):
            advance(manifest_path.stat().st_size)
        for path in logs:
            try:
                _records, damage = wal_mod.read_log(path, self._fs)
            except OSError as e:
                found.append(DamagedItem(f"wal/{path.name}", f"unreadable: {e}"))
                continue
            for d in damage:
                if not d.is_tail:
                    found.append(
                        DamagedItem(
                            f"wal/{path.name}", f"{d.reason} at offset {d.offset} ({d.length} B)"
                        )
                    )
            with contextlib.suppress(OSError):
                advance(path.stat().st_size)
            blocks += 1
        report = VerifyReport(
            files_checked=len(segments) + len(unreadable) + len(logs) + 1,
            blocks_checked=blocks,
            bytes_checked=done,
            damaged=tuple(found),
            finished_at_ms=int(time.time() * 1000),
        )
        self._last_verify = report
        log.info(
            "verify finished",
            extra={"damaged": len(found), "bytes": done, "files": report.files_checked},
        )
        return report

    # --- flushing and compaction ---------------------------------------------------------------

    def flush(self) -> None:
        """Write the memtable to a segment now and wait until it is installed."""
        with self._lock:
            self._check_writable()
            try:
                self._freeze(recovering=True)
            except OSError as e:
                raise self._error_for("log rotation", e) from e
            while self._frozen:
                self._check_writable()
                self._cond.wait(timeout=1.0)

    def _flush_loop(self) -> None:
        delay = self.options.retry_initial_s
        while True:
            with self._lock:
                while not self._frozen and not self._closing and self._bg_error is None:
                    self._cond.wait()
                if self._closing and not self._frozen:
                    # Shut down; when a flush fails then, the log keeps its rows.
                    return
                failed = self._bg_error
            try:
                if failed is not None and failed[0] in ("log fsync", "log rotation", "log write"):
                    with self._lock:
                        self._freeze(recovering=True)
                with self._lock:
                    job = self._frozen[0] if self._frozen else None
                if job is not None:
                    self._flush_one(job)
                if failed is not None and failed[0] == "compaction":
                    self.compact(background=True, _recovering=True)
            except Exception as e:  # noqa: BLE001 - latched; retried with backoff
                with self._lock:
                    if failed is None or failed[0] != "compaction":
                        self._latch("flush" if failed is None else failed[0], e)
                    if self._closing:
                        log.error("flush failed at shutdown; the log keeps its rows")
                        return
                    log.warning(
                        "background work failed; retrying",
                        extra={"error": str(e), "retry_in_s": delay},
                    )
                    self._cond.wait(timeout=delay)
                delay = min(delay * 2, self.options.retry_max_s)
                continue
            delay = self.options.retry_initial_s
            with self._lock:
                if self._bg_error is not None and self._bg_error is failed:
                    self._clear_latch()
            if self._pick_compaction():
                self._compact_wanted.set()

    def _compact_loop(self) -> None:
        # Its own thread, so flushes (and the writers waiting on them) go on while it merges.
        while True:
            wanted = self._compact_wanted.wait(self.options.trash_check_s)
            self._compact_wanted.clear()
            if self._closing or self._closed:
                return
            if not wanted:  # the periodic wake-up: purge what outlived the trash retention
                try:
                    self.purge_trash()
                except StoreError as e:
                    log.warning("trash purge failed; retried later", extra={"error": str(e)})
                continue
            try:
                self.compact(background=True)
            except StoreClosedError:
                return
            except StoreError:
                pass  # latched (or writes refused): the flusher retries it
            except Exception as e:  # noqa: BLE001 - latched; the flusher retries it
                with self._lock:
                    self._latch("compaction", e)

    def _manifest_segments(self) -> tuple[int, ...]:
        # Unreadable segments stay listed, so their files are kept for inspection or repair.
        return tuple(s.segment_id for s in self._segments) + tuple(self._unreadable)

    def _save_manifest(self, wal_min: int | None = None) -> None:
        rows = {s.segment_id: s.row_count for s in self._segments}
        rows.update({i: self._manifest.rows.get(i, 0) for i in self._unreadable})
        self._manifest = Manifest(
            self._manifest_segments(),
            self._manifest.next_segment_id,
            self._manifest.wal_min if wal_min is None else wal_min,
            rows,
            self._horizon,
        )
        self._manifest.save(self.data_dir, self._fs)

    def _allocate_segment_id(self) -> int:
        with self._lock:
            segment_id = self._manifest.next_segment_id
            self._manifest = dataclasses.replace(self._manifest, next_segment_id=segment_id + 1)
        return segment_id

    def _segment_path(self, segment_id: int) -> Path:
        return self.data_dir / "segments" / f"{segment_id:06d}.seg"

    def _flush_one(self, job: _Frozen) -> None:
        started = time.perf_counter()
        self._flush_job(job)
        if self.options.on_flush is not None:
            self.options.on_flush(time.perf_counter() - started)

    def _flush_job(self, job: _Frozen) -> None:
        if job.segment_id is None:
            # One id per job, however often it is retried.
            job.segment_id = self._allocate_segment_id()
        path = self._segment_path(job.segment_id)
        write_segment(path, job.rows, fs=self._fs, covers=job.covers)
        segment = SegmentReader(path, self._fs)
        with self._lock:
            self._segments.append(segment)
            self._covers[segment.segment_id] = list(job.covers)
            self._segment_dead[segment.segment_id] = _dead_counts(r.kind for r in job.rows)
            self._segment_dead_seqs[segment.segment_id] = _dead_seqs(
                (r.seq, int(r.kind)) for r in job.rows
            )
            try:
                self._save_manifest(job.wal_min)
            except BaseException:
                self._segments.remove(segment)
                self._covers.pop(segment.segment_id, None)
                raise
            for i, row in enumerate(job.rows):
                entry = self._entries.get(row.image_id)
                if entry is None:
                    continue
                # Point the live view at the segment, so the memtable rows can be freed.
                if entry.image[0] is row:
                    entry.image = (segment, i)
                if entry.vector is not None and entry.vector[0] is row:
                    entry.vector = (segment, i)
            self._frozen.pop(0)
            self._cond.notify_all()
            self._retire_logs()
        log.info("memtable flushed", extra={"segment": segment.name, "rows": len(job.rows)})

    def _retire_logs(self) -> None:
        """Remove (recycle) every older log file all of whose records the segments cover,
        by sequence number; a damaged one goes to quarantine instead. Lock held."""
        covered = self._covered()
        wal_dir = self.data_dir / "wal"
        for number in wal_mod.log_numbers(wal_dir):
            if number >= self._wal.number:
                continue
            seqs = self._log_seqs.get(number)
            if seqs is not None and not _range_covered(covered, *seqs):
                continue
            path = wal_mod.log_path(wal_dir, number)
            try:
                if number in self._damaged_logs:
                    self._quarantine(path, "log with damaged records")
                    self._damaged_logs.discard(number)
                else:
                    self._wal.recycle(path)
            except OSError as e:
                log.warning(
                    "could not retire a log file", extra={"path": str(path), "error": str(e)}
                )
                continue
            self._log_seqs.pop(number, None)

    def _pick_compaction(self) -> list[SegmentReader]:
        """What the background policy merges now: every segment when many rows are dead,
        else a full size tier, else nothing. Damaged segments are left out."""
        with self._lock:
            segments = [s for s in self._segments if s.segment_id not in self._damaged_segments]
            rows = sum(s.row_count for s in segments)
            cutoff = self._merge_cutoff()
            dead = 0
            for s in segments:
                annotations, tombstones = self._segment_dead_seqs.get(
                    s.segment_id, (np.empty(0, np.int64), np.empty(0, np.int64))
                )
                dead += int(np.searchsorted(annotations, cutoff))
                dead += 2 * int(np.searchsorted(tombstones, cutoff))
        if len(segments) > 1 and rows > 0 and dead / rows >= self.options.compact_dead_fraction:
            return segments
        return pick_tier(
            segments, self.options.memtable_bytes, max(2, self.options.compact_min_segments)
        )

    def _merge_cutoff(self) -> int:
        """Rows below this seq may be merged away: the feed keeps the newest
        `feed_retention_seqs`, and never less than what the horizon already promises. Lock held."""
        return max(self._horizon, self._next_seq - max(0, self.options.feed_retention_seqs))

    def compact(
        self,
        segment_ids: Collection[int] | None = None,
        *,
        background: bool = False,
        _recovering: bool = False,
    ) -> CompactionReport:
        """Merge segments, dropping deleted rows and old versions: all of them (the Compact
        call), those named, or what the background policy picks. Segments with a damaged
        small column are left out; a damaged blob value is copied as damaged (its row kept,
        reads of that value answer data loss)."""
        with self._compaction_lock:
            with self._lock:
                if self._closing or self._closed:
                    raise StoreClosedError("the store is closed")
                if not _recovering:
                    self._check_writable()
                if background:
                    old = self._pick_compaction()
                else:
                    old = [
                        s
                        for s in self._segments
                        if (segment_ids is None or s.segment_id in segment_ids)
                        and s.segment_id not in self._damaged_segments
                    ]
                segments_before = len(self._segments)
                cutoff = self._merge_cutoff()
            if background and not old:
                return CompactionReport(segments_before, segments_before, 0, 0, 0)
            bytes_before = sum(s.file_bytes for s in old)
            if not old:
                return CompactionReport(0, 0, 0, 0, 0)
            merged, dropped = merge_segments(old, cutoff)
            old_ids = {s.segment_id for s in old}
            with self._lock:
                covers = [r for s in old for r in self._covers.get(s.segment_id, [])]
            new_segment: SegmentReader | None = None
            if merged:
                segment_id = self._allocate_segment_id()
                path = self._segment_path(segment_id)
                damaged = write_segment(
                    path, merged, fs=self._fs, covers=covers, replaces=sorted(old_ids)
                )
                for index, column, detail in damaged:
                    log.error(
                        "compaction copied a damaged value as damaged",
                        extra={
                            "id": merged[index].values["id"],
                            "column": column,
                            "detail": detail,
                        },
                    )
                self._damaged_blobs_copied += len(damaged)
                new_segment = SegmentReader(path, self._fs)
            with self._lock:
                if self._closed:
                    # close() stopped waiting for this merge: install nothing (the output is
                    # unnamed; the next open moves it to quarantine).
                    raise StoreClosedError("the store closed during compaction")
                keep = [s for s in self._segments if s.segment_id not in old_ids]
                self._segments = ([new_segment] if new_segment else []) + keep
                for s in old:
                    self._segment_dead.pop(s.segment_id, None)
                    self._segment_dead_seqs.pop(s.segment_id, None)
                    self._covers.pop(s.segment_id, None)
                if new_segment is not None:
                    self._covers[new_segment.segment_id] = covers
                    self._segment_dead[new_segment.segment_id] = _dead_counts(
                        r.values["kind"] for r in merged
                    )
                    self._segment_dead_seqs[new_segment.segment_id] = _dead_seqs(
                        (r.values["seq"], r.values["kind"]) for r in merged
                    )
                    # Where each old row's blobs now are: (old segment id, old index) -> new.
                    moved: dict[tuple[int, int], int] = {}
                    for i, row in enumerate(merged):
                        for ref in (row.image, row.vector):
                            if ref is not None:
                                moved[(ref[0].segment_id, ref[1])] = i
                    for row in merged:
                        entry = self._entries.get(row.values["id"])
                        if entry is None:
                            continue
                        src = entry.image
                        if isinstance(src[0], SegmentReader) and src[0].segment_id in old_ids:
                            entry.image = (new_segment, moved[(src[0].segment_id, src[1])])
                        vec = entry.vector
                        if (
                            vec is not None
                            and isinstance(vec[0], SegmentReader)
                            and vec[0].segment_id in old_ids
                        ):
                            entry.vector = (new_segment, moved[(vec[0].segment_id, vec[1])])
                else:
                    # Nothing left: the covered ranges must not be forgotten.
                    self._covers[-min(old_ids)] = covers
                horizon_before = self._horizon
                if dropped and cutoff > self._horizon:
                    # Rows below the cutoff were merged away: the feed no longer has them.
                    self._horizon = cutoff
                try:
                    self._save_manifest()
                except BaseException:
                    self._segments = [s for s in self._segments if s is not new_segment] + old
                    self._horizon = horizon_before
                    raise
                self._history.trim_below(self._horizon)
                self._feed_head = max(self._feed_head, self._horizon - 1)
                segments_after = len(self._segments)
            for s in old:
                with contextlib.suppress(OSError):
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
        """Flush the memtable, stop the background threads and close the log. Idempotent and
        bounded: if the disk keeps failing, the rows stay in the log for the next open."""
        with self._lock:
            if self._closed or self._closing:
                return
            if self._bg_error is None:
                with contextlib.suppress(StoreError, OSError):
                    self._freeze()
            self._closing = True
            self._cond.notify_all()
            self._feed_changed.notify_all()
        timeout = self.options.close_timeout_s
        self._flusher.join(timeout)
        self._compact_wanted.set()
        self._compactor.join(timeout)
        with self._lock:
            if self._flusher.is_alive():
                log.error("flusher did not stop in time; the log keeps the unflushed rows")
            with contextlib.suppress(OSError):
                self._retire_logs()
            with contextlib.suppress(OSError):
                self._wal.close()
            if (
                not self._memtable
                and not self._frozen
                and not self._pending
                and self._bg_error is None
                and self._wal.number not in self._log_seqs
            ):
                # Every row is in a segment and the current log holds no record: leave no
                # log behind (the next open zero-fills a fresh one), so an idle store's data
                # dir is its segments.
                wal_dir = self.data_dir / "wal"
                for path in (wal_mod.log_path(wal_dir, self._wal.number), wal_dir / "recycle.wal"):
                    with contextlib.suppress(OSError):
                        if self._fs.exists(path):
                            self._fs.unlink(path)
            self._closed = True
            self._cond.notify_all()
        self._release_lock()
        log.info("column store closed", extra={"data_dir": str(self.data_dir)})

    def __enter__(self) -> ColumnStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _range_covered(ranges: list[tuple[int, int]], lo: int, hi: int) -> bool:
    """True when every sequence number in lo..hi lies in the merged, sorted `ranges`."""
    i = bisect.bisect_right(ranges, (lo, float("inf"))) - 1
    return i >= 0 and ranges[i][0] <= lo and hi <= ranges[i][1]


def _is_covered(ranges: list[tuple[int, int]], seq: int) -> bool:
    return _range_covered(ranges, seq, seq)


def directory_bytes(path: Path) -> int:
    """Bytes of every file under `path` (for tests and benchmarks)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
