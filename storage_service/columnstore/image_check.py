"""Validates uploaded bytes as an image and computes what is stored with it.

Every image is decoded in full (so truncated files fail here, not in the gallery), its pixel
count is checked before decoding (decompression bombs), its content type is sniffed from the
bytes (never trusted from the client), and a short EXIF summary is taken.
"""

from __future__ import annotations

import hashlib
import io
import warnings

from PIL import ExifTags, Image, UnidentifiedImageError

from storage_service.columnstore.errors import InvalidImageError
from storage_service.columnstore.model import PreparedImage
from storage_service.columnstore.thumbnails import make_thumbnails

DEFAULT_MAX_PIXELS = 100_000_000

_EXIF_BASE = {
    ExifTags.Base.Make: "camera_make",
    ExifTags.Base.Model: "camera_model",
    ExifTags.Base.Software: "software",
    ExifTags.Base.Orientation: "orientation",
    ExifTags.Base.DateTime: "modified_at",
}
_EXIF_IFD = {
    ExifTags.Base.DateTimeOriginal: "taken_at",
    ExifTags.Base.ExposureTime: "exposure_time",
    ExifTags.Base.FNumber: "f_number",
    ExifTags.Base.ISOSpeedRatings: "iso",
    ExifTags.Base.FocalLength: "focal_length",
    ExifTags.Base.LensModel: "lens_model",
}


def _text(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    return str(value).strip("\x00 ").strip()


def exif_summary(image: Image.Image) -> dict[str, str]:
    """Camera, lens, time taken and exposure, as strings; empty when there is no EXIF."""
    try:
        exif = image.getexif()
        ifd = exif.get_ifd(ExifTags.IFD.Exif)
    except Exception:  # noqa: BLE001 - broken EXIF must not reject an otherwise good image
        return {}
    out: dict[str, str] = {}
    for source, names in ((exif, _EXIF_BASE), (ifd, _EXIF_IFD)):
        for tag, name in names.items():
            if tag in source:
                text = _text(source[tag])[:200]
                if text:
                    out[name] = text
    return out


def prepare_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> PreparedImage:
    """Decode, check and summarise `data`; InvalidImageError says what is wrong with it."""
    if not data:
        raise InvalidImageError("the image is empty")
    with warnings.catch_warnings():
        # Our own pixel limit is authoritative; Pillow's bomb warning is an error here.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except UnidentifiedImageError as e:
            raise InvalidImageError("the bytes are not an image format we can read") from e
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise InvalidImageError(f"decompression bomb refused: {e}") from e
        except Exception as e:  # noqa: BLE001 - any decoder failure means bad input
            raise InvalidImageError(f"the image header cannot be read: {e}") from e
        with image:
            pixels = image.width * image.height
            if pixels > max_pixels:
                raise InvalidImageError(
                    f"decompression bomb refused: {image.width}x{image.height} is {pixels} "
                    f"pixels, over the limit of {max_pixels}"
                )
            if pixels == 0:
                raise InvalidImageError("the image has no pixels")
            format_name = image.format or ""
            content_type = Image.MIME.get(format_name, "application/octet-stream")
            try:
                image.load()
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
                raise InvalidImageError(f"decompression bomb refused: {e}") from e
            except Exception as e:  # noqa: BLE001
                raise InvalidImageError(f"the image is truncated or corrupt: {e}") from e
            exif = exif_summary(image)
            try:
                thumbs = make_thumbnails(image, format_name, len(data))
            except Exception as e:  # noqa: BLE001
                raise InvalidImageError(f"the image cannot be rendered: {e}") from e
    return PreparedImage(
        data=data,
        content_type=content_type,
        format=format_name,
        sha256=hashlib.sha256(data).hexdigest(),
        width=thumbs.width,
        height=thumbs.height,
        exif=exif,
        thumb_content_type=thumbs.content_type,
        thumb_small=thumbs.small,
        thumb_small_size=thumbs.small_size,
        thumb_preview=thumbs.preview,
        thumb_preview_size=thumbs.preview_size,
    )
