"""A cheap classical test in front of the OCR text probe: "this photo certainly holds no text".

Text, printed or handwritten, is a tight cluster of sharp, high-contrast strokes: in a grey copy
whose long side is PREFILTER_SIDE (320, the probe's own resolution) some small window
(WINDOW, 16x8 px, about one short word at the sizes the probe finds) is at least
MIN_EDGE_DENSITY full of pixels whose 3x3 morphological gradient (local max - min) reaches
EDGE_CONTRAST grey levels. A photo where no window gets there (sky, fog, soft focus, skin,
smooth surfaces, the moon, microscope slides) is rejected and the detector-based probe does not
run for it; anything with enough sharp contrast anywhere (text, but also gravel, grass, coins)
passes on to the probe, which decides.

Cost: ~0.8 ms of CPU per photo (grey + resize ~0.7 ms, gradient and window ~0.1 ms), against
~10 ms for the probe. Tuned on tests/vision_service/photo_sets.py: the lowest window density
on any photo with text the probe finds (the page, the handwritten text, every sign, every
smaller sign at 4-6% of the photo's height) is 0.73 (the handwritten text), so the threshold
sits well below it; 31 of 88 text-free photos and crops score under it. A copy smaller than
PREFILTER_SIDE on its long side is never rejected: upscaling blurs the strokes (half-size
copies of the text photos drop to 0.58) and such small images are rare and cheap to probe.

Text in very low contrast (grey on grey, engraving, a reflection) can score under the
threshold: the probe was not tuned to find it either, and OCR_MODE_ALWAYS reads it.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

PREFILTER_SIDE = 320
EDGE_CONTRAST = 70
WINDOW = (16, 8)  # (width, height) in pixels of the PREFILTER_SIDE copy
MIN_EDGE_DENSITY = 0.5
_KERNEL = np.ones((3, 3), dtype=np.uint8)


def grey_copy(rgb: Image.Image | np.ndarray, side: int = PREFILTER_SIDE) -> np.ndarray:
    """uint8[H, W] luma, long side `side` (area resampling)."""
    pixels = np.asarray(rgb)
    h, w = pixels.shape[:2]
    grey = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY) if pixels.ndim == 3 else pixels
    scale = side / max(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA)


def edge_density(rgb: Image.Image | np.ndarray) -> float:
    """The highest share of sharp-edge pixels in any WINDOW of the PREFILTER_SIDE grey copy,
    0..1 (text scores 0.7 and more)."""
    grey = grey_copy(rgb)
    gradient = cv2.morphologyEx(grey, cv2.MORPH_GRADIENT, _KERNEL)
    sharp = (gradient >= EDGE_CONTRAST).astype(np.uint8)
    if not sharp.any():
        return 0.0
    density = cv2.boxFilter(sharp, cv2.CV_32F, WINDOW, normalize=True)
    return float(density.max())


def may_hold_text(rgb: Image.Image | np.ndarray) -> bool:
    """False only when the photo certainly holds no text the probe could find."""
    w, h = rgb.size if isinstance(rgb, Image.Image) else (rgb.shape[1], rgb.shape[0])
    if max(w, h) < PREFILTER_SIDE:
        return True
    return edge_density(rgb) >= MIN_EDGE_DENSITY
