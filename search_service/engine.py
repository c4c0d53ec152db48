"""The search index as one object: documents, keyword index, concept space, vectors, filters.

Documents get dense numbers in arrival order; every component is a column over those numbers.
Removing marks the number dead; an update is a removal plus an add under a new number. When
too many numbers are dead (needs_compaction) the index is rebuilt from its live documents
(compaction): DurableIndex does it in a background thread from live_documents(), while the
old index serves; compacted() is the same rebuild in one call.
Not thread-safe on its own: DurableIndex serialises access.
"""

from __future__ import annotations

import difflib
import logging
import math
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from search_service.doc_store import DocumentStore
from search_service.document import Document, Status
from search_service.duplicates import DuplicateGroup, exact_groups, near_groups
from search_service.errors import (
    ImageNotFoundError,
    InvalidDocumentError,
    NoFeatureVectorError,
)
from search_service.fusion import RRF_K, reciprocal_rank_fusion
from search_service.growable import GrowableArray
from search_service.inverted_index import (
    MONTH_WORDS,
    Analysis,
    BM25Params,
    InvertedIndex,
    KeywordMatches,
    PreparedAdd,
    Reason,
)
from search_service.multilingual import QueryTranslator, load_translator
from search_service.semantic import LABEL_TEMPLATE, ConceptSpace
from search_service.vector_index import AnnParams, PreparedVectors, VectorIndex

log = logging.getLogger(__name__)

# Texts in, one L2-normalised embedding per text out (the vision service's EmbedText).
TextEmbedder = Callable[[list[str]], npt.NDArray[np.float32]]

_QUERY_EMBEDDING_CACHE = 1024
# Documents extend() adds per put_many().
_EXTEND_BATCH = 8192
_COMPACT_MIN_DEAD = 1000
# While the vision service is down, say so in the log at most this often.
_EMBED_WARNING_EVERY_S = 60.0


@dataclass(frozen=True)
class EngineParams:
    bm25: BM25Params = field(default_factory=BM25Params)
    ann: AnnParams = field(default_factory=AnnParams)
    vector_dim: int = 1280
    # Images at or above this moderation score are hidden unless a search asks for them.
    moderation_threshold: float = 0.8
    near_duplicate_threshold: float = 0.95
    # Concept-vector cosine a semantic hit needs (below it the hit is noise). Measured on real
    # photos: right concepts score 0.67-0.90, unrelated ones 0.45-0.64; 0.55 was best on the
    # labelled set of tests/search_service/eval_set.py once score fusion keeps keyword hits
    # first (semantic hits then fill the page instead of outranking labels).
    semantic_min_similarity: float = 0.55
    # ...and must be within this of the best semantic hit.
    semantic_margin: float = 0.1
    # "score": keyword scores (BM25 over labels weighted by probability, their hypernyms, text)
    # scaled to the best hit, plus semantic_weight x the concept similarity scaled the same way.
    # "rrf": reciprocal rank fusion of the two rankings (the ranking before; it ignores how
    # sure the model was, and one semantic hit could outrank a strong label).
    fusion: str = "score"
    # Under 1, so a semantic match alone never outranks the best keyword match.
    semantic_weight: float = 0.5
    compact_dead_fraction: float = 0.3
    # When nothing matches: the label classes present in the library closest to the query
    # (cosine of MiniLM embeddings) at or above this, at most closest_count of them.
    closest_min_similarity: float = 0.5
    closest_count: int = 3
    # ...and within this of the closest one.
    closest_margin: float = 0.1
    # Queries of only years and months ("june 2019") skip semantic expansion.
    dates_skip_semantic: bool = True
    # German, French and Spanish query words become the English words search knows
    # (multilingual.py); off gives English only.
    translate: bool = True


@dataclass(frozen=True)
class Filters:
    owner: str = ""
    include_moderated: bool = False
    statuses: tuple[Status, ...] = ()
    # Date taken (EXIF) within [taken_from, taken_until), seconds; 0 leaves that end open.
    # Either one set keeps only photos whose date is known.
    taken_from_unix_s: int = 0
    taken_until_unix_s: int = 0
    # Only images their owner starred.
    favourites_only: bool = False
    # Only these images when set (an album's members); an empty set matches nothing.
    allowed_ids: frozenset[str] | None = None


SORT_RELEVANCE, SORT_TAKEN_NEWEST, SORT_TAKEN_OLDEST = "relevance", "taken_newest", "taken_oldest"
SORTS = (SORT_RELEVANCE, SORT_TAKEN_NEWEST, SORT_TAKEN_OLDEST)


@dataclass(frozen=True)
class Hit:
    image_id: str
    score: float
    reasons: tuple[Reason, ...]


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    total: int
    fell_back_to_or: bool
    semantic_used: bool
    # Nothing matched the query: these are the nearest concepts of the library, and the hits
    # are theirs; `note` says so in words a page can show.
    closest: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class SimilarResult:
    hits: list[tuple[str, float]]
    approximate: bool


@dataclass(frozen=True)
class Duplicates:
    exact: list[tuple[list[str], str]]
    near: list[tuple[list[str], float]]


@dataclass
class PreparedPut:
    """A put_many worked out before the index lock is taken (SearchIndex.prepare_put)."""

    index: SearchIndex
    docs: Sequence[Document]
    # Documents in the index when it was made (their count is the batch's first number).
    first: int
    removed: Mapping[int, tuple[Document, Analysis]] | None = None
    # Of those, the documents it replaces, whose suggestion and label counts it takes off a
    # batch at a time (keywords.taken_off, label_removals).
    removing: frozenset[int] = frozenset()
    label_removals: list[tuple[str, int]] = field(default_factory=list)
    probs: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    moderation: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    taken: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    # The labels' kind numbers in the document store's table (None: too many kinds).
    kinds: npt.NDArray[np.int64] | None = None
    keywords: PreparedAdd | None = None
    vectors: PreparedVectors | None = None
    # Live documents gained per label name (labels at the keyword floor or above).
    label_counts: list[tuple[str, int]] = field(default_factory=list)
    # The labels' classes in this concept space.
    concepts: ConceptSpace | None = None
    classes: npt.NDArray[np.int64] | None = None
    # One image twice in the batch: put a document at a time.
    one_at_a_time: bool = False


class SearchIndex:
    def __init__(self, params: EngineParams | None = None) -> None:
        self.params = params or EngineParams()
        self._docs = DocumentStore()
        self._ids: dict[str, int] = {}
        self._alive = GrowableArray(np.bool_)
        self._owner_codes: dict[str, int] = {}
        self._owner = GrowableArray(np.int32)
        self._moderation = GrowableArray(np.float32)
        self._status = GrowableArray(np.int8)
        self._taken = GrowableArray(np.int64)
        self._favourite = GrowableArray(np.bool_)
        self.keywords = InvertedIndex(self.params.bm25)
        self.translator: QueryTranslator | None = (
            load_translator() if self.params.translate else None
        )
        self.vectors = VectorIndex(self.params.vector_dim, self.params.ann)
        self.concepts: ConceptSpace | None = None
        self._embedder: TextEmbedder | None = None
        self._query_embeddings: OrderedDict[str, npt.NDArray[np.float32]] = OrderedDict()
        self._embedding_lock = threading.Lock()
        self._last_embed_warning = -math.inf
        # Concept weights and the labels they were computed with, from a snapshot.
        self._saved_concepts: tuple[dict[str, Any] | None, list[str] | None] = (None, None)
        # Bumped by every put and remove (keys the cached filter mask).
        self._writes = 0
        self._allowed_cache: tuple[tuple[Filters, int], npt.NDArray[np.bool_]] | None = None
        # Label name -> live documents labelled with it (p >= the keyword floor): the
        # concepts that exist in the library, for "showing the closest".
        self._label_docs: Counter[str] = Counter()

    # ---- semantic expansion wiring ----------------------------------------------------------

    def attach_semantic(self, concepts: ConceptSpace, embedder: TextEmbedder) -> None:
        """Use `concepts` for semantic expansion; computes every document's concept weights
        unless `concepts` already holds them (restored from a snapshot)."""
        if len(concepts) != len(self._docs):
            concepts.clear_docs()
            for docno, doc in enumerate(self._docs):
                concepts.add(docno, doc.labels if doc else ())
        self.concepts = concepts
        self._embedder = embedder

    @property
    def semantic_ready(self) -> bool:
        return self.concepts is not None and self._embedder is not None

    # ---- writes -----------------------------------------------------------------------------

    def put(self, doc: Document) -> None:
        """Add `doc`, replacing any earlier document of the same image."""
        self.put_many([doc])

    def prepare_removals(self, docs: Sequence[Document]) -> dict[int, tuple[Document, Analysis]]:
        """The keyword analyses of the documents that put_many(docs) replaces, by document
        number: made before taking the index lock (under the writers' lock only, so no write
        changes them meanwhile) and handed to put_many, whose removals then do not tokenise
        the replaced documents again while searches wait (a re-put's main cost), nor read
        them back from the document store."""
        out: dict[int, tuple[Document, Analysis]] = {}
        ids = self._ids
        for d in docs:
            docno = ids.get(d.image_id)
            if docno is not None:
                old = self._docs[docno]
                if old is not None:
                    out[docno] = (old, self.keywords.analyse(old))
        return out

    def put_many(
        self,
        docs: Sequence[Document],
        removed: Mapping[int, tuple[Document, Analysis]] | None = None,
    ) -> None:
        """put() each of `docs`, in order; vectors, concept weights and the filter columns are
        filled a batch at a time, and every label is numbered once (its kind in the document
        store's table) for the keyword index, the document store and the concept space alike.
        Every document is validated before any is added. `removed`: prepare_removals(docs),
        made since the index last changed."""
        self.apply_put(self.prepare_put(docs, removed))

    def prepare_put(
        self,
        docs: Sequence[Document],
        removed: Mapping[int, tuple[Document, Analysis]] | None = None,
    ) -> PreparedPut:
        """What put_many(docs) does to the index, worked out without changing anything a
        search reads, for apply_put to put in: a writer makes it before taking the lock
        searches wait on, so they wait only for apply_put's appends and counts (measured
        with benchmarks/snapshot_stall_probe.py, see DurableIndex._apply_part). Validates
        every document (InvalidDocumentError), analyses the documents they replace
        (prepare_removals, unless given), numbers their labels (new kinds go at the end of the
        document store's append-only table), prepares the keyword postings, lengths and
        suggestion counts (InvertedIndex.prepare_add: the batch vocabulary, write side only),
        sums the replaced documents' suggestion and label counts, and quantises the vectors.
        Another write between the two leaves the result put_many's: removals of other images
        leave it valid; after documents were added, or an image it replaces was removed,
        apply_put makes it again first (under the lock, as put_many did)."""
        if len({d.image_id for d in docs}) != len(docs):  # one image twice: one at a time
            return PreparedPut(self, docs, len(self._docs), one_at_a_time=True)
        labels = [lb for d in docs for lb in d.labels]
        probs = np.asarray([lb.probability for lb in labels], np.float64)
        moderation = np.asarray([d.moderation_score for d in docs], np.float64)
        taken = np.asarray([d.taken_at_unix_s for d in docs], np.int64)
        self._validate_many(docs, probs, moderation, taken)
        if removed is None:
            removed = self.prepare_removals(docs)
        first = len(self._docs)
        kinds = self._docs.label_kinds(labels)
        out = PreparedPut(
            self, docs, first, removed, probs=probs, moderation=moderation, taken=taken, kinds=kinds
        )
        # The replaced documents whose analyses are at hand: their suggestion and label counts
        # are taken off a batch at a time (apply_put removes them uncounted).
        ids = self._ids
        removing = [
            n for n in (ids.get(d.image_id) for d in docs) if n is not None and n in removed
        ]
        analyses = [removed[docno][1] for docno in removing]
        out.removing = frozenset(removing)
        floor = self.params.bm25.min_label_probability
        gone = Counter(
            lb.name for n in removing for lb in removed[n][0].labels if lb.probability >= floor
        )
        out.label_removals = list(gone.items())
        if kinds is None:  # more kinds than the store numbers: a document at a time
            out.keywords = self.keywords.prepare_add(first, docs, None, analyses)
        else:
            out.keywords = self.keywords.prepare_add(
                first, docs, (kinds, self._docs.kinds, probs), analyses
            )
            per_kind = np.bincount(kinds[probs >= floor])
            table = self._docs.kinds
            out.label_counts = [
                (table[kind][0], n)
                for kind, n in zip(
                    np.flatnonzero(per_kind).tolist(), per_kind[per_kind > 0].tolist(), strict=True
                )
            ]
            if self.concepts is not None:
                out.concepts = self.concepts
                out.classes = self.concepts.kind_classes(self._docs.kinds)[kinds]
        out.vectors = self.vectors.prepare_add([d.feature_vector for d in docs])
        return out

    def apply_put(self, prepared: PreparedPut) -> None:
        """Put a prepare_put into the index: remove the documents it replaces (their counts
        taken off as summed), append, count and extend the columns. One made before documents
        were added or an image it replaces was removed (or by another index) is made again
        first."""
        ids = self._ids
        replaced = {d.image_id: ids[d.image_id] for d in prepared.docs if d.image_id in ids}
        if (
            prepared.index is not self
            or prepared.first != len(self._docs)
            or not prepared.removing <= set(replaced.values())  # one removed meanwhile
        ):
            prepared = self.prepare_put(prepared.docs, prepared.removed)
        docs = prepared.docs
        if prepared.one_at_a_time:
            for doc in docs:
                self.put_many([doc])
            return
        assert prepared.keywords is not None and prepared.vectors is not None
        for image_id, docno in replaced.items():
            self.remove(image_id, prepared.removed, counted=docno not in prepared.removing)
        label_docs = self._label_docs
        for name, n in prepared.label_removals:
            label_docs[name] -= n
            if label_docs[name] <= 0:
                del label_docs[name]
        self._writes += 1
        first, kinds, probs = prepared.first, prepared.kinds, prepared.probs
        self.keywords.apply_add(prepared.keywords)
        if kinds is None:
            for doc in docs:
                self._docs.append(doc)
        else:
            self._docs.extend(docs, kinds, probs)  # without vectors (self.vectors holds them)
        ids.update(zip([d.image_id for d in docs], range(first, first + len(docs)), strict=True))
        if kinds is None:
            floor = self.params.bm25.min_label_probability
            self._label_docs.update(
                lb.name for d in docs for lb in d.labels if lb.probability >= floor
            )
        else:
            label_docs = self._label_docs
            for name, n in prepared.label_counts:
                label_docs[name] += n
        vectors = [d.feature_vector for d in docs]
        self.vectors.add_many(first, vectors, prepared.vectors)
        if self.concepts is not None:
            if kinds is None:
                self.concepts.add_many(first, [d.labels for d in docs])
            else:
                classes = prepared.classes
                if prepared.concepts is not self.concepts or classes is None:  # attached since
                    classes = self.concepts.kind_classes(self._docs.kinds)[kinds]
                self.concepts.add_rows(first, [len(d.labels) for d in docs], classes, probs)
        owners = self._owner_codes
        self._alive.extend(np.ones(len(docs), np.bool_))
        self._owner.extend([owners.setdefault(d.owner, len(owners)) for d in docs])
        self._moderation.extend(prepared.moderation)
        self._status.extend([int(d.status) for d in docs])
        self._taken.extend(prepared.taken)
        self._favourite.extend([d.favourite for d in docs])

    def reserve(self, extra: int) -> None:
        """Room for `extra` more documents in the per-document arrays and vector rows, made now:
        growing an array copies it (tens of milliseconds for the concept rows at 1M), so a
        writer calls this before taking the lock searches wait on (GrowableArray.reserve)."""
        self.vectors.reserve(extra)
        for arr in (self._alive, self._owner, self._moderation, self._status, self._taken):
            arr.reserve(extra)
        self._favourite.reserve(extra)
        self.keywords.reserve(extra)

    def _validate_many(
        self,
        docs: Sequence[Document],
        probs: npt.NDArray[np.float64],
        moderation: npt.NDArray[np.float64],
        taken: npt.NDArray[np.int64],
    ) -> None:
        """validate() every document: checked for the batch at once, and a document at a time
        (for the first error's own message) only when something looks wrong."""
        dim = self.params.vector_dim
        try:
            with np.errstate(over="ignore"):  # a square past float32 is checked below
                fine = (
                    all(d.image_id for d in docs)
                    and bool(((probs >= 0.0) & (probs <= 1.0)).all())
                    and bool(((moderation >= 0.0) & (moderation <= 1.0)).all())
                    and bool((taken >= 0).all())
                    and all(
                        v is None or (len(v) == dim and math.isfinite(v @ v))
                        for v in [d.feature_vector for d in docs]
                    )
                )
        except (TypeError, ValueError):
            fine = False
        if not fine:
            for doc in docs:
                self.validate(doc)

    def remove(
        self,
        image_id: str,
        prepared: Mapping[int, tuple[Document, Analysis]] | None = None,
        counted: bool = True,
    ) -> bool:
        """`counted` False: the document's suggestion and label counts are left for the caller
        to take off (apply_put, a batch at a time)."""
        docno = self._ids.pop(image_id, None)
        if docno is None:
            return False
        self._writes += 1
        ready = prepared.get(docno) if prepared else None
        doc = ready[0] if ready else self._docs[docno]
        assert doc is not None
        self.keywords.remove(docno, doc, ready[1] if ready else None, counted)
        self.vectors.remove(docno)
        if self.concepts is not None:
            self.concepts.remove(docno)
        self._docs[docno] = None
        self._alive[docno] = False
        if counted:
            self._count_classes(doc, -1)
        return True

    def _count_classes(self, doc: Document, delta: int) -> None:
        floor = self.params.bm25.min_label_probability
        for label in doc.labels:
            if label.probability >= floor:
                self._label_docs[label.name] += delta
                if self._label_docs[label.name] <= 0:
                    del self._label_docs[label.name]

    def needs_compaction(self) -> bool:
        dead = len(self._docs) - len(self._ids)
        return dead >= _COMPACT_MIN_DEAD and dead > self.params.compact_dead_fraction * len(
            self._docs
        )

    def compacted(self) -> SearchIndex:
        """A fresh index holding only the live documents, renumbered densely."""
        fresh = SearchIndex(self.params)
        fresh.extend(self._doc_with_vector(d) for d, kept in enumerate(self._docs) if kept)
        if self.concepts is not None and self._embedder is not None:
            space = ConceptSpace(self.concepts.label_names, self.concepts.embeddings)
            fresh.attach_semantic(space, self._embedder)
        return fresh

    def live_documents(self, start: int, stop: int) -> list[Document]:
        """The live documents numbered start..stop-1 (with their vectors), in number order."""
        docs = self._docs
        return [self._doc_with_vector(d) for d in range(start, stop) if docs[d] is not None]

    def extend(self, docs: Iterable[Document]) -> int:
        """put_many() over `docs`, _EXTEND_BATCH at a time; how many were added."""
        count = 0
        batch: list[Document] = []
        for doc in docs:
            batch.append(doc)
            if len(batch) == _EXTEND_BATCH:
                self.put_many(batch)
                count += len(batch)
                batch = []
        if batch:
            self.put_many(batch)
            count += len(batch)
        return count

    def validate(self, doc: Document) -> None:
        if not doc.image_id:
            raise InvalidDocumentError("image_id is required")
        v = doc.feature_vector
        if v is not None and len(v) != self.params.vector_dim:
            raise InvalidDocumentError(
                f"feature_vector must have {self.params.vector_dim} values, got {len(v)}"
            )
        if v is not None and not np.isfinite(v).all():
            raise InvalidDocumentError("feature_vector holds NaN or infinity")
        if not 0.0 <= doc.moderation_score <= 1.0:
            raise InvalidDocumentError("moderation_score must be within 0..1")
        if doc.taken_at_unix_s < 0:
            raise InvalidDocumentError("taken_at must not be negative")
        for label in doc.labels:
            if not 0.0 <= label.probability <= 1.0:
                raise InvalidDocumentError(f"label {label.name!r} probability outside 0..1")

    # ---- reads ------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def numbered(self) -> int:
        """Document numbers given out, live or dead (an update numbers the image anew; the
        dead ones wait for compaction)."""
        return len(self._docs)

    def __contains__(self, image_id: str) -> bool:
        return image_id in self._ids

    def get(self, image_id: str) -> Document:
        docno = self._ids.get(image_id)
        if docno is None:
            raise ImageNotFoundError(image_id)
        return self._doc_with_vector(docno)

    def _doc_with_vector(self, docno: int) -> Document:
        doc = self._doc(docno)
        vector = self.vectors.vector(docno)
        return doc if vector is None else replace(doc, feature_vector=vector)

    def allowed(self, filters: Filters) -> npt.NDArray[np.bool_]:
        """Documents a query with these filters may return (a fresh array the caller owns).
        The mask of the most common filters is cached until the next write."""
        cached = self._allowed_cache
        if cached is not None and cached[0] == (filters, self._writes):
            return cached[1].copy()
        mask = self._allowed(filters)
        self._allowed_cache = ((filters, self._writes), mask)
        return mask.copy()

    def _allowed(self, filters: Filters) -> npt.NDArray[np.bool_]:
        mask = self._alive.view().copy()
        if filters.owner:
            code = self._owner_codes.get(filters.owner)
            if code is None:
                return np.zeros_like(mask)
            mask &= self._owner.view() == code
        if not filters.include_moderated:
            mask &= self._moderation.view() < self.params.moderation_threshold
        if filters.favourites_only:
            mask &= self._favourite.view()
        if filters.allowed_ids is not None:
            listed = np.zeros_like(mask)
            listed[[self._ids[i] for i in filters.allowed_ids if i in self._ids]] = True
            mask &= listed
        if filters.statuses:
            mask &= np.isin(self._status.view(), [int(s) for s in filters.statuses])
        if filters.taken_from_unix_s or filters.taken_until_unix_s:
            taken = self._taken.view()
            mask &= taken > 0
            if filters.taken_from_unix_s:
                mask &= taken >= filters.taken_from_unix_s
            if filters.taken_until_unix_s:
                mask &= taken < filters.taken_until_unix_s
        return mask

    def search(
        self,
        query: str,
        filters: Filters | None = None,
        limit: int = 20,
        offset: int = 0,
        semantic: bool = True,
        embedding: npt.NDArray[np.float32] | None = None,
        sort: str = SORT_RELEVANCE,
    ) -> SearchResult:
        """Ranked hits for `query`. With `semantic`, the query's embedding (given, or fetched
        through the embedder) adds concept matches fused with the keyword ranking. When nothing
        matches, the hits are those of the library's concepts closest to the query."""
        filters = filters or Filters()
        if sort not in SORTS:
            raise InvalidDocumentError(f"sort must be one of {', '.join(SORTS)}")
        translation = self.translator.translate(query) if self.translator else None
        typed = query
        if translation is not None:
            query = translation.english
        terms = self.keywords.query_terms(query)
        allowed = self.allowed(filters)
        matches = self.keywords.match(terms, allowed)
        if translation is not None:
            # A translated word may be the library's own word too: "tee" (German for tea) in
            # a file named "album-tee946d-coffee.jpg". The query as typed matches as well as
            # its translation, or searching a filename, tag or OCR word finds only the photos
            # its translation happens to describe.
            matches = _either(
                matches, self.keywords.match(self.keywords.query_terms(typed), allowed)
            )

        semantic_docs = np.zeros(0, np.int64)
        semantic_sims = np.zeros(0, np.float32)
        semantic_best: dict[int, tuple[str, float]] = {}
        if not semantic or self.is_date_query(query):
            embedding = None  # a date is not a concept: MiniLM would match anything to "2019"
        elif embedding is None:
            embedding = self.query_embedding(query)
        found = None
        if embedding is not None and self.concepts is not None:
            found = self.concepts.search(
                embedding,
                allowed,
                self.params.semantic_min_similarity,
                self.params.semantic_margin,
            )
            semantic_docs, semantic_sims = found.docs, found.similarities

        closest: tuple[str, ...] = ()
        note = ""
        if (
            matches.docs.size == 0
            and semantic_docs.size == 0
            and len(self._ids)
            and self.params.closest_count > 0
        ):
            closest, matches = self._closest(query, embedding, allowed)
        elif (
            matches.docs.size == 0
            and found is not None
            and self.concepts is not None
            and self.params.closest_count > 0
        ):
            # Only semantic expansion answered: name the labels that brought the best hits.
            order = np.argsort(-found.similarities, kind="stable")
            named = dict.fromkeys(
                self.concepts.label_names[int(found.best_labels[i])] for i in order
            )
            closest = tuple(list(named)[: self.params.closest_count])
        if closest:
            shown = ", ".join(closest)
            note = f"no photo is labelled '{query.strip()}'; showing the closest: {shown}"
        fused, scores = self._rank(matches, semantic_docs, semantic_sims, offset + limit)
        total = int(matches.docs.size)
        if semantic_docs.size:
            total += int((~_in_sorted(semantic_docs, matches.docs)).sum())
        if total == 0 and offset == 0 and not note:
            note = f"no photo matches '{query.strip()}', and nothing in the library is close to it"
        if sort != SORT_RELEVANCE and fused.size:
            fused, scores = self._by_date(
                matches, semantic_docs, semantic_sims, sort == SORT_TAKEN_NEWEST
            )
        page = [int(d) for d in fused[offset : offset + limit]]
        if found is not None and self.concepts is not None:
            names = self.concepts.label_names
            on_page = np.isin(found.docs, page)
            for i in np.flatnonzero(on_page):
                best = names[int(found.best_labels[i])]
                semantic_best[int(found.docs[i])] = (best, float(found.similarities[i]))
        # Explaining a page needs only the labels that can have matched: rebuilding a
        # document's 20 labels would cost more than the query itself.
        light = self.params.bm25.min_label_probability / 5
        page_docs = [self._docs.light(d, light) for d in page]
        explained = self.keywords.explain(page, page_docs, matches)
        hits = []
        for docno, doc, reasons, score in zip(
            page, page_docs, explained, scores[offset : offset + limit], strict=True
        ):
            if docno in semantic_best:
                label, sim = semantic_best[docno]
                reasons.append(Reason("semantic", label, sim))
            hits.append(Hit(doc.image_id, float(score), tuple(reasons)))
        return SearchResult(
            hits,
            total,
            matches.fell_back_to_or,
            embedding is not None,
            closest,
            "; ".join(n for n in (translation.note if translation else "", note) if n),
        )

    def _rank(
        self,
        matches: KeywordMatches,
        semantic_docs: npt.NDArray[np.int64],
        semantic_sims: npt.NDArray[np.float32],
        needed: int,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Every hit best first (or at least the `needed` best), with its fused score."""
        if self.params.fusion == "rrf":
            if semantic_docs.size:
                keyword_rank = _best_first(matches.docs, matches.scores, matches.docs.size)
                order = np.argsort(-semantic_sims, kind="stable")
                return reciprocal_rank_fusion(
                    [keyword_rank, semantic_docs[order]], [1.0, self.params.semantic_weight]
                )
            fused = _best_first(matches.docs, matches.scores, needed)
            return fused, 1.0 / (RRF_K + np.arange(1, fused.size + 1, dtype=np.float64))
        # Score fusion: each side scaled to its best hit; the semantic side, weighted under 1,
        # fills only what the keyword score leaves (kw + w * sem * (1 - kw)), so a strong label
        # match is never overtaken by a semantic one.
        keyword = matches.scores.astype(np.float64)
        if keyword.size:
            keyword = keyword / max(float(keyword.max()), 1e-12)
        if not semantic_docs.size:
            fused = _best_first(matches.docs, keyword.astype(np.float32), needed)
            at = np.searchsorted(matches.docs, fused)
            return fused, keyword[at]
        sem = self.params.semantic_weight * semantic_sims.astype(np.float64)
        sem = sem / max(float(semantic_sims.max()), 1e-12)
        # Keyword hits (ascending) and the semantic hits no keyword matched, side by side: no
        # sort of the whole union (a common word matches 100k+ documents at 1M).
        both = _in_sorted(semantic_docs, matches.docs)
        at = np.searchsorted(matches.docs, semantic_docs[both])
        keyword = keyword.copy()
        keyword[at] += sem[both] * (1.0 - keyword[at])
        docs = np.concatenate([matches.docs, semantic_docs[~both]])
        total = np.concatenate([keyword, sem[~both]])
        count = min(needed, docs.size)
        if count < docs.size:
            part = np.argpartition(-total, count - 1)[:count]
            keep = np.flatnonzero(total >= total[part].min())  # ties at the cut all compete
        else:
            keep = np.arange(docs.size)
        order = keep[np.lexsort((docs[keep], -total[keep]))][:count]
        return docs[order], total[order]

    def _by_date(
        self,
        matches: KeywordMatches,
        semantic_docs: npt.NDArray[np.int64],
        semantic_sims: npt.NDArray[np.float32],
        newest_first: bool,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Every hit by date taken (unknown dates last), relevance breaking ties."""
        docs, scores = self._rank(matches, semantic_docs, semantic_sims, 1 << 62)
        taken = self._taken.view()[docs].astype(np.float64)
        key = np.where(taken > 0, -taken if newest_first else taken, np.inf)
        order = np.lexsort((-scores, key))
        return docs[order], scores[order]

    def _closest(
        self,
        query: str,
        embedding: npt.NDArray[np.float32] | None,
        allowed: npt.NDArray[np.bool_],
    ) -> tuple[tuple[str, ...], KeywordMatches]:
        """Nothing matched `query`: the nearest label classes the library holds (by MiniLM
        similarity when the query could be embedded, else by spelling), and their hits."""
        names: list[tuple[str, float]] = []
        present = np.zeros(0, np.int64)
        if self.concepts is not None:
            known = (self.concepts.index_of(name) for name in self._label_docs)
            present = np.asarray(sorted({c for c in known if c >= 0}), np.int64)
        if embedding is not None and self.concepts is not None and present.size:
            q = embedding / max(float(np.linalg.norm(embedding)), 1e-12)
            sims = self.concepts.embeddings[present] @ q
            floor = max(self.params.closest_min_similarity, float(sims.max(initial=0.0)))
            floor = max(self.params.closest_min_similarity, floor - self.params.closest_margin)
            for i in np.argsort(-sims)[: self.params.closest_count]:
                if sims[i] >= floor:
                    names.append((self.concepts.label_names[int(present[i])], float(sims[i])))
        if not names:
            wanted = " ".join(self.keywords.query_words(query))
            vocabulary = self.keywords.label_vocabulary()
            for word in difflib.get_close_matches(
                wanted, vocabulary, self.params.closest_count, 0.6
            ):
                names.append((word, 1.0))
        # Hits of each close concept (scored by the label's probability), weighted by how close
        # the concept is to the query.
        n = len(self._docs)
        scores = np.zeros(n, np.float64)
        for name, weight in names:
            found = self.keywords.match(self.keywords.query_terms(name), allowed)
            if found.docs.size:
                scores[found.docs] += weight * found.scores
        docs = np.flatnonzero(scores > 0)
        terms = list(dict.fromkeys(t for name, _ in names for t in self.keywords.query_terms(name)))
        parts = self.keywords.match(terms, allowed).parts if terms else []
        kept = [name for name, _ in names]
        return tuple(kept), KeywordMatches(
            docs.astype(np.int64), scores[docs].astype(np.float32), False, parts
        )

    def is_date_query(self, query: str) -> bool:
        translation = self.translator.translate(query) if self.translator else None
        if translation is not None:
            query = translation.english  # "juni 2019"
        return self.params.dates_skip_semantic and is_date_query(self.keywords.query_words(query))

    def query_embedding(self, query: str) -> npt.NDArray[np.float32] | None:
        """The query's embedding (cached), or None when semantic expansion is unavailable.

        Thread-safe and meant to be called outside the index lock: it may call the vision
        service, and a slow vision service must not stall other searches.
        """
        embedder = self._embedder
        if embedder is None or self.concepts is None:
            return None
        translation = self.translator.translate(query) if self.translator else None
        if translation is not None:
            query = translation.english  # MiniLM knows English only
        key = " ".join(self.keywords.query_words(query))
        if not key:
            return None
        with self._embedding_lock:
            cached = self._query_embeddings.get(key)
            if cached is not None:
                self._query_embeddings.move_to_end(key)
                return cached
        try:
            embedding = np.asarray(embedder([LABEL_TEMPLATE.format(key)])[0], np.float32)
        except Exception as exc:  # the vision service is down: keyword search still answers
            now = time.monotonic()
            if now - self._last_embed_warning > _EMBED_WARNING_EVERY_S:
                self._last_embed_warning = now
                log.warning("semantic expansion unavailable, keyword search only: %s", exc)
            return None
        with self._embedding_lock:
            self._query_embeddings[key] = embedding
            if len(self._query_embeddings) > _QUERY_EMBEDDING_CACHE:
                self._query_embeddings.popitem(last=False)
        return embedding

    def similar(
        self,
        image_id: str = "",
        vector: npt.ArrayLike | None = None,
        k: int = 10,
        filters: Filters | None = None,
        exact: bool = False,
    ) -> SimilarResult:
        allowed = self.allowed(filters or Filters())
        if image_id:
            docno = self._ids.get(image_id)
            if docno is None:
                raise ImageNotFoundError(image_id)
            query = self.vectors.vector(docno)
            if query is None:
                raise NoFeatureVectorError(image_id)
            allowed[docno] = False
        else:
            query = np.asarray(vector, dtype=np.float32)
            if query.shape != (self.params.vector_dim,):
                raise InvalidDocumentError(
                    f"vector must have {self.params.vector_dim} values, got {query.size}"
                )
            if not np.isfinite(query).all() or not query.any():
                raise InvalidDocumentError("vector must be finite and not all zeros")
        found = self.vectors.search(query, k, allowed, exact=exact)
        hits = []
        for d, s in zip(found.docs, found.similarities, strict=True):
            doc = self._docs[int(d)]
            assert doc is not None
            hits.append((doc.image_id, float(s)))
        return SimilarResult(hits, found.approximate)

    def duplicates(self, near_threshold: float = 0.0, image_id: str = "") -> Duplicates:
        threshold = near_threshold or self.params.near_duplicate_threshold
        if not 0.0 < threshold <= 1.0:
            raise InvalidDocumentError("near_threshold must be within (0, 1]")
        if image_id and image_id not in self._ids:
            raise ImageNotFoundError(image_id)
        live = sorted(self._ids.values())
        docs = [(d, str(self._docs.field(d, "sha256"))) for d in live]
        exact = exact_groups(docs)
        # One representative per sha256 (the first copy), so exact copies count once.
        representative: dict[int, int] = {}
        for group in exact:
            for d in group.docs:
                representative[d] = group.docs[0]
        present = self.vectors.present()
        reps = np.asarray(
            [d for d in live if representative.get(d, d) == d and present[d]], np.int64
        )
        near = near_groups(reps, self.vectors, threshold)
        if image_id:
            me = self._ids[image_id]
            mine = representative.get(me, me)
            exact = [g for g in exact if me in g.docs]
            near = [g for g in near if mine in g.docs]
        return Duplicates(
            exact=[(self._image_ids(g), g.sha256) for g in exact],
            near=[(self._image_ids(g), g.min_similarity) for g in near],
        )

    def suggest(self, prefix: str, limit: int = 10) -> list[tuple[str, int, str]]:
        return self.keywords.suggest(prefix, limit)

    def _doc(self, docno: int) -> Document:
        doc = self._docs[docno]
        assert doc is not None
        return doc

    def _image_ids(self, group: DuplicateGroup) -> list[str]:
        return [self._doc(d).image_id for d in group.docs]

    def warm(self) -> None:
        """Touch everything a first query needs, so it is as fast as the rest."""
        self.keywords.warm()
        if len(self._docs):
            self.search("warm", semantic=False)
            if self.vectors.approximate or len(self.vectors):
                q = np.ones(self.params.vector_dim, np.float32)
                self.vectors.search(q, 1, self._alive.view())

    # ---- persistence ------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "doc_columns": self._docs.columns(),
            "owners": list(self._owner_codes),
            "alive": self._alive.view(),
            "owner": self._owner.view(),
            "moderation": self._moderation.view(),
            "status": self._status.view(),
            "taken": self._taken.view(),
            "vectors": self.vectors.state(),
            "keywords": self.keywords.state(),
        }
        if self.concepts is not None:
            state["concepts"] = self.concepts.state()
            state["concept_labels"] = self.concepts.label_names
        return state

    def frozen_state(self) -> dict[str, Any]:
        """state() as of now, cheap enough to take under the writers' lock (copies of what
        writes change in place, views of what only grows at the end, a copy of the document
        list); the costly parts (document columns, posting bytes) are callables that read only
        this frozen view, for a snapshot to evaluate while writes and searches go on. The
        approximate vector index is not in it (VectorIndex.save_ann)."""
        state: dict[str, Any] = {
            "doc_columns": self._docs.frozen_columns(),
            "owners": list(self._owner_codes),
            "alive": self._alive.view().copy(),
            "owner": self._owner.view(),
            "moderation": self._moderation.view(),
            "status": self._status.view(),
            "taken": self._taken.view(),
            "vectors": self.vectors.frozen_state(),
            "keywords": self.keywords.frozen_state(),
        }
        if self.concepts is not None:
            state["concepts"] = self.concepts.frozen_state()
            state["concept_labels"] = list(self.concepts.label_names)
        return state

    @classmethod
    def from_state(
        cls,
        state: dict[str, Any],
        params: EngineParams | None = None,
        ann_dir: Path | None = None,
    ) -> SearchIndex:
        """From state() or frozen_state(); `ann_dir` holds the approximate vector index saved
        apart (the file and rows the state names)."""
        index = cls(params)
        ann_file = None
        ann_name, ann_rows = state["vectors"].get("ann_file"), state["vectors"].get("ann_rows")
        if ann_dir is not None and ann_name and ann_rows is not None:
            ann_file = (ann_dir / str(ann_name), int(ann_rows))
        index.vectors = VectorIndex.restore(
            state["vectors"], index.params.vector_dim, index.params.ann, ann_file
        )
        index.keywords = InvertedIndex.from_state(state["keywords"], index.params.bm25)
        if "doc_columns" in state:
            index._load_columns(state["doc_columns"], state["alive"])
            favourite = np.asarray(state["doc_columns"]["favourite"], np.bool_)
        else:  # an older snapshot: documents as JSON, rebuilt one by one
            favourite = index._load_json_docs(state["docs"])
        index._owner_codes = {o: i for i, o in enumerate(state["owners"])}
        index._alive = GrowableArray.from_array(state["alive"])
        index._owner = GrowableArray.from_array(state["owner"])
        index._moderation = GrowableArray.from_array(state["moderation"])
        index._status = GrowableArray.from_array(state["status"])
        index._taken = GrowableArray.from_array(state["taken"])
        # Rebuilt from the documents (older snapshots have no array for it).
        index._favourite = GrowableArray.from_array(favourite)
        index._saved_concepts = state.get("concepts"), state.get("concept_labels")
        return index

    def _load_columns(self, columns: dict[str, Any], alive: npt.NDArray[np.bool_]) -> None:
        """Documents, the id map and label counts from the snapshot's columns (no document is
        rebuilt: the store reads them from the columns when asked)."""
        self._docs = DocumentStore.from_columns(columns)
        ids = self._docs.image_ids()
        id_map = dict(zip(ids, range(len(ids)), strict=True))
        for docno in np.flatnonzero(~np.asarray(alive, np.bool_)).tolist():
            if id_map.get(ids[docno]) == docno:  # a later copy of the image keeps its number
                del id_map[ids[docno]]
        self._ids = id_map
        floor = self.params.bm25.min_label_probability
        self._label_docs = Counter(self._docs.label_counts(floor))

    def _load_json_docs(self, docs: list[Any]) -> npt.NDArray[np.bool_]:
        """Documents of a snapshot written before columns; their favourite flags."""
        favourite = np.zeros(len(docs), np.bool_)
        for docno, data in enumerate(docs):
            if data is None:
                self._docs.append(None)
                continue
            doc = Document.from_json(data)  # its vector stays in index.vectors
            self._docs.append(doc)
            self._ids[doc.image_id] = docno
            favourite[docno] = doc.favourite
            self._count_classes(doc, +1)
        return favourite

    def restore_semantic(self, concepts: ConceptSpace, embedder: TextEmbedder) -> None:
        """attach_semantic, reusing saved concept weights when they match these labels."""
        saved, labels = self._saved_concepts
        if saved is not None and labels == concepts.label_names:
            concepts.restore_docs(saved)
        self.attach_semantic(concepts, embedder)


def is_date_query(words: list[str]) -> bool:
    """Only years, day numbers and month names ("june 2019")."""
    return bool(words) and all(w.isdigit() or w in MONTH_WORDS for w in words)


def _either(first: KeywordMatches, second: KeywordMatches) -> KeywordMatches:
    """The documents either keyword match found, each with the better of its two scores. A
    match of every term wins over the other side's fallback to any term (as one query's
    does); two fallbacks, or two full matches, are joined."""
    if first.fell_back_to_or != second.fell_back_to_or:
        full, fallback = (second, first) if first.fell_back_to_or else (first, second)
        return full if full.docs.size else fallback
    if not second.docs.size:
        return first
    if not first.docs.size:
        return second
    docs = np.union1d(first.docs, second.docs)
    scores = np.zeros(docs.size, np.float32)
    for side in (first, second):
        at = np.searchsorted(docs, side.docs)
        scores[at] = np.maximum(scores[at], side.scores)
    # The same (field, term) posting list is the same part whichever query used it.
    parts = list({(p[0], p[1]): p for p in [*first.parts, *second.parts]}.values())
    return KeywordMatches(docs, scores, first.fell_back_to_or, parts)


def _in_sorted(
    values: npt.NDArray[np.int64], ascending: npt.NDArray[np.int64]
) -> npt.NDArray[np.bool_]:
    """For each of `values`: is it in `ascending` (a sorted array)?"""
    if not ascending.size:
        return np.zeros(values.size, np.bool_)
    at = np.minimum(np.searchsorted(ascending, values), ascending.size - 1)
    return np.asarray(ascending[at] == values)


def _best_first(
    docs: npt.NDArray[np.int64], scores: npt.NDArray[np.float32], count: int
) -> npt.NDArray[np.int64]:
    """The `count` best of `docs` (ascending numbers) by score, ties by number: deterministic,
    so consecutive pages never overlap even when only a page's worth is sorted."""
    if count <= 0:
        return docs[:0]
    if count < docs.size:
        part = np.argpartition(-scores, count - 1)[:count]
        keep = np.flatnonzero(scores >= scores[part].min())
        docs, scores = docs[keep], scores[keep]
    order = np.lexsort((docs, -scores))
    return docs[order][:count]
