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

import array
import base64
import binascii
import bisect
import contextlib
import ctypes
import dataclasses
import errno
import logging
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from storage_service.columnstore import vectors, verify_record
from storage_service.columnstore import wal as wal_mod
from storage_service.columnstore.compaction import MergedRow, merge_segments, pick_tier
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
    ThumbnailsFailedError,
    ThumbnailsPendingError,
)
from storage_service.columnstore.feed import ChangeHistory
from storage_service.columnstore.filename_index import FilenameIndex, HashIndex, SlotIndex
from storage_service.columnstore.format import key_hash
from storage_service.columnstore.fs import File, FileSystem, OsFileSystem, read_file
from storage_service.columnstore.id_array import IdArray
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
    ThumbState,
    VerifyReport,
)
from storage_service.columnstore.row import Row
from storage_service.columnstore.schema import ANNOTATION_COLUMNS, BY_NAME, COLUMNS, RowKind
from storage_service.columnstore.segment_reader import SegmentReader
from storage_service.columnstore.segment_writer import write_segment
from storage_service.columnstore.slot_map import SlotMap
from storage_service.columnstore.taken_index import (
    HASH_BITS,
    TAKEN_OFFSET_MS,
    TakenIndex,
    date_taken_ms,
    range_keys,
    sort_key,
)

log = logging.getLogger(__name__)

# Damaged feed changes remembered by seq (each logged once); past this only counted.
_FEED_DAMAGED_KEPT = 10_000

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
    # failures every time) is marked FAILED instead of being claimed again; 0: no limit. A
    # claim given back as an outage (AnalysisFailure.outage) does not count.
    analysis_max_attempts: int = 10
    # A merge reads and writes at most this many rows at once (its memory is about 1.5 KB a
    # row), so compaction's memory is bounded whatever the size of the store: a full Compact
    # merges in runs of adjacent segments up to this size.
    compact_max_run_rows: int = 40_000
    # Background merges write at most this many bytes a second (0: no limit), so foreground
    # reads and writes keep the disk and the CPU.
    compact_bytes_per_s: int = 64 * 1024 * 1024
    # How many images' metadata is kept decoded; the rest is read from its row on demand
    # (one read of a few hundred bytes), so memory does not grow with the metadata.
    meta_cache_images: int = 4096
    # Observers (metrics): seconds of each log fsync, and of each memtable flush.
    on_fsync: Callable[[float], None] | None = None
    on_flush: Callable[[float], None] | None = None
    # Trashed images are restorable this long, then purge_trash deletes them for good (the
    # background thread checks every trash_check_s).
    trash_retention_ms: int = 30 * 86_400_000
    trash_check_s: float = 60.0
    # How new feature vectors are written: int8, float16 or float32 (see vectors.py; every
    # encoding is read whatever this says).
    vector_encoding: str = vectors.DEFAULT_ENCODING

    def __post_init__(self) -> None:
        vectors.check_encoding(self.vector_encoding)


# What a _SegmentIndex column holds once _load_view has gathered it.
_NO_ROWS = np.empty(0, dtype=np.int64)

# A slot's row lives in the memtable (then its row number is the row's seq), not a segment.
IN_MEMTABLE = -1


class _SlotArrays:
    """Per image slot, fixed-width numbers: where its rows are, and what the listings, the
    queue and the duplicate checks need without reading them (about 90 bytes an image)."""

    FIELDS = (
        ("alive", np.uint8),
        ("img_src", np.int32),  # segment id of its PUT row (IN_MEMTABLE: a memtable row)
        ("img_row", np.int64),  # row in that segment (or the row's seq)
        ("ann_src", np.int32),  # its newest row: annotations and feature vector
        ("ann_row", np.int64),
        ("owner", np.int32),  # into ColumnStore._owner_names
        ("status", np.uint8),
        ("favourite", np.uint8),
        ("has_vector", np.uint8),
        ("trashed_at", np.int64),
        ("created", np.int64),
        ("byte_size", np.int64),
        # Its date-taken sort key (taken_index.sort_key): kept here once, the date-taken
        # indexes hold slots.
        ("taken_key", np.uint64),
        ("epoch", np.uint32),
    )

    alive: np.ndarray
    img_src: np.ndarray
    img_row: np.ndarray
    ann_src: np.ndarray
    ann_row: np.ndarray
    owner: np.ndarray
    status: np.ndarray
    favourite: np.ndarray
    has_vector: np.ndarray
    trashed_at: np.ndarray
    created: np.ndarray
    byte_size: np.ndarray
    taken_key: np.ndarray
    epoch: np.ndarray

    def __init__(self, capacity: int = 1024) -> None:
        self.capacity = capacity
        for name, dtype in self.FIELDS:
            setattr(self, name, np.zeros(capacity, dtype=dtype))

    def ensure(self, size: int) -> None:
        if size <= self.capacity:
            return
        # An eighth more at a time: the first put after open copies the arrays without
        # doubling them.
        capacity = max(size, self.capacity + self.capacity // 8 + 1024)
        for name, dtype in self.FIELDS:
            grown = np.zeros(capacity, dtype=dtype)
            old = getattr(self, name)
            grown[: len(old)] = old
            setattr(self, name, grown)
        self.capacity = capacity

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name, _ in self.FIELDS)


@dataclass
class _SegmentIndex:
    """What opening a store reads of one segment: its fixed-width columns, its index and its
    ids and owners (never the rows themselves)."""

    segment_id: int
    seq: np.ndarray
    kind: np.ndarray
    lease_only: np.ndarray
    status: np.ndarray
    favourite: np.ndarray
    has_vector: np.ndarray
    trashed_at: np.ndarray
    created: np.ndarray
    byte_size: np.ndarray
    taken: np.ndarray
    filename_hash: np.ndarray
    sha_hash: np.ndarray
    # The ids as fixed-width bytes, u8[rows, 16], and {row: id} of those kept as strings
    # (id_array.pack_column): no Python string per row.
    ids: np.ndarray
    odd_ids: dict[int, str]
    # Into the store's owner names (see owner_id): the strings are dropped at once.
    owners: np.ndarray

    @classmethod
    def read(cls, segment: SegmentReader, owner_id: Callable[[str], int]) -> _SegmentIndex:
        taken, names, shas = segment.index_arrays()
        ids, odd_ids = segment.id_table()
        owners = segment.column("owner")
        codes = {o: owner_id(o) for o in set(owners)}
        owner_codes = np.fromiter(map(codes.__getitem__, owners), np.int32, len(owners))
        del owners
        return cls(
            segment.segment_id,
            segment.array("seq"),
            segment.array("kind"),
            segment.array("lease_only"),
            segment.array("status"),
            segment.array("favourite"),
            segment.array("has_feature_vector"),
            segment.array("trashed_at_ms"),
            segment.array("created_at_ms"),
            segment.array("byte_size"),
            taken,
            names,
            shas,
            ids,
            odd_ids,
            owner_codes,
        )


@dataclass
class _EntryView:
    """One live image as the write paths use it: its metadata and where its blobs are."""

    slot: int
    meta: ImageMeta
    image: BlobRef
    vector: BlobRef | None
    newest: BlobRef | None = None

    def carried(self, vector: bytes) -> dict[str, bytes]:
        """The blobs an annotation row of this image carries: its vector, and its thumbnails
        when they were made after the put (they live in its newest row)."""
        if self.meta.thumb_state is not ThumbState.MADE or self.newest is None:
            return {"feature_vector": vector}
        return {
            "feature_vector": vector,
            "thumb_small": _read(self.newest, "thumb_small"),
            "thumb_preview": _read(self.newest, "thumb_preview"),
        }


def _values_of(ref: BlobRef) -> dict[str, Any]:
    source, index = ref
    if isinstance(source, Row):
        return source.values
    return source.row_values(index)


def _build_meta(image: BlobRef, newest: BlobRef) -> ImageMeta:
    """An image's metadata from its PUT row and its newest row (its annotations)."""
    meta = _meta_from(_values_of(image))
    if newest[0] is not image[0] or newest[1] != image[1]:
        values = _values_of(newest)
        full = {name: values.get(name, BY_NAME[name].default) for name in ANNOTATION_COLUMNS}
        meta = dataclasses.replace(meta, **_annotations_of(full))
    return meta


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


# ImageMeta and Label built by filling their __dict__ at once, not through the frozen
# dataclass's __init__ (one object.__setattr__ per field: ImageMeta has about 30, the largest
# part of decoding an image's metadata after the JSON); defaults first, so a field the row does
# not set reads as __init__ would give it (tested). As search's doc_store does for labels.
_FAST_BUILD = not hasattr(ImageMeta, "__slots__") and not hasattr(Label, "__slots__")
_META_DEFAULTS = {
    f.name: f.default for f in dataclasses.fields(ImageMeta) if f.default is not dataclasses.MISSING
}


def _new_meta(values: dict[str, Any]) -> ImageMeta:
    if not _FAST_BUILD:
        return ImageMeta(**values)
    meta = object.__new__(ImageMeta)
    meta.__dict__.update(_META_DEFAULTS)
    meta.__dict__.update(values)
    return meta


def _new_label(name: str, probability: float, synonyms: tuple[str, ...], index: int) -> Label:
    if not _FAST_BUILD:
        return Label(name, probability, synonyms, index)
    label = object.__new__(Label)
    label.__dict__.update(name=name, probability=probability, synonyms=synonyms, class_index=index)
    return label


def _labels_from(values: list[dict[str, Any]]) -> tuple[Label, ...]:
    return tuple(
        _new_label(v["name"], float(v["p"]), tuple(v.get("syn", ())), int(v.get("ci", -1)))
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


def _thumbs_of(values: dict[str, Any]) -> dict[str, Any]:
    """The thumbnail fields a row sets: none when its thumbnails are in the PUT row."""
    state = int(values.get("thumb_state", 0))
    if not state:
        return {}
    return {
        "thumb_state": ThumbState(state),
        "thumb_detail": values.get("thumb_detail", ""),
        "thumb_content_type": values.get("thumb_content_type", ""),
        "thumb_small_size": (int(values["thumb_small_w"]), int(values["thumb_small_h"])),
        "thumb_preview_size": (int(values["thumb_preview_w"]), int(values["thumb_preview_h"])),
    }


def _annotations_of(values: dict[str, Any]) -> dict[str, Any]:
    return {
        **_thumbs_of(values),
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


_DEFAULTS = {c.name: c.default for c in COLUMNS}


def _meta_from(values: dict[str, Any]) -> ImageMeta:
    full = {**_DEFAULTS, **values}
    taken_ms, taken_is_upload = date_taken_ms(full["exif"], int(full["created_at_ms"]))
    return _new_meta(
        {
            "id": full["id"],
            "filename": full["filename"],
            "owner": full["owner"],
            "content_type": full["content_type"],
            "format": full["format"],
            "created_at_ms": int(full["created_at_ms"]),
            "sha256": full["sha256"],
            "byte_size": int(full["byte_size"]),
            "width": int(full["width"]),
            "height": int(full["height"]),
            "exif": dict(full["exif"]),
            "taken_at_ms": taken_ms,
            "taken_at_is_upload_time": taken_is_upload,
            "thumb_content_type": full["thumb_content_type"],
            "thumb_small_size": (int(full["thumb_small_w"]), int(full["thumb_small_h"])),
            "thumb_preview_size": (int(full["thumb_preview_w"]), int(full["thumb_preview_h"])),
            **_annotations_of(full),
        }
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
        "thumb_state": int(meta.thumb_state),
        "thumb_detail": meta.thumb_detail,
        "thumb_content_type": meta.thumb_content_type,
        "thumb_small_w": meta.thumb_small_size[0],
        "thumb_small_h": meta.thumb_small_size[1],
        "thumb_preview_w": meta.thumb_preview_size[0],
        "thumb_preview_h": meta.thumb_preview_size[1],
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
        # The in-memory view: an image id -> its slot, and fixed-width arrays per slot
        # (_SlotArrays); metadata itself is read from its rows on demand (see _meta).
        self._arr = _SlotArrays()
        self._live = 0
        self._owner_ids: dict[str, int] = {}
        self._owner_names: list[str] = []
        # Rows of the memtable and of frozen memtables, by seq, that slots may point at.
        self._mem_rows: dict[int, Row] = {}
        self._segment_by_id: dict[int, SegmentReader] = {}
        self._meta_cache: OrderedDict[int, ImageMeta] = OrderedDict()
        self._filename_hashes = HashIndex()
        self._sha_hashes = HashIndex()
        # Image ids whose rows are in a damaged segment: id -> what is damaged.
        self._damaged: dict[str, str] = {}
        self._damaged_filenames = FilenameIndex()
        # Rows of segments so damaged that not even their ids can be read.
        self._unreadable_rows = 0
        # Every live image has a slot: its epoch is bumped whenever it leaves the listings
        # (trash, delete), which makes its date-taken entries stale. A deleted image's slot
        # goes to _free_slots (its date-taken entries detached: taken_index.TakenIndex.detach)
        # and is reused by a later put (its epoch kept, so entries of the
        # image before stay stale); opening renumbers the live ones 0..n-1. The ids are
        # fixed-width bytes (id_array.py); the map and the lists below hold slots only.
        self._slot_ids = IdArray()
        self._slot_of = SlotMap(self._slot_ids)
        self._free_slots = array.array("i")
        # Visible (not trashed) images by date taken: all of them, and per owner.
        self._taken_all = TakenIndex(self._taken_keys)
        self._taken_by_owner: dict[str, TakenIndex] = {}
        # While the store opens, date-taken entries are built once at the end.
        self._loading = False
        # Slots sorted by id, per key (filename_index.SlotIndex).
        self._by_status = SlotIndex(self._slot_ids)
        # The starred images (key "1"), so the favourites page is O(page) like the others.
        self._favourites = SlotIndex(self._slot_ids)
        # Images in the trash (key "1"), and every image not in it (key ""): listings page
        # through these, so trashed images cost nothing there.
        self._trash = SlotIndex(self._slot_ids)
        self._visible = SlotIndex(self._slot_ids)
        self._by_owner = SlotIndex(self._slot_ids)
        self._by_owner_status = SlotIndex(self._slot_ids)
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
        # The last verify's report (LAST_VERIFY, loaded at open) and the image ids it found
        # damaged: those still live are counted as unreadable until a verify says otherwise.
        self._last_verify: VerifyReport | None = None
        self._verify_damaged_ids: frozenset[str] = frozenset()
        self._verify_save_lock = threading.Lock()
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
        # Changes the feed found damaged (seq -> reason; the first _FEED_DAMAGED_KEPT) and
        # how many in all: each is logged once, however often it is replayed.
        self._feed_damaged: dict[int, str] = {}
        self._feed_damaged_count = 0

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
        for name in ("MANIFEST.tmp", f"{verify_record.NAME}.tmp"):
            if fs.exists(self.data_dir / name):
                partial.append(self.data_dir / name)
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
        loaded: list[_SegmentIndex] = []
        for segment_id in sorted(manifest.segments):
            index = self._load_segment(seg_dir / f"{segment_id:06d}.seg")
            if index is not None:
                loaded.append(index)
        covered = self._covered()
        replayed = 0
        numbers = wal_mod.log_numbers(wal_dir)
        uncovered_min: int | None = None
        logged: list[Row] = []
        max_seq = max((int(x.seq.max()) for x in loaded if len(x.seq)), default=0)
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
                logged.append(row)
                replayed += 1
        self._memtable.sort(key=lambda r: r.seq)
        logged.sort(key=lambda r: r.seq)
        self._horizon = manifest.feed_horizon
        if rebuilt:
            # The recorded horizon is lost: treat everything the segments hold as compacted
            # (consumers resynchronise from a listing), which is always safe.
            segment_max = max((s.seq_max for s in self._segments), default=0)
            self._horizon = max(self._horizon, segment_max + 1)
            self._manifest = dataclasses.replace(self._manifest, feed_horizon=self._horizon)
        self._load_view(loaded)
        del loaded
        self._load_last_verify()
        _release_free_heap()
        for row in logged:
            self._mem_rows[row.seq] = row
            self._apply(row.kind, row.values, IN_MEMTABLE, row.seq)
            if (
                row.seq >= self._horizon
                and not row.values.get("lease_only", 0)
                and row.seq > self._history.last_seq
            ):
                self._history.append(row.seq, int(row.kind), row.image_id)
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
                "images": self._live,
                "replayed_records": replayed,
                "unreadable_rows": self._unreadable_count(),
                "damaged_log_records": self._damaged_log_records,
                "open_s": round(time.perf_counter() - started, 3),
            },
        )

    def _load_segment(self, path: Path) -> _SegmentIndex | None:
        """Open a segment and read its index (fixed-width columns and the ids, never its
        rows); None when it is unreadable or damaged (its ids then answer data loss)."""
        segment_id = int(path.stem)
        try:
            segment = SegmentReader(path, self._fs)
        except (DataLossError, OSError) as e:
            reason = str(e) if self._fs.exists(path) else f"{path.name} is missing"
            log.error("segment unreadable, its rows answer data loss", extra={"error": reason})
            self._unreadable[segment_id] = reason
            self._unreadable_rows += self._manifest.rows.get(segment_id, 0)
            self._covers[segment_id] = []
            return None
        self._segments.append(segment)
        self._segment_by_id[segment_id] = segment
        self._covers[segment_id] = segment.covers if segment.described else [(1, segment.seq_max)]
        try:
            segment.check_small_blocks()
            index = _SegmentIndex.read(segment, self._owner_id)
        except DataLossError as e:
            log.error("segment column damaged", extra={"error": str(e)})
            self._mark_damaged(segment, str(e))
            return None
        if not segment.described:
            self._covers[segment_id] = [(1, int(index.seq.max()) if len(index.seq) else 0)]
        self._note_dead(segment_id, index.seq, index.kind)
        return index

    def _note_dead(self, segment_id: int, seqs: np.ndarray, kinds: np.ndarray) -> None:
        """What a merge of this segment would drop, from its seq and kind columns."""
        tombstones = int(np.count_nonzero(kinds == RowKind.DELETE))
        annotations = int(np.count_nonzero(kinds == RowKind.ANNOTATE))
        self._segment_dead[segment_id] = (tombstones, 2 * tombstones + annotations)
        self._segment_dead_seqs[segment_id] = (
            np.sort(seqs[kinds == RowKind.ANNOTATE]),
            np.sort(seqs[kinds == RowKind.DELETE]),
        )

    def _owner_id(self, owner: str) -> int:
        found = self._owner_ids.get(owner)
        if found is None:
            found = self._owner_ids[owner] = len(self._owner_names)
            self._owner_names.append(owner)
        return found

    def _load_view(self, loaded: list[_SegmentIndex]) -> None:
        """The in-memory view of every segment row at once (at open), with no Python object
        per row: each image's rows grouped by their fixed-width id bytes and resolved with
        numpy as applying them in seq order would, then every array, list and index filled in
        bulk. Each segment's column is dropped as soon as it is gathered, so the peak stays
        near one copy of the fixed-width columns."""
        lengths = [len(x.seq) for x in loaded]
        if not sum(lengths):
            return

        def take(name: str) -> np.ndarray:
            out = np.concatenate([getattr(x, name) for x in loaded])
            for x in loaded:
                setattr(x, name, _NO_ROWS)
            return out

        bounds = np.cumsum([0, *lengths])
        segment_ids = np.array([x.segment_id for x in loaded], dtype=np.int32)
        seq = take("seq")
        kind = take("kind")
        # Ids of another shape than 32 lowercase hex digits are numbered (odd_code > 0), so
        # they group apart from hex ids (their 16 bytes are zero).
        odd_ids: dict[int, str] = {}
        odd_numbers: dict[str, int] = {}
        for x, at in zip(loaded, bounds.tolist(), strict=False):
            for r, image_id in x.odd_ids.items():
                odd_ids[at + r] = image_id
            x.odd_ids = {}
        id_rows = take("ids")
        words = id_rows.view(">u8").astype(np.uint64)
        sort_keys = [seq, words[:, 1], words[:, 0]]
        if odd_ids:
            odd_code = np.zeros(len(seq), dtype=np.int64)
            for r, image_id in odd_ids.items():
                odd_code[r] = odd_numbers.setdefault(image_id, len(odd_numbers) + 1)
            sort_keys.append(odd_code)
        # Each image's rows together, in seq order: its state is decided by them alone (a PUT
        # makes it live unless it is already, an annotation moves its newest row while live,
        # a tombstone ends it), as applying every row in seq order would.
        order = np.lexsort(sort_keys)
        n_rows = len(order)
        new_group = np.zeros(n_rows, dtype=bool)
        new_group[0] = True
        for key in sort_keys[1:]:
            sorted_key = key[order]
            new_group[1:] |= sorted_key[1:] != sorted_key[:-1]
            del sorted_key
        del sort_keys, words
        starts = np.flatnonzero(new_group)
        group = np.cumsum(new_group) - 1
        del new_group
        s_kind = kind[order]
        pos = np.arange(n_rows, dtype=np.int64)
        # The last tombstone, the first PUT after it, the last annotation after that PUT.
        is_del = (s_kind != RowKind.PUT) & (s_kind != RowKind.ANNOTATE)
        last_del = np.maximum.reduceat(np.where(is_del, pos, -1), starts)
        del is_del
        after_del = pos > last_del[group]
        del last_del
        none = np.int64(n_rows)
        first_put = np.minimum.reduceat(
            np.where((s_kind == RowKind.PUT) & after_del, pos, none), starts
        )
        del after_del
        live_group = first_put < none
        after_put = pos > np.where(live_group, first_put, none)[group]
        last_ann = np.maximum.reduceat(
            np.where((s_kind == RowKind.ANNOTATE) & after_put, pos, -1), starts
        )
        del after_put, pos, group, s_kind, starts
        newest = np.where(last_ann >= 0, last_ann, first_put)
        gi = order[first_put[live_group]]
        ga = order[newest[live_group]]
        del order, first_put, newest, last_ann, live_group
        # Only the live images get a slot: numbered 0..n-1 in the order of their PUTs.
        by_put = np.argsort(seq[gi], kind="stable")
        gi, ga = gi[by_put], ga[by_put]
        del by_put
        count = len(gi)
        lease_only = take("lease_only")
        # The change feed: every row at or above the horizon that is not a lease-only claim.
        in_feed = np.flatnonzero((seq >= self._horizon) & (lease_only == 0) & (seq > 0))
        del lease_only
        in_feed = in_feed[np.argsort(seq[in_feed], kind="stable")]
        in_feed = in_feed[seq[in_feed] > self._history.last_seq]
        if len(in_feed) > 1:  # a seq twice (never written so): its first row, as before
            in_feed = in_feed[np.concatenate(([True], np.diff(seq[in_feed]) > 0))]
        if len(in_feed):
            feed_odd = {}
            if odd_ids:
                odd_rows = np.fromiter(odd_ids, np.int64, len(odd_ids))
                at = np.flatnonzero(np.isin(in_feed, odd_rows))
                feed_odd = {int(i): odd_ids[int(in_feed[i])] for i in at.tolist()}
            self._history.extend(seq[in_feed], kind[in_feed], id_rows[in_feed], feed_odd)
        del in_feed, seq, kind
        a = self._arr
        a.ensure(count)
        slot_odd = {}
        if odd_ids:
            odd_rows = np.fromiter(odd_ids, np.int64, len(odd_ids))
            at = np.flatnonzero(np.isin(gi, odd_rows))
            slot_odd = {int(i): odd_ids[int(gi[i])] for i in at.tolist()}
        self._slot_ids.assign_raw(id_rows[gi], slot_odd)
        del id_rows, odd_ids
        # Where each slot's rows are: (segment id, row in it) from the concatenated position.
        for g, src, row in ((gi, a.img_src, a.img_row), (ga, a.ann_src, a.ann_row)):
            part = np.searchsorted(bounds, g, side="right") - 1
            src[:count] = segment_ids[part]
            row[:count] = g - bounds[part]
            del part
        a.alive[:count] = 1
        # One column at a time: the PUT row's, or the newest row's.
        for name, column, rows in (
            ("owners", "owner", gi),
            ("created", "created", gi),
            ("byte_size", "byte_size", gi),
            ("status", "status", ga),
            ("favourite", "favourite", ga),
            ("has_vector", "has_vector", ga),
            ("trashed_at", "trashed_at", ga),
        ):
            getattr(a, column)[:count] = take(name)[rows]
        # Date-taken keys: (taken + offset) << bits | crc32(id) low bits, as sort_key.
        taken = np.clip(take("taken")[gi] + TAKEN_OFFSET_MS, 0, (1 << 43) - 1)
        crcs = self._slot_ids.crc32s(np.arange(count)) & np.uint64((1 << HASH_BITS) - 1)
        a.taken_key[:count] = (taken.astype(np.uint64) << np.uint64(HASH_BITS)) | crcs
        del taken, crcs
        names = take("filename_hash")[gi]
        shas = take("sha_hash")[gi]
        del gi, ga
        live = np.arange(count)
        self._slot_of.bulk_load(live)
        self._live = count
        self._raw_image_bytes = int(a.byte_size[:count].sum())
        self._filename_hashes.bulk_load(names, live)
        del names
        self._sha_hashes.bulk_load(shas, live)
        del shas
        self._build_lists(live)

    def _build_lists(self, live: np.ndarray) -> None:
        """Every id list and date-taken index of the live slots `live`, in one sort each."""
        a = self._arr
        slots = live[self._slot_ids.argsort(live)]
        trashed = a.trashed_at[slots] != 0
        shown = ~trashed
        self._trash.load("1", slots[trashed])
        self._visible.load("", slots[shown])
        self._favourites.load("1", slots[shown & (a.favourite[slots] != 0)])
        status = a.status[slots]
        for value in np.unique(status[shown]).tolist():
            self._by_status.load(str(value), slots[shown & (status == value)])
        owners = a.owner[slots]
        for key_of, index in (
            (lambda o, st: self._owner_names[o], self._by_owner),
            (lambda o, st: f"{self._owner_names[o]}\0{st}", self._by_owner_status),
        ):
            group = owners.astype(np.int64) * 8 + (status if index is self._by_owner_status else 0)
            group = np.where(shown, group, -1)
            perm = np.argsort(group, kind="stable")
            grouped = group[perm]
            bounds = np.flatnonzero(np.diff(grouped)) + 1
            for part in np.split(perm, bounds):
                if not len(part) or group[part[0]] < 0:
                    continue
                o, st = int(owners[part[0]]), int(status[part[0]])
                index.load(key_of(o, st), slots[part])
        visible_slots = slots[shown]
        keys = a.taken_key[visible_slots]
        epochs = a.epoch[visible_slots]
        self._taken_all.bulk_load(keys, visible_slots, epochs)
        self._taken_by_owner = {}
        vis_owner = a.owner[visible_slots]
        perm = np.argsort(vis_owner, kind="stable")
        bounds = np.flatnonzero(np.diff(vis_owner[perm])) + 1
        for part in np.split(perm, bounds):
            if len(part):
                owner = self._owner_names[int(vis_owner[part[0]])]
                self._taken_index(owner).bulk_load(keys[part], visible_slots[part], epochs[part])

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

    def _taken_keys(self) -> np.ndarray:
        return self._arr.taken_key

    def _new_slot(self, image_id: str) -> int:
        if self._free_slots:
            slot = self._free_slots.pop()
            self._slot_ids[slot] = image_id
        else:
            slot = len(self._slot_ids)
            self._slot_ids.append(image_id)
            self._arr.ensure(slot + 1)
        self._slot_of.add(image_id, slot)
        return slot

    def _free_slot(self, slot: int) -> None:
        """A deleted image's slot, for a later put: its hash entries go (when its row still
        reads; a stale entry is harmless, lookups check the key) and its id is forgotten."""
        try:
            meta: ImageMeta | None = self._meta(slot)
        except Exception:  # noqa: BLE001 - best effort: a stale hash entry is harmless
            meta = None
        if meta is not None:
            self._filename_hashes.discard(key_hash(meta.filename), slot)
            self._sha_hashes.discard(key_hash(meta.sha256), slot)
        self._meta_cache.pop(slot, None)
        # Its date-taken entries read their key through the slot: detached before a later
        # put gives the slot another key.
        self._taken_all.detach(slot)
        owned = self._taken_by_owner.get(self._owner_names[int(self._arr.owner[slot])])
        if owned is not None:
            owned.detach(slot)
        self._slot_of.remove(self._slot_ids[slot])
        self._slot_ids[slot] = ""
        self._free_slots.append(slot)

    def _taken_index(self, owner: str) -> TakenIndex:
        index = self._taken_by_owner.get(owner)
        if index is None:
            index = self._taken_by_owner[owner] = TakenIndex(self._taken_keys)
        return index

    def _index_add(self, slot: int, taken: bool = True) -> None:
        a = self._arr
        if a.trashed_at[slot]:
            # In the trash: listed only there (not in listings, the queue or favourites).
            self._trash.add("1", slot)
            return
        self._visible.add("", slot)
        owner = self._owner_names[int(a.owner[slot])]
        if taken:
            key = int(a.taken_key[slot])
            epoch = int(a.epoch[slot])
            self._taken_all.add(key, slot, epoch)
            self._taken_index(owner).add(key, slot, epoch)
        status = str(int(a.status[slot]))
        self._by_status.add(status, slot)
        self._by_owner.add(owner, slot)
        self._by_owner_status.add(f"{owner}\0{status}", slot)
        if a.favourite[slot]:
            self._favourites.add("1", slot)

    def _index_remove(self, slot: int, taken: bool = True) -> None:
        a = self._arr
        owner = self._owner_names[int(a.owner[slot])]
        if taken and not a.trashed_at[slot]:
            a.epoch[slot] += 1
            self._taken_all.removed()
            self._taken_index(owner).removed()
        status = str(int(a.status[slot]))
        self._by_status.remove(status, slot)
        self._by_owner.remove(owner, slot)
        self._by_owner_status.remove(f"{owner}\0{status}", slot)
        self._favourites.remove("1", slot)
        self._trash.remove("1", slot)
        self._visible.remove("", slot)

    def _apply(
        self,
        kind: RowKind,
        values: dict[str, Any],
        src: int,
        row: int,
        meta: ImageMeta | None = None,
    ) -> None:
        """Apply one durable row to the view: `src` is its segment id (IN_MEMTABLE: a memtable
        row, then `row` is its seq and the row is in _mem_rows)."""
        image_id = values["id"]
        slot = self._slot_of.get(image_id)
        a = self._arr
        if kind is RowKind.PUT:
            if slot is not None:  # a merged row replacing its versions: keep the newest
                return
            slot = self._new_slot(image_id)
            exif = values.get("exif") or {}
            created = int(values.get("created_at_ms", 0))
            a.alive[slot] = 1
            a.img_src[slot] = a.ann_src[slot] = src
            a.img_row[slot] = a.ann_row[slot] = row
            a.owner[slot] = self._owner_id(values.get("owner", ""))
            a.status[slot] = int(values.get("status", 0))
            a.favourite[slot] = int(values.get("favourite", 0))
            a.has_vector[slot] = int(values.get("has_feature_vector", 0))
            a.trashed_at[slot] = int(values.get("trashed_at_ms", 0))
            a.created[slot] = created
            a.byte_size[slot] = int(values.get("byte_size", 0))
            a.taken_key[slot] = sort_key(date_taken_ms(exif, created)[0], image_id)
            self._filename_hashes.add(key_hash(values.get("filename", "")), slot)
            self._sha_hashes.add(key_hash(values.get("sha256", "")), slot)
            self._index_add(slot)
            self._live += 1
            self._raw_image_bytes += int(a.byte_size[slot])
            if meta is not None:
                self._cache_meta(slot, meta)
        elif kind is RowKind.ANNOTATE:
            if slot is None:
                return
            old_key = (int(a.status[slot]), int(a.favourite[slot]), int(a.trashed_at[slot]))
            new_key = (
                int(values.get("status", 0)),
                int(values.get("favourite", 0)),
                int(values.get("trashed_at_ms", 0)),
            )
            moved = bool(old_key[2]) != bool(new_key[2])
            if new_key != old_key:
                # Still listed (a status or star change): its date-taken entries stay.
                self._index_remove(slot, taken=moved)
                a.status[slot], a.favourite[slot], a.trashed_at[slot] = new_key
                self._index_add(slot, taken=moved)
            a.ann_src[slot], a.ann_row[slot] = src, row
            a.has_vector[slot] = int(values.get("has_feature_vector", 0))
            self._meta_cache.pop(slot, None)
        else:
            if slot is None:
                return
            self._index_remove(slot)
            a.alive[slot] = 0
            self._live -= 1
            self._raw_image_bytes -= int(a.byte_size[slot])
            self._free_slot(slot)

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
            self._mem_rows[row.seq] = row
            self._apply(row.kind, row.values, IN_MEMTABLE, row.seq, pending.meta)
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

    def _ref(self, src: int, row: int) -> BlobRef:
        if src == IN_MEMTABLE:
            return (self._mem_rows[row], 0)
        return (self._segment_by_id[src], row)

    def _refs(self, slot: int) -> tuple[BlobRef, BlobRef]:
        """(its PUT row, its newest row) of a live slot. Lock held."""
        a = self._arr
        return (
            self._ref(int(a.img_src[slot]), int(a.img_row[slot])),
            self._ref(int(a.ann_src[slot]), int(a.ann_row[slot])),
        )

    def _cache_meta(self, slot: int, meta: ImageMeta) -> None:
        self._meta_cache[slot] = meta
        if len(self._meta_cache) > self.options.meta_cache_images:
            self._meta_cache.popitem(last=False)

    def _meta(self, slot: int) -> ImageMeta:
        """A live slot's metadata: from the cache, else read from its rows. Lock held."""
        meta = self._meta_cache.get(slot)
        if meta is not None:
            self._meta_cache.move_to_end(slot)
            return meta
        meta = _build_meta(*self._refs(slot))
        self._cache_meta(slot, meta)
        return meta

    def _metas(self, slots: list[int]) -> list[ImageMeta]:
        """Metadata of several live slots: the refs are taken under the lock (held by the
        caller), the rows are read by `finish` outside it."""
        return [self._meta(slot) for slot in slots]

    def _readable_metas(self, slots: Iterable[int], want: int) -> tuple[list[ImageMeta], int]:
        """The first `want` slots' metadata whose rows read, and how many did not: a page
        leaves a damaged metadata record out and counts it as unreadable rather than failing
        whole (Verify names it; a get of that image answers data loss). Lock held."""
        found: list[ImageMeta] = []
        skipped = 0
        for slot in slots:
            if len(found) >= want:
                break
            try:
                found.append(self._meta(slot))
            except DataLossError as e:
                skipped += 1
                log.error(
                    "image metadata unreadable: left out of the page and counted",
                    extra={"image_id": self._slot_ids[slot], "error": str(e)},
                )
        return found, skipped

    def _entry_or_none(self, image_id: str) -> _EntryView | None:
        slot = self._slot_of.get(image_id)
        if slot is None:
            return None
        image, newest = self._refs(slot)
        vector = newest if self._arr.has_vector[slot] else None
        return _EntryView(slot, self._meta(slot), image, vector, newest)

    def _entry(self, image_id: str) -> _EntryView:
        entry = self._entry_or_none(image_id)
        if entry is None:
            if image_id in self._damaged:
                name, detail = self._damaged[image_id].split("\0", 1)
                raise DataLossError(name, f"{detail}: metadata of {image_id!r} lost")
            raise ImageNotFoundError(image_id)
        return entry

    def _live_matches(self, index: HashIndex, key: str, field_name: str) -> list[int]:
        """Live slots whose `field_name` is exactly `key`, newest first. Lock held."""
        alive = self._arr.alive
        found = []
        for slot in set(index.lookup(key_hash(key))):
            if alive[slot] and getattr(self._meta(slot), field_name) == key:
                found.append(slot)
        found.sort(key=self._slot_ids.__getitem__, reverse=True)
        return found

    def _take_seq(self) -> int:
        seq = self._next_seq
        self._next_seq += 1
        return seq

    def _new_id(self, suffix: str) -> tuple[str, int]:
        """A new image id: creation ms, a counter, `suffix` (16 random hex digits, drawn
        before the lock is taken: a system call)."""
        now_ms = int(time.time() * 1000)
        if now_ms <= self._last_id_ms:
            now_ms = self._last_id_ms
            self._id_counter += 1
        else:
            self._last_id_ms = now_ms
            self._id_counter = 0
        # Time first, so ids sort by age (newest-first listing is a reverse scan).
        return f"{now_ms:012x}{self._id_counter:04x}{suffix}", now_ms

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
        if image.thumbs_pending:
            values["thumb_state"] = int(ThumbState.PENDING)
        blobs = {
            "data": image.data,
            "thumb_small": image.thumb_small,
            "thumb_preview": image.thumb_preview,
        }
        suffix = secrets.token_hex(8)
        # The log's group commit waits for this put's record while another's fsync starts.
        wal = self._wal
        wal.begin_write()
        try:
            pending, meta, duplicates = self._put_locked(
                values, blobs, image, owner, keep_duplicate, suffix
            )
            if pending is None:
                return PutResult(meta, (), already_stored=True)
            self._commit(pending)
        finally:
            wal.end_write()
        return PutResult(meta, duplicates)

    def _put_locked(
        self,
        values: dict[str, Any],
        blobs: dict[str, bytes],
        image: PreparedImage,
        owner: str,
        keep_duplicate: bool,
        suffix: str,
    ) -> tuple[_Pending | None, ImageMeta, tuple[str, ...]]:
        """put's work under the store lock: (the logged row, its metadata, the duplicates),
        or (None, the live duplicate, ()) when it is kept instead."""
        with self._lock:
            self._check_writable()
            if not keep_duplicate:
                # An identical put still in flight decides first.
                while (image.sha256, owner) in self._pending_puts:
                    self._wait_settled()
                for other in self._live_matches(self._sha_hashes, image.sha256, "sha256"):
                    existing = self._meta(other)
                    if existing.owner == owner and not existing.trashed_at_ms:
                        return None, existing, ()
                self._check_writable()
            image_id, created_ms = self._new_id(suffix)
            values["id"] = image_id
            values["created_at_ms"] = created_ms
            # Copies in the trash do not count: they are not in the library any more.
            duplicates = tuple(
                self._slot_ids[slot]
                for slot in self._live_matches(self._sha_hashes, image.sha256, "sha256")
                if not self._arr.trashed_at[slot]
            )
            row = Row(self._take_seq(), RowKind.PUT, values, blobs)
            meta = _meta_from(values)
            pending = self._submit(row, (image.sha256, owner))
            pending.meta = meta
        return pending, meta, duplicates

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
                vector = vectors.encode(update.feature_vector, self.options.vector_encoding)
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
            row = Row(self._take_seq(), RowKind.ANNOTATE, values, entry.carried(vector))
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
                self._slot_ids[slot]
                for slot in self._trash.slots("1")
                if everything or self._arr.trashed_at[slot] <= cutoff
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
            for slot in self._by_status.slots(str(int(AnalysisStatus.PENDING))):
                if len(pendings) >= max_images:
                    break
                image_id = self._slot_ids[slot]
                if image_id in self._pending_ids:
                    continue
                entry = self._entry(image_id)
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
                    row = Row(self._take_seq(), RowKind.ANNOTATE, values, entry.carried(vector))
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
                row = Row(self._take_seq(), RowKind.ANNOTATE, values, entry.carried(vector))
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
        released and the next attempt after a backoff that doubles with each attempt.

        A transient failure marked `outage` (a service was away, the image is not to blame)
        also gives its claim back: attempts - 1, written in the same row, so outages never
        bring the image to analysis_max_attempts. Its backoff is the one this claim would
        have had, so it does not grow with outage claims: pacing claims while a service is
        away is the claimer's job (the worker pauses its lanes and holds its claims), and a
        backoff grown through a long outage would keep the image waiting minutes after it."""
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
                vector = vectors.encode(outcome.feature_vector, self.options.vector_encoding)
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
                attempts = max(0, state.attempts - 1) if outcome.outage else state.attempts
                new_meta = dataclasses.replace(
                    meta,
                    analysis=AnalysisState(
                        attempts,
                        outcome.reason,
                        state.generation,
                        next_attempt_ms=now + self._backoff_ms(state.attempts),
                    ),
                )
            values = {"id": image_id, **_annotation_values(new_meta)}
            row = Row(self._take_seq(), RowKind.ANNOTATE, values, entry.carried(vector))
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
    def last_change_seq(self) -> int:
        """The seq of the newest change the feed holds (head_seq may be past it: not every
        row is a change of the feed)."""
        return self._history.last_seq

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
                if kind == RowKind.DELETE:
                    out.append(Change(seq, ChangeKind.DELETE, image_id, None))
                    continue
                meta, damage = self._change_meta(seq, image_id)
                out.append(Change(seq, ChangeKind(kind), image_id, meta, damage))
            return ChangesPage(tuple(out), self._feed_head, self._horizon)

    def _change_meta(self, seq: int, image_id: str) -> tuple[ImageMeta | None, str]:
        """The current metadata a put/annotate change carries, or why it cannot be read: a
        damaged row costs that change only (delivered marked damaged, logged once, counted),
        never the page, so no consumer stalls on it. Lock held."""
        damage = ""
        try:
            entry = self._entry_or_none(image_id)
            if entry is not None:
                return entry.meta, ""
            if image_id in self._damaged:  # its whole segment's small columns are lost
                name, detail = self._damaged[image_id].split("\0", 1)
                damage = str(DataLossError(name, f"{detail}: metadata of {image_id!r} lost"))
        except DataLossError as e:
            damage = str(e)
        except (ValueError, KeyError, TypeError) as e:  # verified bytes that do not decode
            damage = f"metadata of {image_id!r} does not decode: {type(e).__name__}: {e}"
        if not damage:
            return None, ""  # deleted since: its delete follows in the feed
        if seq not in self._feed_damaged:
            if len(self._feed_damaged) < _FEED_DAMAGED_KEPT:
                self._feed_damaged[seq] = damage
            self._feed_damaged_count += 1
            log.error(
                "change feed: a change's row is unreadable; delivered marked damaged",
                extra={"seq": seq, "image_id": image_id, "error": damage},
            )
        return None, damage

    def feed_damage(self) -> dict[int, str]:
        """The damaged changes the feed has delivered since open: seq -> reason (the first
        few thousand)."""
        with self._lock:
            return dict(self._feed_damaged)

    @property
    def feed_damaged_count(self) -> int:
        """Distinct feed changes found damaged since the store opened."""
        return self._feed_damaged_count

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
            slot = self._slot_of.get(image_id)
            if slot is not None:
                return self._meta(slot)
            return self._entry(image_id).meta  # raises: not found, or data loss

    def get_many(self, image_ids: Iterable[str]) -> list[ImageMeta | None]:
        """Metadata of each id in order; None for ids not stored (damaged ones raise)."""
        with self._lock:
            out: list[ImageMeta | None] = []
            for image_id in image_ids:
                slot = self._slot_of.get(image_id)
                if slot is None and image_id in self._damaged:
                    self._entry(image_id)
                out.append(self._meta(slot) if slot is not None else None)
            return out

    def find_by_sha256(self, sha256: str, owner: str | None = None) -> list[ImageMeta]:
        """Live images with these bytes (newest first), only `owner`'s when it is given."""
        with self._lock:
            metas = self._metas(self._live_matches(self._sha_hashes, sha256, "sha256"))
        return [m for m in metas if owner is None or m.owner == owner]

    def read_data(self, image_id: str) -> tuple[ImageMeta, bytes]:
        with self._lock:
            entry = self._entry(image_id)
            meta, ref = entry.meta, entry.image
        return meta, _read(ref, "data")

    def feature_vector(self, image_id: str) -> list[float]:
        return self.feature_vector_array(image_id).tolist()

    def feature_vector_array(self, image_id: str) -> np.ndarray:
        """The image's feature vector as float32 (empty if none): what a reply copies from
        without a Python float per value."""
        with self._lock:
            ref = self._entry(image_id).vector
        if ref is None:
            return np.empty(0, np.float32)
        return vectors.decode(_read(ref, "feature_vector"))

    def thumbnail(self, image_id: str, size: ThumbnailSize) -> Thumbnail:
        """ThumbnailsPendingError while they are not made yet (see thumbnailer.py);
        ThumbnailsFailedError when the deferred decode failed."""
        with self._lock:
            entry = self._entry(image_id)
            meta, ref = entry.meta, entry.image
            original = entry.image
            if meta.thumb_state is ThumbState.MADE and entry.newest is not None:
                ref = entry.newest
        if meta.thumb_state is ThumbState.PENDING:
            raise ThumbnailsPendingError(image_id)
        if meta.thumb_state is ThumbState.FAILED:
            raise ThumbnailsFailedError(
                f"image {image_id[:40]!r} has no thumbnails: {meta.thumb_detail}"
            )
        if size is ThumbnailSize.PREVIEW:
            if meta.thumb_preview_size == (0, 0):
                # Shown as itself: the original lives in the PUT row, not in the row that
                # carries the thumbnails made after the ack.
                return Thumbnail(
                    _read(original, "data"), meta.content_type, meta.width, meta.height
                )
            w, h = meta.thumb_preview_size
            return Thumbnail(_read(ref, "thumb_preview"), meta.thumb_content_type, w, h)
        w, h = meta.thumb_small_size
        return Thumbnail(_read(ref, "thumb_small"), meta.thumb_content_type, w, h)

    def set_thumbnails(
        self,
        image_id: str,
        made: tuple[str, bytes, tuple[int, int], bytes, tuple[int, int]] | None,
        failure: str = "",
    ) -> ImageMeta:
        """Store thumbnails made after the put: `made` is (content type, small, its size,
        preview, its size), or None with `failure` saying why the decode failed. A row of its
        own (an annotation row not reported by the feed), durable before it is visible;
        nothing is written when the image's thumbnails are no longer pending."""
        stored = self.set_thumbnails_many([(image_id, made, failure)])[0]
        if stored is None:
            raise ImageNotFoundError(image_id)
        return stored

    def set_thumbnails_many(
        self,
        items: Sequence[
            tuple[str, tuple[str, bytes, tuple[int, int], bytes, tuple[int, int]] | None, str]
        ],
    ) -> list[ImageMeta | None]:
        """`set_thumbnails` for several images (distinct ids) with one log write each and one
        fsync for all (the background thumbnailer's batches): their metadata in order, None for
        an image deleted since. An error while logging raises once the rows already logged are
        durable."""
        out: list[ImageMeta | None] = []
        last: _Pending | None = None
        error: BaseException | None = None
        with self._lock:
            self._check_writable()
            while any(image_id in self._pending_ids for image_id, _, _ in items):
                self._wait_settled()
            for image_id, made, failure in items:
                try:
                    entry = self._entry(image_id)
                except ImageNotFoundError:
                    out.append(None)
                    continue
                except StoreError as e:
                    error = e
                    break
                if entry.meta.thumb_state is not ThumbState.PENDING:
                    out.append(entry.meta)
                    continue
                vector = _read(entry.vector, "feature_vector") if entry.vector else b""
                blobs = {"feature_vector": vector}
                if made is None:
                    new_meta = dataclasses.replace(
                        entry.meta, thumb_state=ThumbState.FAILED, thumb_detail=failure[:1000]
                    )
                else:
                    content_type, small, small_size, preview, preview_size = made
                    new_meta = dataclasses.replace(
                        entry.meta,
                        thumb_state=ThumbState.MADE,
                        thumb_content_type=content_type,
                        thumb_small_size=small_size,
                        thumb_preview_size=preview_size,
                    )
                    blobs.update(thumb_small=small, thumb_preview=preview)
                values = {"id": image_id, **_annotation_values(new_meta), "lease_only": 1}
                try:
                    last = self._submit(Row(self._take_seq(), RowKind.ANNOTATE, values, blobs))
                except (StoreError, OSError) as e:
                    error = e
                    break
                out.append(new_meta)
        if last is not None:
            self._commit(last)
        if error is not None:
            raise error
        return out

    def find_by_filename(self, filename: str, limit: int = 0) -> list[ImageMeta]:
        """Live images with this filename, newest first. DataLossError when an image of that
        name is in a damaged segment (it is never silently left out)."""
        with self._lock:
            damaged = [
                i for i in self._damaged_filenames.lookup(filename) if i not in self._slot_of
            ]
            if damaged:
                raise DataLossError(
                    self._damaged[damaged[0]].split("\0", 1)[0],
                    f"{len(damaged)} image(s) named {filename[:200]!r} are damaged "
                    f"(ids {', '.join(d[:40] for d in damaged[:5])})",
                )
            slots = self._live_matches(self._filename_hashes, filename, "filename")
            return self._metas(slots[:limit] if limit > 0 else slots)

    def _unreadable_count(self) -> int:
        """Rows known unreadable: whole segments, images whose small columns are damaged, and
        live images the last verify found damaged (their bytes answer data loss). Lock held."""
        return (
            self._unreadable_rows
            + sum(1 for i in self._damaged if i not in self._slot_of)
            + sum(1 for i in self._verify_damaged_ids if i in self._slot_of)
        )

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
            slots: Sequence[int]
            if favourite_only or trashed_only:
                # Few images are starred or trashed: filter that list by owner and status.
                a = self._arr
                owner_id = self._owner_ids.get(owner, -1)
                slots = [
                    slot
                    for slot in (self._trash if trashed_only else self._favourites).slots("1")
                    if (not owner or a.owner[slot] == owner_id)
                    and (status is AnalysisStatus.UNSPECIFIED or a.status[slot] == status)
                ]
            elif owner and status is not AnalysisStatus.UNSPECIFIED:
                slots = self._by_owner_status.slots(f"{owner}\0{int(status)}")
            elif owner:
                slots = self._by_owner.slots(owner)
            elif status is not AnalysisStatus.UNSPECIFIED:
                slots = self._by_status.slots(str(int(status)))
            else:
                slots = self._visible.slots("")
            end = len(slots)
            if after is not None:
                end = bisect.bisect_left(slots, after, key=self._slot_ids.__getitem__)
            found, skipped = self._readable_metas(
                (slots[j] for j in range(end - 1, -1, -1)), size + 1
            )
            total = len(slots)
            unreadable = self._unreadable_count() + skipped
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
                a = self._arr
                owner_id = self._owner_ids.get(owner, -1)
                ranked = sorted(
                    (int(a.taken_key[slot]), self._slot_ids[slot], slot)
                    for slot in (self._trash if trashed_only else self._favourites).slots("1")
                    if (not owner or a.owner[slot] == owner_id)
                    and (status is AnalysisStatus.UNSPECIFIED or a.status[slot] == status)
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
                found, skipped = self._readable_metas((r[2] for r in ranked), size + 1)
            else:
                index = (
                    (self._taken_by_owner.get(owner) or TakenIndex(self._taken_keys))
                    if owner
                    else (self._taken_all)
                )
                epochs = self._arr.epoch
                wanted = int(status)
                slot_status = self._arr.status

                def accept(slots: np.ndarray, entry_epochs: np.ndarray) -> np.ndarray:
                    ok = epochs[slots] == entry_epochs
                    if wanted:
                        ok &= slot_status[slots] == wanted
                    return ok

                index.compact(lambda sl, ep: epochs[sl] == ep)
                token_at = None
                if after is not None:
                    token_at = (after[0], self._slot_of.get(after[1], -1))

                def entries(at: tuple[int, int] | None) -> Iterable[int]:
                    # Pages of the index until enough metadata reads (see _readable_metas).
                    while True:
                        picked = index.page(
                            size + 1, descending=descending, lo=lo, hi=hi, after=at, accept=accept
                        )
                        yield from (slot for _key, slot in picked)
                        if len(picked) <= size:
                            return
                        at = picked[-1]

                found, skipped = self._readable_metas(entries(token_at), size + 1)
                if not wanted and not taken_from_ms and not taken_to_ms:
                    total = len(index)
                else:
                    total = index.count(lo, hi, accept)
            unreadable = self._unreadable_count() + skipped
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
            images, raw = self._live, self._raw_image_bytes
            unreadable = self._unreadable_count()
            bg = f"{self._bg_error[0]}: {self._bg_error[1]}" if self._bg_error else ""
            pending_slots = self._by_status.slots(str(int(AnalysisStatus.PENDING)))
            pending_count = len(pending_slots)
            oldest_ms = int(self._arr.created[pending_slots[0]]) if pending_slots else 0
            head, horizon = self._feed_head, self._horizon
            feed_damaged = self._feed_damaged_count
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
            feed_damaged_changes=feed_damaged,
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
        """The last verify's report, from this run or, after a restart, from LAST_VERIFY."""
        return self._last_verify

    def _load_last_verify(self) -> None:
        """Load LAST_VERIFY at open; one that cannot be trusted goes to quarantine (the next
        verify writes a new one)."""
        try:
            report = verify_record.load(self._fs, self.data_dir)
        except verify_record.VerifyRecordDamagedError as e:
            self._quarantine(self.data_dir / verify_record.NAME, str(e))
            return
        except OSError as e:
            log.error("last verify result unreadable", extra={"error": str(e)})
            return
        if report is not None:
            self._last_verify = report
            self._verify_damaged_ids = frozenset(i for d in report.damaged for i in d.image_ids)

    def record_verify(self, report: VerifyReport) -> None:
        """Make `report` the last verify's, here and in LAST_VERIFY (replaced atomically), so
        a restart still shows it. A disk that refuses the write is logged, not raised: the
        report is still the last one until the process ends."""
        with self._verify_save_lock:
            try:
                verify_record.save(self._fs, self.data_dir, report)
            except OSError as e:
                log.error(
                    "verify result not saved: a restart will not show it",
                    extra={"error": str(e)},
                )
            with self._lock:
                self._last_verify = report
                self._verify_damaged_ids = frozenset(i for d in report.damaged for i in d.image_ids)

    def verify(
        self, progress: Callable[[int, int], None] | None = None, *, record: bool = True
    ) -> VerifyReport:
        """Read and check every block of every segment, the MANIFEST and the log files;
        `progress(done, total)` in bytes. Reports what is damaged and the image ids affected,
        and (`record`) keeps the report as the last verify (see record_verify).
        Runs without the store lock (segments are immutable; readers keep going)."""
        started = time.monotonic()
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
            duration_ms=int((time.monotonic() - started) * 1000),
        )
        if record:
            self.record_verify(report)
        log.info(
            "verify finished",
            extra={
                "damaged": len(found),
                "bytes": done,
                "files": report.files_checked,
                "duration_ms": report.duration_ms,
            },
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
                report = self.compact(background=True)
                if report.bytes_before and self._pick_compaction():
                    self._compact_wanted.set()  # more to merge: one bounded run at a time
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
                self._segment_by_id.pop(segment.segment_id, None)
                raise
            self._segment_by_id[segment.segment_id] = segment
            a = self._arr
            for i, row in enumerate(job.rows):
                # Point the live view at the segment, so the memtable rows can be freed.
                slot = self._slot_of.get(row.image_id)
                if slot is not None:
                    if a.img_src[slot] == IN_MEMTABLE and a.img_row[slot] == row.seq:
                        a.img_src[slot], a.img_row[slot] = segment.segment_id, i
                    if a.ann_src[slot] == IN_MEMTABLE and a.ann_row[slot] == row.seq:
                        a.ann_src[slot], a.ann_row[slot] = segment.segment_id, i
                self._mem_rows.pop(row.seq, None)
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
            # The segments with the most dead rows first, as many as one run holds.
            def dead_in(s: SegmentReader) -> int:
                ann, tomb = self._segment_dead_seqs.get(
                    s.segment_id, (np.empty(0, np.int64), np.empty(0, np.int64))
                )
                return int(np.searchsorted(ann, cutoff)) + 2 * int(np.searchsorted(tomb, cutoff))

            ranked = sorted(segments, key=dead_in, reverse=True)
            return self._bounded(ranked, minimum=2)
        tier = pick_tier(
            segments, self.options.memtable_bytes, max(2, self.options.compact_min_segments)
        )
        return self._bounded(tier, minimum=2)

    def _bounded(self, segments: list[SegmentReader], minimum: int = 1) -> list[SegmentReader]:
        """The first of `segments` that fit in one run (by rows); [] when fewer than
        `minimum` do."""
        out: list[SegmentReader] = []
        rows = 0
        for segment in segments:
            if out and rows + segment.row_count > self.options.compact_max_run_rows:
                break
            out.append(segment)
            rows += segment.row_count
        return out if len(out) >= minimum else []

    def _plan_runs(self, segments: list[SegmentReader]) -> list[list[SegmentReader]]:
        """Adjacent segments grouped into runs of at most compact_max_run_rows rows."""
        runs: list[list[SegmentReader]] = []
        rows = 0
        for segment in sorted(segments, key=lambda s: s.segment_id):
            if runs and rows + segment.row_count <= self.options.compact_max_run_rows:
                runs[-1].append(segment)
                rows += segment.row_count
            else:
                runs.append([segment])
                rows = segment.row_count
        return runs

    def _worth_merging(self, segment: SegmentReader, cutoff: int) -> bool:
        """Whether merging this segment alone drops anything: rows below the cutoff that
        a merge removes, or images deleted since (their tombstone elsewhere)."""
        annotations, tombstones = self._segment_dead_seqs.get(
            segment.segment_id, (np.empty(0, np.int64), np.empty(0, np.int64))
        )
        if np.searchsorted(annotations, cutoff) or np.searchsorted(tombstones, cutoff):
            return True
        kinds = segment.array("kind")
        return any(
            k == RowKind.PUT and i not in self._slot_of
            for i, k in zip(segment.ids(), kinds.tolist(), strict=True)
        )

    def _repoint(self, merged: list[MergedRow], old_ids: set[int], new_id: int) -> None:
        """Slots whose rows were in the merged segments now point at the merged rows (each
        merged row names the rows it came from). Lock held."""
        moved: dict[tuple[int, int], int] = {}
        for i, row in enumerate(merged):
            for origin in row.origins:
                moved[origin] = i
        a = self._arr
        for row in merged:
            slot = self._slot_of.get(row.values["id"])
            if slot is None:
                continue
            for src, at in ((a.img_src, a.img_row), (a.ann_src, a.ann_row)):
                if int(src[slot]) in old_ids:
                    to = moved.get((int(src[slot]), int(at[slot])))
                    if to is not None:
                        src[slot], at[slot] = new_id, to

    def _forget_segments(self, old_ids: set[int]) -> None:
        """Drop merged segments from the id map unless a slot still points at one. Lock
        held."""
        n = len(self._slot_ids)
        a = self._arr
        olds = np.fromiter(old_ids, np.int32, len(old_ids))
        alive = a.alive[:n] != 0
        still = set(np.unique(a.img_src[:n][alive & np.isin(a.img_src[:n], olds)]).tolist())
        still |= set(np.unique(a.ann_src[:n][alive & np.isin(a.ann_src[:n], olds)]).tolist())
        for segment_id in old_ids - still:
            self._segment_by_id.pop(segment_id, None)
        if still:
            log.error(
                "compaction left rows pointing at merged segments", extra={"ids": sorted(still)}
            )

    def _newest_row(self, image_id: str) -> tuple[int, int] | None:
        """(segment id, row) of an image's newest row; None when it is not live. Asked by a
        merge running outside the store lock: a ref into the merge's own segments changes only
        by that merge, and any other ref names a newer row. The lookup takes the lock for a
        moment (the slot map moves entries as others are removed, and slots are reused)."""
        with self._lock:
            slot = self._slot_of.get(image_id)
            if slot is None:
                return None
            a = self._arr
            return int(a.ann_src[slot]), int(a.ann_row[slot])

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
        progress: Callable[[int, int], None] | None = None,
    ) -> CompactionReport:
        """Merge segments, dropping deleted rows and old versions: all of them (the Compact
        call), those named, or what the background policy picks. Segments with a damaged
        small column are left out; a damaged blob value is copied as damaged (its row kept,
        reads of that value answer data loss).

        Bounded: segments are merged in runs of at most `compact_max_run_rows` rows (adjacent
        segments; a lone segment with nothing to drop is left as it is), each run read and
        written one at a time, so memory does not grow with the store. An image deleted
        since (by a tombstone in any segment or the log) loses its rows in whichever run
        holds them. `progress(done_runs, total_runs)` is called after each run."""
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
            if background and not old:
                return CompactionReport(segments_before, segments_before, 0, 0, 0)
            if not old:
                return CompactionReport(0, 0, 0, 0, 0)
            runs = self._plan_runs(old)
            totals = [0, 0, 0]
            for done, run in enumerate(runs):
                with self._lock:
                    if self._closing or self._closed:
                        raise StoreClosedError("the store is closed")
                    cutoff = self._merge_cutoff()
                    skip = (
                        len(runs) > 1 and len(run) == 1 and not self._worth_merging(run[0], cutoff)
                    )
                if not skip:
                    started = time.perf_counter()
                    for i, n in enumerate(self._compact_run(run, cutoff, background)):
                        totals[i] += n
                    log.info(
                        "compaction run done",
                        extra={
                            "run": done + 1,
                            "runs": len(runs),
                            "segments": len(run),
                            "rows": sum(s.row_count for s in run),
                            "run_s": round(time.perf_counter() - started, 3),
                        },
                    )
                _release_free_heap()
                if progress is not None:
                    progress(done + 1, len(runs))
            with self._lock:
                segments_after = len(self._segments)
            return CompactionReport(segments_before, segments_after, *totals)

    def _compact_run(
        self, old: list[SegmentReader], cutoff: int, background: bool
    ) -> tuple[int, int, int]:
        """Merge one run of segments into one: (bytes before, bytes after, rows dropped).
        Compaction lock held."""
        bytes_before = sum(s.file_bytes for s in old)
        merged, dropped = merge_segments(old, cutoff, newest_of=self._newest_row)
        old_ids = {s.segment_id for s in old}
        with self._lock:
            covers = [r for s in old for r in self._covers.get(s.segment_id, [])]
        new_segment: SegmentReader | None = None
        if merged:
            segment_id = self._allocate_segment_id()
            path = self._segment_path(segment_id)
            damaged = write_segment(
                path,
                merged,
                fs=self._fs,
                covers=covers,
                replaces=sorted(old_ids),
                rate_bytes_per_s=self.options.compact_bytes_per_s if background else 0,
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
                self._segment_by_id[new_segment.segment_id] = new_segment
                self._repoint(merged, old_ids, new_segment.segment_id)
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
            self._forget_segments(old_ids)
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
        return bytes_before, bytes_after, dropped

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


def _release_free_heap() -> None:
    """Hand the heap pages freed by a bulk build (open, a merge run) back to the OS: glibc
    keeps them mapped otherwise, and a million-image open leaves ~200 MB of them."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _range_covered(ranges: list[tuple[int, int]], lo: int, hi: int) -> bool:
    """True when every sequence number in lo..hi lies in the merged, sorted `ranges`."""
    i = bisect.bisect_right(ranges, (lo, float("inf"))) - 1
    return i >= 0 and ranges[i][0] <= lo and hi <= ranges[i][1]


def _is_covered(ranges: list[tuple[int, int]], seq: int) -> bool:
    return _range_covered(ranges, seq, seq)


def directory_bytes(path: Path) -> int:
    """Bytes of every file under `path` (for tests and benchmarks)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
