"""EfficientNet-Lite0 on ImageNet-1k: top-k labels (softmax probabilities, with synonyms) and
the pooled 1280-d feature vector, L2-normalised, for similar-image search."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from vision_service.registry import ModelEntry
from vision_service.sessions import SessionThreads, open_session

FEATURE_DIM = 1280


@dataclass(frozen=True)
class ImageClass:
    index: int
    name: str
    synonyms: tuple[str, ...]


@dataclass(frozen=True)
class Label:
    name: str
    probability: float
    synonyms: tuple[str, ...]
    class_index: int


@dataclass(frozen=True)
class Classification:
    """One image's class probabilities (sums to 1) and its unit-length feature vector."""

    probabilities: np.ndarray
    features: np.ndarray


def load_classes(path: Path) -> tuple[ImageClass, ...]:
    raw = json.loads(path.read_text(encoding="utf-8"))
    classes = tuple(
        ImageClass(index=c["index"], name=c["name"], synonyms=tuple(c["synonyms"])) for c in raw
    )
    if [c.index for c in classes] != list(range(len(classes))):
        raise ValueError(f"{path}: classes are not in class-index order")
    return classes


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class ImageClassifier:
    def __init__(self, session: ort.InferenceSession, classes: tuple[ImageClass, ...]) -> None:
        self._session = session
        self.classes = classes

    @classmethod
    def load(
        cls, entry: ModelEntry, threads: SessionThreads, quantized: bool = True
    ) -> ImageClassifier:
        session = open_session(entry.path(entry.model_role(quantized)), threads)
        return cls(session, load_classes(entry.path("labels")))

    def classify(self, batch: np.ndarray) -> list[Classification]:
        """`batch` is float32[N,3,224,224] from `preprocess.classifier_input`."""
        logits, features = self._session.run(["logits", "features"], {"input": batch})
        probabilities = softmax(logits.astype(np.float64)).astype(np.float32)
        unit = l2_normalise(features.astype(np.float32))
        return [Classification(p, f) for p, f in zip(probabilities, unit, strict=True)]

    def top_labels(self, probabilities: np.ndarray, k: int) -> list[Label]:
        k = max(1, min(k, len(self.classes)))
        top = np.argpartition(-probabilities, k - 1)[:k]
        top = top[np.argsort(-probabilities[top], kind="stable")]
        return [
            Label(
                name=self.classes[i].name,
                probability=float(probabilities[i]),
                synonyms=self.classes[i].synonyms,
                class_index=int(i),
            )
            for i in top
        ]
