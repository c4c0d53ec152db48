"""Merging segments: one row per live image, with its newest annotations; deleted rows and
superseded versions dropped.

Only a merge of *all* segments listed in the manifest at one moment is done. Everything older
than any row in them is then among them, so a tombstone can be dropped together with the rows
it deletes. Rows written meanwhile (memtable, newer segments) all have higher sequence numbers
and keep winning over the merged rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from storage_service.columnstore.schema import ANNOTATION_COLUMNS, SMALL_COLUMNS, RowKind
from storage_service.columnstore.segment_reader import SegmentReader

BlobRef = tuple[SegmentReader, int]


@dataclass
class MergedRow:
    """A row of the merged segment; its blobs are read from the old segments when written."""

    values: dict[str, Any]
    image: BlobRef
    vector: BlobRef | None

    def value(self, column: str) -> Any:
        return self.values[column]

    def blob(self, column: str) -> bytes:
        if column == "feature_vector":
            return self.vector[0].blob(column, self.vector[1]) if self.vector else b""
        return self.image[0].blob(column, self.image[1])


@dataclass
class _Version:
    values: dict[str, Any]
    where: BlobRef


def segment_rows(segment: SegmentReader) -> list[dict[str, Any]]:
    """Every row of a segment as a dict of its small columns (raises DataLossError)."""
    columns = {c.name: segment.column(c.name) for c in SMALL_COLUMNS}
    return [{name: values[i] for name, values in columns.items()} for i in range(segment.row_count)]


def merge_segments(segments: Sequence[SegmentReader]) -> tuple[list[MergedRow], int]:
    """The rows of one segment replacing all of `segments`, and how many rows that drops."""
    versions: list[tuple[int, int, _Version]] = []
    total = 0
    for segment in segments:
        for i, values in enumerate(segment_rows(segment)):
            versions.append((values["seq"], values["kind"], _Version(values, (segment, i))))
            total += 1
    versions.sort(key=lambda v: v[0])
    live: dict[str, tuple[_Version, _Version]] = {}
    for _seq, kind, version in versions:
        image_id = version.values["id"]
        if kind == RowKind.PUT:
            live[image_id] = (version, version)
        elif kind == RowKind.ANNOTATE and image_id in live:
            live[image_id] = (live[image_id][0], version)
        elif kind == RowKind.DELETE:
            live.pop(image_id, None)
    merged: list[MergedRow] = []
    for base, newest in sorted(live.values(), key=lambda bn: bn[0].values["id"]):
        values = dict(base.values)
        for name in ANNOTATION_COLUMNS:
            if name in newest.values:
                values[name] = newest.values[name]
        values["seq"] = newest.values["seq"]
        values["kind"] = int(RowKind.PUT)
        vector = newest.where if newest.values["has_feature_vector"] else None
        merged.append(MergedRow(values, base.where, vector))
    return merged, total - len(merged)
