"""Gallery thumbnails made at put time, with the EXIF orientation applied.

SMALL fits in 256x256. PREVIEW fits in 1024x1024; when the original already fits and is a
format every browser shows, the original itself is the preview and nothing extra is stored,
which keeps the store's size close to the images' own size.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageOps

SMALL_PX = 256
PREVIEW_PX = 1024
THUMB_FORMAT = "WEBP"
THUMB_CONTENT_TYPE = "image/webp"
THUMB_QUALITY = 80
PREVIEW_MIN_SAVING = 3
BROWSER_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF"})


@dataclass(frozen=True)
class Thumbnails:
    width: int
    height: int
    content_type: str
    small: bytes
    small_size: tuple[int, int]
    preview: bytes
    preview_size: tuple[int, int]


def _encode(image: Image.Image, max_px: int) -> tuple[bytes, tuple[int, int]]:
    copy = image.copy()
    copy.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    copy.save(buf, THUMB_FORMAT, quality=THUMB_QUALITY, method=4)
    return buf.getvalue(), copy.size


def make_thumbnails(image: Image.Image, format_name: str, original_bytes: int) -> Thumbnails:
    """Thumbnails of a fully loaded image; `width`/`height` are as displayed (oriented)."""
    oriented = ImageOps.exif_transpose(image)
    has_alpha = oriented.mode in ("RGBA", "LA", "PA") or "transparency" in oriented.info
    mode = "RGBA" if has_alpha else "RGB"
    if oriented.mode != mode:
        oriented = oriented.convert(mode)
    small, small_size = _encode(oriented, SMALL_PX)
    rotated = oriented.size != image.size or image.getexif().get(0x0112, 1) not in (0, 1)
    must = format_name not in BROWSER_FORMATS or rotated
    preview, preview_size = b"", (0, 0)
    if must or max(oriented.size) > PREVIEW_PX:
        preview, preview_size = _encode(oriented, PREVIEW_PX)
        if not must and original_bytes < PREVIEW_MIN_SAVING * len(preview):
            preview, preview_size = b"", (0, 0)
    return Thumbnails(
        width=oriented.width,
        height=oriented.height,
        content_type=THUMB_CONTENT_TYPE,
        small=small,
        small_size=small_size,
        preview=preview,
        preview_size=preview_size,
    )
