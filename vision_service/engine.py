"""VisionEngine: every model loaded and verified, and the analysis of one image built from them.

This is the domain API the servicer calls (no gRPC here): `analyze` decodes an image and runs
the tasks asked for — labels and features from one classifier run, moderation, OCR where the
image likely holds text — with the classifier and moderation runs micro-batched across
concurrent calls; `embed_texts` embeds sentences; `classes` and `models` describe what is loaded.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Sequence
from concurrent.futures import Future
from contextlib import ExitStack
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from tqdm import tqdm

from vision_service.batching import MicroBatcher
from vision_service.config import VisionConfig
from vision_service.errors import InvalidTextError
from vision_service.models.classifier import Classification, ImageClass, ImageClassifier, Label
from vision_service.models.colours import ColourShare, category_table, dominant_colours
from vision_service.models.moderation import ModerationModel, moderation_input
from vision_service.models.ocr import PROBE_MAX_SIDE, OcrResult, TextLine, TextProbe, TextReader
from vision_service.models.text_embedder import EMBEDDING_DIM, TextEmbedder
from vision_service.preprocess import (
    CLASSIFIER_RESIZE,
    DecodedImage,
    classifier_input,
    decode_image,
)
from vision_service.registry import ModelEntry, load_registry
from vision_service.sessions import SessionThreads

log = logging.getLogger(__name__)

CLASSIFIER = "efficientnet-lite0"
MODERATION = "open-nsfw"
OCR_DET = "pp-ocrv6-det-tiny"
OCR_REC = "pp-ocrv6-rec-tiny"
TEXT_EMBEDDER = "all-minilm-l6-v2-int8"

DEFAULT_TOP_K = 5
MAX_TEXTS_PER_CALL = 1024


class Task(enum.Enum):
    LABELS = "labels"
    FEATURES = "features"
    MODERATION = "moderation"
    OCR = "ocr"
    COLOURS = "colours"


class OcrMode(enum.Enum):
    AUTO = "auto"  # only where the image likely holds text
    ALWAYS = "always"
    NEVER = "never"


DEFAULT_TASKS = frozenset({Task.LABELS, Task.FEATURES, Task.MODERATION, Task.OCR, Task.COLOURS})


@dataclass(frozen=True)
class AnalysisRequest:
    image_data: bytes
    tasks: frozenset[Task] = DEFAULT_TASKS
    top_k: int = DEFAULT_TOP_K
    ocr_mode: OcrMode = OcrMode.AUTO


@dataclass(frozen=True)
class Analysis:
    width: int
    height: int
    format: str
    labels: list[Label] = field(default_factory=list)
    features: np.ndarray | None = None
    moderation_score: float | None = None
    ocr: OcrResult | None = None  # None when OCR did not run
    colours: list[ColourShare] = field(default_factory=list)
    model_versions: dict[str, str] = field(default_factory=dict)


class VisionEngine:
    def __init__(
        self,
        entries: dict[str, ModelEntry],
        classifier: ImageClassifier,
        moderation: ModerationModel,
        reader: TextReader,
        probe: TextProbe,
        embedder: TextEmbedder,
        config: VisionConfig,
    ) -> None:
        self._entries = entries
        self.bf16 = moderation.bf16
        self._versions = {
            name: entry.run_version(
                config.quantized,
                bf16=classifier.bf16 if name == CLASSIFIER else self.bf16,
                ov_int8=moderation.ov_int8,
            )
            for name, entry in entries.items()
        }
        self._classifier = classifier
        self._moderation = moderation
        self._reader = reader
        self._probe = probe
        self._embedder = embedder
        self._max_pixels = config.max_image_pixels
        wait_s = config.batch_max_wait_ms / 1000.0
        self.classifier_batches: MicroBatcher[np.ndarray, Classification] = MicroBatcher(
            lambda xs: classifier.classify(np.stack(xs)),
            max_size=config.batch_max_size,
            max_wait_s=wait_s,
            name="classifier",
            workers=config.batch_workers,
        )
        self.moderation_batches: MicroBatcher[np.ndarray, float] = MicroBatcher(
            lambda xs: moderation.nsfw_scores(np.stack(xs)),
            max_size=config.batch_max_size,
            max_wait_s=wait_s,
            name="moderation",
            workers=config.batch_workers,
        )

    @classmethod
    def load(cls, config: VisionConfig) -> VisionEngine:
        """Verify every file of the manifest, then open every model; ModelFileError if a file
        is missing or its checksum does not match."""
        started = time.perf_counter()
        registry = load_registry(config.models_dir)
        threads = SessionThreads(config.intra_op_threads, config.inter_op_threads, config.ort_spin)
        steps = tqdm(total=4, desc="loading vision models", unit="model", disable=None)
        bf16 = config.use_bf16()
        classifier = ImageClassifier.load(
            registry[CLASSIFIER],
            threads,
            config.quantized,
            bf16=bf16 and config.bf16_classifier,
            streams=config.batch_workers,
        )
        steps.update()
        moderation = ModerationModel.load(
            registry[MODERATION],
            threads,
            config.quantized,
            bf16=bf16,
            streams=config.batch_workers,
            ov_int8=config.ov_int8,
        )
        steps.update()
        reader = TextReader(
            registry[OCR_DET].path(),
            registry[OCR_REC].path(),
            threads=config.ocr_threads,
            engines=config.ocr_engines,
        )
        probe = TextProbe(
            registry[OCR_DET].path(), SessionThreads(config.ocr_threads, 1, config.ort_spin)
        )
        steps.update()
        embedder = TextEmbedder.load(registry[TEXT_EMBEDDER], threads)
        steps.update()
        steps.close()
        engine = cls(
            dict(registry.entries), classifier, moderation, reader, probe, embedder, config
        )
        engine._warm_up()
        log.info(
            "vision models loaded and verified",
            extra={
                "models": sorted(registry.entries),
                "load_s": round(time.perf_counter() - started, 2),
            },
        )
        return engine

    def _warm_up(self) -> None:
        """One run of each model, so the first real request does not pay for lazy init."""
        grey = np.zeros((1, 3, 224, 224), dtype=np.float32)
        self._classifier.classify(grey)
        self._moderation.nsfw_scores(np.zeros((1, 224, 224, 3), dtype=np.float32))
        self._embedder.embed(["warm up"])
        blank = Image.new("RGB", (64, 64), "white")
        self._probe.probability_map(blank)  # the detector, whatever the prefilter would say
        self._probe.likely_has_text(blank)
        category_table()  # the colour lookup table (~2 s of CPU, once per process)

    def close(self) -> None:
        self.classifier_batches.close()
        self.moderation_batches.close()

    @property
    def classes(self) -> tuple[ImageClass, ...]:
        return self._classifier.classes

    @property
    def models(self) -> list[ModelEntry]:
        return list(self._entries.values())

    @property
    def classifier_name(self) -> str:
        return f"{CLASSIFIER}@{self._versions[CLASSIFIER]}"

    @property
    def text_model_name(self) -> str:
        return f"{TEXT_EMBEDDER}@{self._versions[TEXT_EMBEDDER]}"

    def analyze(self, request: AnalysisRequest) -> Analysis:
        """Analyse one image. Raises InvalidImageError if the bytes are not a readable image;
        nothing of a request is kept after it returns."""
        wants_classifier = bool(request.tasks & {Task.LABELS, Task.FEATURES})
        wants_moderation = Task.MODERATION in request.tasks
        classified: Future[Classification] | None = None
        moderated: Future[float] | None = None
        with ExitStack() as stack:
            # Tickets tell the batch workers this request is on its way, so a batch forming
            # now waits (briefly) for it.
            clf_ticket = (
                stack.enter_context(self.classifier_batches.ticket()) if wants_classifier else None
            )
            mod_ticket = (
                stack.enter_context(self.moderation_batches.ticket()) if wants_moderation else None
            )
            # Decoded only as large as labels, moderation and the OCR probe need.
            image = decode_image(
                request.image_data,
                max_pixels=self._max_pixels,
                min_long_side=PROBE_MAX_SIDE,
                min_short_side=CLASSIFIER_RESIZE,
            )
            if clf_ticket is not None:
                classified = clf_ticket.submit(classifier_input(image.rgb))
            if mod_ticket is not None:
                moderated = mod_ticket.submit(moderation_input(image.rgb))

        versions: dict[str, str] = {}
        ocr = self._read_text(image, request, versions)
        colours = dominant_colours(image.rgb) if Task.COLOURS in request.tasks else []

        labels: list[Label] = []
        features = None
        if classified is not None:
            classification = classified.result()
            versions[CLASSIFIER] = self._versions[CLASSIFIER]
            if Task.LABELS in request.tasks:
                labels = self._classifier.top_labels(classification.probabilities, request.top_k)
            if Task.FEATURES in request.tasks:
                features = classification.features
        moderation_score = None
        if moderated is not None:
            moderation_score = moderated.result()
            versions[MODERATION] = self._versions[MODERATION]
        return Analysis(
            width=image.width,
            height=image.height,
            format=image.format,
            labels=labels,
            features=features,
            moderation_score=moderation_score,
            ocr=ocr,
            colours=colours,
            model_versions=versions,
        )

    def _read_text(
        self, image: DecodedImage, request: AnalysisRequest, versions: dict[str, str]
    ) -> OcrResult | None:
        if request.ocr_mode is OcrMode.NEVER:
            return None
        if Task.OCR not in request.tasks and request.ocr_mode is not OcrMode.ALWAYS:
            return None
        versions[OCR_DET] = self._versions[OCR_DET]
        if request.ocr_mode is OcrMode.AUTO and not self.likely_has_text(image.rgb):
            return None
        versions[OCR_REC] = self._versions[OCR_REC]
        if image.reduced:  # text needs the detail the reduced decode left out
            image = decode_image(request.image_data, max_pixels=self._max_pixels)
        ocr = self._reader.read(image.rgb)
        return _scaled(ocr, (image.width / image.rgb.width, image.height / image.rgb.height))

    def likely_has_text(self, rgb: Image.Image) -> bool:
        """The cheap text probe (OCR_MODE_AUTO runs OCR only where it says yes)."""
        return self._probe.likely_has_text(rgb)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """float32[len(texts), 384], unit rows; InvalidTextError for an empty list, a blank
        text or too many texts."""
        if not texts:
            raise InvalidTextError("texts is empty")
        if len(texts) > MAX_TEXTS_PER_CALL:
            raise InvalidTextError(
                f"{len(texts)} texts in one call; at most {MAX_TEXTS_PER_CALL} are allowed"
            )
        blank = [i for i, t in enumerate(texts) if not t.strip()]
        if blank:
            raise InvalidTextError(f"texts at positions {blank[:10]} are blank")
        return self._embedder.embed(list(texts))

    @property
    def embedding_dim(self) -> int:
        return EMBEDDING_DIM


def _scaled(ocr: OcrResult, scale: tuple[float, float]) -> OcrResult:
    """Boxes from working-copy pixels to the original image's pixels."""
    sx, sy = scale
    if sx == 1.0 and sy == 1.0:
        return ocr
    return OcrResult(
        lines=tuple(
            TextLine(line.text, line.confidence, tuple((x * sx, y * sy) for x, y in line.box))
            for line in ocr.lines
        )
    )
