"""Semantic expansion without CLIP: a bridge from words to pictures through label names.

The 1000 ImageNet class names are embedded once ("a photo of a {label}") with the vision
service's sentence model. An image's concept vector is its label probabilities (top 20) times
those embeddings, normalised; a query embedded the same way is compared by cosine. So "kitten"
finds the photo labelled "tiger cat" although no label says kitten.

Concept vectors are never materialised (100k x 384 floats): with E the label embeddings and p a
document's sparse label probabilities, cos(q, pE) = p . (E q) / |pE|, and |pE| comes from the
label Gram matrix.

A query does not scan every document. Each class keeps a posting list of the documents whose
label of that class carries real weight (probability >= POSTING_FLOOR, or the document's top
label), with that probability. A query scores its label similarities (E q, 1000 x 384), takes
the CANDIDATE_CLASSES closest classes (those within CLASS_SLACK of the similarity floor, and
no more than MAX_POSTINGS postings in all: the work does not grow with the library), sums
p x sim over their postings as a first estimate, and computes the exact cosine from the
document's 20 labels only for the best MAX_CANDIDATES of them. A document whose weighty labels
are all far from the query cannot reach the floor (its cosine is a weighted mean of its label
similarities, stretched a little by |pE|), so what the bound leaves out are weak matches; the
test suite checks the results against the full scan on the labelled photo set.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from search_service.document import Label
from search_service.growable import GrowableArray
from search_service.tokenizer import normalise

TOP_LABELS = 20
LABEL_TEMPLATE = "a photo of a {}"
# A label goes in its class's posting list at this probability or above (or when it is the
# document's top label).
POSTING_FLOOR = 0.05
# Classes a query expands to: at most this many, and only those whose similarity to the query
# is within CLASS_SLACK of the hit floor.
CANDIDATE_CLASSES = 128
CLASS_SLACK = 0.3
# Documents rescored exactly per query (by their posting estimate, best first).
MAX_CANDIDATES = 1024
# Postings gathered per query at most (past the MIN_CLASSES closest classes).
MAX_POSTINGS = 16_384
MIN_CLASSES = 1


def label_prompts(names: Sequence[str]) -> list[str]:
    return [LABEL_TEMPLATE.format(name) for name in names]


@dataclass(frozen=True)
class SemanticHits:
    docs: npt.NDArray[np.int64]
    similarities: npt.NDArray[np.float32]
    # For each hit, the class index that contributed most (the "why").
    best_labels: npt.NDArray[np.int64]


class ConceptSpace:
    """Label embeddings (one row per class index), each document's top label weights, and per
    class the documents it weighs in (the postings a query expands through)."""

    def __init__(self, label_names: Sequence[str], embeddings: npt.NDArray[np.float32]) -> None:
        if len(label_names) != len(embeddings):
            raise ValueError("one embedding per label is needed")
        self.label_names = list(label_names)
        e = np.asarray(embeddings, dtype=np.float32)
        self.embeddings = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        self._gram = self.embeddings @ self.embeddings.T
        self._by_name = {normalise(n): i for i, n in enumerate(self.label_names)}
        self._kind_table: object = None
        self._kind_classes: list[int] = []
        self._kind_class_array = np.zeros(0, np.int64)
        # A snapshot view's rows and the rows removed since (see frozen_state).
        self._held: tuple[int, dict[int, tuple[npt.NDArray[np.float32], float]]] | None = None
        self.clear_docs()

    def __len__(self) -> int:
        """Documents (numbers) holding concept weights."""
        return len(self._norms)

    def clear_docs(self) -> None:
        self._held = None
        self._classes = GrowableArray(np.int16, (TOP_LABELS,))
        self._probs = GrowableArray(np.float32, (TOP_LABELS,))
        self._norms = GrowableArray(np.float32)
        # class index -> (document numbers ascending, their probability of that class)
        self._posted: list[tuple[GrowableArray, GrowableArray] | None] = [None] * len(
            self.label_names
        )

    def index_of(self, name: str) -> int:
        return self._by_name.get(normalise(name), -1)

    def class_of(self, label: Label) -> int:
        if 0 <= label.class_index < len(self.label_names):
            return label.class_index
        return self._by_name.get(normalise(label.name), -1)

    def add(self, docno: int, labels: Sequence[Label]) -> None:
        self.add_many(docno, [labels])

    def add_many(self, first: int, label_lists: Sequence[Sequence[Label]]) -> None:
        """Documents first, first + 1, ... with these labels, a batch at a time: each
        document's labels by probability (ties in their order), the top TOP_LABELS of known
        classes kept, the first of a class posted when it is the top label or weighs
        POSTING_FLOOR."""
        flat = [label for labels in label_lists for label in labels]
        p = np.asarray([label.probability for label in flat], np.float64)
        cls = np.asarray([label.class_index for label in flat], np.int64)
        unknown = np.flatnonzero((cls < 0) | (cls >= len(self.label_names)))
        for j in unknown.tolist():
            cls[j] = self.class_of(flat[j])
        self.add_rows(first, [len(labels) for labels in label_lists], cls, p)

    def kind_classes(
        self, kinds: Sequence[tuple[str, tuple[str, ...], int]]
    ) -> npt.NDArray[np.int64]:
        """The class (class_of) of each label kind (name, synonyms, class number) of an
        append-only kind table, remembered for the kinds seen before."""
        if self._kind_table is not kinds:  # another table: its numbers mean other kinds
            self._kind_table = kinds
            self._kind_classes = []
            self._kind_class_array = np.zeros(0, np.int64)
        known = self._kind_classes
        if len(known) < len(kinds):
            known.extend(
                self.class_of(Label(name, 1.0, synonyms, index))
                for name, synonyms, index in kinds[len(known) :]
            )
            self._kind_class_array = np.asarray(known, np.int64)
        return self._kind_class_array

    def add_rows(self, first: int, counts: Sequence[int], cls: Any, p: Any) -> None:
        """add_many() with the labels given as arrays: each document's number of labels, and
        every label's class (-1: none) and probability, documents in order."""
        if first != len(self._norms):
            raise ValueError(f"document numbers must be dense: got {first}")
        count = len(counts)
        doc = np.repeat(np.arange(count), counts)
        valid = np.flatnonzero((cls >= 0) & (p > 0))
        doc, p, cls = doc[valid], p[valid], cls[valid]
        # Labels come by probability within each document (as the classifier gives them);
        # otherwise they are put in that order.
        if ((doc[1:] == doc[:-1]) & (p[1:] > p[:-1])).any():
            ranked = np.lexsort((-p, doc))  # stable: equal probabilities keep their order
            doc, p, cls = doc[ranked], p[ranked], cls[ranked]
        starts = np.searchsorted(doc, np.arange(count))
        slot = np.arange(doc.size) - starts[doc]
        kept = slot < TOP_LABELS
        doc, p, cls, slot = doc[kept], p[kept], cls[kept], slot[kept]
        classes = np.zeros((count, TOP_LABELS), np.int16)
        probs = np.zeros((count, TOP_LABELS), np.float32)
        classes[doc, slot] = cls
        probs[doc, slot] = p
        posted = np.flatnonzero((slot == 0) | (p >= POSTING_FLOOR))
        _, once = np.unique(doc[posted] * len(self.label_names) + cls[posted], return_index=True)
        posted = np.sort(posted[once])  # a class twice in one document: the first is posted
        self._post_many(cls[posted], first + doc[posted], p[posted])
        c = classes.astype(np.intp)
        gram = np.take(self._gram.ravel(), c[:, :, None] * len(self.label_names) + c[:, None, :])
        norm_sq = np.einsum("bi,bij,bj->b", probs, gram, probs)
        self._classes.extend(classes)
        self._probs.extend(probs)
        self._norms.extend(np.sqrt(np.maximum(norm_sq, 0.0)))

    def _post_many(self, cls: Any, docs: Any, probs: Any) -> None:
        """Append (class, document, probability) postings, documents ascending per class."""
        order = np.argsort(cls, kind="stable")
        cls, docs, probs = cls[order], docs[order], probs[order].astype(np.float32)
        starts = np.flatnonzero(np.diff(cls, prepend=-1))
        bounds = np.append(starts, cls.size).tolist()
        for i, c in enumerate(cls[starts].tolist()):
            posted = self._posted[c]
            if posted is None:
                posted = self._posted[c] = (
                    GrowableArray(np.int32, capacity=64),
                    GrowableArray(np.float32, capacity=64),
                )
            posted[0].extend(docs[bounds[i] : bounds[i + 1]])
            posted[1].extend(probs[bounds[i] : bounds[i + 1]])

    def remove(self, docno: int) -> None:
        """The document's postings stay; a zero norm keeps it out of every result."""
        held = self._held
        if held is not None and docno < held[0] and docno not in held[1]:
            held[1][docno] = (self._probs[docno].copy(), float(self._norms[docno]))
        self._probs[docno] = 0.0
        self._norms[docno] = 0.0

    def search(
        self,
        query_embedding: npt.NDArray[np.float32],
        allowed: npt.NDArray[np.bool_],
        min_similarity: float,
        margin: float = 1.0,
        exhaustive: bool = False,
    ) -> SemanticHits:
        """Allowed documents whose concept vector is at least min_similarity from the query
        and within `margin` of the best one (weak concept matches are noise, not results).

        Through the class postings (see the module docstring); `exhaustive` scores every
        document instead (the reference the postings path is tested against)."""
        q = np.asarray(query_embedding, dtype=np.float32)
        q = q / max(float(np.linalg.norm(q)), 1e-12)
        label_sims = self.embeddings @ q
        n = len(self._norms)
        allowed = allowed[:n]
        if exhaustive:
            candidates = np.flatnonzero(allowed)
        else:
            candidates = self.candidates(label_sims, allowed, min_similarity)
        classes = self._classes.view()[candidates]
        weighted = self._probs.view()[candidates] * label_sims[classes]
        norms = self._norms.view()[candidates]
        with np.errstate(divide="ignore", invalid="ignore"):
            sims = np.where(norms > 0, weighted.sum(axis=1) / norms, 0.0).astype(np.float32)
        keep = np.flatnonzero(sims >= min_similarity)
        if keep.size:
            keep = keep[sims[keep] >= sims[keep].max() - margin]
        best = classes[keep, np.argmax(weighted[keep], axis=1)] if keep.size else keep
        return SemanticHits(
            candidates[keep].astype(np.int64), sims[keep], np.asarray(best, np.int64)
        )

    def candidates(
        self,
        label_sims: npt.NDArray[np.float32],
        allowed: npt.NDArray[np.bool_],
        min_similarity: float,
    ) -> npt.NDArray[np.int64]:
        """Allowed documents posted under the classes closest to the query, the best
        MAX_CANDIDATES of them by the postings' estimate (sum of p x sim / |pE|), ascending.

        Classes are taken closest first until MAX_POSTINGS postings are gathered (the first
        MIN_CLASSES always), so the work is bounded however large the library grows."""
        count = min(CANDIDATE_CLASSES, label_sims.size)
        top = np.argpartition(-label_sims, count - 1)[:count]
        top = top[label_sims[top] >= min_similarity - CLASS_SLACK]
        top = top[np.argsort(-label_sims[top], kind="stable")]
        doc_parts, prob_parts = [], []
        used: list[int] = []
        lengths: list[int] = []
        posted_all = self._posted
        gathered = 0
        for cls in top.tolist():
            posted = posted_all[cls]
            if posted is None:
                continue
            size = len(posted[0])
            if len(used) >= MIN_CLASSES and gathered + size > MAX_POSTINGS:
                break
            doc_parts.append(posted[0].view())
            prob_parts.append(posted[1].view())
            used.append(cls)
            lengths.append(size)
            gathered += size
        if not doc_parts:
            return np.zeros(0, np.int64)
        docs = np.concatenate(doc_parts)
        weights = np.concatenate(prob_parts) * np.repeat(label_sims[used], lengths)
        n = len(self._norms)
        if docs.size * 8 < n:  # few postings for the library: sort them
            order = np.argsort(docs)
            docs, weights = docs[order], weights[order]
            starts = np.flatnonzero(np.diff(docs, prepend=-1))
            found = docs[starts]
            estimate = np.add.reduceat(weights, starts)
        else:
            estimate = np.bincount(docs, weights=weights, minlength=n)
            found = np.flatnonzero(estimate)
            estimate = estimate[found]
        norms = self._norms.view()[found]
        ok = allowed[found] & (norms > 0)
        found, estimate = found[ok], estimate[ok] / norms[ok]
        if found.size > MAX_CANDIDATES:
            best = np.argpartition(-estimate, MAX_CANDIDATES - 1)[:MAX_CANDIDATES]
            found = np.sort(found[best])
        return found.astype(np.int64)

    def state(self) -> dict[str, npt.NDArray[np.generic]]:
        return {
            "classes": self._classes.view(),
            "probs": self._probs.view(),
            "norms": self._norms.view(),
        }

    def frozen_state(self) -> dict[str, Any]:
        """state() as of now, cheap to take under the writers' lock: views (rows only grow at
        the end, and a grown array leaves the old one be); a removal after this records the
        row's weights and norm before it zeroes them, and the weights and norms are copied and
        those rows put back when the snapshot asks for them (a copy of 80 MB of weights at 1M
        documents under the lock before)."""
        classes, probs, norms = self._classes.view(), self._probs.view(), self._norms.view()
        held: dict[int, tuple[npt.NDArray[np.float32], float]] = {}
        self._held = (len(norms), held)
        built: dict[str, Any] = {}

        def copied(name: str) -> npt.NDArray[np.float32]:
            if not built:
                built["probs"], built["norms"] = probs.copy(), norms.copy()
                for docno, (row, norm) in list(held.items()):
                    built["probs"][docno] = row
                    built["norms"][docno] = norm
                if self._held is not None and self._held[1] is held:
                    self._held = None
            return built[name]

        return {
            "classes": classes,
            "probs": functools.partial(copied, "probs"),
            "norms": functools.partial(copied, "norms"),
        }

    def restore_docs(self, state: dict[str, npt.NDArray[np.generic]]) -> None:
        self.clear_docs()
        self._classes = GrowableArray.from_array(state["classes"])
        self._probs = GrowableArray.from_array(state["probs"])
        self._norms = GrowableArray.from_array(state["norms"])
        self._rebuild_postings()

    def _rebuild_postings(self) -> None:
        """The class postings from the label arrays, vectorised (a restart, not a replay)."""
        classes, probs = self._classes.view(), self._probs.view()
        if not len(classes):
            return
        posted = probs >= POSTING_FLOOR
        posted[:, 0] |= probs[:, 0] > 0
        # A class twice in one document (it cannot happen through add) would post it twice.
        docs = np.nonzero(posted)[0].astype(np.int32)
        cls = classes[posted].astype(np.int64)
        p = probs[posted]
        order = np.argsort(cls, kind="stable")  # stable: each class's documents stay ascending
        docs, cls, p = docs[order], cls[order], p[order]
        bounds = np.searchsorted(cls, np.arange(len(self.label_names) + 1))
        for c in np.flatnonzero(np.diff(bounds)).tolist():
            lo, hi = bounds[c], bounds[c + 1]
            self._posted[c] = (
                GrowableArray.from_array(docs[lo:hi]),
                GrowableArray.from_array(p[lo:hi]),
            )
