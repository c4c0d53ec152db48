"""EfficientNet-Lite0 on ImageNet-1k: top-k labels (softmax probabilities, with synonyms) and
the pooled 1280-d feature vector, L2-normalised, for similar-image search.

With VISION_BF16_CLASSIFIER=1 where the CPU computes in bfloat16 (VISION_BF16), the manifest's
"bf16" band makes it a bf16 -> float cascade: OpenVINO runs the float graph in bf16 first
(about 5.3 against 9.5 ms per image on one thread) and its answer is kept where its top-1
leads the second by at least the band's lower end (models/bf16_cascade.py: above every
bf16/float top-1 disagreement on the tuning and held-out photos, and keeping similar-image
recall@10 over the mixed features at 0.98 there; models/bf16.json); onnxruntime's float graph
answers for the rest. Off by default: in the service it saved 0.8 of 35.5 ms per image on the
benchmark's photos (75% answered in bf16) and nothing on text-free photos (more fall back, and
a fallback pays both runs). Otherwise the float model answers alone.
models/quantize.py also records an int8 -> float
cascade (models/quantization.json, "cascade") that keeps the float top-1 on every held-out
photo and costs less CPU, but moves label probabilities that search ranks by (up to 0.35; the
set of labels >= 0.05 differs on 11-13% of inputs); `recorded_cascade` builds it for the tests
and the benchmark, and adding its "cascade" and files to the manifest serves it.

Where the manifest gives the model a cascade (`"on": "top1_margin"`), its int8 copy runs first
and its whole answer (probabilities and features) is kept for the images whose int8 top-1
probability leads the second by at least the band's lower end: the margin models/quantize.py
chose on real photos, above every int8/float top-1 disagreement it saw there. The float model
answers for the rest of the batch (near ties, where int8 noise could swap the top class). The
int8 copy alone agrees with the float top-1 on 92.7% of the real-photo inputs; the cascade on
every held-out input checked (tests/vision_service/test_classifier_cascade.py).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from vision_service.errors import ModelFileError
from vision_service.registry import ModelEntry, sha256_of
from vision_service.sessions import OpenVinoSession, SessionThreads, open_session

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


def top1_margin(probabilities: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 probability of each row."""
    top2 = np.partition(probabilities, -2, axis=-1)[..., -2:]
    return top2[..., 1] - top2[..., 0]


class ImageClassifier:
    """Classifies batches with one session, or with an int8 session and a float `fallback`
    for the images whose int8 top-1 margin falls outside `band` (a cascade)."""

    def __init__(
        self,
        session: ort.InferenceSession | OpenVinoSession,
        classes: tuple[ImageClass, ...],
        fallback: ort.InferenceSession | None = None,
        band: tuple[float, float] | None = None,
    ) -> None:
        if (fallback is None) != (band is None):
            raise ValueError("a cascade needs both a fallback session and a band")
        self._session = session
        self._fallback = fallback
        self.band = band
        self.classes = classes
        # Images classified, and how many of them the float fallback classified (cascade).
        self.scored = 0
        self.fell_back = 0
        self._counts = threading.Lock()

    @classmethod
    def load(
        cls,
        entry: ModelEntry,
        threads: SessionThreads,
        quantized: bool = True,
        bf16: bool = False,
        streams: int = 1,
    ) -> ImageClassifier:
        """The manifest's bf16 cascade when `bf16` and the entry has one (OpenVINO runs the
        float graph in bf16 with `streams` concurrent runs, onnxruntime's float graph the
        rest), else its int8 cascade when `quantized` and the entry has one, else the one graph
        `entry.model_role(quantized)` names."""
        classes = load_classes(entry.path("labels"))
        if bf16 and entry.bf16_band is not None:
            float_path = entry.path(entry.model_role(False))
            return cls(
                OpenVinoSession(float_path, "bf16", threads, streams=streams),
                classes,
                fallback=open_session(float_path, threads),
                band=entry.bf16_band,
            )
        if quantized and entry.cascade_band is not None:
            if entry.cascade_on != "top1_margin":
                raise ModelFileError(
                    f"model {entry.name!r}: a classifier cascade is read on the top-1 margin "
                    f'("on": "top1_margin"), not on {entry.cascade_on!r}'
                )
            return cls(
                open_session(entry.path("onnx"), threads),
                classes,
                fallback=open_session(entry.path("reference"), threads),
                band=entry.cascade_band,
            )
        return cls(open_session(entry.path(entry.model_role(quantized)), threads), classes)

    @staticmethod
    def _run(
        session: ort.InferenceSession | OpenVinoSession, batch: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        logits, features = session.run(["logits", "features"], {"input": batch})
        probabilities = softmax(logits.astype(np.float64)).astype(np.float32)
        return probabilities, l2_normalise(features.astype(np.float32))

    def classify(self, batch: np.ndarray) -> list[Classification]:
        """`batch` is float32[N,3,224,224] from `preprocess.classifier_input`."""
        probabilities, unit = self._run(self._session, batch)
        redo = np.empty(0, dtype=np.intp)
        if self._fallback is not None and self.band is not None:
            lo, hi = self.band
            margin = top1_margin(probabilities)
            redo = np.flatnonzero((margin < lo) | (margin > hi))
            if len(redo):
                exact_p, exact_f = self._run(self._fallback, np.ascontiguousarray(batch[redo]))
                probabilities[redo] = exact_p
                unit[redo] = exact_f
        with self._counts:
            self.scored += len(probabilities)
            self.fell_back += len(redo)
        return [Classification(p, f) for p, f in zip(probabilities, unit, strict=True)]

    @property
    def bf16(self) -> bool:
        """Whether the first stage runs in bf16 through OpenVINO (the bf16 cascade)."""
        return isinstance(self._session, OpenVinoSession)

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


def recorded_cascade(
    entry: ModelEntry, models_dir: Path, threads: SessionThreads
) -> ImageClassifier:
    """The cascade models/quantize.py measured (models/quantization.json: the int8 file, its
    sha256 and the band), over the manifest's float model; ModelFileError if the int8 file is
    missing or not the measured one."""
    report = json.loads((models_dir / "quantization.json").read_text(encoding="utf-8"))
    figures = report[entry.name]
    int8_path = models_dir / figures["file"]
    if not int8_path.is_file() or sha256_of(int8_path) != figures["sha256"]:
        raise ModelFileError(f"{int8_path} is missing or is not the file quantize.py measured")
    lo, hi = (float(v) for v in figures["cascade"]["accept_int8"])
    return ImageClassifier(
        open_session(int8_path, threads),
        load_classes(entry.path("labels")),
        fallback=open_session(entry.path(entry.model_role(False)), threads),
        band=(lo, hi),
    )
