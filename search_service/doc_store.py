"""The index's documents, kept compactly: a list indexed by document number that reads like a
list of Documents (None for a removed one).

A Document with its 20 Label objects costs about 4 KB of Python objects; here each document is
one tuple of its plain fields, and its labels are two small byte strings: label kinds (an
interned (name, synonyms, class number) table shared by every document, uint16 each) and
probabilities (float64, so they come back exactly). About 0.7 KB per document with its
strings. A Document is rebuilt when read (about 25 us for 20 labels) and the most recently
read ones are kept, so the documents of a results page are rebuilt once, not per query.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import fields
from typing import cast

from search_service.document import Document, Label, Status

# Fields kept in the per-document tuple: every Document field but labels and the vector
# (the vector index keeps vectors).
_PLAIN = tuple(f.name for f in fields(Document) if f.name not in ("labels", "feature_vector"))
_RECENT = 4096
_LABEL_SLOTS = hasattr(Label, "__slots__")
_MAX_KINDS = 65_535


class DocumentStore:
    def __init__(self) -> None:
        self._rows: list[tuple[object, ...] | None] = []
        self._kinds: list[tuple[str, tuple[str, ...], int]] = []
        self._kind_of: dict[tuple[str, tuple[str, ...], int], int] = {}
        self._recent: OrderedDict[int, Document] = OrderedDict()

    def __len__(self) -> int:
        return len(self._rows)

    def append(self, doc: Document | None) -> None:
        self._rows.append(None if doc is None else self._encode(doc))

    def __getitem__(self, docno: int) -> Document | None:
        found = self._recent.get(docno)
        if found is not None:
            self._recent.move_to_end(docno)
            return found
        row = self._rows[docno]
        if row is None:
            return None
        doc = self._decode(row)
        self._recent[docno] = doc
        if len(self._recent) > _RECENT:
            self._recent.popitem(last=False)
        return doc

    def __setitem__(self, docno: int, doc: None) -> None:
        """Only removal: a document number is never reused for another document."""
        if doc is not None:
            raise ValueError("a stored document can only be removed")
        self._rows[docno] = None
        self._recent.pop(docno, None)

    def __iter__(self) -> Iterator[Document | None]:
        for docno in range(len(self._rows)):
            yield self[docno] if self._rows[docno] is not None else None

    def light(self, docno: int, min_probability: float) -> Document:
        """The document with only its labels at or above `min_probability` (cheap to rebuild:
        for explaining a page of hits, where weaker labels can have matched nothing)."""
        full = self._recent.get(docno)
        if full is not None:
            return full
        row = self._rows[docno]
        if row is None:
            raise KeyError(docno)
        return self._decode(row, min_probability)

    def field(self, docno: int, name: str) -> object:
        """One plain field of a stored document, without rebuilding it."""
        row = self._rows[docno]
        if row is None:
            raise KeyError(docno)
        return row[_PLAIN.index(name)]

    def snapshot_rows(self) -> list[tuple[object, ...] | None]:
        """The encoded rows as they are now (a shallow copy: rows are never changed in place),
        for a snapshot to turn into documents later with `decode_row`."""
        return list(self._rows)

    def decode_row(self, row: tuple[object, ...]) -> Document:
        return self._decode(row)

    def _encode(self, doc: Document) -> tuple[object, ...]:
        kinds = []
        for label in doc.labels:
            key = (label.name, tuple(label.synonyms), label.class_index)
            kind = self._kind_of.get(key)
            if kind is None:
                if len(self._kinds) >= _MAX_KINDS:  # a table this large is not labels any more
                    return (*(getattr(doc, f) for f in _PLAIN), doc.labels, None)
                kind = self._kind_of[key] = len(self._kinds)
                self._kinds.append(key)
            kinds.append(kind)
        packed_kinds = struct.pack(f"<{len(kinds)}H", *kinds)
        probs = struct.pack(f"<{len(kinds)}d", *(lb.probability for lb in doc.labels))
        return (*(getattr(doc, f) for f in _PLAIN), packed_kinds, probs)

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
