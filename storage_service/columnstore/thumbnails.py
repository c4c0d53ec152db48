"""Gallery thumbnails made at put time, with the EXIF orientation applied.

SMALL fits in 256x256. PREVIEW fits in 1024x1024; when the original already fits and is a
format every browser shows, the original itself is the preview and nothing extra is stored,
which keeps the store's size close to the images' own size.

Cost (this runs on the acknowledged put path): whether a preview can be stored is known from
the header (`decode_side`), so an image that only needs the 256 px thumbnail is decoded at the
smallest JPEG DCT scale that still covers 1.5x that size, and one with a preview at the scale
covering 95% of the preview (a 12 Mpx photo at 1/4); the last resampling step is bicubic, the
WebP encoder runs at method 2, and a preview the 3x-saving rule would drop is not encoded.
`make bench PART=ingest` measured the choice on real photos: prepare_image CPU 15 -> 8 ms for
web-sized JPEGs and 142 -> 70 ms for 12 Mpx ones, thumbnails 1-3% smaller, small-thumbnail
SSIM against a full-resolution Lanczos reference 0.950 instead of 0.957 (JPEG thumbnails encode
5x faster but weigh 45% more at the same SSIM; pyvips was slower here). `LEGACY` keeps the
previous settings callable for that comparison.

Memory: the decoded image is never copied at full size when that can be avoided. It is shrunk
first (an integer `reduce`, channel by channel for images with alpha, whose resize would
otherwise make a premultiplied full-size copy), then resampled, then turned upright and
converted: rotation and mode conversion happen on the 1024 px preview, not on the original.
`policy.bytes_per_pixel` is the peak this costs per decoded pixel, by mode.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

from PIL import Image

SMALL_PX = 256
PREVIEW_PX = 1024
THUMB_FORMAT = "WEBP"
THUMB_CONTENT_TYPE = "image/webp"
THUMB_QUALITY = 80
PREVIEW_MIN_SAVING = 3
# A preview weighs at least this much of its small thumbnail's bytes per pixel (WebP, measured
# on real photos: 0.35-0.70), so a preview PREVIEW_MIN_SAVING would drop is known unencoded.
PREVIEW_MIN_BYTES_PER_SMALL = 0.3
BROWSER_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF"})
# The last resampling step shrinks by at most this much (Pillow's thumbnail default).
REDUCING_GAP = 2.0


@dataclass(frozen=True)
class ThumbnailSettings:
    """How thumbnails are made: the speed / size / quality trade-off, chosen by measurement."""

    name: str
    # WebP encoder effort (0 fastest .. 6 smallest) and quality.
    webp_method: int
    webp_quality: int
    # The last resampling step's filter (after integer `reduce` steps).
    resample: Image.Resampling
    # When no preview can be stored, decode (JPEG draft) down to this many times the small
    # thumbnail's side; 0: always decode to the preview's side.
    small_decode_gap: float
    # When a preview can be stored, decode down to this fraction of its side (a 4000x3000
    # photo then decodes at 1/4 scale, 1000x750, and is enlarged 2.4%, instead of decoding at
    # 1/2 scale and resampling 3 Mpx).
    preview_decode_slack: float = 1.0


# Before issue 13's cheaper puts: every decode covered 1024 px, Lanczos, WebP method 4.
LEGACY = ThumbnailSettings("legacy", 4, THUMB_QUALITY, Image.Resampling.LANCZOS, 0.0)
FAST = ThumbnailSettings("fast", 2, THUMB_QUALITY, Image.Resampling.BICUBIC, 1.5, 0.95)
# What put uses; the ingest benchmark swaps in LEGACY to measure the baseline.
SETTINGS = FAST

EXIF_ORIENTATION = 0x0112
# EXIF orientation -> the transpose that makes the image upright (as ImageOps.exif_transpose).
_UPRIGHT: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_SIDES = frozenset({5, 6, 7, 8})
# Modes Pillow resamples directly; anything else is converted to RGB(A) first.
_RESIZABLE = frozenset({"L", "RGB", "RGBA", "LA"})


@dataclass(frozen=True)
class Thumbnails:
    width: int
    height: int
    content_type: str
    small: bytes
    small_size: tuple[int, int]
    preview: bytes
    preview_size: tuple[int, int]


def fit(size: tuple[int, int], max_px: int) -> tuple[int, int]:
    """The size that fits in max_px x max_px keeping the aspect (as Image.thumbnail rounds);
    `size` itself when it already fits."""
    width, height = size
    if width <= max_px and height <= max_px:
        return size
    aspect = width / height

    def round_aspect(number: float, key: object) -> int:
        return max(min(math.floor(number), math.ceil(number), key=key), 1)  # type: ignore[call-overload]

    x = y = max_px
    if x / y >= aspect:
        x = round_aspect(y * aspect, key=lambda n: abs(aspect - n / y))
    else:
        y = round_aspect(x / aspect, key=lambda n: 0 if n == 0 else abs(aspect - x / n))
    return x, y


def _reduce(image: Image.Image, factor: int) -> Image.Image:
    """An integer box reduction with no full-size temporary: alpha images channel by channel."""
    if image.mode in ("RGBA", "LA"):
        bands = [image.getchannel(i).reduce(factor) for i in range(len(image.getbands()))]
        return Image.merge(image.mode, bands)
    return image.reduce(factor)


def _shrink(image: Image.Image, size: tuple[int, int], resample: Image.Resampling) -> Image.Image:
    """`image` resampled to `size`, cheaply reduced first when much larger."""
    if image.size == size:
        return image
    factor = int(min(image.width / size[0], image.height / size[1]) / REDUCING_GAP)
    if factor > 1:
        image = _reduce(image, factor)
    return image.resize(size, resample)


def _resizable(image: Image.Image, has_alpha: bool) -> Image.Image:
    if image.mode in _RESIZABLE:
        return image
    if image.mode == "1":
        return image.convert("L")
    return image.convert("RGBA" if has_alpha else "RGB")


def _encode(image: Image.Image, settings: ThumbnailSettings) -> bytes:
    buf = io.BytesIO()
    image.save(buf, THUMB_FORMAT, quality=settings.webp_quality, method=settings.webp_method)
    return buf.getvalue()


def _shown(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    return (size[1], size[0]) if orientation in _SWAPS_SIDES else size


def _must_preview(format_name: str, orientation: int) -> bool:
    """A preview is stored whatever the size when browsers cannot show the original as it is
    (a format they do not all show, or an EXIF rotation they might not apply)."""
    return format_name not in BROWSER_FORMATS or orientation not in (0, 1)


def may_store_preview(format_name: str, size: tuple[int, int], orientation: int) -> bool:
    """Whether a preview can be stored for an image of this format, stored size and EXIF
    orientation (known from the header, before decoding)."""
    return _must_preview(format_name, orientation) or max(size) > PREVIEW_PX


def decode_side(
    format_name: str,
    size: tuple[int, int],
    orientation: int,
    settings: ThumbnailSettings | None = None,
) -> int:
    """The long side a reduced-scale decode must still reach to make this image's thumbnails."""
    settings = settings or SETTINGS
    if may_store_preview(format_name, size, orientation):
        return math.ceil(PREVIEW_PX * settings.preview_decode_slack)
    if not settings.small_decode_gap:
        return PREVIEW_PX
    return math.ceil(SMALL_PX * settings.small_decode_gap)


def make_thumbnails(
    image: Image.Image,
    format_name: str,
    original_bytes: int,
    original_size: tuple[int, int] | None = None,
    settings: ThumbnailSettings | None = None,
) -> Thumbnails:
    """Thumbnails of a loaded image; `width`/`height` are the original's as displayed (upright).

    `image` may have been decoded at a reduced scale (JPEG draft mode): `original_size` is then
    the size stored in the file, before that reduction.
    """
    settings = settings or SETTINGS
    stored = original_size or image.size
    orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    swap = orientation in _SWAPS_SIDES
    shown = _shown(stored, orientation)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    mode = "RGBA" if has_alpha else "RGB"

    def upright(im: Image.Image, target: tuple[int, int]) -> Image.Image:
        """`im` resampled so that, once turned upright, it is `target`."""
        before = (target[1], target[0]) if swap else target
        out = _shrink(im, before, settings.resample)
        if orientation in _UPRIGHT:
            out = out.transpose(_UPRIGHT[orientation])
        return out.convert(mode) if out.mode != mode else out

    source = _resizable(image, has_alpha)
    small_size = fit(shown, SMALL_PX)
    must = _must_preview(format_name, orientation)
    preview, stored_preview_size = b"", (0, 0)
    if may_store_preview(format_name, stored, orientation):
        preview_image = upright(source, fit(shown, PREVIEW_PX))
        small_image = _shrink(preview_image, small_size, settings.resample)
        small = _encode(small_image, settings)
        pixels = preview_image.width * preview_image.height / (small_size[0] * small_size[1])
        least = len(small) * pixels * PREVIEW_MIN_BYTES_PER_SMALL
        if must or original_bytes >= PREVIEW_MIN_SAVING * least:
            preview, stored_preview_size = _encode(preview_image, settings), preview_image.size
            if not must and original_bytes < PREVIEW_MIN_SAVING * len(preview):
                preview, stored_preview_size = b"", (0, 0)
    else:
        # The original is the preview: only the small thumbnail is made, straight from the
        # (possibly reduced-scale) decode, never via a full-size converted copy.
        small_image = upright(source, small_size)
        small = _encode(small_image, settings)
    return Thumbnails(
        width=shown[0],
        height=shown[1],
        content_type=THUMB_CONTENT_TYPE,
        small=small,
        small_size=small_image.size,
        preview=preview,
        preview_size=stored_preview_size,
    )
