"""PP-OCRv6 tiny text detection + recognition (through RapidOCR), and a cheap test of whether
an image is likely to hold text at all, so OCR only runs where it can find something.

The text-likelihood probe (`TextProbe`) runs the tiny detector's ONNX graph *alone*, directly on
onnxruntime, on a thumbnail whose long side is PROBE_MAX_SIDE (320) px: 8-11 ms of CPU on the
2-core machine (7-8 ms of it the detector itself), against ~26 ms for the earlier probe (the
same detector at 480 px through RapidOCR, behind the OCR engine's lock). At 256 px it would cost
~35% less, but `make bench PART=vision` finds 21 instead of 27 of 30 smaller signs with it and
it flags 4 instead of 1 of 88 text-free photos (each a needless full OCR), so 320 stays. An
int8 copy of the detector was no faster (its convs are too narrow for int8 kernels to pay).
It thresholds the detector's text-probability map at PROBE_PIXEL_THRESHOLD and looks at the
connected regions: a region is a word or a line of text when it covers at least PROBE_MIN_AREA
pixels, its mean probability is at least PROBE_MIN_REGION_SCORE and it is at least
PROBE_MIN_ASPECT times as wide as it is tall (text runs sideways; the detector's false alarms
on grass, gravel, coins or a coffee spoon are blobs). One such region makes the image "likely
text". Tuned on tests/vision_service/photo_sets.py: skimage's page and handwritten text and ten
real photos with a sign in them (sign heights 7-14% of the photo) are all found; 1 of 88
text-free photos and crops (mate-backgrounds included) is flagged. Signs of 4-6% of the
photo's height are found as often as by the earlier probe (27 of 30); text smaller than that,
or written vertically, can be missed: OCR_MODE_ALWAYS is there for that. In front of the
detector, `vision_service.text_prefilter` (a classical sharp-edge density test, ~0.8 ms) rejects
photos that certainly hold no text (31 of those 88 text-free photos; none of the text photos the
detector finds), and the detector does not run for them. Only a likely-text
image pays for the full pipeline (detection at up to 960 px, then recognition of every line).

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
from vision_service.text_prefilter import may_hold_text

PROBE_MAX_SIDE = 320
PROBE_PIXEL_THRESHOLD = 0.3
PROBE_MIN_AREA = 4
PROBE_MIN_REGION_SCORE = 0.7
PROBE_MIN_ASPECT = 2.0
# The detector's input sides must be multiples of this.
_DET_STRIDE = 32
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
        max_side = max_side or self.max_side
        w, h = rgb.size
        scale = max_side / max(w, h)
        size = (_stride(w * scale), _stride(h * scale))
        thumb = np.asarray(rgb.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0))
        x = np.empty((1, 3, size[1], size[0]), dtype=np.float32)
        for channel in range(3):  # BGR planes, (v / 255 - mean) / std
            np.multiply(thumb[:, :, 2 - channel], _DET_SCALE[channel], out=x[0, channel])
            x[0, channel] += _DET_OFFSET[channel]
        (out,) = self._session.run(None, {self._input: x})
        return np.asarray(out[0, 0], dtype=np.float32)

    def likely_has_text(self, rgb: Image.Image) -> bool:
        if self.prefilter and not may_hold_text(rgb):
            return False
        return any(_text_like_regions(self.probability_map(rgb)))


def _stride(side: float) -> int:
    return max(_DET_STRIDE, round(side / _DET_STRIDE) * _DET_STRIDE)


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
