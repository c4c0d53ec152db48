"""Semantic expansion without CLIP: a bridge from words to pictures through label names.

The 1000 ImageNet class names are embedded once ("a photo of a {label}") with the vision
service's sentence model. An image's concept vector is its label probabilities (top 20) times
those embeddings, normalised; a query embedded the same way is compared by cosine. So "kitten"
finds the photo labelled "tiger cat" although no label says kitten.

Concept vectors are never materialised (100k x 384 floats): with E the label embeddings and p a
document's sparse label probabilities, cos(q, pE) = p . (E q) / |pE|, and |pE| comes from the
label Gram matrix. One query costs a 1000 x 384 product and a gather over 20 labels per image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from search_service.document import Label
from search_service.growable import GrowableArray
from search_service.tokenizer import normalise

TOP_LABELS = 20
LABEL_TEMPLATE = "a photo of a {}"


def label_prompts(names: Sequence[str]) -> list[str]:
    return [LABEL_TEMPLATE.format(name) for name in names]


@dataclass(frozen=True)
class SemanticHits:
    docs: npt.NDArray[np.int64]
    similarities: npt.NDArray[np.float32]
    # For each hit, the class index that contributed most (the "why").
    best_labels: npt.NDArray[np.int64]


class ConceptSpace:
    """Label embeddings (one row per class index) and each document's top label weights."""

    def __init__(self, label_names: Sequence[str], embeddings: npt.NDArray[np.float32]) -> None:
        if len(label_names) != len(embeddings):
            raise ValueError("one embedding per label is needed")
        self.label_names = list(label_names)
        e = np.asarray(embeddings, dtype=np.float32)
        self.embeddings = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        self._gram = self.embeddings @ self.embeddings.T
        self._by_name = {normalise(n): i for i, n in enumerate(self.label_names)}
        self._classes = GrowableArray(np.int16, (TOP_LABELS,))
        self._probs = GrowableArray(np.float32, (TOP_LABELS,))
        self._norms = GrowableArray(np.float32)

    def __len__(self) -> int:
        """Documents (numbers) holding concept weights."""
        return len(self._norms)

    def clear_docs(self) -> None:
        self._classes = GrowableArray(np.int16, (TOP_LABELS,))
        self._probs = GrowableArray(np.float32, (TOP_LABELS,))
        self._norms = GrowableArray(np.float32)

    def index_of(self, name: str) -> int:
        return self._by_name.get(normalise(name), -1)

    def class_of(self, label: Label) -> int:
        if 0 <= label.class_index < len(self.label_names):
            return label.class_index
        return self._by_name.get(normalise(label.name), -1)

    def add(self, docno: int, labels: Sequence[Label]) -> None:
        if docno != len(self._norms):
            raise ValueError(f"document numbers must be dense: got {docno}")
        classes = np.zeros(TOP_LABELS, np.int16)
        probs = np.zeros(TOP_LABELS, np.float32)
        ranked = sorted(labels, key=lambda lb: -lb.probability)
        slot = 0
        for label in ranked:
            cls = self.class_of(label)
            if cls < 0 or label.probability <= 0:
                continue
            classes[slot], probs[slot] = cls, label.probability
            slot += 1
            if slot == TOP_LABELS:
                break
        norm_sq = float(probs @ self._gram[np.ix_(classes, classes)] @ probs)
        self._classes.append(classes)
        self._probs.append(probs)
        self._norms.append(np.sqrt(max(norm_sq, 0.0)))

    def remove(self, docno: int) -> None:
        self._probs[docno] = 0.0
        self._norms[docno] = 0.0

    def search(
        self,
        query_embedding: npt.NDArray[np.float32],
        allowed: npt.NDArray[np.bool_],
        min_similarity: float,
        margin: float = 1.0,
    ) -> SemanticHits:
        """Allowed documents whose concept vector is at least min_similarity from the query
        and within `margin` of the best one (weak concept matches are noise, not results)."""
        q = np.asarray(query_embedding, dtype=np.float32)
        q = q / max(float(np.linalg.norm(q)), 1e-12)
        label_sims = self.embeddings @ q
        classes = self._classes.view()
        weighted = self._probs.view() * label_sims[classes]
        norms = self._norms.view()
        with np.errstate(divide="ignore", invalid="ignore"):
            sims = np.where(norms > 0, weighted.sum(axis=1) / norms, 0.0).astype(np.float32)
        keep = np.flatnonzero((sims >= min_similarity) & allowed[: sims.size])
        if keep.size:
            keep = keep[sims[keep] >= sims[keep].max() - margin]
        best = classes[keep, np.argmax(weighted[keep], axis=1)] if keep.size else keep
        return SemanticHits(keep.astype(np.int64), sims[keep], np.asarray(best, np.int64))

    def state(self) -> dict[str, npt.NDArray[np.generic]]:
        return {
            "classes": self._classes.view(),
            "probs": self._probs.view(),
            "norms": self._norms.view(),
        }

    def restore_docs(self, state: dict[str, npt.NDArray[np.generic]]) -> None:
        self._classes = GrowableArray.from_array(state["classes"])
        self._probs = GrowableArray.from_array(state["probs"])
        self._norms = GrowableArray.from_array(state["norms"])
