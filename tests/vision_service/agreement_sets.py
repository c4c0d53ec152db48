"""Real-photo sets that choose and check the classifier cascade's threshold (models/quantize.py,
tests/vision_service/test_classifier_cascade.py, benchmarks/vision_bench.py).

- tuning: `photo_variants` of the 31 photos quantize.py already judges by (skimage, sklearn,
  Debian's mate-backgrounds): the threshold is chosen on these 124 inputs.
- held out, same photos: `more_variants` of those photos (other crops, a small rotation, a
  brighter, a paler and a smaller copy), never used to choose the threshold nor to calibrate.
- held out, unseen photos: `unseen_photos`, photographs no step of quantization ever saw
  (Debian's lomiri-wallpapers in /usr/share/backgrounds, where installed), with their
  `photo_variants` and `more_variants`.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageEnhance

from tests.vision_service.photo_sets import debian_photos, photo_file, photo_variants, real_photos

_BACKGROUNDS = Path("/usr/share/backgrounds")
# Photographs among lomiri-wallpapers' files (its drawings, renderings and patterns left out).
_UNSEEN = (
    "Bridge_by_Sander_Klootwijk.jpg",
    "Dragonfly_by_Bolly.jpg",
    "Kleiber_by_Lukas_Baubkus.jpg",
    "Wine_by_Jakkub_Mede.jpg",
    "aitzgorri_by_Aitzol_Berasategi.jpg",
    "friends_by_Aitzol_Berasategi.jpg",
    "life_by_Aitzol_Berasategi.jpg",
    "picosdeeuropa_by_Aitzol_Berasategi.jpg",
    "seeding_by_Clements_Engelhardt.jpg",
    "sunset_by_Aitzol_Berasategi.jpg",
    "greentock_by_Peter_Nerlich.jpg",
    "free_by_Peter_Nerlich.jpg",
    "Picture_0B_by_freespace.jpg",
    "Picture_1A_by_freespace.jpg",
)


def judged_photos() -> dict[str, Image.Image]:
    """The photos models/quantize.py calibrates and judges by."""
    return {**real_photos(), **debian_photos()}


def more_variants(photos: dict[str, Image.Image]) -> dict[str, Image.Image]:
    """Seven inputs per photo unlike `photo_variants`' and `calibration_variants`' ones."""
    out: dict[str, Image.Image] = {}
    for name, image in photos.items():
        w, h = image.size
        out[f"{name}-centre60"] = image.crop((w // 5, h // 5, w - w // 5, h - h // 5))
        out[f"{name}-topleft"] = image.crop((0, 0, w * 6 // 10, h * 6 // 10))
        out[f"{name}-bottomright"] = image.crop((w * 4 // 10, h * 4 // 10, w, h))
        out[f"{name}-rotated"] = image.rotate(5, resample=Image.Resampling.BICUBIC).crop(
            (w // 20, h // 20, w - w // 20, h - h // 20)
        )
        out[f"{name}-brighter"] = ImageEnhance.Brightness(image).enhance(1.25)
        out[f"{name}-paler"] = ImageEnhance.Color(image).enhance(0.6)
        scale = 260 / min(w, h)
        out[f"{name}-small"] = image.resize(
            (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR
        )
    return out


def unseen_photos(max_side: int = 1024) -> dict[str, Image.Image]:
    """lomiri-wallpapers' photographs that are installed (none without the package)."""
    out = {}
    for name in _UNSEEN:
        path = _BACKGROUNDS / name
        if not path.is_file():
            continue
        out[f"unseen-{Path(name).stem.split('_by_')[0].lower()}"] = photo_file(path, max_side)
    return out


def cascade_sets() -> dict[str, dict[str, Image.Image]]:
    """{"tuning": ..., "held_out": ..., "unseen": ...} (the last empty where not installed)."""
    judged = judged_photos()
    unseen = unseen_photos()
    return {
        "tuning": photo_variants(judged),
        "held_out": more_variants(judged),
        "unseen": {**photo_variants(unseen), **more_variants(unseen)} if unseen else {},
    }
