"""Our inverted index: per-field posting lists, BM25 with per-field weights, AND/OR matching,
prefix completion and the explanations ("why did this match") the UI shows.

Documents are numbered by the caller in ascending order (an update is a removal plus an add
under a new number), so every posting list only ever appends. Removal does not touch posting
lists: the caller's `allowed` mask hides dead numbers, and statistics (field lengths, document
frequencies for suggestions) are corrected at once. The engine compacts when too many numbers
are dead.
"""

from __future__ import annotations

import array
import bisect
import calendar
import functools
import itertools
import math
import threading
import time
import weakref
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from search_service.concepts import ConceptHierarchy, load_hierarchy
from search_service.document import Document, Label
from search_service.growable import GrowableArray
from search_service.postings import (
    WEIGHT_LEVELS,
    EncodedRuns,
    PostingList,
    append_encoded,
    encode_runs,
    quantise_weight,
)
from search_service.snapshot import BytesParts, Pacer
from search_service.tokenizer import Tokenizer, joined_ascii_words

# New fields go at the end (field numbers are stored in snapshots).
# concepts: hypernyms of the labels (concepts.py); taken: year and month the photo was taken;
# camera: EXIF make and model words; colours: the dominant colour names, weighted by share.
FIELDS = (
    "labels",
    "tags",
    "ocr_text",
    "filename",
    "owner",
    "concepts",
    "taken",
    "camera",
    "colours",
)
_PROBABILITY_FIELDS = ("labels", "concepts", "colours")
_MONTHS = tuple(calendar.month_name[1:])
MONTH_WORDS = frozenset(m.lower() for m in _MONTHS) | frozenset(
    m.lower() for m in calendar.month_abbr[1:]
)
_FIELD_NO = {name: i for i, name in enumerate(FIELDS)}
_LABELS, _TAGS, _OCR, _FILENAME, _OWNER, _CONCEPTS, _TAKEN, _CAMERA, _COLOURS = range(len(FIELDS))
_PHRASE_FIELDS = (_TAGS, _TAKEN, _CAMERA)
# Batch vocabulary entries (terms, texts, text values) kept before it is started afresh.
_VOCAB_LIMIT = 200_000
# Decoded posting lists kept ready (a hot term is decoded once, not per query).
_DECODED_CACHE_ENTRIES = 4096
# Documents whose concept weights are summed in one array (documents x concepts).
_CONCEPT_DOCS = 256
# Posting lists a snapshot reads between two chances for other threads to run (Pacer), and
# Python values it converts to an array or text at once.
_SNAPSHOT_LISTS = 512
_PACED_VALUES = 32_768
# Texts of a frozen suggestion table read by one C call (_read_frozen_surface): a slice's
# look-ups and inserts miss the cache at every text (~0.4 us each at 1M), about 1-2 ms.
_PACED_TEXTS = 4096


@dataclass(frozen=True)
class BM25Params:
    k1: float = 1.2
    # Per-field weight and length normalisation b. Labels carry no length (b=0): their
    # "term frequency" is the model's probability, scaled by label_tf_scale.
    weights: dict[str, float] = field(
        default_factory=lambda: {
            "labels": 3.0,
            "tags": 2.5,
            "filename": 2.0,
            "ocr_text": 1.0,
            "owner": 0.5,
            "concepts": 2.5,
            "taken": 2.0,
            "camera": 2.0,
            "colours": 1.5,
        }
    )
    b: dict[str, float] = field(
        default_factory=lambda: {
            "labels": 0.0,
            "tags": 0.5,
            "filename": 0.5,
            "ocr_text": 0.75,
            "owner": 0.0,
            "concepts": 0.0,
            "taken": 0.0,
            "camera": 0.0,
            "colours": 0.0,
        }
    )
    label_tf_scale: float = 3.0
    # Labels below this probability are noise for keyword search (the semantic side still
    # sees them): indexing them is how "search returns everything" starts.
    min_label_probability: float = 0.05
    # Index the labels' hypernyms ("insect" for ladybug) in the concepts field; off gives the
    # ranking before the hierarchy existed (the benchmark's "before").
    hierarchy: bool = True


@dataclass
class KeywordMatches:
    """Every allowed document that matched, unsorted, with its BM25 score."""

    docs: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float32]
    fell_back_to_or: bool
    # (field, term, document numbers, their share of the score) per posting list used,
    # kept so explaining a page of hits needs no second pass over the postings.
    parts: list[tuple[str, str, Any, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Reason:
    field: str
    term: str
    score: float


@dataclass
class Analysis:
    """A document broken into what the index stores."""

    # field -> stem -> quantised weight (1..255)
    weights: dict[str, dict[str, int]]
    lengths: dict[str, float]
    # surface word or label phrase -> fields it appears in (for suggestions)
    surface: dict[str, set[str]]


@dataclass
class PreparedAdd:
    """A batch of documents as add_many puts it into the index (InvertedIndex.prepare_add),
    made before the index lock is taken."""

    first: int
    count: int
    # The posting lists the batch appends to: (field, term), the list (None: new, made by
    # apply_add) and what to append to each (postings.encode_runs).
    keys: list[tuple[int, str]]
    plists: list[PostingList | None]
    encoded: EncodedRuns
    # Per field, each document's length.
    lengths: npt.NDArray[np.float64]
    # Suggestion texts: (text, documents holding it, [(field, documents holding it there)]).
    surface: list[tuple[str, int, list[tuple[str, int]]]]
    # The same for the documents the caller removes just before (surface_removals).
    taken_off: list[tuple[str, int, list[tuple[str, int]]]]


class _FrozenSurface:
    """The suggestion table of a frozen view (frozen_state), copied on write: the live table
    itself (`table`) and, for each text a write changed since the freeze, its entry as it was
    then (`saved`; None: the text was not in the table). Entries the freeze saw are never
    changed in place after it (the generation bump makes a write replace them by a copy), so
    the view is the live table with `saved` laid over it, and nothing is copied under the
    writers' lock; _read_frozen_surface reads it afterwards."""

    __slots__ = ("table", "saved", "__weakref__")

    def __init__(self, table: dict[str, list[Any]]) -> None:
        self.table = table
        self.saved: dict[str, list[Any] | None] = {}


class InvertedIndex:
    def __init__(self, params: BM25Params | None = None) -> None:
        self.params = params or BM25Params()
        # One tokenizer per thread (its stemmer is not thread-safe): searches share the index.
        self._tokenizers = threading.local()
        self.hierarchy: ConceptHierarchy | None = (
            load_hierarchy() if self.params.hierarchy else None
        )
        self._postings: dict[tuple[int, str], PostingList] = {}
        # The same lists in the order they were made (only ever appended to): a snapshot's
        # view is its length, taken in no time under the writers' lock.
        self._made: list[tuple[tuple[int, str], PostingList]] = []
        # The last snapshot view's sizes of the lists appended to since it was taken (see
        # PostingList.sizes); None once the snapshot has read them.
        self._held: dict[PostingList, tuple[int, int, int]] | None = None
        # The same for the per-field lengths: (documents in the view, docno -> lengths before
        # a removal zeroed them).
        self._held_lengths: tuple[int, dict[int, list[float]]] | None = None
        self._lengths = {f: GrowableArray(np.float32) for f in FIELDS}
        self._length_sums = dict.fromkeys(FIELDS, 0.0)
        self._live = 0
        # surface form -> [documents holding it, {field: documents}, generation]. Copy on
        # write: an entry made before the last frozen_state() is replaced by a copy before it
        # changes, so the shallow copy a snapshot took stays as it was.
        self._surface: dict[str, list[Any]] = {}
        self._surface_generation = 0
        self._sorted_surface: list[str] | None = None
        # Frozen views of the suggestion table not read yet (see _FrozenSurface): a write
        # saves a text's entry for each of them before it first changes it. A tuple replaced
        # whole under _surface_views_lock (a snapshot's reader drops its view without the
        # writers' lock: a writer reads the tuple once, never a set changing under it); weak,
        # so a view never read (its snapshot failed) goes with its state.
        self._surface_views: tuple[weakref.ref[_FrozenSurface], ...] = ()
        self._surface_views_lock = threading.Lock()
        # Label phrase -> (words, stems): label names repeat across images (1000 classes).
        self._concepts_cache: dict[int, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self._stem_concepts_cache: dict[str, list[tuple[int, str]]] = {}
        self._phrases: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self._decoded: OrderedDict[tuple[int, str], tuple[npt.NDArray[np.int64], Any]] = (
            OrderedDict()
        )
        # Searches run side by side (the index's read lock is shared): the cache's look-up
        # and move, or insert and evict, go together.
        self._decoded_lock = threading.Lock()
        # The batch vocabulary (add_many): terms and suggestion texts numbered, label kinds,
        # colours and text values analysed, concepts' terms as flat tables.
        self._vocab: dict[tuple[int, str], int] = {}
        self._vocab_keys: list[tuple[int, str]] = []
        self._term_field: list[int] = []  # field of each term, also as an array:
        self._term_field_array = GrowableArray(np.int64)
        self._texts: dict[str, int] = {}
        self._text_list: list[str] = []
        self._kinds: list[tuple[int, list[int], list[int]]] = []
        self._kind_of: dict[tuple[str, tuple[str, ...], int], int] = {}
        self._colours: dict[str, tuple[list[int], list[int]]] = {}
        self._parts: dict[tuple[int, str], tuple[list[int], list[int]]] = {}
        self._words: dict[tuple[int, str], tuple[int, int]] = {}
        # Free-text fields: a word as the regex found it (before lower-casing) -> its number
        # in _tok_term (the word's term) and _tok_text (its suggestion text); NUL -> -1.
        self._tokens: dict[int, dict[str, int]] = {}
        self._tok_term = GrowableArray(np.int64)
        self._tok_text = GrowableArray(np.int64)
        # Phrase fields: a value -> the suggestion text of its words as a phrase (-1: one word).
        self._phrase_texts: dict[int, dict[str, int]] = {}
        # Term number -> its posting list (None: not looked up since the vocabulary began).
        self._plist_of_term: list[PostingList | None] = []
        # A caller's label kind number -> this index's (add_many's `labels`), for the
        # caller's table _outer_table.
        self._outer_table: object = None
        self._outer: list[int] = []
        self._outer_array = np.zeros(0, np.int64)
        self._concept_flat: tuple[Any, Any, Any, Any] | None = None
        self._kind_flat: tuple[Any, tuple[Any, Any], tuple[Any, Any]] | None = None

    # ---- analysis -------------------------------------------------------------------------

    def analyse(self, doc: Document) -> Analysis:
        tok = self._tokenizer
        weights: dict[str, dict[str, int]] = {}
        lengths: dict[str, float] = {}
        surface: dict[str, set[str]] = {}

        label_weight: dict[str, float] = {}
        for label in doc.labels:
            if label.probability < self.params.min_label_probability:
                continue
            for phrase in (label.name, *label.synonyms):
                words, stems = self._phrase(phrase)
                if not words:
                    continue
                surface.setdefault(" ".join(words), set()).add("labels")
                for word, stem in zip(words, stems, strict=True):
                    surface.setdefault(word, set()).add("labels")
                    label_weight[stem] = max(label_weight.get(stem, 0.0), label.probability)
        weights["labels"] = {s: quantise_weight(p, 1.0) for s, p in label_weight.items()}
        lengths["labels"] = float(len(label_weight))

        concept_weight: dict[str, float] = {}
        if self.hierarchy is not None:
            floor = self.params.min_label_probability
            for cid, w in self.hierarchy.weights(doc.labels).items():
                if w < floor:
                    continue
                concept_texts, concept_stems = self._concept_terms(cid)
                for text in concept_texts:
                    surface.setdefault(text, set()).add("concepts")
                for stem in concept_stems:
                    if w > concept_weight.get(stem, 0.0):
                        concept_weight[stem] = w
        weights["concepts"] = {s: quantise_weight(p, 1.0) for s, p in concept_weight.items()}
        lengths["concepts"] = float(len(concept_weight))

        colour_weight: dict[str, float] = {}
        for name, share in doc.colours:
            for word in tok.words(colour_words(name)):
                surface.setdefault(word, set()).add("colours")
                for stem in tok.stem([word]):
                    colour_weight[stem] = max(colour_weight.get(stem, 0.0), share)
        weights["colours"] = {s: quantise_weight(p, 1.0) for s, p in colour_weight.items()}
        lengths["colours"] = float(len(colour_weight))

        texts = {
            "tags": list(doc.tags),
            "ocr_text": [doc.ocr_text],
            "filename": [doc.filename.replace("\\", "/").rsplit("/", 1)[-1]],
            "owner": [doc.owner],
            "taken": [taken_words(doc.taken_at_unix_s)],
            "camera": [camera_words(doc.camera_make, doc.camera_model)],
        }
        for name, parts in texts.items():
            field_words = [w for part in parts for w in tok.words(part)]
            counts = Counter(tok.stem(field_words))
            weights[name] = {s: min(c, 255) for s, c in counts.items()}
            lengths[name] = float(len(field_words))
            for word in field_words:
                surface.setdefault(word, set()).add(name)
            if name in ("tags", "taken", "camera"):
                for part in parts:
                    phrase = " ".join(tok.words(part))
                    if " " in phrase:
                        surface.setdefault(phrase, set()).add(name)
        return Analysis(weights, lengths, surface)

    # ---- writes -----------------------------------------------------------------------------

    def add(self, docno: int, doc: Document) -> None:
        """Index `doc` under `docno`, which must be higher than every number added before."""
        self.add_many(docno, [doc])

    def add_many(
        self,
        first: int,
        docs: Sequence[Document],
        labels: tuple[Any, Sequence[tuple[str, tuple[str, ...], int]], Any] | None = None,
    ) -> None:
        """add() each of `docs` under first, first + 1, ...: the postings, lengths and
        suggestion counts analyse() gives, made a batch at a time (prepare_add, then
        apply_add). `labels`: the documents' labels as already numbered by the caller (kind
        numbers into an append-only table of (name, synonyms, class number), and
        probabilities, all labels in order)."""
        self.apply_add(self.prepare_add(first, docs, labels))

    def prepare_add(
        self,
        first: int,
        docs: Sequence[Document],
        labels: tuple[Any, Sequence[tuple[str, tuple[str, ...], int]], Any] | None = None,
        removing: Sequence[Analysis] = (),
    ) -> PreparedAdd:
        """What add_many(first, docs, labels) puts into the index, made without changing
        anything a search reads: a writer makes it before it takes the lock searches wait on
        and hands it to apply_add under that lock, so searches wait only for the appends.
        It changes the batch vocabulary (write side only), so no other write may run between
        the two but removals (apply_add refuses it once documents were added meanwhile).

        Label and concept terms come from tables per label kind and per concept (1000 classes,
        analysed once); free text (OCR, filenames, owners) is split by one regex over the
        batch's joined values and its words looked up in a table of the words seen before;
        other text fields from a cache of their values' analysis. Postings are grouped by term
        with radix sorts (no comparison sort of the batch) and varint-encoded per touched list
        with numpy. `removing`: the analyses of documents the caller removes just before
        apply_add with remove(counted=False): their suggestion counts are taken off there, a
        text at a time (surface_removals) rather than a document at a time."""
        if first != len(self._lengths["labels"]):
            raise ValueError(f"document numbers must be dense: got {first}")
        count = len(docs)
        if not count:
            return PreparedAdd(first, 0, [], [], ([], [], [], []), np.zeros((0, 0)), [], [])
        vocab_size = len(self._vocab) + len(self._parts) + len(self._words)
        vocab_size += sum(len(p) for p in self._phrase_texts.values())
        if vocab_size + len(self._tok_term) > _VOCAB_LIMIT:
            self._reset_vocab()
        floor = self.params.min_label_probability
        # Every label as (kind, probability), documents in order: a kind is a label's name,
        # synonyms and class number, analysed once (label names come from ~1000 classes).
        l_count = [len(doc.labels) for doc in docs]
        if labels is None:
            lk, lp = self._label_kinds(docs)
        else:
            outer, table, lp = labels
            lk = self._outer_kinds(table)[outer]
        # (document, term, weight) of the probability fields, reduced by max per pair below;
        # (document, term) of every word of the text fields, counted per pair below;
        # (document, text) of the suggestion table with the field. Within a term (a term
        # belongs to one field) every part lists documents in ascending order.
        p_parts: list[tuple[Any, Any, Any]] = []
        c_parts: list[tuple[Any, Any]] = []
        s_parts: list[tuple[Any, Any, int]] = []
        text_lengths = np.zeros((len(FIELDS), count), np.float64)
        colours = [(i, doc.colours) for i, doc in enumerate(docs) if doc.colours]
        if colours:
            cp_doc: list[int] = []
            cp_term: list[int] = []
            cp_weight: list[float] = []
            cs_doc: list[int] = []
            cs_text: list[int] = []
            for i, shares in colours:
                for name, share in shares:
                    terms, texts = self._colour(name)
                    cp_term += terms
                    cp_doc += [i] * len(terms)
                    cp_weight += [share] * len(terms)
                    cs_text += texts
                    cs_doc += [i] * len(texts)
            p_parts.append((_ints(cp_doc), _ints(cp_term), np.asarray(cp_weight, np.float64)))
            s_parts.append((_ints(cs_doc), _ints(cs_text), _COLOURS))
        # Text fields: a field's values, documents in order, with each value's document
        # (None: one value per document, empty where it has none).
        taken = [(i, doc.taken_at_unix_s) for i, doc in enumerate(docs) if doc.taken_at_unix_s > 0]
        cameras = [
            (i, camera_words(doc.camera_make, doc.camera_model))
            for i, doc in enumerate(docs)
            if doc.camera_make or doc.camera_model
        ]
        text_fields: list[tuple[int, list[str], Any]] = [
            (
                _TAGS,
                [tag for doc in docs for tag in doc.tags],
                np.repeat(np.arange(count), [len(doc.tags) for doc in docs]),
            ),
            (_OCR, [doc.ocr_text for doc in docs], None),
            (_FILENAME, [doc.filename for doc in docs], None),
            (_OWNER, [doc.owner for doc in docs], None),
            (_TAKEN, [taken_words(t) for _, t in taken], _ints([i for i, _ in taken])),
            (_CAMERA, [c for _, c in cameras], _ints([i for i, _ in cameras])),
        ]
        for fno, values, value_docs in text_fields:
            if not values:
                continue
            analysed = self._joined_words(fno, values, value_docs)
            if analysed is None:
                analysed = self._value_words(fno, values, value_docs)
            w_doc, w_term, t_doc, t_text = analysed
            c_parts.append((w_doc, w_term))
            s_parts.append((t_doc, t_text, fno))
            text_lengths[fno] = np.bincount(w_doc, minlength=count)
        ld = np.repeat(np.arange(count), l_count)
        k_class, k_terms, k_texts = self._kind_table()
        strong = lp >= floor
        at, terms = _expand(*k_terms, lk[strong])
        p_parts.insert(0, (ld[strong][at], terms, lp[strong][at]))
        at, texts = _expand(*k_texts, lk[strong])
        s_parts.insert(0, (ld[strong][at], texts, _LABELS))
        if self.hierarchy is not None:
            cls = k_class[lk]
            held = (lp > 0) & (cls >= 0)
            if held.any():
                hd, ht, hw, hsd, hst = self._concept_postings(ld[held], cls[held], lp[held])
                p_parts.append((hd, ht, hw))
                s_parts.append((hsd, hst, _CONCEPTS))
        # Probability fields: the largest weight per (term, document) (quantising keeps the
        # order of weights, so the largest quantised weight is the quantised largest weight).
        pd, pt, pw = (np.concatenate(a) for a in zip(*p_parts, strict=True))
        pq = np.clip(np.rint(pw * WEIGHT_LEVELS), 1, WEIGHT_LEVELS).astype(np.uint8)
        order = _stable_order(pt)
        pt, pd, pq = pt[order], pd[order], pq[order]
        firsts = _pair_starts(pt, pd)
        p_q = np.maximum.reduceat(pq, firsts) if firsts.size else pq[:0]
        pt, pd = pt[firsts], pd[firsts]
        postings = [(pt, pd, p_q)]
        # Text fields: words counted per (term, document).
        if c_parts:
            cd, ct = (np.concatenate(a) for a in zip(*c_parts, strict=True))
            order = _stable_order(ct)
            ct, cd = ct[order], cd[order]
            firsts = _pair_starts(ct, cd)
            occurrences = np.diff(np.append(firsts, ct.size))
            postings.append((ct[firsts], cd[firsts], np.minimum(occurrences, 255).astype(np.uint8)))
        # The two kinds of fields hold different terms: joined, each term is still one run.
        keys, plists, encoded = self._encode_postings(
            first, *(np.concatenate(a) for a in zip(*postings, strict=True))
        )
        # Lengths: words of the text fields, distinct terms of the probability fields.
        nf = len(FIELDS)
        lengths = text_lengths
        fields = self._term_field_array
        fields.extend(self._term_field[len(fields) :])
        per_field = fields.view()[pt] * count + pd
        lengths += np.bincount(per_field, minlength=nf * count).reshape(nf, count)
        s_parts.sort(key=lambda part: part[2])  # by field
        sd, st = (np.concatenate([part[i] for part in s_parts]) for i in (0, 1))
        sf = np.repeat([part[2] for part in s_parts], [len(part[0]) for part in s_parts])
        surface = self._surface_counts(count, sd, st, sf.astype(np.int64))
        taken_off = self.surface_removals(removing)
        return PreparedAdd(first, count, keys, plists, encoded, lengths, surface, taken_off)

    def apply_add(self, prepared: PreparedAdd) -> None:
        """Put a prepare_add into the index: append the encoded postings (making the lists
        new to it), extend the lengths, count the suggestions. Raises ValueError when documents
        were added since it was prepared (its numbers and encodings are then wrong)."""
        first, count = prepared.first, prepared.count
        if first != len(self._lengths["labels"]):
            raise ValueError(f"document numbers must be dense: got {first}")
        self._count_surface_batch(prepared.taken_off, -1)
        if not count:
            return
        plists = prepared.plists
        if None in plists:
            postings, made = self._postings, self._made
            for j, key in enumerate(prepared.keys):
                if plists[j] is None:  # new since prepared: made here, where searches wait
                    plist = postings.get(key)
                    if plist is None:
                        plist = postings[key] = PostingList()
                        made.append((key, plist))
                    plists[j] = plist
        decoded = self._decoded
        if decoded:  # decoded lists that change are decoded again when next asked for
            for key in prepared.keys:
                decoded.pop(key, None)
        append_encoded(plists, prepared.encoded, self._held)  # type: ignore[arg-type]
        lengths = prepared.lengths
        for fno, name in enumerate(FIELDS):
            self._lengths[name].extend(lengths[fno])
            self._length_sums[name] += float(lengths[fno].sum())
        self._live += count
        self._count_surface_batch(prepared.surface)

    def reserve(self, extra: int) -> None:
        """Room for `extra` more documents' lengths, made before the lock searches wait on (see
        GrowableArray.reserve)."""
        for lengths in self._lengths.values():
            lengths.reserve(extra)

    def _label_kinds(self, docs: Sequence[Document]) -> tuple[Any, Any]:
        """Kind (this index's numbers) and probability of every label of `docs`, in order."""
        kind_of = self._kind_of
        l_kind: list[int] = []
        l_p: list[float] = []
        for doc in docs:
            labels = doc.labels
            try:
                l_kind += [kind_of.get((lb.name, lb.synonyms, lb.class_index), -1) for lb in labels]
            except TypeError:  # synonyms given as a list
                l_kind += [
                    kind_of.get((lb.name, tuple(lb.synonyms), lb.class_index), -1) for lb in labels
                ]
            l_p += [lb.probability for lb in labels]
        if -1 in l_kind:
            labels_flat = [lb for doc in docs for lb in doc.labels]
            for j in [j for j, k in enumerate(l_kind) if k < 0]:
                lb = labels_flat[j]
                key = (lb.name, tuple(lb.synonyms), lb.class_index)
                found = kind_of.get(key)
                l_kind[j] = self._new_kind(key) if found is None else found
        return np.asarray(l_kind, np.int64), np.asarray(l_p, np.float64)

    def _outer_kinds(self, table: Sequence[tuple[str, tuple[str, ...], int]]) -> Any:
        """This index's kind number for each kind of a caller's append-only table."""
        if self._outer_table is not table:  # another table: its numbers mean other kinds
            self._outer_table = table
            self._outer = []
            self._outer_array = np.zeros(0, np.int64)
        known = self._outer
        if len(known) < len(table):
            kind_of = self._kind_of
            for key in table[len(known) :]:
                found = kind_of.get(key)
                known.append(self._new_kind(key) if found is None else found)
            self._outer_array = np.asarray(known, np.int64)
        return self._outer_array

    def prepare_writes(self, kinds: Sequence[tuple[str, tuple[str, ...], int]]) -> None:
        """Build now what the next add_many would build first: this index's number, terms and
        texts for each kind of the caller's label kind table `kinds` (add_many's `labels`), the
        flat kind table and the concepts' table (after a restart: 0.15 s the first write
        waited for)."""
        self._outer_kinds(kinds)
        self._kind_table()
        if self.hierarchy is not None:
            self._concept_table()

    def _joined_words(self, fno: int, values: list[str], value_docs: Any) -> tuple[Any, ...] | None:
        """(document, term) of every word of a text field's values and (document, text) of
        their suggestions: the values split by one regex (joined_ascii_words), each word looked
        up in the words seen before in this field, a value of several words in a phrase field
        looked up whole for its phrase. `value_docs`: each value's document (None: value i is
        document i's). None when a value is not plain ASCII (then _value_words)."""
        raw = joined_ascii_words(values, last_path_part=fno == _FILENAME)
        if raw is None:
            return None
        table = self._tokens.get(fno)
        if table is None:
            table = self._tokens[fno] = {"\x00": -1}
        ids = list(map(table.get, raw))
        if None in ids:
            missing = list(dict.fromkeys([w for w, i in zip(raw, ids, strict=True) if i is None]))
            lower = [w.lower() for w in missing]
            new_terms: list[int] = []
            new_texts: list[int] = []
            # _term() and _text() written out: a batch can bring thousands of new words
            # (numbers in filenames).
            vocab, vocab_keys, term_field = self._vocab, self._vocab_keys, self._term_field
            text_of, text_list = self._texts, self._text_list
            number = len(self._tok_term)
            for word, low, stem in zip(missing, lower, self._tokenizer.stem(lower), strict=True):
                table[word] = number
                number += 1
                key = (fno, stem)
                term = vocab.get(key)
                if term is None:
                    term = vocab[key] = len(vocab_keys)
                    vocab_keys.append(key)
                    term_field.append(fno)
                new_terms.append(term)
                text = text_of.get(low)
                if text is None:
                    text = text_of[low] = len(text_list)
                    text_list.append(low)
                new_texts.append(text)
            self._tok_term.extend(new_terms)
            self._tok_text.extend(new_texts)
            ids = list(map(table.get, raw))
        arr = np.asarray(ids, np.int64)
        ends = arr < 0
        value_no: Any = np.cumsum(ends) - ends
        words = np.flatnonzero(~ends)
        docs = value_no[words] if value_docs is None else value_docs[value_no[words]]
        ids_w = arr[words]
        texts = self._tok_text.view()[ids_w]
        t_docs = docs
        if fno in _PHRASE_FIELDS:  # a value of several words is a suggestion as a whole too
            phrases = self._phrase_texts.setdefault(fno, {})
            found = list(map(phrases.get, values))
            if None in found:
                for j, value in enumerate(values):
                    if found[j] is None:
                        value_words = self._tokenizer.words(value)
                        found[j] = phrases[value] = (
                            self._text(" ".join(value_words)) if len(value_words) > 1 else -1
                        )
            phrase = np.asarray(found, np.int64)
            held = np.flatnonzero(phrase >= 0)
            if held.size:
                held_docs = held if value_docs is None else value_docs[held]
                t_docs = np.concatenate([docs, held_docs])
                texts = np.concatenate([texts, phrase[held]])
        return docs, self._tok_term.view()[ids_w], t_docs, texts

    def _value_words(self, fno: int, values: list[str], value_docs: Any) -> tuple[Any, ...]:
        """_joined_words for any text, a value at a time (values analysed once, cached)."""
        part = self._part
        w_doc: list[int] = []
        w_term: list[int] = []
        t_doc: list[int] = []
        t_text: list[int] = []
        docs = range(len(values)) if value_docs is None else value_docs.tolist()
        for i, value in zip(docs, values, strict=True):
            if not value:
                continue
            if fno == _FILENAME:
                value = value.replace("\\", "/").rsplit("/", 1)[-1]
            terms, texts = part(fno, value)
            w_term += terms
            w_doc += [i] * len(terms)
            t_text += texts
            t_doc += [i] * len(texts)
        return _ints(w_doc), _ints(w_term), _ints(t_doc), _ints(t_text)

    def _encode_postings(
        self, first: int, terms: Any, docs: Any, q: npt.NDArray[np.uint8]
    ) -> tuple[list[tuple[int, str]], list[PostingList | None], EncodedRuns]:
        """For postings given as (term, document offset) pairs, distinct and sorted by term
        then document, with their weights: the touched lists' keys, the lists (None: not made
        yet) and the bytes to append to each (postings.encode_runs)."""
        if not terms.size:
            return [], [], ([], [], [], [])
        starts = np.flatnonzero(np.diff(terms, prepend=-1))
        bounds = np.append(starts, terms.size)
        vocab_keys, by_term = self._vocab_keys, self._plist_of_term
        if len(by_term) < len(vocab_keys):
            by_term.extend([None] * (len(vocab_keys) - len(by_term)))
        touched = terms[starts].tolist()
        plists = [by_term[term] for term in touched]
        if None in plists:
            postings = self._postings
            for j, term in enumerate(touched):
                if plists[j] is None:  # a list made since is found (and kept) here
                    plists[j] = by_term[term] = postings.get(vocab_keys[term])
        lasts = np.fromiter((-1 if p is None else p.last for p in plists), np.int64, len(plists))
        keys = [vocab_keys[term] for term in touched]
        return keys, plists, encode_runs(lasts, bounds, docs + first, q)

    def _concept_postings(self, h_doc: Any, h_cls: Any, h_p: Any) -> tuple[Any, Any, Any, Any, Any]:
        """For labels (document, class, probability): (document, term, weight) of the concepts
        field and (document, text) of its suggestions. hierarchy.weights() for a batch: each
        concept's weight is summed in the same order, so the floats are the same."""
        hierarchy = self.hierarchy
        assert hierarchy is not None
        starts, cids, factors = hierarchy.chain_arrays()
        rep, idx = _expand_at(starts, h_cls)
        contrib = h_p[rep] * factors[idx]
        concepts = len(hierarchy.concepts)
        docs = h_doc[rep]
        if not docs.size:
            empty = np.zeros(0, np.int64)
            return empty, empty, np.zeros(0, np.float64), empty, empty
        key = docs * concepts + cids[idx]
        # Summed per (document, concept) in input order, so in the order weights() adds;
        # every contribution is positive, so a concept a document lacks sums to 0. Counted
        # _CONCEPT_DOCS documents at a time (documents ascending): the counts stay in cache.
        floor = self.params.min_label_probability
        step = _CONCEPT_DOCS
        bounds = np.searchsorted(docs, np.arange(0, int(docs[-1]) + step + 1, step)).tolist()
        held_parts, weight_parts = [], []
        for i in range(len(bounds) - 1):
            lo, hi = bounds[i], bounds[i + 1]
            if lo == hi:
                continue
            base = i * step * concepts
            summed = np.bincount(key[lo:hi] - base, weights=contrib[lo:hi])
            found = np.flatnonzero(summed >= floor)
            held_parts.append(found + base)
            weight_parts.append(summed[found])
        held = np.concatenate(held_parts)
        weight = np.minimum(np.concatenate(weight_parts), 1.0)
        doc, cid = held // concepts, held % concepts
        term_starts, term_flat, text_starts, text_flat = self._concept_table()
        at, terms = _expand(term_starts, term_flat, cid)
        text_at, texts = _expand(text_starts, text_flat, cid)
        return doc[at], terms, weight[at], doc[text_at], texts

    def _concept_table(self) -> tuple[Any, Any, Any, Any]:
        """Per concept, its terms and suggestion texts (vocabulary numbers), as flat arrays."""
        if self._concept_flat is None:
            assert self.hierarchy is not None
            terms, texts = [], []
            for cid in range(len(self.hierarchy.concepts)):
                concept_texts, concept_stems = self._concept_terms(cid)
                terms.append([self._term(_CONCEPTS, stem) for stem in concept_stems])
                texts.append([self._text(text) for text in concept_texts])
            self._concept_flat = (*_flat(terms), *_flat(texts))
        return self._concept_flat

    def _term(self, fno: int, stem: str) -> int:
        key = (fno, stem)
        found = self._vocab.get(key)
        if found is None:
            found = self._vocab[key] = len(self._vocab_keys)
            self._vocab_keys.append(key)
            self._term_field.append(fno)
        return found

    def _text(self, text: str) -> int:
        found = self._texts.get(text)
        if found is None:
            found = self._texts[text] = len(self._text_list)
            self._text_list.append(text)
        return found

    def _new_kind(self, key: tuple[str, tuple[str, ...], int]) -> int:
        """A label kind (name, synonyms, class number): its label terms, suggestion texts and
        hierarchy class."""
        name, synonyms, class_index = key
        texts, stems = self._phrase_terms((name, *synonyms))
        kind = self._kind_of[key] = len(self._kinds)
        cls = -1
        if self.hierarchy is not None:
            cls = self.hierarchy.class_of(Label(name, 1.0, synonyms, class_index))
        self._kinds.append(
            (cls, [self._term(_LABELS, s) for s in stems], [self._text(t) for t in texts])
        )
        self._kind_flat = None
        return kind

    def _kind_table(self) -> tuple[Any, tuple[Any, Any], tuple[Any, Any]]:
        """Per kind: hierarchy class, (starts, terms), (starts, texts)."""
        if self._kind_flat is None:
            kinds = self._kinds
            self._kind_flat = (
                np.asarray([k[0] for k in kinds], np.int64),
                _flat([k[1] for k in kinds]),
                _flat([k[2] for k in kinds]),
            )
        return self._kind_flat

    def _colour(self, name: str) -> tuple[list[int], list[int]]:
        found = self._colours.get(name)
        if found is None:
            words = self._tokenizer.words(colour_words(name))
            stems = dict.fromkeys(self._tokenizer.stem(words))
            found = self._colours[name] = (
                [self._term(_COLOURS, s) for s in stems],
                [self._text(w) for w in dict.fromkeys(words)],
            )
        return found

    def _part(self, fno: int, value: str) -> tuple[list[int], list[int]]:
        """A text field value's terms (one per word, repeats kept) and suggestion texts."""
        key = (fno, value)
        found = self._parts.get(key)
        if found is None:
            words = self._tokenizer.words(value)
            known = self._words
            pairs = [known.get((fno, w)) for w in words]
            if None in pairs:
                for j, stem in enumerate(self._tokenizer.stem(words)):
                    if pairs[j] is None:
                        pairs[j] = known[(fno, words[j])] = (
                            self._term(fno, stem),
                            self._text(words[j]),
                        )
            texts = [p[1] for p in pairs]  # type: ignore[index]
            if fno in _PHRASE_FIELDS and len(words) > 1:
                texts.append(self._text(" ".join(words)))
            found = self._parts[key] = ([p[0] for p in pairs], texts)  # type: ignore[index]
        return found

    def _reset_vocab(self) -> None:
        """Forget the batch vocabulary and what refers to it (numbers only live in a batch)."""
        self._vocab = {}
        self._vocab_keys = []
        self._term_field = []
        self._term_field_array = GrowableArray(np.int64)
        self._texts = {}
        self._text_list = []
        self._kinds = []
        self._kind_of = {}
        self._colours = {}
        self._parts = {}
        self._words = {}
        self._tokens = {}
        self._tok_term = GrowableArray(np.int64)
        self._tok_text = GrowableArray(np.int64)
        self._phrase_texts = {}
        self._plist_of_term = []
        self._outer = []
        self._outer_array = np.zeros(0, np.int64)
        self._concept_flat = None
        self._kind_flat = None

    def _surface_counts(
        self, count: int, sd: Any, st: Any, sf: Any
    ) -> list[tuple[str, int, list[tuple[str, int]]]]:
        """For a batch given as (document, text, field) triples, ordered by field: each text
        with the documents holding it and, per field, the documents holding it there (what
        _count_surface_batch adds)."""
        nf = len(FIELDS)
        if not st.size:
            return []
        # Sorted by (text, document, field): stable radix sorts by document then text of
        # entries that come by field, not a sort of the keys.
        order = _stable_order(sd)
        order = order[_stable_order(st[order])]
        triples = ((st * count + sd) * nf + sf)[order]
        triples = triples[np.flatnonzero(np.diff(triples, prepend=-1))]  # distinct
        pairs = triples // nf  # text x count + document
        new_pair = np.flatnonzero(np.diff(pairs, prepend=-1))
        texts = pairs[new_pair] // count
        starts = np.flatnonzero(np.diff(texts, prepend=-1))
        docs_per_text = np.diff(np.append(starts, texts.size)).tolist()
        # documents per (text, field): texts numbered densely in this batch
        rank = np.cumsum(np.diff(pairs // count, prepend=-1) != 0) - 1
        per_field = np.bincount(rank * nf + triples % nf, minlength=starts.size * nf)
        nonzero = np.flatnonzero(per_field)
        field_rank = (nonzero // nf).tolist()
        field_no = (nonzero % nf).tolist()
        field_docs = per_field[nonzero].tolist()
        text_list = self._text_list
        out: list[tuple[str, int, list[tuple[str, int]]]] = []
        j, ends = 0, len(field_rank)
        for r, text_id in enumerate(texts[starts].tolist()):
            fields: list[tuple[str, int]] = []
            while j < ends and field_rank[j] == r:
                fields.append((FIELDS[field_no[j]], field_docs[j]))
                j += 1
            out.append((text_list[text_id], docs_per_text[r], fields))
        return out

    def surface_removals(
        self, analyses: Sequence[Analysis]
    ) -> list[tuple[str, int, list[tuple[str, int]]]]:
        """The suggestion counts the documents of these analyses hold, summed per text (in
        _surface_counts' form): what their removals take off the table."""
        docs: Counter[str] = Counter()
        fields: dict[str, Counter[str]] = {}
        for analysis in analyses:
            for text, names in analysis.surface.items():
                docs[text] += 1
                per_field = fields.get(text)
                if per_field is None:
                    per_field = fields[text] = Counter()
                per_field.update(names)
        return [(text, n, list(fields[text].items())) for text, n in docs.items()]

    def _count_surface_batch(
        self, counted: list[tuple[str, int, list[tuple[str, int]]]], sign: int = 1
    ) -> None:
        """Count a batch into the suggestion table (sign 1) or take it off (-1), as
        _surface_counts (or surface_removals) gives it: each text once with its documents.
        Taking off, a text whose count reaches 0 leaves the table."""
        surface, generation = self._surface, self._surface_generation
        saves = self._surface_saves()
        for text, docs, fields in counted:
            entry = surface.get(text)
            for saved in saves:  # copy on write: the entry as a frozen view holds it
                if text not in saved:
                    saved[text] = entry
            if entry is None:
                entry = surface[text] = [0, {}, generation]
                self._sorted_surface = None
            elif entry[2] != generation:  # a snapshot holds this one: change a copy
                entry = surface[text] = [entry[0], dict(entry[1]), generation]
            entry[0] += sign * docs
            counts = entry[1]
            for name, n in fields:
                counts[name] = counts.get(name, 0) + sign * n
            if sign < 0 and entry[0] <= 0:
                del surface[text]
                self._sorted_surface = None

    def remove(
        self,
        docno: int,
        doc: Document,
        analysis: Analysis | None = None,
        counted: bool = True,
    ) -> None:
        """Forget `doc`'s statistics; its postings stay but the caller no longer allows it.
        `analysis`: analyse(doc), made beforehand (outside the index lock) by the caller.
        `counted` False: its suggestion counts are left for the caller to take off (apply_add
        of a prepare_add given its analysis in `removing`)."""
        if not counted:
            self._remove_lengths(docno, analysis if analysis is not None else self.analyse(doc))
            return
        if analysis is None:
            analysis = self.analyse(doc)
        self._remove_lengths(docno, analysis)
        self._count_surface_batch(self.surface_removals([analysis]), -1)

    def _remove_lengths(self, docno: int, analysis: Analysis) -> None:
        held = self._held_lengths
        if held is not None and docno < held[0] and docno not in held[1]:
            held[1][docno] = [float(self._lengths[name][docno]) for name in FIELDS]
        for name in FIELDS:
            self._length_sums[name] -= analysis.lengths[name]
            self._lengths[name][docno] = 0.0
        self._live -= 1

    def _surface_saves(self) -> list[dict[str, list[Any] | None]]:
        """The `saved` tables of the frozen views of this suggestion table not read yet."""
        views = self._surface_views
        if not views:
            return []
        found = (ref() for ref in views)
        return [v.saved for v in found if v is not None and v.table is self._surface]

    # ---- reads ------------------------------------------------------------------------------

    def query_terms(self, query: str) -> list[str]:
        """Distinct stems of a query, in query order."""
        return list(dict.fromkeys(self._tokenizer.terms(query)))

    def query_words(self, query: str) -> list[str]:
        return self._tokenizer.words(query)

    def match(self, terms: list[str], allowed: npt.NDArray[np.bool_]) -> KeywordMatches:
        """Documents holding every term (AND); if none, those holding any term (OR)."""
        n = len(self._lengths["labels"])
        scores = np.zeros(n, dtype=np.float32)
        hits = np.zeros(n, dtype=np.int16)
        parts = []
        for term in terms:
            present = np.zeros(n, dtype=np.bool_)
            for fno in range(len(FIELDS)):
                found = self._term_scores(fno, term)
                if found is None:
                    continue
                ids, contrib = found
                scores[ids] += contrib
                present[ids] = True
                parts.append((FIELDS[fno], term, ids, contrib))
            hits += present
        allowed = allowed[:n]
        docs = np.flatnonzero((hits == len(terms)) & allowed) if terms else np.zeros(0, np.int64)
        fell_back = False
        if docs.size == 0 and len(terms) > 1:
            docs = np.flatnonzero((hits > 0) & allowed)
            fell_back = docs.size > 0
        return KeywordMatches(docs.astype(np.int64), scores[docs], fell_back, parts)

    def explain(
        self, docnos: list[int], docs: list[Document], matches: KeywordMatches
    ) -> list[list[Reason]]:
        """For each of a page of hits: which query term matched in which field, with its share
        of the score, strongest first."""
        reasons: list[list[Reason]] = [[] for _ in docnos]
        page = np.asarray(docnos, dtype=np.int64)
        for name, term, ids, contrib in matches.parts:
            at = np.minimum(np.searchsorted(ids, page), ids.size - 1)
            for i in np.flatnonzero(ids[at] == page):
                word = self._surface_word(docs[i], name, term)
                reasons[i].append(Reason(name, word, float(contrib[at[i]])))
        for found in reasons:
            found.sort(key=lambda r: -r.score)
        return reasons

    def suggest(self, prefix: str, limit: int) -> list[tuple[str, int, str]]:
        """(completion, documents holding it, field it is most used in), most common first."""
        wanted = " ".join(self._tokenizer.words(prefix))
        if prefix[-1:].isspace() and wanted:
            wanted += " "
        if not wanted:
            return []
        if self._sorted_surface is None:
            self._sorted_surface = sorted(self._surface)
        keys = self._sorted_surface
        found = []
        for i in range(bisect.bisect_left(keys, wanted), len(keys)):
            text = keys[i]
            if not text.startswith(wanted):
                break
            count, fields, _ = self._surface[text]
            found.append((text, count, max(fields, key=fields.__getitem__)))
        found.sort(key=lambda s: (-s[1], len(s[0]), s[0]))
        return found[:limit]

    @property
    def hierarchy_table(self) -> ConceptHierarchy:
        """The concept table (loaded even when hypernyms are not indexed: it maps names to
        class numbers)."""
        return self.hierarchy or load_hierarchy()

    def label_vocabulary(self) -> list[str]:
        """Label, concept and tag words and phrases the library holds (for spelling help)."""
        wanted = {"labels", "concepts", "tags"}
        return [text for text, (_, fields, _) in self._surface.items() if wanted & set(fields)]

    # ---- internals --------------------------------------------------------------------------

    @property
    def _tokenizer(self) -> Tokenizer:
        found: Tokenizer | None = getattr(self._tokenizers, "tokenizer", None)
        if found is None:
            found = self._tokenizers.tokenizer = Tokenizer()
        return found

    def _decoded_postings(self, key: tuple[int, str]) -> tuple[Any, Any] | None:
        with self._decoded_lock:
            cached = self._decoded.get(key)
            if cached is not None:
                self._decoded.move_to_end(key)
                return cached
        plist = self._postings.get(key)
        if plist is None:
            return None
        ids, weights_q = plist.decode()
        name = FIELDS[key[0]]
        if name in _PROBABILITY_FIELDS:
            tf = weights_q.astype(np.float32) * (self.params.label_tf_scale / 255.0)
        else:
            tf = weights_q.astype(np.float32)
        with self._decoded_lock:
            self._decoded[key] = (ids, tf)
            if len(self._decoded) > _DECODED_CACHE_ENTRIES:
                self._decoded.popitem(last=False)
        return ids, tf

    def _term_scores(self, fno: int, term: str) -> tuple[Any, Any] | None:
        decoded = self._decoded_postings((fno, term))
        if decoded is None:
            return None
        ids, tf = decoded
        name = FIELDS[fno]
        p = self.params
        live = max(self._live, 1)
        df = min(ids.size, live)
        idf = math.log(1.0 + (live - df + 0.5) / (df + 0.5))
        b = p.b[name]
        if b > 0:
            avg = max(self._length_sums[name] / live, 1e-6)
            norm = p.k1 * (1.0 - b + b * self._lengths[name][ids] / avg)
        else:
            norm = p.k1
        contrib = (p.weights[name] * idf) * tf * (p.k1 + 1.0) / (tf + norm)
        return ids, contrib.astype(np.float32)

    def _surface_word(self, doc: Document, name: str, stem: str) -> str:
        if name == "labels":
            for label in doc.labels:
                for phrase in (label.name, *label.synonyms):
                    if stem in self._phrase(phrase)[1]:
                        return phrase
            return stem
        if name == "concepts" and self.hierarchy is not None:
            held = self.hierarchy.held(doc.labels)
            for cid, phrase in self._stem_concepts(stem):
                if cid in held:
                    return phrase
            return stem
        text = {
            "tags": " ".join(doc.tags),
            "ocr_text": doc.ocr_text,
            "filename": doc.filename,
            "owner": doc.owner,
            "concepts": "",
            "taken": taken_words(doc.taken_at_unix_s),
            "camera": camera_words(doc.camera_make, doc.camera_model),
            "colours": " ".join(colour_words(n) for n, _ in doc.colours),
        }[name]
        words = self._tokenizer.words(text)
        for word, word_stem in zip(words, self._tokenizer.stem(words), strict=True):
            if word_stem == stem:
                return word
        return stem

    def _stem_concepts(self, stem: str) -> list[tuple[int, str]]:
        """(concept, phrase) holding a stem: those named by this very word ("cat") before those
        holding it ("domestic cat"), cached."""
        found = self._stem_concepts_cache.get(stem)
        if found is None:
            assert self.hierarchy is not None
            exact, holding = [], []
            for cid, phrases in enumerate(self.hierarchy.concepts):
                for phrase in phrases:
                    stems = self._phrase(phrase)[1]
                    if stems == (stem,):
                        exact.append((cid, phrase))
                    elif stem in stems:
                        holding.append((cid, phrase))
            if len(self._stem_concepts_cache) > 10_000:
                self._stem_concepts_cache.clear()
            found = self._stem_concepts_cache[stem] = exact + holding
        return found

    def _concept_terms(self, cid: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Surface texts (phrases and their words) and distinct stems of a concept, cached."""
        found = self._concepts_cache.get(cid)
        if found is None:
            assert self.hierarchy is not None
            texts, stems = self._phrase_terms(self.hierarchy.phrases(cid))
            found = self._concepts_cache[cid] = (tuple(texts), tuple(stems))
        return found

    def _phrase_terms(self, phrases: Iterable[str]) -> tuple[dict[str, None], dict[str, None]]:
        """Suggestion texts (each phrase whole and its words) and stems of label phrases, in
        first-seen order."""
        texts: dict[str, None] = {}
        stems: dict[str, None] = {}
        for phrase in phrases:
            words, phrase_stems = self._phrase(phrase)
            if not words:
                continue
            texts[" ".join(words)] = None
            texts.update(dict.fromkeys(words))
            stems.update(dict.fromkeys(phrase_stems))
        return texts, stems

    def _phrase(self, phrase: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Words and stems of a label phrase, cached."""
        found = self._phrases.get(phrase)
        if found is None:
            if len(self._phrases) > 100_000:
                self._phrases.clear()
            words = self._tokenizer.words(phrase)
            found = self._phrases[phrase] = (tuple(words), tuple(self._tokenizer.stem(words)))
        return found

    # ---- statistics and persistence -------------------------------------------------------

    @property
    def term_count(self) -> int:
        return len({term for _, term in self._postings})

    @property
    def posting_bytes(self) -> int:
        return sum(p.nbytes for p in self._postings.values())

    def state(self) -> dict[str, Any]:
        """Everything needed to restore the index, as arrays, bytes and JSON-ready values."""
        out = {k: v() if callable(v) else v for k, v in self.frozen_state().items()}
        return {k: v.to_bytes() if isinstance(v, BytesParts) else v for k, v in out.items()}

    def frozen_state(self) -> dict[str, Any]:
        """state() as of now, taken cheaply (under the writers' lock): the per-field length
        sums copied, the suggestion table not copied (a write saves an entry for the view
        before it first changes it, see _FrozenSurface; 600k texts at 1.19M documents took
        8-15 ms CPU to copy under the lock), the
        number of posting lists made so far noted and a record begun of the sizes of the lists
        appended to after this (PostingList.sizes). The rest are callables, evaluated later
        while writes go on: each posting list is read as it stood at this view (a few lengths
        and two prefix copies, no decoding), and the loop over them hands the interpreter lock
        to other threads every millisecond (Pacer).

        The terms (field numbers, and the words as one NUL-separated text) and the suggestion
        table (its texts so, each one's document count, and (entry, field, count) for the
        per-field counts) are arrays and text, written and read by a few C calls; JSON held
        them before (snapshot format 4), and holds them still in the unlikely case a word holds
        a NUL."""
        made, lists = self._made, len(self._made)
        held: dict[PostingList, tuple[int, int, int]] = {}
        self._held = held
        frozen_surface = _FrozenSurface(self._surface)  # no copy: see _FrozenSurface
        with self._surface_views_lock:
            kept = tuple(ref for ref in self._surface_views if ref() is not None)
            self._surface_views = (*kept, weakref.ref(frozen_surface))
        self._surface_generation += 1  # from now on, entries change as copies
        length_sums = dict(self._length_sums)
        live = self._live
        # The lengths as views (appends only add past them, a grown array leaves them be);
        # removals after this record a row's lengths before they zero them.
        views = [self._lengths[f].view() for f in FIELDS]
        held_rows: dict[int, list[float]] = {}
        self._held_lengths = (len(views[0]), held_rows)
        built: dict[str, Any] = {}
        table: dict[str, Any] = {}

        def postings() -> dict[str, Any]:
            if built:
                return built
            # The lists' bytes go straight into pieces of about _PIECE_BYTES (written one after
            # another as one section), their sizes, fields and last documents into C arrays:
            # no Python object per list is left to free at the end (1.2M copies at 1.19M
            # documents, whose freeing held the interpreter lock 100-200 ms) and no C call
            # copies more than a piece (appending every list to one bytearray of 68 MB held it
            # 25-125 ms at a time).
            words: list[str] = []
            fields, lasts = array.array("b"), array.array("q")
            ids_sizes, weight_sizes = array.array("q"), array.array("q")
            ids_pieces: list[bytearray] = []
            weight_pieces: list[bytearray] = []
            ids_buf, weights_buf = bytearray(), bytearray()
            pace = Pacer()
            for start in range(0, lists, _SNAPSHOT_LISTS):
                for key, plist in made[start : min(lists, start + _SNAPSHOT_LISTS)]:
                    ids_b, weights_b, last = plist.sizes(held)  # copies: a long list's, a
                    if not weights_b:  # C call as long as it (0.5 ms a MB)
                        continue
                    fields.append(key[0])
                    words.append(key[1])
                    lasts.append(last)
                    ids_sizes.append(len(ids_b))
                    weight_sizes.append(len(weights_b))
                    ids_buf += ids_b
                    weights_buf += weights_b
                    if len(ids_buf) >= _PIECE_BYTES:
                        ids_pieces.append(ids_buf)
                        ids_buf = bytearray()
                        pace()
                    if len(weights_buf) >= _PIECE_BYTES:
                        weight_pieces.append(weights_buf)
                        weights_buf = bytearray()
                        pace()
                pace()
            ids_pieces.append(ids_buf)
            weight_pieces.append(weights_buf)
            if self._held is held:  # read: appends need not record sizes any more
                self._held = None
            text = _nul_joined(words, pace)
            pairs = (
                None if text is not None else [[f, w] for f, w in zip(fields, words, strict=True)]
            )
            built.update(
                term_fields=np.array(fields, np.int8),
                term_text=text,
                terms=pairs,
                ids_blob=BytesParts(ids_pieces),
                ids_offsets=_starts(ids_sizes),
                weights_blob=BytesParts(weight_pieces),
                weights_offsets=_starts(weight_sizes),
                lasts=np.array(lasts, np.int64),
            )
            return built

        def suggestions() -> dict[str, Any]:
            if table:
                return table
            surface = self._read_frozen_surface(frozen_surface)
            items = iter(surface.items())  # the view's own table: no other thread changes it
            texts: list[str] = []
            # C arrays, not lists: no Python int per entry left to free at the end.
            counts = array.array("q")
            f_entry = array.array("q")
            f_field = array.array("b")
            f_count = array.array("q")
            pace = Pacer()
            for start in range(0, len(surface), _SNAPSHOT_LISTS):
                part = itertools.islice(items, _SNAPSHOT_LISTS)
                for i, (text, entry) in enumerate(part, start):
                    texts.append(text)
                    counts.append(entry[0])
                    for name, count in entry[1].items():
                        f_entry.append(i)
                        f_field.append(_FIELD_NO[name])
                        f_count.append(count)
                pace()
            joined = _nul_joined(texts, pace)
            table.update(
                surface_text=joined,
                surface_counts=np.array(counts, np.int64),
                surface_field_entry=np.array(f_entry, np.int64),
                surface_field=np.array(f_field, np.int8),
                surface_field_count=np.array(f_count, np.int64),
                json=None if joined is not None else {t: [e[0], e[1]] for t, e in surface.items()},
            )
            return table

        def meta() -> dict[str, Any]:
            out = {"length_sums": length_sums, "live": live}
            if postings()["terms"] is not None:
                out["terms"] = postings()["terms"]
            if suggestions()["json"] is not None:
                out["surface"] = suggestions()["json"]
            return out

        def part(name: str) -> Any:
            return postings()[name]

        def suggestion_part(name: str) -> Any:
            return suggestions()[name]

        state: dict[str, Any] = {"meta": meta}
        for name in ("term_fields", "term_text", "ids_blob", "ids_offsets"):
            state[name] = functools.partial(part, name)
        for name in ("weights_blob", "weights_offsets", "lasts"):
            state[name] = functools.partial(part, name)

        def lengths() -> npt.NDArray[np.float32]:
            out = np.stack(views)
            for docno, row in list(held_rows.items()):
                out[:, docno] = row
            if self._held_lengths is not None and self._held_lengths[1] is held_rows:
                self._held_lengths = None
            return out

        state["lengths"] = lengths
        for name in (
            "surface_text",
            "surface_counts",
            "surface_field_entry",
            "surface_field",
            "surface_field_count",
        ):
            state[name] = functools.partial(suggestion_part, name)
        return state

    def _read_frozen_surface(self, view: _FrozenSurface) -> dict[str, list[Any]]:
        """The suggestion table of a frozen view as it was at the freeze, read while writes go
        on (they run under the caller's writers' lock, this does not): the live table's texts
        listed (one C call, no thread switch inside it), their entries read a slice at a time
        with pauses, then every text in `saved` takes its saved entry (or leaves: None). A
        write saves an entry before it first changes it, so a text changed before its entry
        was read is in `saved` when that is copied below, and the entry read of a text not in
        it is the frozen one. The view stops collecting changes."""
        live, saved = view.table, view.saved
        while True:
            try:
                texts = list(live)
                break
            except RuntimeError:  # changed while listed (not expected: one C call)
                continue
        out: dict[str, Any] = {}  # entries (None only for texts in `saved`)
        pace = Pacer()
        for start in range(0, len(texts), _PACED_TEXTS):
            part = texts[start : start + _PACED_TEXTS]
            entries = list(map(live.get, part))  # C calls, no Python loop over the texts
            out.update(zip(part, entries, strict=True))
            pace()
        with self._surface_views_lock:  # writes stop saving for it (a write in progress
            # may still add a text: its entry is the frozen one all the same)
            self._surface_views = tuple(
                ref for ref in self._surface_views if ref() not in (None, view)
            )
        while True:
            try:
                extra = dict(saved)
                break
            except RuntimeError:
                continue
        for text, entry in extra.items():
            if entry is None:
                out.pop(text, None)
            else:
                out[text] = entry
        return out

    @classmethod
    def from_state(cls, state: dict[str, Any], params: BM25Params | None = None) -> InvertedIndex:
        """From state() (or a snapshot of format 4: terms and suggestions in the JSON meta)."""
        index = cls(params)
        meta = state["meta"]
        ids_blob, w_blob = state["ids_blob"], state["weights_blob"]
        io, wo, lasts = state["ids_offsets"], state["weights_offsets"], state["lasts"]
        if state.get("term_text") is not None:
            words = _nul_split(state["term_text"])
            terms: Iterable[tuple[int, str]] = zip(
                state["term_fields"].tolist(), words, strict=True
            )
        else:
            terms = meta["terms"]
        io, wo, lasts = io.tolist(), wo.tolist(), lasts.tolist()
        postings, made = index._postings, index._made
        for i, (fno, term) in enumerate(terms):
            key = (fno, term)
            plist = postings[key] = PostingList.from_raw(
                ids_blob[io[i] : io[i + 1]], w_blob[wo[i] : wo[i + 1]], lasts[i]
            )
            made.append((key, plist))
        lengths = state["lengths"]
        for i, name in enumerate(FIELDS):
            # A snapshot from before a field existed: nothing of it was indexed.
            row = lengths[i] if i < len(lengths) else np.zeros(lengths.shape[1], np.float32)
            index._lengths[name] = GrowableArray.from_array(row)
        index._length_sums = dict.fromkeys(FIELDS, 0.0)
        index._length_sums.update({k: float(v) for k, v in meta["length_sums"].items()})
        index._live = int(meta["live"])
        if state.get("surface_text") is not None:
            texts = _nul_split(state["surface_text"])
            entries: list[list[Any]] = [[c, {}, 0] for c in state["surface_counts"].tolist()]
            for i, f, c in zip(
                state["surface_field_entry"].tolist(),
                state["surface_field"].tolist(),
                state["surface_field_count"].tolist(),
                strict=True,
            ):
                entries[i][1][FIELDS[f]] = c
            index._surface = dict(zip(texts, entries, strict=True))
        else:
            index._surface = {t: [c, f, 0] for t, (c, f) in meta["surface"].items()}
        return index

    def warm(self) -> None:
        """Decode the most used posting lists and sort the suggestion keys before serving."""
        biggest = sorted(self._postings, key=lambda k: -self._postings[k].count)
        for key in biggest[: _DECODED_CACHE_ENTRIES // 2]:
            self._decoded_postings(key)
        self._sorted_surface = sorted(self._surface)


# A colour's share is a share of the frame: black is the share of dark pixels (value < 0.18),
# white of bright unsaturated ones, so they also answer the tone words a photo's pixels support.
_COLOUR_ALIASES = {"grey": "grey gray", "black": "black dark night", "white": "white bright"}


def _flat(rows: list[list[int]]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Rows of numbers as (starts, flat): row i is flat[starts[i]:starts[i + 1]]."""
    starts = np.zeros(len(rows) + 1, np.int64)
    np.cumsum([len(r) for r in rows], out=starts[1:])
    return starts, np.asarray([x for r in rows for x in r], np.int64)


# A snapshot's posting bytes go out as pieces of about this size (written one after another
# as one section): a copy into fresh memory holds the interpreter lock 0.5 ms a MB.
_PIECE_BYTES = 1 << 20


def _starts(sizes: array.array[int]) -> npt.NDArray[np.int64]:
    """Where each of the parts of these sizes starts in their join, and the end."""
    out = np.zeros(len(sizes) + 1, np.int64)
    np.cumsum(np.array(sizes, np.int64), out=out[1:])
    return out


def _nul_joined(texts: list[str], pace: Pacer | None = None) -> bytes | None:
    """The texts as one utf-8 text, each followed by a NUL; None if a text holds a NUL. Made
    _PACED_VALUES texts at a time (one call over a million holds the interpreter lock for
    tens of milliseconds), with `pace` between."""
    pieces = []
    for start in range(0, len(texts), _PACED_VALUES):
        part = texts[start : start + _PACED_VALUES]
        joined = "\0".join(part) + "\0"
        if joined.count("\0") != len(part):
            return None
        pieces.append(joined.encode())
        if pace is not None:
            pace()
    return b"".join(pieces)


def _nul_split(data: Any) -> list[str]:
    """Inverse of _nul_joined."""
    return bytes(data).decode().split("\0")[:-1]


def _ints(values: list[int]) -> npt.NDArray[np.int64]:
    return np.asarray(values, np.int64)


def _stable_order(keys: npt.NDArray[np.int64]) -> npt.NDArray[np.intp]:
    """np.argsort(keys, kind="stable") for non-negative keys: 16 bits at a time (numpy sorts
    16-bit keys by radix, in linear time), so grouping a batch's postings by term costs a
    few passes rather than a comparison sort."""
    if not keys.size:
        return np.zeros(0, np.intp)
    top = int(keys.max())
    if top >= 1 << 32:
        return np.argsort(keys, kind="stable")
    order = np.argsort((keys & 0xFFFF).astype(np.uint16), kind="stable")
    if top >= 1 << 16:
        high = (keys[order] >> 16).astype(np.uint16)
        order = order[np.argsort(high, kind="stable")]
    return order


def _pair_starts(terms: Any, docs: Any) -> npt.NDArray[np.intp]:
    """Where each run of equal (term, document) starts in arrays sorted by them."""
    change = np.ones(terms.size, np.bool_)
    change[1:] = (terms[1:] != terms[:-1]) | (docs[1:] != docs[:-1])
    return np.flatnonzero(change)


def _expand_at(starts: Any, rows: Any) -> tuple[Any, Any]:
    """For rows (numbers into a (starts, flat) table): for each entry of the rows' ranges,
    which of `rows` it came from and its position in flat."""
    lens = starts[rows + 1] - starts[rows]
    at = np.repeat(np.arange(rows.size), lens)
    pos = starts[rows][at] + np.arange(at.size) - np.repeat(np.cumsum(lens) - lens, lens)
    return at, pos


def _expand(starts: Any, flat: Any, rows: Any) -> tuple[Any, Any]:
    """(which row, value) for every value of the given rows of a (starts, flat) table."""
    at, pos = _expand_at(starts, rows)
    return at, flat[pos]


def colour_words(name: str) -> str:
    """The words a colour name answers to ("grey" also to "gray", "black" to "dark")."""
    return _COLOUR_ALIASES.get(name, name)


def taken_words(taken_at_unix_s: int) -> str:
    """The words a photo's date answers to: "june 2019" (month name and year)."""
    if taken_at_unix_s <= 0:
        return ""
    when = time.gmtime(taken_at_unix_s)
    return f"{_MONTHS[when.tm_mon - 1].lower()} {when.tm_year}"


def camera_words(make: str, model: str) -> str:
    """Make and model, the make said once ("Canon" + "Canon EOS 80D" -> "Canon EOS 80D")."""
    if make and model.casefold().startswith(make.casefold()):
        return model
    return f"{make} {model}".strip()
