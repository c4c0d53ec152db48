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
"""

from __future__ import annotations

import functools
import json
import operator
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from search_service.document import Document, Label, Status
from search_service.snapshot import Pacer

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


class DocumentStore:
    def __init__(self) -> None:
        # Documents numbered from len(base) on, as rows; the ones below it are in the base.
        self._rows: list[tuple[object, ...] | None] = []
        self._base: _Columns | None = None
        self._kinds: list[tuple[str, tuple[str, ...], int]] = []
        self._kind_of: dict[tuple[str, tuple[str, ...], int], int] = {}
        self._recent: OrderedDict[int, Document] = OrderedDict()

    def __len__(self) -> int:
        return self._base_count + len(self._rows)

    @property
    def _base_count(self) -> int:
        return 0 if self._base is None else self._base.count

    def append(self, doc: Document | None) -> None:
        self._rows.append(None if doc is None else self._encode(doc))

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
        rows = self._rows
        for doc, end in zip(docs, ends, strict=True):
            rows.append(
                (
                    *_plain(doc),
                    packed_kinds[2 * start : 2 * end],
                    packed_probs[8 * start : 8 * end],
                )
            )
            start = end

    def _present(self, docno: int) -> bool:
        base = self._base_count
        if docno < base:
            assert self._base is not None
            return bool(self._base.alive[docno])
        return self._rows[docno - base] is not None

    def __getitem__(self, docno: int) -> Document | None:
        found = self._recent.get(docno)
        if found is not None:
            self._recent.move_to_end(docno)
            return found
        if not self._present(docno):
            return None
        doc = self._read(docno)
        self._recent[docno] = doc
        if len(self._recent) > _RECENT:
            self._recent.popitem(last=False)
        return doc

    def __setitem__(self, docno: int, doc: None) -> None:
        """Only removal: a document number is never reused for another document."""
        if doc is not None:
            raise ValueError("a stored document can only be removed")
        base = self._base_count
        if docno < base:
            assert self._base is not None
            self._base.alive[docno] = False
        else:
            self._rows[docno - base] = None
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
        if not self._present(docno):
            raise KeyError(docno)
        return self._read(docno, min_probability)

    def field(self, docno: int, name: str) -> object:
        """One plain field of a stored document, without rebuilding it."""
        if not self._present(docno):
            raise KeyError(docno)
        base = self._base_count
        if docno < base:
            assert self._base is not None
            return self._base.field(docno, name)
        row = self._rows[docno - base]
        assert row is not None
        return row[_PLAIN.index(name)]

    def _read(self, docno: int, min_probability: float = -1.0) -> Document:
        base = self._base_count
        if docno < base:
            assert self._base is not None
            return self._base.document(docno, self._kinds, min_probability)
        row = self._rows[docno - base]
        assert row is not None
        return self._decode(row, min_probability)

    # ---- columns (the snapshot's form) ------------------------------------------------------

    def frozen_columns(self) -> dict[str, Callable[[], Any]]:
        """The documents as of now, as columns made when first asked for (cheap to take under
        the writers' lock: rows are never changed in place, the base only by removal, and
        that is copied here); one callable per column, for a snapshot's sections."""
        base = self._base
        base_alive = None if base is None else base.alive.copy()
        rows = list(self._rows)
        kinds = list(self._kinds)
        built: dict[str, Any] = {}

        def column(name: str) -> Any:
            if not built:
                built.update(_columns(base, base_alive, rows, kinds))
            return built[name]

        return {name: functools.partial(column, name) for name in COLUMNS}

    def columns(self) -> dict[str, Any]:
        return {name: make() for name, make in self.frozen_columns().items()}

    @classmethod
    def from_columns(cls, columns: dict[str, Any]) -> DocumentStore:
        store = cls()
        store._kinds = [(n, tuple(s), int(c)) for n, s, c in columns["kinds"]]
        store._kind_of = {k: i for i, k in enumerate(store._kinds)}
        store._base = _Columns(columns)
        return store

    def image_ids(self) -> list[str]:
        """Every document's image id, removed ones too (for the id map at load)."""
        ids = [] if self._base is None else self._base.strings("image_id")
        return ids + [str(r[0]) if r is not None else "" for r in self._rows]

    def label_counts(self, min_probability: float) -> dict[str, int]:
        """Label name -> live documents holding it at `min_probability` or above (each label
        counted, as the engine counts them)."""
        counts: dict[str, int] = {}
        if self._base is not None:
            for k, c in self._base.kind_counts(min_probability).items():
                name = self._kinds[k][0]
                counts[name] = counts.get(name, 0) + c
            for docno in self._base.odd_labels:
                if self._base.alive[docno]:
                    for label in self._base.document(docno, self._kinds).labels:
                        if label.probability >= min_probability:
                            counts[label.name] = counts.get(label.name, 0) + 1
        base = self._base_count
        for docno in range(base, len(self)):
            doc = self[docno]
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
        self.count = int(len(columns["alive"]))
        self.alive = np.array(columns["alive"], np.bool_)  # a copy: removal changes it
        self._blobs = {name: bytes(columns[f"{name}_blob"]) for name in (*_STRINGS, "extras")}
        self._offsets = {
            name: np.asarray(columns[f"{name}_offsets"], np.int64) for name in self._blobs
        }
        self._numbers = {name: np.asarray(columns[name]) for name, _ in _NUMBERS}
        self.label_offsets = np.asarray(columns["label_offsets"], np.int64)
        self.label_kinds = np.asarray(columns["label_kinds"], np.uint16)
        self.label_probs = np.asarray(columns["label_probs"], np.float64)
        # Documents whose labels are in their extras (more kinds than a table holds).
        self.odd_labels = [int(d) for d in columns["odd_labels"]]

    def string(self, name: str, docno: int) -> str:
        offsets = self._offsets[name]
        return self._blobs[name][int(offsets[docno]) : int(offsets[docno + 1]) - 1].decode()

    def strings(self, name: str) -> list[str]:
        blob = self._blobs[name]
        if blob.count(b"\0") == self.count:  # no NUL inside an item: split in one go
            return blob.decode().split("\0")[: self.count]
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
        """These columns as written (with `alive` as of the frozen view)."""
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


def _join(items: list[str]) -> tuple[bytes, npt.NDArray[np.int64]]:
    """Strings as one NUL-separated utf-8 blob and each one's offset (item i is
    blob[offsets[i]:offsets[i + 1] - 1])."""
    encoded = [s.encode() + b"\0" for s in items]
    offsets = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum(_array([len(e) for e in encoded], np.int64), out=offsets[1:])
    return bytes(_joined(encoded)), offsets


# Python objects converted or joined per call while columns are made for a snapshot: one call
# over a million holds the GIL for tens of milliseconds, and searches run alongside.
_CHUNK = 32_768
# Rows turned into columns between two chances for other threads to run (Pacer).
_PACED_ROWS = 4096


def _array(values: list[Any], dtype: Any) -> npt.NDArray[Any]:
    """np.asarray(values, dtype), converted _CHUNK values at a time."""
    if len(values) <= _CHUNK:
        return np.asarray(values, dtype)
    out = np.empty(len(values), dtype)
    for start in range(0, len(values), _CHUNK):
        out[start : start + _CHUNK] = values[start : start + _CHUNK]
    return out


def _strings(rows: list[tuple[object, ...] | None], at: int) -> list[str]:
    """Field `at` of each row as a string ("" for a removed row), _PACED_ROWS at a time with a
    chance for other threads between (Pacer)."""
    out: list[str] = []
    pace = Pacer()
    for start in range(0, len(rows), _PACED_ROWS):
        out += [str(r[at]) if r is not None else "" for r in rows[start : start + _PACED_ROWS]]
        pace()
    return out


def _joined(parts: list[bytes]) -> bytearray:
    """b"".join(parts), _CHUNK parts at a time."""
    out = bytearray()
    for start in range(0, len(parts), _CHUNK):
        out += b"".join(parts[start : start + _CHUNK])
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
        if old is not None:
            blob = old[f"{name}_blob"] + blob
            offsets = np.concatenate(
                [old[f"{name}_offsets"][:-1], offsets + old[f"{name}_offsets"][-1]]
            )
        out[f"{name}_blob"] = blob
        out[f"{name}_offsets"] = offsets
    for name, dtype in _NUMBERS:
        at = plain_at[name]
        values = _array([r[at] if r is not None else 0 for r in rows], dtype)
        out[name] = values if old is None else np.concatenate([old[name], values])
    label_offsets = np.zeros(n + 1, np.int64)
    np.cumsum(_array(label_counts, np.int64), out=label_offsets[1:])
    kinds_arr = np.frombuffer(_joined(label_kinds), np.dtype("<u2")).astype(np.uint16, copy=False)
    probs_arr = np.frombuffer(_joined(label_probs), np.dtype("<f8")).astype(np.float64, copy=False)
    alive = _array([r is not None for r in rows], np.bool_)
    odd_arr = np.asarray(odd, np.int64) + base_count
    if old is not None:
        label_offsets = np.concatenate(
            [old["label_offsets"][:-1], label_offsets + old["label_offsets"][-1]]
        )
        kinds_arr = np.concatenate([old["label_kinds"], kinds_arr])
        probs_arr = np.concatenate([old["label_probs"], probs_arr])
        alive = np.concatenate([old["alive"], alive])
        odd_arr = np.concatenate([old["odd_labels"], odd_arr])
    out.update(
        label_offsets=label_offsets,
        label_kinds=kinds_arr,
        label_probs=probs_arr,
        alive=alive,
        odd_labels=odd_arr,
        kinds=[[name, list(syn), c] for name, syn, c in kinds],
    )
    return out
