"""Merging segments: one row per image, with its newest annotations; deleted rows and
superseded versions dropped.

Any set of segments can be merged, because every row carries its sequence number and the newest
wins everywhere (at open, in the in-memory view, here). Within the merged set, per image:

- its PUT row and a tombstone: both dropped (ids are never reused, so nothing older remains);
- its PUT row, live: one PUT row with the newest annotations found in the set;
- only a tombstone (the PUT is in a segment outside the set): the tombstone is kept;
- only annotation rows: the newest one is kept.

Rows outside the set that are newer keep winning over the merged rows; older annotation rows
outside the set lose to the merged PUT, which carries the newest sequence number in the set.

The change feed (feed.py) serves every row at or above its retention horizon, so a merge is
given `keep_from_seq`: rows with a seq at or above it are copied as they are, and only the older
ones are merged as above. The store then advances the horizon to `keep_from_seq` when the merge
dropped anything.
`pick_tier` chooses what the background merges: segments of similar size (size-tiered), so each
byte is rewritten a logarithmic number of times, not at every compaction.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from storage_service.columnstore.schema import ANNOTATION_COLUMNS, SMALL_COLUMNS, RowKind
from storage_service.columnstore.segment_reader import SegmentReader

BlobRef = tuple[SegmentReader, int]
# Thumbnails made after the put live in the image's newest row (store.py, ThumbState.MADE).
_THUMB_BLOBS = frozenset({"thumb_small", "thumb_preview"})
_THUMBS_MADE = 2


@dataclass
class MergedRow:
    """A row of the merged segment; its blobs are read from the old segments when written."""

    values: dict[str, Any]
    image: BlobRef | None
    vector: BlobRef | None
    # (segment id, row) of every row it replaces that the live view may point at.
    origins: tuple[tuple[int, int], ...] = ()
    # The row holding its thumbnails when they were made after the put (thumb_state MADE).
    thumbs: BlobRef | None = None

    def value(self, column: str) -> Any:
        return self.values[column]

    def blob(self, column: str) -> bytes:
        if column in _THUMB_BLOBS and self.values.get("thumb_state") == _THUMBS_MADE:
            return self.thumbs[0].blob(column, self.thumbs[1]) if self.thumbs else b""
        if column == "feature_vector":
            return self.vector[0].blob(column, self.vector[1]) if self.vector else b""
        return self.image[0].blob(column, self.image[1]) if self.image else b""


@dataclass
class _Version:
    values: dict[str, Any]
    where: BlobRef


def _origin(version: _Version) -> tuple[int, int]:
    return (version.where[0].segment_id, version.where[1])


def segment_rows(segment: SegmentReader) -> list[dict[str, Any]]:
    """Every row of a segment as a dict of its small columns (raises DataLossError)."""
    # The ids from their backup copy when the first one is damaged: the rows stay whole.
    columns = {
        c.name: segment.ids() if c.name == "id" else segment.column(c.name) for c in SMALL_COLUMNS
    }
    return [{name: values[i] for name, values in columns.items()} for i in range(segment.row_count)]


def merge_segments(
    segments: Sequence[SegmentReader],
    keep_from_seq: int | None = None,
    newest_of: Callable[[str], tuple[int, int] | None] | None = None,
) -> tuple[list[MergedRow], int]:
    """The rows of one segment replacing `segments`, and how many rows that drops. Rows with a
    seq at or above `keep_from_seq` are kept unchanged (the feed still serves them).

    `newest_of(id)` (from the live view) names an image's newest row as (segment id, row), or
    None when it is deleted: so a merge of some segments also drops what rows elsewhere made
    dead: an image whose PUT is here but whose tombstone is in another segment or the log
    (every row of it, and its bytes), and annotation rows superseded by a newer row outside
    the set (every annotation row carries the whole annotation state)."""
    versions: list[_Version] = []
    kept_versions: list[_Version] = []
    # Per image in the set: its newest seq, and whether it is deleted. A kept row's blobs are
    # copied only while still needed: a deleted image's bytes never, and a vector only on the
    # image's newest row (the one the live view reads), so retention costs no image bytes.
    newest_seq: dict[str, int] = {}
    deleted: set[str] = set()
    put_here: set[str] = set()
    for segment in segments:
        for i, values in enumerate(segment_rows(segment)):
            image_id = values["id"]
            newest_seq[image_id] = max(newest_seq.get(image_id, 0), values["seq"])
            if values["kind"] == RowKind.DELETE:
                deleted.add(image_id)
            elif values["kind"] == RowKind.PUT:
                put_here.add(image_id)
            if keep_from_seq is not None and values["seq"] >= keep_from_seq:
                kept_versions.append(_Version(values, (segment, i)))
            else:
                versions.append(_Version(values, (segment, i)))

    gone: set[str] = set()
    if newest_of is not None:
        gone = {i for i in put_here if i not in deleted and newest_of(i) is None}
    deleted |= gone

    def vector_of(version: _Version) -> BlobRef | None:
        image_id = version.values["id"]
        if image_id in deleted or not version.values["has_feature_vector"]:
            return None
        return version.where if version.values["seq"] == newest_seq[image_id] else None

    def thumbs_of(version: _Version) -> BlobRef | None:
        image_id = version.values["id"]
        if image_id in deleted or version.values.get("thumb_state") != _THUMBS_MADE:
            return None
        return version.where if version.values["seq"] == newest_seq[image_id] else None

    kept = [
        MergedRow(
            v.values,
            v.where if v.values["kind"] == RowKind.PUT and v.values["id"] not in deleted else None,
            vector_of(v),
            (_origin(v),),
            thumbs_of(v),
        )
        for v in kept_versions
    ]
    versions.sort(key=lambda v: v.values["seq"])
    base: dict[str, _Version] = {}
    newest: dict[str, _Version] = {}
    tombstones: dict[str, _Version] = {}
    for version in versions:
        image_id, kind = version.values["id"], version.values["kind"]
        if kind == RowKind.PUT:
            base[image_id] = newest[image_id] = version
        elif kind == RowKind.ANNOTATE:
            newest[image_id] = version
        else:
            tombstones[image_id] = version
    merged: list[MergedRow] = []
    for image_id in sorted(set(newest) | set(tombstones)):
        if image_id in tombstones:
            if image_id not in base:  # what it deletes is in another segment: keep it
                merged.append(MergedRow(dict(tombstones[image_id].values), None, None))
            continue
        if image_id in gone:  # deleted by a tombstone elsewhere: nothing to keep
            continue
        top = newest[image_id]
        vector = vector_of(top)
        if image_id not in base:
            elsewhere = newest_of(image_id) if newest_of is not None else None
            if elsewhere is not None and elsewhere != _origin(top):
                continue  # a newer row outside the set carries its annotations
            merged.append(
                MergedRow(dict(top.values), None, vector, (_origin(top),), thumbs_of(top))
            )
            continue
        values = dict(base[image_id].values)
        for name in ANNOTATION_COLUMNS:
            if name in top.values:
                values[name] = top.values[name]
        values["seq"] = top.values["seq"]
        values["kind"] = int(RowKind.PUT)
        # Deleted by a tombstone the feed still keeps: the bytes go now all the same.
        image = None if image_id in deleted else base[image_id].where
        merged.append(
            MergedRow(
                values, image, vector, (_origin(base[image_id]), _origin(top)), thumbs_of(top)
            )
        )
    dropped = len(versions) - len(merged)
    kept.sort(key=lambda r: r.values["seq"])
    return merged + kept, dropped


def pick_tier(
    segments: Sequence[SegmentReader], base_bytes: int, fanout: int
) -> list[SegmentReader]:
    """The smallest size tier holding `fanout` segments (tier k: about base * 4**k bytes), or
    nothing when no tier is full."""
    tiers: dict[int, list[SegmentReader]] = defaultdict(list)
    for segment in segments:
        ratio = max(segment.file_bytes, 1) / max(base_bytes, 1)
        tiers[max(0, int(math.log(ratio, 4))) if ratio > 1 else 0].append(segment)
    for tier in sorted(tiers):
        if len(tiers[tier]) >= fanout:
            return tiers[tier]
    return []
