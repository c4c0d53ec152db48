"""A cheap classical test in front of the OCR text probe: "this photo certainly holds no text".

Text, printed or handwritten, is a tight cluster of sharp, high-contrast strokes: in the grey of
the probe's own 320 px thumbnail (`thumbnail`: long side PREFILTER_SIDE, sides multiples of the
detector's stride, box-filtered; the detector then runs on the same pixels) some small window
(WINDOW, 12x4 px: a slice through one short word at the sizes the probe finds) is at least
MIN_EDGE_DENSITY full of pixels whose 3x3 morphological gradient (local max - min) reaches
EDGE_CONTRAST grey levels. A photo where no window gets there (sky, fog, soft focus, skin,
smooth surfaces, the moon, microscope slides) is rejected and the detector-based probe does not
run for it; anything with enough sharp contrast anywhere (text, but also gravel, grass, coins)
passes on to the probe, which decides.

Cost: ~0.2 ms of CPU per photo on top of the thumbnail (~1 ms, which the detector needs
anyway), against ~9 ms for the detector. (Before this round the prefilter made its own grey
copy with OpenCV's INTER_AREA, 0.7 ms, and the detector a bilinear one, 1.6 ms.)

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
first settings: 31, with those misses) and 6 of 26 other Debian wallpapers. Those figures are
on an OpenCV INTER_AREA grey copy; on the grey of the shared box thumbnail, which it now
uses, the lowest score of the 340 text photos of those sets the detector finds is 0.96, and it
rejects 20 of the 88 and 5 of 24 of the other wallpapers (`python -m benchmarks.text_probe_trial`
prints the probe's misses and false alarms, previous against current).
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
# The OCR detector's input sides must be multiples of this.
DETECTOR_STRIDE = 32
_KERNEL = np.ones((3, 3), dtype=np.uint8)


def stride_side(side: float) -> int:
    """`side` rounded to the nearest multiple of DETECTOR_STRIDE (at least one stride)."""
    return max(DETECTOR_STRIDE, round(side / DETECTOR_STRIDE) * DETECTOR_STRIDE)


def thumbnail(rgb: Image.Image | np.ndarray, side: int = PREFILTER_SIDE) -> np.ndarray:
    """uint8[H, W, 3] RGB, long side about `side`, both sides multiples of DETECTOR_STRIDE: the
    copy the prefilter and the probe's detector share. Downscaled with a box filter (each output
    pixel the mean of the source pixels it covers), upscaled bilinearly.

    A box filter rather than the earlier bilinear one: 1.0 instead of 1.6 ms for a 640x427
    photo, and the detector then finds more small signs (on heldout_font_signs() 108 instead of
    99 of 124, on signs on other Debian wallpapers 133 instead of 128 of 144; 2 signs of 4-5.5%
    found before are lost) and flags no more text-free photos (2 of 88, 0 of 24)."""
    image = rgb if isinstance(rgb, Image.Image) else Image.fromarray(np.asarray(rgb))
    if image.mode != "RGB":
        image = image.convert("RGB")
    w, h = image.size
    scale = side / max(w, h)
    size = (stride_side(w * scale), stride_side(h * scale))
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    return np.asarray(image.resize(size, resample))


def thumbnail_edge_density(thumb: np.ndarray) -> float:
    """The highest share of sharp-edge pixels in any WINDOW of `thumb` (from `thumbnail`),
    0..1 (text scores 0.9 and more)."""
    grey = cv2.cvtColor(thumb, cv2.COLOR_RGB2GRAY) if thumb.ndim == 3 else thumb
    gradient = cv2.morphologyEx(grey, cv2.MORPH_GRADIENT, _KERNEL)
    sharp = (gradient >= EDGE_CONTRAST).astype(np.uint8)
    if not sharp.any():
        return 0.0
    density = cv2.boxFilter(sharp, cv2.CV_32F, WINDOW, normalize=True)
    return float(density.max())


def edge_density(rgb: Image.Image | np.ndarray) -> float:
    """`thumbnail_edge_density` of the photo's PREFILTER_SIDE thumbnail."""
    return thumbnail_edge_density(thumbnail(rgb))


def judged(size: tuple[int, int]) -> bool:
    """Whether a photo of this (width, height) is judged at all: a copy smaller than
    PREFILTER_SIDE is never rejected."""
    return max(size) >= PREFILTER_SIDE


def thumbnail_may_hold_text(thumb: np.ndarray) -> bool:
    """`may_hold_text` on the thumbnail of a photo that `judged` accepts."""
    return thumbnail_edge_density(thumb) >= MIN_EDGE_DENSITY


def may_hold_text(rgb: Image.Image | np.ndarray) -> bool:
    """False only when the photo certainly holds no text the probe could find."""
    w, h = rgb.size if isinstance(rgb, Image.Image) else (rgb.shape[1], rgb.shape[0])
    if not judged((w, h)):
        return True
    return edge_density(rgb) >= MIN_EDGE_DENSITY
