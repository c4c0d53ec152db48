"""The columns of the image table: name, physical kind and the value a row lacks it takes.

Adding a column means appending it here with a default: segments written before it simply have
no block for it, and readers fill in the default, so old segments are never rewritten.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class Kind(enum.Enum):
    I64 = "i64"
    I32 = "i32"
    F32 = "f32"
    U8 = "u8"
    STR = "str"
    JSON = "json"
    # Large values stored one frame each, so one row is read without the rest of the column.
    BLOB = "blob"
    # A float32 vector, stored like BLOB but byte-shuffled before compression.
    VECTOR = "vector"


FIXED_DTYPES = {Kind.I64: "<i8", Kind.I32: "<i4", Kind.F32: "<f4", Kind.U8: "u1"}
BLOB_KINDS = (Kind.BLOB, Kind.VECTOR)


class RowKind(enum.IntEnum):
    PUT = 1
    # Only the annotation columns are meaningful; the newest version of an image wins.
    ANNOTATE = 2
    DELETE = 3


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    default: Any


COLUMNS: tuple[Column, ...] = (
    Column("seq", Kind.I64, 0),
    Column("kind", Kind.U8, 0),
    Column("id", Kind.STR, ""),
    Column("filename", Kind.STR, ""),
    Column("owner", Kind.STR, ""),
    Column("content_type", Kind.STR, ""),
    Column("format", Kind.STR, ""),
    Column("created_at_ms", Kind.I64, 0),
    Column("sha256", Kind.STR, ""),
    Column("byte_size", Kind.I64, 0),
    Column("width", Kind.I32, 0),
    Column("height", Kind.I32, 0),
    Column("exif", Kind.JSON, {}),
    Column("thumb_content_type", Kind.STR, ""),
    Column("thumb_small_w", Kind.I32, 0),
    Column("thumb_small_h", Kind.I32, 0),
    Column("thumb_preview_w", Kind.I32, 0),
    Column("thumb_preview_h", Kind.I32, 0),
    Column("labels", Kind.JSON, []),
    Column("moderation_score", Kind.F32, 0.0),
    Column("ocr_text", Kind.STR, ""),
    Column("tags", Kind.JSON, []),
    Column("status", Kind.U8, 0),
    Column("status_detail", Kind.STR, ""),
    Column("feedback", Kind.JSON, []),
    Column("has_feature_vector", Kind.U8, 0),
    Column("data", Kind.BLOB, b""),
    Column("thumb_small", Kind.BLOB, b""),
    Column("thumb_preview", Kind.BLOB, b""),
    Column("feature_vector", Kind.VECTOR, b""),
    # The analysis queue's state (see ColumnStore.claim_analysis): carried by every annotation
    # row, so it is durable before it is visible, like the annotations themselves.
    Column("attempts", Kind.I32, 0),
    Column("last_error", Kind.STR, ""),
    Column("generation", Kind.I64, 0),
    Column("lease_owner", Kind.STR, ""),
    Column("lease_expires_ms", Kind.I64, 0),
    Column("next_attempt_ms", Kind.I64, 0),
    # 1 on a row that only changes a lease (a claim): not a change the feed reports.
    Column("lease_only", Kind.U8, 0),
    # 1 when the owner starred the image (an annotation: written through the log).
    Column("favourite", Kind.U8, 0),
    # Dominant named colours from analysis: [{"name": ..., "share": ...}], largest first.
    Column("colours", Kind.JSON, []),
    # When the image was moved to the trash (ms); 0: not in the trash. An annotation too.
    Column("trashed_at_ms", Kind.I64, 0),
    # Where the thumbnails are (ThumbState): 0 in the PUT row (made before the put was
    # acknowledged), 1 not made yet (the thumbnailer makes them after the ack), 2 in the image's
    # newest row (every later annotation row carries them), 3 the deferred decode failed
    # (`thumb_detail` says why; the original's bytes are kept).
    Column("thumb_state", Kind.U8, 0),
    Column("thumb_detail", Kind.STR, ""),
)

BY_NAME = {c.name: c for c in COLUMNS}
SMALL_COLUMNS = tuple(c for c in COLUMNS if c.kind not in BLOB_KINDS)
BLOB_COLUMNS = tuple(c for c in COLUMNS if c.kind in BLOB_KINDS)

# Columns an UpdateAnnotations record carries (besides seq, kind and id).
ANNOTATION_COLUMNS = (
    "labels",
    "moderation_score",
    "ocr_text",
    "tags",
    "status",
    "status_detail",
    "feedback",
    "has_feature_vector",
    "feature_vector",
    "attempts",
    "last_error",
    "generation",
    "lease_owner",
    "lease_expires_ms",
    "next_attempt_ms",
    "lease_only",
    "favourite",
    "colours",
    "trashed_at_ms",
    # Thumbnails made after the ack: their row is an annotation row (see thumb_state).
    "thumb_state",
    "thumb_detail",
    "thumb_content_type",
    "thumb_small_w",
    "thumb_small_h",
    "thumb_preview_w",
    "thumb_preview_h",
    "thumb_small",
    "thumb_preview",
)
# The analysis-state columns, as ImageMeta.analysis holds them.
ANALYSIS_COLUMNS = (
    "attempts",
    "last_error",
    "generation",
    "lease_owner",
    "lease_expires_ms",
    "next_attempt_ms",
)
# What the metadata compression ratio is reported over: everything but image bytes,
# thumbnails and the feature vector.
METADATA_COLUMNS = tuple(c.name for c in SMALL_COLUMNS)
