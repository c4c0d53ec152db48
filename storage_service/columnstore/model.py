"""The values the column store holds and returns: plain dataclasses, no gRPC."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class AnalysisStatus(enum.IntEnum):
    """Where an image is in the ingest pipeline (numbers match the proto enum)."""

    UNSPECIFIED = 0
    PENDING = 1
    READY = 2
    FAILED = 3


class ListOrder(enum.IntEnum):
    """The order of a listing (numbers match the proto enum)."""

    UPLOADED_NEWEST = 0
    TAKEN_NEWEST = 1
    TAKEN_OLDEST = 2


class ThumbnailSize(enum.IntEnum):
    SMALL = 1
    PREVIEW = 2


class ThumbState(enum.IntEnum):
    """Where an image's thumbnails are (the `thumb_state` column; see thumbnailer.py)."""

    # Made before the put was acknowledged, in its PUT row (every image stored before issue 13's
    # deferred thumbnails, and formats with no cheap completeness check).
    IN_PUT = 0
    # Not made yet: the background thumbnailer (or the first GetThumbnail) makes them.
    PENDING = 1
    # Made after the ack, in the image's newest row.
    MADE = 2
    # The deferred full decode failed (the file is corrupt past its header): the original's
    # bytes are kept, `thumb_detail` says why.
    FAILED = 3


@dataclass(frozen=True)
class Label:
    name: str
    probability: float
    synonyms: tuple[str, ...] = ()
    class_index: int = -1


@dataclass(frozen=True)
class Colour:
    """A dominant named colour of an image and the share of its area, 0..1."""

    name: str
    share: float


@dataclass(frozen=True)
class Feedback:
    label: str
    comment: str = ""
    reported_by: str = ""
    created_at_ms: int = 0


@dataclass(frozen=True, slots=True)
class AnalysisState:
    """An image's place in the analysis queue (see ColumnStore.claim_analysis)."""

    attempts: int = 0
    last_error: str = ""
    # Bumped by every claim (and by a manual status change); a completion must present it.
    generation: int = 0
    lease_owner: str = ""
    lease_expires_ms: int = 0
    # After a transient failure: not claimable before this time.
    next_attempt_ms: int = 0


NO_ANALYSIS = AnalysisState()


@dataclass(frozen=True)
class ImageMeta:
    """Every small column of one image (not its bytes, thumbnails or feature vector)."""

    id: str
    filename: str
    owner: str
    content_type: str
    format: str
    created_at_ms: int
    sha256: str
    byte_size: int
    width: int
    height: int
    exif: dict[str, str] = field(default_factory=dict)
    labels: tuple[Label, ...] = ()
    moderation_score: float = 0.0
    ocr_text: str = ""
    tags: tuple[str, ...] = ()
    status: AnalysisStatus = AnalysisStatus.PENDING
    status_detail: str = ""
    feedback: tuple[Feedback, ...] = ()
    has_feature_vector: bool = False
    thumb_content_type: str = ""
    thumb_small_size: tuple[int, int] = (0, 0)
    # (0, 0) when the original is small enough to serve as its own preview.
    thumb_preview_size: tuple[int, int] = (0, 0)
    analysis: AnalysisState = NO_ANALYSIS
    favourite: bool = False
    colours: tuple[Colour, ...] = ()
    # When it was moved to the trash (ms since the epoch); 0: not in the trash.
    trashed_at_ms: int = 0
    # When the photo was taken: EXIF DateTimeOriginal (as UTC), else the upload time.
    taken_at_ms: int = 0
    taken_at_is_upload_time: bool = True
    thumb_state: ThumbState = ThumbState.IN_PUT
    thumb_detail: str = ""


@dataclass(frozen=True)
class PreparedImage:
    """A validated image with everything computed at put time (see image_check, thumbnails)."""

    data: bytes
    content_type: str
    format: str
    sha256: str
    width: int
    height: int
    exif: dict[str, str]
    thumb_content_type: str
    thumb_small: bytes
    thumb_small_size: tuple[int, int]
    thumb_preview: bytes
    thumb_preview_size: tuple[int, int]
    # True when only the acknowledged path's checks ran: no thumbnails yet (ThumbState.PENDING).
    thumbs_pending: bool = False


@dataclass(frozen=True)
class AnnotationUpdate:
    """Fields named in `fields` are replaced; tag edits and feedback are applied after."""

    fields: frozenset[str] = frozenset()
    labels: tuple[Label, ...] = ()
    feature_vector: tuple[float, ...] | None = None
    moderation_score: float = 0.0
    ocr_text: str = ""
    tags: tuple[str, ...] = ()
    status: AnalysisStatus = AnalysisStatus.UNSPECIFIED
    status_detail: str = ""
    add_tags: tuple[str, ...] = ()
    remove_tags: tuple[str, ...] = ()
    add_feedback: tuple[Feedback, ...] = ()
    favourite: bool = False
    # With "trashed" in fields: True moves the image to the trash, False restores it.
    trashed: bool = False


ANNOTATION_FIELDS = frozenset(
    {"labels", "feature_vector", "moderation_score", "ocr_text", "tags", "status", "status_detail"}
    | {"favourite", "trashed"}
)


class ChangeKind(enum.IntEnum):
    """What a change in the feed did (numbers match the proto enum and RowKind)."""

    PUT = 1
    ANNOTATE = 2
    DELETE = 3


@dataclass(frozen=True)
class Change:
    """One entry of the change feed. `image` is the image's CURRENT metadata (not as of the
    change); None for a delete, and for a put or annotate of an image deleted since (its delete
    follows later in the feed)."""

    seq: int
    kind: ChangeKind
    image_id: str
    image: ImageMeta | None
    # Why the change's row could not be read (checksum or decode failure; `image` is None
    # then), "" when it reads. A damaged change is still delivered, in its place, so every
    # consumer moves past it.
    damage: str = ""


@dataclass(frozen=True)
class ChangesPage:
    changes: tuple[Change, ...]
    # The newest seq in the feed, and the oldest seq still retained.
    head_seq: int
    horizon_seq: int


@dataclass(frozen=True)
class AnalysisResult:
    labels: tuple[Label, ...] = ()
    moderation_score: float = 0.0
    ocr_text: str = ""
    feature_vector: tuple[float, ...] = ()
    colours: tuple[Colour, ...] = ()


@dataclass(frozen=True)
class AnalysisFailure:
    reason: str
    # True: status FAILED for good; False: retried after a backoff.
    permanent: bool = False
    # A service the analysis needs was away (unavailable, or answered nothing in time), not a
    # problem of this image: a transient failure that gives its claim back (attempts - 1), so
    # outages never use up analysis_max_attempts. Ignored when permanent.
    outage: bool = False


@dataclass(frozen=True)
class ClaimedImage:
    image: ImageMeta
    generation: int


@dataclass(frozen=True)
class PutResult:
    image: ImageMeta
    duplicate_of: tuple[str, ...]
    # True when the same bytes were already stored for this owner and nothing new was written
    # (`image` is then the existing one).
    already_stored: bool = False


@dataclass(frozen=True)
class Thumbnail:
    data: bytes
    content_type: str
    width: int
    height: int


@dataclass(frozen=True)
class Page:
    images: tuple[ImageMeta, ...]
    next_page_token: str
    total_count: int
    # Rows the store acknowledged once but cannot read now (damaged segments); never hidden.
    unreadable_count: int = 0
    # The feed's head when this page was read: watch changes after it to stay in sync.
    snapshot_seq: int = 0


@dataclass(frozen=True)
class ColumnStat:
    name: str
    raw_bytes: int
    stored_bytes: int


@dataclass(frozen=True)
class StoreStats:
    image_count: int
    deleted_count: int
    segment_count: int
    disk_bytes: int
    raw_image_bytes: int
    wal_bytes: int
    memtable_rows: int
    columns: tuple[ColumnStat, ...]
    # Rows acknowledged once but unreadable now (damaged or missing segments).
    unreadable_rows: int = 0
    # The latched background error ("" when writes are accepted).
    background_error: str = ""
    # Files in quarantine/ (moved there by start-up or log retirement, never deleted).
    quarantined_files: int = 0
    # Damaged log records found at open (not replayed; the log is kept in quarantine).
    damaged_log_records: int = 0
    # The change feed: newest seq, oldest retained seq.
    head_seq: int = 0
    horizon_seq: int = 0
    # The analysis queue: PENDING images and the age of the oldest.
    pending_count: int = 0
    oldest_pending_age_ms: int = 0
    # Distinct feed changes found damaged (row unreadable) since the store opened.
    feed_damaged_changes: int = 0


@dataclass(frozen=True)
class CompactionReport:
    segments_before: int
    segments_after: int
    bytes_before: int
    bytes_after: int
    rows_dropped: int


@dataclass(frozen=True)
class DamagedItem:
    """One thing a verify (scrub) found damaged: a file, and the image ids it affects."""

    path: str
    detail: str
    image_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class VerifyReport:
    """What `ColumnStore.verify` checked and what it found damaged."""

    files_checked: int
    blocks_checked: int
    bytes_checked: int
    damaged: tuple[DamagedItem, ...]
    finished_at_ms: int
    # How long it took (kept in LAST_VERIFY; GetStats has no field for it).
    duration_ms: int = 0

    @property
    def ok(self) -> bool:
        return not self.damaged
