"""Gallery thumbnails made at put time, with the EXIF orientation applied.

SMALL fits in 256x256. PREVIEW fits in 1024x1024 and is kept only when it weighs at most a
tenth of the original (`preview_min_saving`): a camera photo keeps one (2-3% of its bytes); a
web-sized photo, even one over 1024 px, is its own preview, as is any original that already
fits in 1024 px in a format every browser shows. The issue-13 goal is on-disk at most 1.10x
the raw bytes for web-sized photos; a preview at a third of the original (the rule before)
alone added up to 33%.

Cost (this ran on the acknowledged put path; since issue 13's second round it runs after the
ack, in thumbnailer.py, for every format image_check can check structurally). Whether a preview
can be kept is known from the header and the byte size (`may_store_preview`: a preview of a real
photo takes at least 0.012 bytes per pixel, so an original lighter than ten times that keeps
none), so most images are decoded at the smallest JPEG DCT scale still covering 1.5x the small
thumbnail, and one that may keep a preview at the scale covering 95% of it (a 12 Mpx photo at
1/4). The small thumbnail is made first; the 1024 px preview is resampled and encoded only when
the small one's bytes say it can be worth keeping. The last resampling step is bicubic and the
WebP encoder runs at method 2 (`CHEAP`). `make bench PART=ingest` measured the choices on real
photos (figures in the README): prepare_image CPU per web-sized JPEG about a third of `LEGACY`'s
and 60% of `FAST`'s with the small thumbnail's SSIM kept; over gRPC with 8 clients the server's
CPU per put 16 -> 7 ms. What is left per put: WebP encoding ~2 ms, decoding and resampling ~2.5
ms, gRPC and the store ~1.5 ms. JPEG small thumbnails (`CHEAP_JPEG`) would take 1.5 ms less but
weigh 40% more at the same SSIM and change the documented thumbnail type, so they are measured,
not used; decoding down to 1x the small side would save 0.6 ms at 0.04 SSIM on some photos.
`LEGACY` and `FAST` keep the earlier settings callable for the comparison.

Memory: the decoded image is never copied at full size when that can be avoided. It is shrunk
first (an integer `reduce`, channel by channel for images with alpha, whose resize would
otherwise make a premultiplied full-size copy), then resampled, then turned upright and
converted: rotation and mode conversion happen on the 1024 px preview, not on the original.
`policy.bytes_per_pixel` is the peak this costs per decoded pixel, by mode.
"""

from __future__ import annotations

import dataclasses
import io
import math
from dataclasses import dataclass

from PIL import Image

SMALL_PX = 256
PREVIEW_PX = 1024
THUMB_FORMAT = "WEBP"
THUMB_CONTENT_TYPE = "image/webp"
CONTENT_TYPES = {"WEBP": THUMB_CONTENT_TYPE, "JPEG": "image/jpeg"}
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
    # The format of an image's thumbnails when it keeps no preview ("WEBP" or "JPEG"; one
    # with a preview, or with transparency, is always WebP), and JPEG's quality.
    small_format: str = "WEBP"
    jpeg_quality: int = 80
    # A preview's bytes per small-thumbnail byte and pixel below which a preview is known not
    # to be worth encoding.
    preview_min_bytes_per_small: float = PREVIEW_MIN_BYTES_PER_SMALL
    # A preview is kept only when the original weighs at least this many times as much.
    preview_min_saving: float = PREVIEW_MIN_SAVING
    # The fewest bytes per pixel a preview of a real photo takes (0: not used). An original
    # lighter than preview_min_saving times that keeps no preview, which is known from the
    # header: it is then decoded at the small thumbnail's scale.
    preview_min_bytes_per_pixel: float = 0.0
    # Integer `reduce` steps until the last resampling step shrinks by less than this.
    reducing_gap: float = REDUCING_GAP
    # Make the small thumbnail from the decode and resample the preview only once it is known
    # to be worth storing (instead of always making the preview and the small one from it).
    small_first: bool = False
    # A WebP small thumbnail aims at this fraction of the original's bytes (0: no budget): it
    # is encoded once, at the highest quality of `BUDGET_QUALITIES` predicted to fit (from its
    # pixels at `budget_bytes_per_px`, what q80 takes), never below `budget_min_quality`.
    small_budget: float = 0.0
    budget_min_quality: int = 50
    budget_bytes_per_px: float = 0.17


# Bytes of a small WebP thumbnail (method 2) at quality q over its bytes at q80: mean over 120
# real web photos of ~70 KB, whose q80 thumbnails take 0.17 bytes per pixel (median 0.17, 10th
# to 90th percentile 0.11-0.25). `make bench PART=ingest` prints the encoder table.
BUDGET_QUALITIES = ((80, 1.0), (70, 0.79), (60, 0.71), (50, 0.63))

# Before issue 13's cheaper puts: every decode covered 1024 px, Lanczos, WebP method 4.
LEGACY = ThumbnailSettings("legacy", 4, THUMB_QUALITY, Image.Resampling.LANCZOS, 0.0)
# The first round of cheaper puts: bicubic, WebP method 2, decodes down to 1.5x the small side.
FAST = ThumbnailSettings("fast", 2, THUMB_QUALITY, Image.Resampling.BICUBIC, 1.5, 0.95)
# The second (the SSIM of FAST's small thumbnails kept): the small thumbnail made first and
# the preview only when it is worth keeping, which it is when it weighs at most a tenth of
# the original (a camera photo's); a web-sized photo over 1024 px is its own preview, and
# when its bytes say so from the header it is decoded at the small thumbnail's scale.
CHEAP = ThumbnailSettings(
    "cheap",
    2,
    THUMB_QUALITY,
    Image.Resampling.BICUBIC,
    1.5,
    0.95,
    small_first=True,
    preview_min_saving=10,
    # WebP q80 method 2 previews of real photos (scikit-image, scikit-learn, Debian
    # wallpapers): 0.015-0.10 bytes per pixel, median 0.059.
    preview_min_bytes_per_pixel=0.012,
)
# Measured beside it, not used: JPEG small thumbnails (5x cheaper to encode than WebP, 40%
# heavier at the same SSIM) would change the documented thumbnail type.
CHEAP_JPEG = dataclasses.replace(CHEAP, name="cheap, JPEG small thumbnails", small_format="JPEG")
# Issue 13's on-disk goal (at most 1.10x the raw bytes for web photos): a ~70 KB web photo's
# q80 thumbnail is 11% of it. Aiming at 5% of the original: q50 for such photos (6.9% of
# them; SSIM 0.918 instead of 0.951; looked at side by side: softer fine texture, no
# blocking), q60-70 up to ~150 KB, q80 above and for camera photos; one encode at q50 costs
# less than at q80.
BUDGET = dataclasses.replace(CHEAP, name="budget 5% of original", small_budget=0.05)
# What put uses; the ingest benchmark swaps in the others to measure against them.
SETTINGS = BUDGET

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


def _shrink(
    image: Image.Image,
    size: tuple[int, int],
    resample: Image.Resampling,
    reducing_gap: float = REDUCING_GAP,
) -> Image.Image:
    """`image` resampled to `size`, cheaply reduced first when much larger."""
    if image.size == size:
        return image
    factor = int(min(image.width / size[0], image.height / size[1]) / reducing_gap)
    if factor > 1:
        image = _reduce(image, factor)
    return image.resize(size, resample)


def _resizable(image: Image.Image, has_alpha: bool) -> Image.Image:
    if image.mode in _RESIZABLE:
        return image
    if image.mode == "1":
        return image.convert("L")
    return image.convert("RGBA" if has_alpha else "RGB")


def _encode(image: Image.Image, settings: ThumbnailSettings, format_name: str = "WEBP") -> bytes:
    buf = io.BytesIO()
    if format_name == "JPEG":
        image.save(buf, "JPEG", quality=settings.jpeg_quality, optimize=True)
    else:
        image.save(buf, "WEBP", quality=settings.webp_quality, method=settings.webp_method)
    return buf.getvalue()


def budget_quality(
    size: tuple[int, int], original_bytes: int, settings: ThumbnailSettings | None = None
) -> int:
    """The WebP quality of a small thumbnail of `size` px for an original of this many bytes."""
    settings = settings or SETTINGS
    if not settings.small_budget:
        return settings.webp_quality
    budget = settings.small_budget * original_bytes
    expected = settings.budget_bytes_per_px * size[0] * size[1]
    for quality, ratio in BUDGET_QUALITIES:
        if quality <= settings.webp_quality and expected * ratio <= budget:
            return max(quality, settings.budget_min_quality)
    return settings.budget_min_quality


def _encode_small(
    image: Image.Image, settings: ThumbnailSettings, format_name: str, original_bytes: int
) -> bytes:
    """The small thumbnail, aimed at `small_budget` of the original's bytes (one encode, two
    when the photo has more detail than predicted)."""
    if format_name != "WEBP" or not settings.small_budget:
        return _encode(image, settings, format_name)
    quality = budget_quality(image.size, original_bytes, settings)
    small = _encode(image, dataclasses.replace(settings, webp_quality=quality), format_name)
    if quality > settings.budget_min_quality and len(small) > 1.25 * (
        settings.small_budget * original_bytes
    ):
        # More detail than predicted: once more at the lowest quality.
        lowest = dataclasses.replace(settings, webp_quality=settings.budget_min_quality)
        small = min(small, _encode(image, lowest, format_name), key=len)
    return small


def _shown(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    return (size[1], size[0]) if orientation in _SWAPS_SIDES else size


def shown_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    """An image's size as displayed (upright) from its stored size and EXIF orientation."""
    return _shown(size, orientation)


def _must_preview(format_name: str, orientation: int) -> bool:
    """A preview is stored whatever the size when browsers cannot show the original as it is
    (a format they do not all show, or an EXIF rotation they might not apply)."""
    return format_name not in BROWSER_FORMATS or orientation not in (0, 1)


def may_store_preview(
    format_name: str,
    size: tuple[int, int],
    orientation: int,
    original_bytes: int | None = None,
    settings: ThumbnailSettings | None = None,
) -> bool:
    """Whether a preview can be stored for an image of this format, stored size, EXIF
    orientation and byte size (all known from the header, before decoding)."""
    if _must_preview(format_name, orientation):
        return True
    if max(size) <= PREVIEW_PX:
        return False
    settings = settings or SETTINGS
    if original_bytes is None or not settings.preview_min_bytes_per_pixel:
        return True
    preview = fit(size, PREVIEW_PX)
    least = preview[0] * preview[1] * settings.preview_min_bytes_per_pixel
    return original_bytes >= settings.preview_min_saving * least


def decode_side(
    format_name: str,
    size: tuple[int, int],
    orientation: int,
    settings: ThumbnailSettings | None = None,
    original_bytes: int | None = None,
) -> int:
    """The long side a reduced-scale decode must still reach to make this image's thumbnails."""
    settings = settings or SETTINGS
    if may_store_preview(format_name, size, orientation, original_bytes, settings):
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
        out = _shrink(im, before, settings.resample, settings.reducing_gap)
        if orientation in _UPRIGHT:
            out = out.transpose(_UPRIGHT[orientation])
        return out.convert(mode) if out.mode != mode else out

    source = _resizable(image, has_alpha)
    small_size = fit(shown, SMALL_PX)
    must = _must_preview(format_name, orientation)
    # With JPEG small thumbnails (CHEAP_JPEG: 5x cheaper to encode than WebP, ~40% heavier at
    # the same SSIM), an image keeping a preview still has WebP thumbnails, a 1024 px WebP
    # being ~40% lighter than a JPEG, and so does one with transparency.
    small_format = "WEBP" if has_alpha or must else settings.small_format
    preview, stored_preview_size = b"", (0, 0)
    if may_store_preview(format_name, stored, orientation, original_bytes, settings):
        preview_size = fit(shown, PREVIEW_PX)
        preview_image: Image.Image | None = None
        if must or not settings.small_first:
            preview_image = upright(source, preview_size)
            small_image = _shrink(preview_image, small_size, settings.resample)
        else:
            # Most web-sized photos over 1024 px keep no preview (it would not weigh a
            # `preview_min_saving`th of the original): that is known from the small
            # thumbnail's bytes, before the costly resample to 1024 px.
            small_image = upright(source, small_size)
        small = _encode_small(small_image, settings, small_format, original_bytes)
        pixels = preview_size[0] * preview_size[1] / (small_size[0] * small_size[1])
        least = len(small) * pixels * settings.preview_min_bytes_per_small
        if must or original_bytes >= settings.preview_min_saving * least:
            preview_image = preview_image or upright(source, preview_size)
            preview = _encode(preview_image, settings)
            if must or original_bytes >= settings.preview_min_saving * len(preview):
                stored_preview_size = preview_image.size
                if small_format != "WEBP":
                    small_format, small = "WEBP", _encode(small_image, settings)
            else:
                preview = b""
    else:
        # The original is the preview: only the small thumbnail is made, straight from the
        # (possibly reduced-scale) decode, never via a full-size converted copy.
        small_image = upright(source, small_size)
        small = _encode_small(small_image, settings, small_format, original_bytes)
    return Thumbnails(
        width=shown[0],
        height=shown[1],
        content_type=CONTENT_TYPES[small_format],
        small=small,
        small_size=small_image.size,
        preview=preview,
        preview_size=stored_preview_size,
    )
