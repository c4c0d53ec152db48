"""Validates uploaded bytes as an image and computes what is stored with it.

Every image is decoded through to its last byte (so truncated files fail here, not in the
gallery), its format is checked against the policy and its content type taken from what
decoded (never trusted from the client), and a short EXIF summary is taken.

Memory is bounded before anything is decompressed: the header gives the size and mode, a JPEG
is decoded at the smallest DCT scale that still covers the thumbnails it needs (libjpeg draft
mode: a 48 MP photo decodes as 6 MP or less for its 1024 px preview; a web-sized photo that
needs no preview decodes at 1/2 or 1/4 scale for its 256 px thumbnail, which is also most of
what makes a put cheap; libjpeg still reads every byte, so truncation is still caught), and
what that decode costs (`policy.decode_cost`) is reserved from a `DecodeBudget` shared by all
requests: one image over the budget is refused as a decompression bomb, several large ones take
turns instead of all decoding at once.
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from PIL import ExifTags, Image, UnidentifiedImageError

from storage_service.columnstore import policy
from storage_service.columnstore import thumbnails as thumbs_mod
from storage_service.columnstore.errors import StoreError
from storage_service.columnstore.model import PreparedImage
from storage_service.columnstore.policy import ImageRefusedError
from storage_service.columnstore.thumbnails import make_thumbnails

DEFAULT_MAX_PIXELS = policy.DEFAULT_MAX_PIXELS

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


class DecodeBusyError(StoreError):
    """Other large images took the decode budget for longer than a request may wait."""


class DecodeBudget:
    """A semaphore weighted by bytes: decodes reserve their cost and wait while the budget is
    spent (any one decode may run when nothing else does)."""

    def __init__(self, memory_bytes: int, *, wait_s: float = 60.0) -> None:
        self.memory_bytes = memory_bytes
        self._wait_s = wait_s
        self._used = 0
        self._cond = threading.Condition()

    @property
    def in_use(self) -> int:
        with self._cond:
            return self._used

    @contextmanager
    def reserve(self, cost: int) -> Iterator[None]:
        deadline = time.monotonic() + self._wait_s
        with self._cond:
            while self._used and self._used + cost > self.memory_bytes:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DecodeBusyError(
                        "storage is busy decoding other large images; try again shortly"
                    )
                self._cond.wait(left)
            self._used += cost
        try:
            yield
        finally:
            with self._cond:
                self._used -= cost
                self._cond.notify_all()


_SHARED_BUDGET = DecodeBudget(policy.DEFAULT_DECODE_MEMORY_BYTES)


def prepare_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    budget: DecodeBudget | None = None,
) -> PreparedImage:
    """Decode, check and summarise `data`; ImageRefusedError (an InvalidImageError) says what
    is wrong with it, with the policy reason."""
    if not data:
        raise ImageRefusedError("the image is empty")
    budget = budget or _SHARED_BUDGET
    with warnings.catch_warnings():
        # Our own pixel limit is authoritative; Pillow's bomb warning is an error here.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except UnidentifiedImageError as e:
            raise ImageRefusedError(
                "the bytes are not an image format we can read "
                f"(accepted: {policy.ACCEPTED_FORMAT_NAMES})",
                reason=policy.UNSUPPORTED_FORMAT,
            ) from e
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageRefusedError(
                f"decompression bomb refused: {e}", reason=policy.IMAGE_TOO_LARGE
            ) from e
        except Exception as e:  # noqa: BLE001 - any decoder failure means bad input
            raise ImageRefusedError(f"the image header cannot be read: {e}") from e
        with image:
            format_name = image.format or ""
            content_type = policy.check_format(format_name)
            policy.check_pixels(image.width, image.height, max_pixels)
            stored_size = image.size
            if format_name in ("JPEG", "MPO") and image.mode in ("RGB", "L", "CMYK"):
                try:
                    orientation = image.getexif().get(thumbs_mod.EXIF_ORIENTATION, 1)
                    side = thumbs_mod.decode_side(
                        format_name, stored_size, orientation, original_bytes=len(data)
                    )
                except Exception:  # noqa: BLE001 - broken EXIF: decode for the preview
                    side = thumbs_mod.PREVIEW_PX
                image.draft(image.mode, policy.draft_size(stored_size, side))
            cost = policy.check_decode_cost(
                image.size, image.mode, format_name, budget.memory_bytes
            )
            with budget.reserve(cost):
                try:
                    image.load()
                except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
                    raise ImageRefusedError(
                        f"decompression bomb refused: {e}", reason=policy.IMAGE_TOO_LARGE
                    ) from e
                except Exception as e:  # noqa: BLE001
                    raise ImageRefusedError(f"the image is truncated or corrupt: {e}") from e
                exif = exif_summary(image)
                try:
                    thumbs = make_thumbnails(image, format_name, len(data), stored_size)
                except Exception as e:  # noqa: BLE001
                    raise ImageRefusedError(f"the image cannot be rendered: {e}") from e
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
