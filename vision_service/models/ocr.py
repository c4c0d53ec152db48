"""PP-OCRv6 tiny text detection + recognition (through RapidOCR), and a cheap test of whether
an image is likely to hold text at all, so OCR only runs where it can find something.

The text-likelihood probe (`TextProbe`) runs the tiny detector's ONNX graph *alone*, directly on
onnxruntime, on a thumbnail whose long side is PROBE_MAX_SIDE (320) px: ~8.5 ms of CPU for the
detector on the 2-core machine, against ~26 ms for the earlier probe (the same detector at 480 px
through RapidOCR, behind the OCR engine's lock). At 256 px it would cost ~35% less, but
`make bench PART=vision` finds 21 instead of 27 of 30 smaller signs with it and it flags 4
instead of 1 of 88 text-free photos (each a needless full OCR), so 320 stays. An int8 copy of
the detector (quantize_static, QDQ, per-channel, calibrated on real photos) is no faster: 8.6
against 8.2 ms (its convs are too narrow for int8 kernels to pay); the detector on a crop
around the prefilter's edge-dense windows saves ~1 ms but loses 1-3 of 268 held-out signs the
whole thumbnail finds (measured this round, not adopted).
The thumbnail is box-filtered (`text_prefilter.thumbnail`) and shared with the prefilter, whose
grey it judges first: one resize instead of two (1.0 ms instead of 0.7 + 1.6).
The probe thresholds the detector's text-probability map at PROBE_PIXEL_THRESHOLD and looks at
the connected regions: a region is a word or a line of text when it covers at least
PROBE_MIN_AREA pixels, its mean probability is at least PROBE_MIN_REGION_SCORE and it is at least
PROBE_MIN_ASPECT times as wide as it is tall (text runs sideways; the detector's false alarms
on grass, gravel, coins or a coffee spoon are blobs). One such region makes the image "likely
text". Tuned on tests/vision_service/photo_sets.py: skimage's page and handwritten text and ten
real photos with a sign in them (sign heights 7-14% of the photo) are all found, and 73 of 74
signs in six system fonts; 2 of 88 text-free photos and crops (mate-backgrounds included) are
flagged, none of 24 other Debian wallpapers. Signs of 4-7% of the photo's height it was not
tuned on are found 108 of 124 times (with the earlier bilinear thumbnail 99); text smaller than
that, or written vertically, can be missed: OCR_MODE_ALWAYS is there for that. The prefilter
(`vision_service.text_prefilter`, a classical sharp-edge density test, ~0.2 ms on the shared
thumbnail) rejects photos that certainly hold no text (20 of those 88 text-free photos; none of
the text photos the detector finds, held-out sets included), and the detector does not run for
them. Only a likely-text image pays for the full pipeline (detection at up to 960 px, then
recognition of every line).

`TextReader` keeps a small pool of RapidOCR engines (RapidOCR keeps per-call state, so one
engine serves one call at a time): concurrent requests read text in parallel instead of
queueing on one lock.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from vision_service.preprocess import to_bgr_array
from vision_service.sessions import SessionThreads, open_session
from vision_service.text_prefilter import (
    DETECTOR_STRIDE,
    PREFILTER_SIDE,
    judged,
    may_hold_text,
    thumbnail,
    thumbnail_may_hold_text,
)

PROBE_MAX_SIDE = 320
PROBE_PIXEL_THRESHOLD = 0.3
PROBE_MIN_AREA = 4
PROBE_MIN_REGION_SCORE = 0.7
PROBE_MIN_ASPECT = 2.0
# The detector's input sides must be multiples of this.
_DET_STRIDE = DETECTOR_STRIDE
# Detector normalisation (ImageNet mean/std on 0..1 BGR pixels, as RapidOCR feeds it).
_DET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_DET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
_DET_SCALE = 1.0 / (255.0 * _DET_STD)
_DET_OFFSET = -_DET_MEAN / _DET_STD
# Lines read with less confidence than this are dropped as noise.
MIN_LINE_CONFIDENCE = 0.5
# A line of one or two characters is kept only when read with this much confidence: on text-free
# photos the recogniser reads stray shapes as lone characters ("8" on a coffee spoon at 0.65, "P"
# on a motorbike at 0.52), while real short text on a sign reads at 0.9 or more.
SHORT_LINE_CHARS = 2
MIN_SHORT_LINE_CONFIDENCE = 0.9


@dataclass(frozen=True)
class TextLine:
    text: str
    confidence: float
    # Four corners (x, y) in pixels of the image that was read.
    box: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class OcrResult:
    lines: tuple[TextLine, ...]

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)


def _engine_params(det: Path, rec: Path, threads: int) -> dict[str, Any]:
    from rapidocr.utils.typings import LangDet, LangRec, ModelType, OCRVersion

    # The settings that read exact text with the tiny models (../shared/MODELS.md).
    return {
        "Global.use_cls": False,
        "Global.log_level": "error",
        "EngineConfig.onnxruntime.intra_op_num_threads": threads,
        "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        "EngineConfig.onnxruntime.use_cuda": False,
        "EngineConfig.onnxruntime.use_dml": False,
        "Det.ocr_version": OCRVersion.PPOCRV6,
        "Rec.ocr_version": OCRVersion.PPOCRV6,
        "Det.model_type": ModelType.TINY,
        "Rec.model_type": ModelType.TINY,
        "Det.lang_type": LangDet.CH,
        "Rec.lang_type": LangRec.EN,
        "Det.mean": [0.485, 0.456, 0.406],
        "Det.std": [0.229, 0.224, 0.225],
        "Det.limit_side_len": 960,
        "Det.limit_type": "max",
        "Det.thresh": 0.2,
        "Det.box_thresh": 0.4,
        "Det.unclip_ratio": 1.4,
        "Rec.rec_img_shape": [3, 48, 320],
        "Det.model_path": str(det),
        "Rec.model_path": str(rec),
    }


class TextProbe:
    """Is there likely text in this image? The detector alone, on a 320 px thumbnail.

    onnxruntime sessions may be run from several threads at once, so this needs no lock."""

    def __init__(
        self,
        det_path: Path,
        threads: SessionThreads,
        max_side: int = PROBE_MAX_SIDE,
        prefilter: bool = True,
    ) -> None:
        self._session = open_session(det_path, threads)
        self._input = self._session.get_inputs()[0].name
        self.max_side = max_side
        # The classical test that skips the detector on photos certainly without text.
        self.prefilter = prefilter

    def probability_map(self, rgb: Image.Image, max_side: int | None = None) -> np.ndarray:
        """The detector's text probability per pixel of the thumbnail, float32[H, W]."""
        return self._detect(thumbnail(rgb, max_side or self.max_side))

    def _detect(self, thumb: np.ndarray) -> np.ndarray:
        """The detector on a uint8 RGB thumbnail whose sides are multiples of the stride."""
        h, w = thumb.shape[:2]
        x = np.empty((1, 3, h, w), dtype=np.float32)
        for channel in range(3):  # BGR planes, (v / 255 - mean) / std
            np.multiply(thumb[:, :, 2 - channel], _DET_SCALE[channel], out=x[0, channel])
            x[0, channel] += _DET_OFFSET[channel]
        (out,) = self._session.run(None, {self._input: x})
        return np.asarray(out[0, 0], dtype=np.float32)

    def likely_has_text(self, rgb: Image.Image) -> bool:
        if not self.prefilter:
            return any(_text_like_regions(self.probability_map(rgb)))
        if self.max_side != PREFILTER_SIDE:  # the prefilter judges its own 320 px copy
            if not may_hold_text(rgb):
                return False
            return any(_text_like_regions(self.probability_map(rgb)))
        # One thumbnail for both: the prefilter's grey and the detector's input.
        thumb = thumbnail(rgb, self.max_side)
        if judged(rgb.size) and not thumbnail_may_hold_text(thumb):
            return False
        return any(_text_like_regions(self._detect(thumb)))


def _text_like_regions(probabilities: np.ndarray) -> list[tuple[int, int, int, float]]:
    """(width, height, area, mean probability) of every region that looks like a word or a
    line of text: wide, dense and confident enough."""
    if not probabilities.size or probabilities.max() < PROBE_MIN_REGION_SCORE:
        # No region's mean can reach the minimum score: most text-free photos end here,
        # without labelling components.
        return []
    mask = (probabilities > PROBE_PIXEL_THRESHOLD).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return []
    sums = np.bincount(labels.ravel(), weights=probabilities.ravel(), minlength=count)
    regions = []
    for i in range(1, count):
        width, height, area = (int(v) for v in stats[i, 2:5])
        score = float(sums[i] / area)
        if (
            area >= PROBE_MIN_AREA
            and score >= PROBE_MIN_REGION_SCORE
            and width >= PROBE_MIN_ASPECT * height
        ):
            regions.append((width, height, area, score))
    return regions


class TextReader:
    """A pool of RapidOCR engines; each call borrows one (RapidOCR keeps per-call state), so up
    to `engines` calls read text at once."""

    def __init__(self, det_path: Path, rec_path: Path, threads: int = 1, engines: int = 2) -> None:
        from rapidocr import RapidOCR

        if engines < 1:
            raise ValueError("engines must be at least 1")
        self._pool: queue.Queue[Any] = queue.Queue()
        for _ in range(engines):
            self._pool.put(RapidOCR(params=_engine_params(det_path, rec_path, threads)))

    @contextmanager
    def _engine(self) -> Iterator[Any]:
        engine = self._pool.get()
        try:
            yield engine
        finally:
            self._pool.put(engine)

    def read(self, rgb: Image.Image) -> OcrResult:
        bgr = to_bgr_array(rgb)
        with self._engine() as engine:
            result: Any = engine(bgr, use_det=True, use_cls=False, use_rec=True)
        if result.boxes is None or result.txts is None:
            return OcrResult(lines=())
        lines = []
        for points, text, score in zip(result.boxes, result.txts, result.scores, strict=True):
            if not _worth_keeping(text.strip(), float(score)):
                continue
            box = tuple((float(x), float(y)) for x, y in np.asarray(points).reshape(-1, 2))
            lines.append(TextLine(text=text.strip(), confidence=float(score), box=box))
        return OcrResult(lines=tuple(lines))


def _worth_keeping(text: str, confidence: float) -> bool:
    if not text or confidence < MIN_LINE_CONFIDENCE:
        return False
    return len(text) > SHORT_LINE_CHARS or confidence >= MIN_SHORT_LINE_CONFIDENCE
