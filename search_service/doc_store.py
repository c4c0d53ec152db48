"""The index's documents, kept compactly: a list indexed by document number that reads like a
list of Documents (None for a removed one).

A Document with its 20 Label objects costs about 4 KB of Python objects; here each document is
one tuple of its plain fields, and its labels are two small byte strings: label kinds (an
interned (name, synonyms, class number) table shared by every document, uint16 each) and
probabilities (float64, so they come back exactly). About 0.7 KB per document with its
strings. A Document is rebuilt when read (about 25 us for 20 labels) and the most recently
read ones are kept, so the documents of a results page are rebuilt once, not per query.

Columns (`columns()`, `from_columns()`): the same documents as flat arrays, the snapshot's form.
Strings of a field are one utf-8 blob (items separated by a NUL byte) with the offset of each,
labels one array of kinds and one of probabilities with each document's offset, tags and
colours a compact JSON per document (empty when it has neither). A store loaded from columns
keeps them as its base and reads a document from them when asked (no per-document Python
objects at load: restart time is reading the arrays); documents added later are rows as above.

Mapped (since this session): read from a snapshot file, the columns are read-only memory maps
of it (snapshot.MAPPED_SECTIONS), not copies in anonymous memory; only `alive` is this store's
own writable copy (removal clears it; the file is never written). After a snapshot that froze
this store's columns is in place, the store folds: the documents it froze (base and rows) are
from then on read from that file's mapped columns, the rows added since stay rows, and the
next snapshot writes the base's arrays as they are (no Python loop over its documents). The
fold swaps one reference (readers take it once per call: none sees half of it), under the
store's own lock that every change to the store takes; removals made between the freeze and
the fold are replayed on the new `alive` (a short log of them). The replaced base's mapping
(an older file) is let go once no reader holds it.
"""

from __future__ import annotations

import functools
import json
import logging
import mmap
import operator
import struct
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, NamedTuple, cast

import numpy as np
import numpy.typing as npt

from search_service.document import Document, Label, Status
from search_service.snapshot import (
    ArrayParts,
    BytesParts,
    Deferred,
    Pacer,
    map_sections,
    mapping_of,
)

log = logging.getLogger(__name__)

# Fields kept in the per-document tuple: every Document field but labels and the vector
# (the vector index keeps vectors).
_PLAIN = tuple(f.name for f in fields(Document) if f.name not in ("labels", "feature_vector"))
_RECENT = 4096
_LABEL_SLOTS = hasattr(Label, "__slots__")
_MAX_KINDS = 65_535
# String fields kept as blobs in columns, and the number fields with their array types.
_STRINGS = ("image_id", "filename", "owner", "ocr_text", "sha256", "camera_make", "camera_model")
_NUMBERS = (
    ("moderation_score", np.float64),
    ("status", np.int8),
    ("created_at_unix_ms", np.int64),
    ("taken_at_unix_s", np.int64),
    ("favourite", np.bool_),
)
COLUMNS = (
    *(f"{name}_{part}" for name in (*_STRINGS, "extras") for part in ("blob", "offsets")),
    *(name for name, _ in _NUMBERS),
    "label_offsets",
    "label_kinds",
    "label_probs",
    "alive",
    "odd_labels",
    "kinds",
)
# Columns a fold maps from the snapshot file (every column but alive, odd_labels and kinds,
# which the store keeps itself).
_FOLDED = tuple(c for c in COLUMNS if c not in ("alive", "odd_labels", "kinds"))
# Fold after each snapshot that froze the store (False: keep rows and copies, as before; for
# the benchmark's before/after).
FOLD_AFTER_SNAPSHOT = True
# Documents are read at random: no read-around on the mapped columns.
MAP_ADVICE = mmap.MADV_RANDOM
# Removals remembered for a fold still to come (past this, the fold reads alive afresh).
_LOG_LIMIT = 1 << 16


class _Stored(NamedTuple):
    """What the store reads: documents [0, base.count) from `base`, the rest from `rows`
    (rows are appended to in place, and a removed one set to None; the base only by
    removal, in its own alive copy). Replaced whole by a fold."""

    base: _Columns | None
    rows: list[tuple[object, ...] | None]

    @property
    def base_count(self) -> int:
        return 0 if self.base is None else self.base.count

    def present(self, docno: int) -> bool:
        base = self.base_count
        if docno < base:
            assert self.base is not None
            return bool(self.base.alive[docno])
        return self.rows[docno - base] is not None


class _FrozenRows:
    """The rows of a frozen view (frozen_columns), copied on write: the row list as it was
    (`rows`, only ever appended to, its first `count` entries the view's) and the rows a
    removal cleared since the freeze, as they were (`saved`, by row number). Nothing is copied
    under the writers' lock; thaw() reads them afterwards."""

    __slots__ = ("rows", "count", "saved", "__weakref__")

    def __init__(self, rows: list[tuple[object, ...] | None], count: int) -> None:
        self.rows = rows
        self.count = count
        self.saved: dict[int, tuple[object, ...] | None] = {}


class DocumentStore:
    def __init__(self) -> None:
        # Documents numbered from base.count on, as rows; the ones below it are in the base.
        self._s = _Stored(None, [])
        self._kinds: list[tuple[str, tuple[str, ...], int]] = []
        self._kind_of: dict[tuple[str, tuple[str, ...], int], int] = {}
        self._recent: OrderedDict[int, Document] = OrderedDict()
        # Taken by every change to the store and by a fold's swap.
        self._lock = threading.Lock()
        # Document numbers removed, for the fold of a frozen view: entry i is removal number
        # _log_start + i.
        self._removed: list[int] = []
        self._log_start = 0
        self.folds = 0
        # Frozen views whose rows are not read yet (see _FrozenRows): a removal keeps the row
        # it clears for them. Weak: a view given up (a failed snapshot) stops costing anything.
        self._views: weakref.WeakSet[_FrozenRows] = weakref.WeakSet()

    def __len__(self) -> int:
        s = self._s
        return s.base_count + len(s.rows)

    def append(self, doc: Document | None) -> None:
        row = None if doc is None else self._encode(doc)
        with self._lock:
            self._s.rows.append(row)

    @property
    def kinds(self) -> list[tuple[str, tuple[str, ...], int]]:
        """The label kinds (name, synonyms, class number) label_kinds() numbers: only ever
        appended to."""
        return self._kinds

    def label_kinds(self, labels: list[Label]) -> npt.NDArray[np.int64] | None:
        """The kind number of each of `labels` (new kinds added to the table), or None when
        the table would grow past what a kind number holds (see _encode)."""
        kind_of = self._kind_of
        try:  # the common case: every kind known, synonyms a tuple
            return np.asarray(
                [kind_of[(lb.name, lb.synonyms, lb.class_index)] for lb in labels], np.int64
            )
        except (KeyError, TypeError):
            pass
        kinds = []
        for label in labels:
            key = (label.name, tuple(label.synonyms), label.class_index)
            kind = kind_of.get(key)
            if kind is None:
                if len(self._kinds) >= _MAX_KINDS:
                    return None
                kind = kind_of[key] = len(self._kinds)
                self._kinds.append(key)
            kinds.append(kind)
        return np.asarray(kinds, np.int64)

    def extend(
        self,
        docs: Sequence[Document],
        kinds: npt.NDArray[np.int64],
        probabilities: npt.NDArray[np.float64],
    ) -> None:
        """append() each of `docs`, their labels given as the kind numbers (label_kinds) and
        probabilities of all their labels in order: packed for the batch at once, the same
        bytes as _encode's."""
        packed_kinds = kinds.astype("<u2").tobytes()
        packed_probs = probabilities.astype("<f8").tobytes()
        ends = np.cumsum([len(doc.labels) for doc in docs]).tolist()
        start = 0
        new = []
        for doc, end in zip(docs, ends, strict=True):
            new.append(
                (
                    *_plain(doc),
                    packed_kinds[2 * start : 2 * end],
                    packed_probs[8 * start : 8 * end],
                )
            )
            start = end
        with self._lock:
            self._s.rows.extend(new)

    def _present(self, docno: int) -> bool:
        return self._s.present(docno)

    def __getitem__(self, docno: int) -> Document | None:
        found = self._recent.pop(docno, None)  # not get + move_to_end: searches run at once
        if found is not None:
            self._recent[docno] = found
            return found
        s = self._s
        if not s.present(docno):
            return None
        doc = self._read(s, docno)
        self._recent[docno] = doc
        if len(self._recent) > _RECENT:
            self._recent.popitem(last=False)
        return doc

    def __setitem__(self, docno: int, doc: None) -> None:
        """Only removal: a document number is never reused for another document."""
        if doc is not None:
            raise ValueError("a stored document can only be removed")
        with self._lock:
            s = self._s
            base = s.base_count
            if docno < base:
                assert s.base is not None
                s.base.alive[docno] = False
            else:
                at = docno - base
                for view in self._views:  # copy on write: the row as a frozen view holds it
                    if view.rows is s.rows and at < view.count and at not in view.saved:
                        view.saved[at] = s.rows[at]
                s.rows[at] = None
            self._removed.append(docno)
            if len(self._removed) > _LOG_LIMIT:  # no fold for a long while: forget them
                self._log_start += len(self._removed)
                self._removed = []
        self._recent.pop(docno, None)

    def __iter__(self) -> Iterator[Document | None]:
        for docno in range(len(self)):
            yield self[docno] if self._present(docno) else None

    def light(self, docno: int, min_probability: float) -> Document:
        """The document with only its labels at or above `min_probability` (cheap to rebuild:
        for explaining a page of hits, where weaker labels can have matched nothing)."""
        full = self._recent.get(docno)
        if full is not None:
            return full
        s = self._s
        if not s.present(docno):
            raise KeyError(docno)
        return self._read(s, docno, min_probability)

    def field(self, docno: int, name: str) -> object:
        """One plain field of a stored document, without rebuilding it."""
        s = self._s
        if not s.present(docno):
            raise KeyError(docno)
        base = s.base_count
        if docno < base:
            assert s.base is not None
            return s.base.field(docno, name)
        row = s.rows[docno - base]
        assert row is not None
        return row[_PLAIN.index(name)]

    def _read(self, s: _Stored, docno: int, min_probability: float = -1.0) -> Document:
        base = s.base_count
        if docno < base:
            assert s.base is not None
            return s.base.document(docno, self._kinds, min_probability)
        row = s.rows[docno - base]
        assert row is not None
        return self._decode(row, min_probability)

    @property
    def mapped_count(self) -> int:
        """How many documents are read from columns mapped from a snapshot file."""
        base = self._s.base
        return base.count if base is not None and base.mapped else 0

    # ---- columns (the snapshot's form) ------------------------------------------------------

    def frozen_columns(self) -> dict[str, Callable[[], Any]]:
        """The documents as of now, as columns made when first asked for (cheap to take under
        the writers' lock, whatever the number of rows: the base's alive flags are copied, the
        rows are not: rows are never changed in place but by removal, which copies the row it
        clears for the view, see _FrozenRows); one callable per column, for a snapshot's
        sections (the base's columns as parts: written as they are, never joined). Once a
        snapshot holding them is in place, the store folds onto that file (see the module
        docstring)."""
        with self._lock:
            s = self._s
            base = s.base
            base_alive = None if base is None else base.alive.copy()
            view = _FrozenRows(s.rows, len(s.rows))
            self._views.add(view)
            removed_at = self._log_start + len(self._removed)
        kinds = list(self._kinds)
        count = len(base_alive if base_alive is not None else ()) + view.count
        built: dict[str, Any] = {}

        def column(name: str) -> Any:
            if not built:
                rows = self._thaw(view)
                built.update(_columns(base, base_alive, rows, kinds))
                _release(rows)
            return built[name]

        def written(path: Path, name: str) -> None:
            prefix = name[: -len("alive")]
            self._fold(path, prefix, count, removed_at)

        out: dict[str, Callable[[], Any]] = {
            name: functools.partial(column, name) for name in COLUMNS
        }
        if FOLD_AFTER_SNAPSHOT:
            out["alive"] = Deferred(out["alive"], written)
        return out

    def _thaw(self, view: _FrozenRows) -> list[tuple[object, ...] | None]:
        """The rows of a frozen view as they were at the freeze: read a slice at a time under
        the store's lock (a write waits for one slice at most), then the rows removals cleared
        since put back. The view stops collecting removals."""
        rows: list[tuple[object, ...] | None] = []
        pace = Pacer()
        for start in range(0, view.count, _PACED_ROWS):
            with self._lock:
                rows += view.rows[start : min(start + _PACED_ROWS, view.count)]
            pace()
        with self._lock:
            self._views.discard(view)
            saved = view.saved
            # The view lets go of the row list: kept, it outlived the fold (which frees the
            # rows it folds a slice at a time) and freed them all at once when the snapshot
            # ended (a million rows at an index's first snapshot: the interpreter lock held
            # 450 ms at 1M documents).
            view.rows, view.saved = [], {}
        for at, row in saved.items():
            rows[at] = row
        return rows

    def _fold(self, path: Path, prefix: str, count: int, removed_at: int) -> None:
        """Documents [0, count), frozen when the removal log was at `removed_at`, read from
        now on from the columns of the snapshot at `path` (sections `prefix` + column)."""
        mapped = map_sections(path, [prefix + c for c in (*_FOLDED, "alive", "odd_labels")])
        columns = {c: mapped[prefix + c] for c in (*_FOLDED, "alive", "odd_labels")}
        if len(columns["alive"]) != count:
            raise ValueError(f"{path} holds {len(columns['alive'])} documents, not {count}")
        folded = _Columns(columns)
        # The rows the fold lets go of, sliced before taking the lock (a million at the first
        # fold, 8-13 ms): a write waits on that lock holding the index's.
        before = self._s
        before_rows = before.rows[: max(0, count - before.base_count)]
        with self._lock:
            s = self._s
            if count < s.base_count or count > s.base_count + len(s.rows):
                return  # not a view of this store as it is now (nothing to fold)
            at = removed_at - self._log_start
            if at >= 0:
                late = [d for d in self._removed[at:] if d < count]
                folded.alive[late] = False
                self._log_start = removed_at
                self._removed = self._removed[at:]
            else:  # the log was cut meanwhile: take alive from the store as it is
                folded.alive[:] = [s.present(d) for d in range(count)]
            folded_rows = before_rows if s is before else s.rows[: count - s.base_count]
            self._s = _Stored(folded, s.rows[count - s.base_count :])
            self.folds += 1
        del s, before, before_rows  # the rows' other holders: freed below, not all at once
        _release(folded_rows)  # a slice at a time: ten million objects at 1M documents

    def columns(self) -> dict[str, Any]:
        return {name: _whole(make()) for name, make in self.frozen_columns().items()}

    @classmethod
    def from_columns(cls, columns: dict[str, Any]) -> DocumentStore:
        store = cls()
        store._kinds = [(n, tuple(s), int(c)) for n, s, c in columns["kinds"]]
        store._kind_of = {k: i for i, k in enumerate(store._kinds)}
        store._s = _Stored(_Columns(columns), [])
        return store

    def image_ids(self) -> list[str]:
        """Every document's image id, removed ones too (for the id map at load)."""
        s = self._s
        ids = [] if s.base is None else s.base.strings("image_id")
        return ids + [str(r[0]) if r is not None else "" for r in s.rows]

    def label_counts(self, min_probability: float) -> dict[str, int]:
        """Label name -> live documents holding it at `min_probability` or above (each label
        counted, as the engine counts them)."""
        counts: dict[str, int] = {}
        s = self._s
        if s.base is not None:
            for k, c in s.base.kind_counts(min_probability).items():
                name = self._kinds[k][0]
                counts[name] = counts.get(name, 0) + c
            for docno in s.base.odd_labels:
                if s.base.alive[docno]:
                    for label in s.base.document(docno, self._kinds).labels:
                        if label.probability >= min_probability:
                            counts[label.name] = counts.get(label.name, 0) + 1
        for row in list(s.rows):
            doc = None if row is None else self._decode(row)
            for label in doc.labels if doc is not None else ():
                if label.probability >= min_probability:
                    counts[label.name] = counts.get(label.name, 0) + 1
        return counts

    def _encode(self, doc: Document) -> tuple[object, ...]:
        kind_of = self._kind_of
        labels = doc.labels
        try:  # the common case: every kind known, synonyms a tuple
            kinds = [kind_of[(lb.name, lb.synonyms, lb.class_index)] for lb in labels]
        except (KeyError, TypeError):
            kinds = []
            for label in labels:
                key = (label.name, tuple(label.synonyms), label.class_index)
                kind = kind_of.get(key)
                if kind is None:
                    if len(self._kinds) >= _MAX_KINDS:  # a table this large is not labels
                        return (*_plain(doc), labels, None)
                    kind = kind_of[key] = len(self._kinds)
                    self._kinds.append(key)
                kinds.append(kind)
        count = len(kinds)
        packed_kinds = struct.pack(f"<{count}H", *kinds)
        probs = struct.pack(f"<{count}d", *[lb.probability for lb in labels])
        return (*_plain(doc), packed_kinds, probs)

    def _decode(self, row: tuple[object, ...], min_probability: float = -1.0) -> Document:
        *plain, packed_kinds, probs = row
        values = dict(zip(_PLAIN, plain, strict=True))
        if probs is None:  # labels kept as they came (see _encode)
            labels = packed_kinds
        else:
            assert isinstance(packed_kinds, bytes) and isinstance(probs, bytes)
            count = len(packed_kinds) // 2
            kinds = self._kinds
            labels = tuple(
                _label(kinds[k], p)
                for k, p in zip(
                    struct.unpack(f"<{count}H", packed_kinds),
                    struct.unpack(f"<{count}d", probs),
                    strict=True,
                )
                if p >= min_probability
            )
        values["status"] = Status(cast(int, values["status"]))
        return Document(labels=labels, **values)  # type: ignore[arg-type]


_plain = operator.attrgetter(*_PLAIN)


def _label(kind: tuple[str, tuple[str, ...], int], probability: float) -> Label:
    """Label(name, probability, synonyms, class_index) of a kind, without the frozen
    dataclass's __init__ (four object.__setattr__ calls: a third of rebuilding a document)."""
    name, synonyms, class_index = kind
    if _LABEL_SLOTS:
        return Label(name, probability, synonyms, class_index)
    label = object.__new__(Label)
    label.__dict__.update(
        name=name, probability=probability, synonyms=synonyms, class_index=class_index
    )
    return label


class _Columns:
    """Documents read from columns (see the module docstring); `alive` is this store's own."""

    def __init__(self, columns: dict[str, Any]) -> None:
        self.count = int(len(_whole(columns["alive"])))
        self.alive = np.array(_whole(columns["alive"]), np.bool_)  # a copy: removal changes it
        # Blobs as uint8 arrays (maps of the file or over bytes), read through memoryviews.
        self._blobs = {
            name: _bytes_array(columns[f"{name}_blob"]) for name in (*_STRINGS, "extras")
        }
        self._views = {name: blob.data for name, blob in self._blobs.items()}
        self._offsets = {
            name: np.asarray(_whole(columns[f"{name}_offsets"]), np.int64) for name in self._blobs
        }
        self._numbers = {name: np.asarray(_whole(columns[name])) for name, _ in _NUMBERS}
        self.label_offsets = np.asarray(_whole(columns["label_offsets"]), np.int64)
        self.label_kinds = np.asarray(_whole(columns["label_kinds"]), np.uint16)
        self.label_probs = np.asarray(_whole(columns["label_probs"]), np.float64)
        # Documents whose labels are in their extras (more kinds than a table holds).
        self.odd_labels = [int(d) for d in _whole(columns["odd_labels"])]
        arrays = [
            *self._blobs.values(),
            *self._offsets.values(),
            *self._numbers.values(),
            self.label_offsets,
            self.label_kinds,
            self.label_probs,
        ]
        mappings = {id(m): m for m in map(mapping_of, arrays) if m is not None}
        self.mapped = bool(mappings)
        for mapping in mappings.values():
            mapping.madvise(MAP_ADVICE)

    def string(self, name: str, docno: int) -> str:
        offsets = self._offsets[name]
        return str(self._views[name][int(offsets[docno]) : int(offsets[docno + 1]) - 1], "utf-8")

    def strings(self, name: str) -> list[str]:
        text = str(self._views[name], "utf-8")
        if text.count("\0") == self.count:  # no NUL inside an item: split in one go
            return text.split("\0")[: self.count]
        return [self.string(name, d) for d in range(self.count)]

    def field(self, docno: int, name: str) -> object:
        if name in self._blobs:
            return self.string(name, docno)
        if name in self._numbers:
            value = self._numbers[name][docno].item()
            return Status(value) if name == "status" else value
        return getattr(self.document(docno, []), name)

    def document(
        self,
        docno: int,
        kinds: list[tuple[str, tuple[str, ...], int]],
        min_probability: float = -1.0,
    ) -> Document:
        values: dict[str, Any] = {name: self.string(name, docno) for name in _STRINGS}
        for name, _ in _NUMBERS:
            values[name] = self._numbers[name][docno].item()
        values["status"] = Status(values["status"])
        extras = self.string("extras", docno)
        labels: tuple[Label, ...] = ()
        if extras:
            data = json.loads(extras)
            values["tags"] = tuple(data.get("tg", ()))
            values["colours"] = tuple((n, float(v)) for n, v in data.get("co", ()))
            if "lb" in data:
                labels = tuple(
                    Label(n, p, tuple(syn), c)
                    for n, p, syn, c in data["lb"]
                    if p >= min_probability
                )
        start, stop = int(self.label_offsets[docno]), int(self.label_offsets[docno + 1])
        if stop > start:
            labels = tuple(
                _label(kinds[k], p)
                for k, p in zip(
                    self.label_kinds[start:stop].tolist(),
                    self.label_probs[start:stop].tolist(),
                    strict=True,
                )
                if p >= min_probability
            )
        return Document(labels=labels, **values)

    def kind_counts(self, min_probability: float) -> dict[int, int]:
        doc = np.repeat(np.arange(self.count), np.diff(self.label_offsets))
        keep = self.alive[doc] & (self.label_probs >= min_probability)
        counts = np.bincount(self.label_kinds[keep].astype(np.int64))
        found = np.flatnonzero(counts)
        return dict(zip(found.tolist(), counts[found].tolist(), strict=True))

    def take(self, alive: npt.NDArray[np.bool_]) -> dict[str, Any]:
        """These columns as written (with `alive` as of the frozen view): the arrays
        themselves (maps of the file for a mapped base), never copied."""
        out: dict[str, Any] = {}
        for name, blob in self._blobs.items():
            out[f"{name}_blob"] = blob
            out[f"{name}_offsets"] = self._offsets[name]
        out.update(self._numbers)
        out.update(
            label_offsets=self.label_offsets,
            label_kinds=self.label_kinds,
            label_probs=self.label_probs,
            alive=alive,
            odd_labels=np.asarray(self.odd_labels, np.int64),
        )
        return out


def _release(rows: list[Any]) -> None:
    """Empty `rows` a slice at a time with a chance for other threads between (Pacer):
    letting go of a million rows at once frees ten million objects holding the GIL for
    half a second."""
    pace = Pacer()
    while rows:
        del rows[-_PACED_ROWS:]
        pace()


def _whole(value: Any) -> Any:
    """A column given as parts (ArrayParts, BytesParts: a frozen view's) as one value."""
    if isinstance(value, ArrayParts):
        return value.to_array()
    if isinstance(value, BytesParts):
        return value.to_bytes()
    return value


def _bytes_array(value: Any) -> npt.NDArray[np.uint8]:
    """A blob (bytes, parts, or a uint8 array such as a map of a snapshot) as a uint8 array,
    without a copy where it is one already."""
    value = _whole(value)
    if isinstance(value, np.ndarray):
        return value.view(np.uint8).reshape(-1)
    return np.frombuffer(bytes(value), np.uint8)


def _parts(old: Any, new: npt.NDArray[Any], dtype: Any) -> ArrayParts:
    """Column `old` (a base's array, kept as it is) followed by `new`, as one section."""
    old = np.asarray(old)
    if old.dtype != np.dtype(dtype):
        old = old.astype(dtype)
    return ArrayParts([old, np.asarray(new, dtype)], dtype, ())


def _join(items: list[str]) -> tuple[BytesParts, npt.NDArray[np.int64]]:
    """Strings as one NUL-separated utf-8 blob (as pieces, _PACED_ROWS strings each: no
    joined copy, whose C call held the interpreter lock 0.5 ms a MB) and each one's offset
    (item i is blob[offsets[i]:offsets[i + 1] - 1])."""
    encoded = _paced(lambda part: [s.encode() + b"\0" for s in part], items)
    offsets = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum(
        _array(_paced(lambda part: [len(e) for e in part], encoded), np.int64), out=offsets[1:]
    )
    pieces = _joined_pieces(encoded)
    _release(encoded)  # a million bytes objects at an index's first snapshot: freed paced
    return BytesParts(pieces), offsets


# Rows (or values) turned into columns between two chances for other threads to run (Pacer):
# one call over a million holds the interpreter lock for tens of milliseconds, and searches
# run alongside.
_PACED_ROWS = 4096


def _array(values: list[Any], dtype: Any) -> npt.NDArray[Any]:
    """np.asarray(values, dtype), converted _PACED_ROWS values at a time with a chance for
    other threads between (Pacer)."""
    if len(values) <= _PACED_ROWS:
        return np.asarray(values, dtype)
    out = np.empty(len(values), dtype)
    pace = Pacer()
    for start in range(0, len(values), _PACED_ROWS):
        out[start : start + _PACED_ROWS] = values[start : start + _PACED_ROWS]
        pace()
    return out


def _paced(make: Callable[[list[Any]], list[Any]], items: list[Any]) -> list[Any]:
    """make(items), _PACED_ROWS items at a time with a chance for other threads between
    (Pacer): one list comprehension over a million rows keeps a search that wants the
    interpreter lock back waiting a switch interval (5 ms) each time, for its whole length."""
    out: list[Any] = []
    pace = Pacer()
    for start in range(0, len(items), _PACED_ROWS):
        out += make(items[start : start + _PACED_ROWS])
        pace()
    return out


def _field_or_zero(at: int, rows: list[tuple[object, ...] | None]) -> list[object]:
    return [r[at] if r is not None else 0 for r in rows]


def _strings(rows: list[tuple[object, ...] | None], at: int) -> list[str]:
    """Field `at` of each row as a string ("" for a removed row), paced."""
    return _paced(lambda part: [str(r[at]) if r is not None else "" for r in part], rows)


def _joined_pieces(parts: list[bytes]) -> list[bytes]:
    """b"".join(parts) as pieces, each the join of _PACED_ROWS parts, paced."""
    out = []
    pace = Pacer()
    for start in range(0, len(parts), _PACED_ROWS):
        out.append(b"".join(parts[start : start + _PACED_ROWS]))
        pace()
    return out


def _joined(parts: list[bytes]) -> bytearray:
    """b"".join(parts), _PACED_ROWS parts at a time, paced."""
    out = bytearray()
    pace = Pacer()
    for start in range(0, len(parts), _PACED_ROWS):
        out += b"".join(parts[start : start + _PACED_ROWS])
        pace()
    return out


def _columns(
    base: _Columns | None,
    base_alive: npt.NDArray[np.bool_] | None,
    rows: list[tuple[object, ...] | None],
    kinds: list[tuple[str, tuple[str, ...], int]],
) -> dict[str, Any]:
    """Columns of a base (as of base_alive) followed by rows."""
    plain_at = {name: i for i, name in enumerate(_PLAIN)}
    n = len(rows)
    new: dict[str, Any] = {}
    for name in _STRINGS:
        at = plain_at[name]
        new[name] = _strings(rows, at)
    extras = []
    odd = []
    label_counts = []
    label_kinds: list[bytes] = []  # "<u2" and "<f8" per document, joined once below
    label_probs: list[bytes] = []
    tags_at, colours_at = plain_at["tags"], plain_at["colours"]
    pace = Pacer()
    for docno, row in enumerate(rows):
        if not docno % _PACED_ROWS:
            pace()
        if row is None:
            extras.append("")
            label_counts.append(0)
            continue
        data: dict[str, Any] = {}
        if row[tags_at]:
            data["tg"] = list(cast(tuple[str, ...], row[tags_at]))
        if row[colours_at]:
            data["co"] = [list(c) for c in cast(tuple[Any, ...], row[colours_at])]
        packed, probs = row[-2], row[-1]
        if probs is None:  # labels kept as they came
            odd.append(docno)
            data["lb"] = [
                [lb.name, lb.probability, list(lb.synonyms), lb.class_index]
                for lb in cast(tuple[Label, ...], packed)
            ]
            label_counts.append(0)
        else:
            assert isinstance(packed, bytes) and isinstance(probs, bytes)
            label_kinds.append(packed)
            label_probs.append(probs)
            label_counts.append(len(packed) // 2)
        extras.append(json.dumps(data, separators=(",", ":"), ensure_ascii=False) if data else "")
    new["extras"] = extras
    out: dict[str, Any] = {}
    base_count = 0 if base is None else base.count
    old = None if base is None else base.take(base_alive)  # type: ignore[arg-type]
    for name in (*_STRINGS, "extras"):
        blob, offsets = _join(new[name])
        _release(new[name])  # the extras' texts are this call's own: freed paced
        if old is not None:
            old_offsets = old[f"{name}_offsets"]
            out[f"{name}_blob"] = BytesParts([old[f"{name}_blob"], *blob.parts])
            out[f"{name}_offsets"] = _parts(
                old_offsets[:-1], offsets + int(old_offsets[-1]), np.int64
            )
        else:
            out[f"{name}_blob"] = blob
            out[f"{name}_offsets"] = offsets
    for name, dtype in _NUMBERS:
        at = plain_at[name]
        values = _array(_paced(functools.partial(_field_or_zero, at), rows), dtype)
        out[name] = values if old is None else _parts(old[name], values, dtype)
    label_offsets = np.zeros(n + 1, np.int64)
    np.cumsum(_array(label_counts, np.int64), out=label_offsets[1:])
    kinds_arr = np.frombuffer(_joined(label_kinds), np.dtype("<u2")).astype(np.uint16, copy=False)
    probs_arr = np.frombuffer(_joined(label_probs), np.dtype("<f8")).astype(np.float64, copy=False)
    alive = _array(_paced(lambda part: [r is not None for r in part], rows), np.bool_)
    odd_arr = np.asarray(odd, np.int64) + base_count
    offsets_out: Any = label_offsets
    kinds_out: Any = kinds_arr
    probs_out: Any = probs_arr
    if old is not None:
        offsets_out = _parts(
            old["label_offsets"][:-1], label_offsets + int(old["label_offsets"][-1]), np.int64
        )
        kinds_out = _parts(old["label_kinds"], kinds_arr, np.uint16)
        probs_out = _parts(old["label_probs"], probs_arr, np.float64)
        alive = np.concatenate([old["alive"], alive])
        odd_arr = np.concatenate([old["odd_labels"], odd_arr])
    out.update(
        label_offsets=offsets_out,
        label_kinds=kinds_out,
        label_probs=probs_out,
        alive=alive,
        odd_labels=odd_arr,
        kinds=[[name, list(syn), c] for name, syn, c in kinds],
    )
    return out
