"""PP-OCRv6 tiny text detection + recognition (through RapidOCR), and a cheap test of whether
an image is likely to hold text at all, so OCR only runs where it can find something.

The text-likelihood probe runs the tiny *detector alone* on a thumbnail (long side
PROBE_MAX_SIDE px). The detector is the cheapest reliable text signal we have (a few ms at
that size): photos without text give no box, or only tiny low-scoring ones, while signs,
pages and screenshots give several boxes straight away. Measured on 15 real photos and pages:
text-free photos gave 0 or 1 box (score <= 0.67), a book page 7 boxes, a text sample 4. So
the image is "likely text" when the probe finds at least PROBE_MIN_BOXES boxes, or one box
scoring PROBE_STRONG_BOX_SCORE or more (a single clear word on a sign). Only then does the full
pipeline (detection at up to 960 px, then recognition of every line) run. Small text in a big
photo can be missed by the thumbnail: OCR_MODE_ALWAYS is there for that.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vision_service.preprocess import to_bgr_array

PROBE_MAX_SIDE = 480
PROBE_MIN_BOXES = 2
PROBE_STRONG_BOX_SCORE = 0.7
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


class TextReader:
    """One RapidOCR engine; calls are serialised because RapidOCR keeps per-call state."""

    def __init__(self, det_path: Path, rec_path: Path, threads: int = 1) -> None:
        from rapidocr import RapidOCR

        self._engine = RapidOCR(params=_engine_params(det_path, rec_path, threads))
        self._lock = threading.Lock()

    def likely_has_text(self, rgb: Image.Image) -> bool:
        """The cheap probe: the detector alone, on a thumbnail."""
        thumb = rgb.copy()
        thumb.thumbnail((PROBE_MAX_SIDE, PROBE_MAX_SIDE), Image.Resampling.BILINEAR)
        with self._lock:
            # RapidOCR's result type depends on the stages run; det-only gives boxes + scores.
            result: Any = self._engine(
                to_bgr_array(thumb), use_det=True, use_cls=False, use_rec=False
            )
        boxes = result.boxes if result.boxes is not None else []
        raw_scores = getattr(result, "scores", None)
        scores = [float(x) for x in raw_scores] if raw_scores is not None else [1.0] * len(boxes)
        return len(scores) >= PROBE_MIN_BOXES or max(scores, default=0.0) >= PROBE_STRONG_BOX_SCORE

    def read(self, rgb: Image.Image) -> OcrResult:
        with self._lock:
            result: Any = self._engine(to_bgr_array(rgb), use_det=True, use_cls=False, use_rec=True)
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
