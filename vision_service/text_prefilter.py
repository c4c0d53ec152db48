"""A cheap classical test in front of the OCR text probe: "this photo certainly holds no text".

Text, printed or handwritten, is a tight cluster of sharp, high-contrast strokes: in a grey copy
whose long side is PREFILTER_SIDE (320, the probe's own resolution) some small window
(WINDOW, 12x4 px: a slice through one short word at the sizes the probe finds) is at least
MIN_EDGE_DENSITY full of pixels whose 3x3 morphological gradient (local max - min) reaches
EDGE_CONTRAST grey levels. A photo where no window gets there (sky, fog, soft focus, skin,
smooth surfaces, the moon, microscope slides) is rejected and the detector-based probe does not
run for it; anything with enough sharp contrast anywhere (text, but also gravel, grass, coins)
passes on to the probe, which decides.

Cost: ~0.8 ms of CPU per photo (grey + resize ~0.7 ms, gradient and window ~0.1 ms), against
~10 ms for the probe.

Tuning (tests/vision_service/photo_sets.py). The first settings (contrast 70, a 16x8 window,
density 0.5) were tuned on signs in one font (Pillow's own) and missed, on signs in other fonts
they were never tuned on, small thin text the detector finds: 2 of 107, 1 of 93 and 2 of 199 in
three generated sets (a regular-weight "SALE 50%" or "Welcome" at 4-5% of the photo's height,
whose 1 px strokes lose contrast in the 320 px copy). These settings were picked on a tuning set
with six DejaVu and Liberation fonts (the 42 earlier text photos and `tuning_font_signs()`, 113
of 116 found by the detector) as the choice among contrasts 50-70 and windows 8x6-16x8 that
rejects the most text-free photos while keeping the lowest text score 15% above the threshold;
on `heldout_font_signs()`-style photos it was not picked on (199 found by the detector, on
Debian's mate and lomiri/ukui wallpapers and the package photos) it rejects none, the lowest
score 0.92. It rejects 20 of the 88 text-free photos and crops of `textless_photos()` (the
first settings: 31, with those misses) and 6 of 26 other Debian wallpapers.
A copy smaller than PREFILTER_SIDE on its long side is never rejected: upscaling blurs the
strokes and such small images are rare and cheap to probe.

Text in very low contrast (grey on grey, engraving, a reflection) can score under the
threshold: the probe was not tuned to find it either, and OCR_MODE_ALWAYS reads it.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

PREFILTER_SIDE = 320
EDGE_CONTRAST = 50
WINDOW = (12, 4)  # (width, height) in pixels of the PREFILTER_SIDE copy
MIN_EDGE_DENSITY = 0.8
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
    0..1 (text scores 0.9 and more)."""
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
