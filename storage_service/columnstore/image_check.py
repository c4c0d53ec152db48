"""Validates uploaded bytes as an image and computes what is stored with it.

Two paths. `check_image` is what a put runs before it is acknowledged: the header (format
checked against the policy, content type from what Pillow recognises, never trusted from the
client; size, pixel and decode-memory limits), a short EXIF summary, the sha256, and a
structural completeness check (`structure_problem`: a JPEG's EOI marker after its scan, every
PNG chunk's CRC up to IEND, a WebP's RIFF length, a GIF's trailer) that costs microseconds
instead of the 1.3 ms a full decode of a 70 KB photo takes. The thumbnails are then made after
the ack (thumbnailer.py), where the full decode also finds a file that is corrupt in the middle
(such an image keeps its bytes and is marked, ThumbState.FAILED). A file the structural check
finds incomplete, and formats it does not know (TIFF, BMP, HEIF, AVIF), go through
`prepare_image` instead, before the ack: decoded through to the last byte (truncated files are
refused there with INVALID_ARGUMENT, as before) with their thumbnails made at once.

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
import re
import threading
import time
import warnings
import zlib
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


# Formats whose completeness `structure_problem` checks without decoding.
DEFERRABLE_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF"})
# Off: every put makes its thumbnails before the ack (the previous path; the benchmark's baseline).
DEFER_THUMBNAILS = True
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _jpeg_problem(data: bytes) -> str:
    """A JPEG's marker segments up to its first scan, then an EOI marker after it (entropy-coded
    data never holds 0xFFD9: a 0xFF byte in it is stuffed or a restart marker)."""
    pos = 2
    while True:
        if pos + 4 > len(data):
            return "the JPEG ends inside its header"
        if data[pos] != 0xFF:
            return f"the JPEG has no marker at byte {pos}"
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if 0xD0 <= marker <= 0xD9 or marker == 0x01:  # markers with no length
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2 or pos + 2 + length > len(data):
            return "the JPEG ends inside a marker segment"
        pos += 2 + length
        if marker == 0xDA:  # start of scan
            break
    if data.rfind(b"\xff\xd9", pos) < 0:
        return "the JPEG has no end-of-image marker after its scan (the file is cut short)"
    return ""


def _png_problem(data: bytes) -> str:
    """Every chunk whole with a matching CRC, up to IEND."""
    pos = len(_PNG_SIGNATURE)
    crc32 = zlib.crc32
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        end = pos + 8 + length
        if end + 4 > len(data):
            return "the PNG ends inside a chunk (the file is cut short)"
        kind = data[pos + 4 : pos + 8]
        if crc32(data[pos + 4 : end]) != int.from_bytes(data[end : end + 4], "big"):
            return f"the PNG's {kind.decode('latin-1')!r} chunk fails its CRC"
        if kind == b"IEND":
            return ""
        pos = end + 4
    return "the PNG has no IEND chunk (the file is cut short)"


def _webp_problem(data: bytes) -> str:
    size = int.from_bytes(data[4:8], "little") + 8
    if size > len(data):
        return f"the WebP is {len(data)} bytes, its RIFF header says {size} (the file is cut short)"
    return ""


def structure_problem(data: bytes, format_name: str) -> str | None:
    """Why the file is structurally incomplete ("" when it is whole); None for a format this
    does not check. Microseconds: no pixel is decoded."""
    if format_name in ("JPEG", "MPO"):  # MPO: a phone's JPEG with more pictures after it
        return _jpeg_problem(data)
    if format_name == "PNG":
        return _png_problem(data)
    if format_name == "WEBP":
        return _webp_problem(data)
    if format_name == "GIF":
        return "" if data.rstrip(b"\x00").endswith(b"\x3b") else "the GIF has no trailer"
    return None


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """The image's header read (no pixels), or ImageRefusedError. `max_pixels` decides, not
    Pillow's own bomb limits: its warning (from 89.5M pixels) is ignored, and its error (from
    twice that) is reported against `max_pixels`."""
    if not data:
        raise ImageRefusedError("the image is empty")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            return Image.open(io.BytesIO(data))
        except UnidentifiedImageError as e:
            raise ImageRefusedError(
                "the bytes are not an image format we can read "
                f"(accepted: {policy.ACCEPTED_FORMAT_NAMES})",
                reason=policy.UNSUPPORTED_FORMAT,
            ) from e
        except Image.DecompressionBombError as e:
            raise _bomb(e, max_pixels) from e
        except Exception as e:  # noqa: BLE001 - any decoder failure means bad input
            raise ImageRefusedError(f"the image header cannot be read: {e}") from e


def _bomb(error: Image.DecompressionBombError, max_pixels: int) -> ImageRefusedError:
    """Pillow's bomb error in our terms: the image's pixels against our limit (Pillow says
    "Image size (N pixels) exceeds limit of <its own limit> pixels")."""
    found = re.search(r"\((\d+) pixels\)", str(error))
    size = f"{int(found.group(1))} pixels" if found else "more pixels than Pillow reads"
    return ImageRefusedError(
        f"decompression bomb refused: the image has {size}, over the limit of {max_pixels}",
        reason=policy.IMAGE_TOO_LARGE,
        limit="max_image_pixels",
    )


def _draft(image: Image.Image, format_name: str, data_bytes: int) -> None:
    """Set a JPEG's reduced decode scale (what its thumbnails need)."""
    if format_name in ("JPEG", "MPO") and image.mode in ("RGB", "L", "CMYK"):
        try:
            orientation = image.getexif().get(thumbs_mod.EXIF_ORIENTATION, 1)
            side = thumbs_mod.decode_side(
                format_name, image.size, orientation, original_bytes=data_bytes
            )
        except Exception:  # noqa: BLE001 - broken EXIF: decode for the preview
            side = thumbs_mod.PREVIEW_PX
        image.draft(image.mode, policy.draft_size(image.size, side))


def check_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    budget: DecodeBudget | None = None,
) -> PreparedImage:
    """The acknowledged path's checks (see the module docstring): a PreparedImage with no
    thumbnails (`thumbs_pending`) when the file is whole, else `prepare_image`'s answer."""
    if not DEFER_THUMBNAILS:
        return prepare_image(data, max_pixels=max_pixels, budget=budget)
    budget = budget or _SHARED_BUDGET
    with _open(data, max_pixels) as image:
        format_name = image.format or ""
        problem = structure_problem(data, format_name)
        if problem is None or problem:
            return prepare_image(data, max_pixels=max_pixels, budget=budget)
        content_type = policy.check_format(format_name)
        policy.check_pixels(image.width, image.height, max_pixels)
        stored_size = image.size
        # Pillow reads a PNG's EXIF by decoding every pixel when it is not ahead of them
        # (getexif loads the image): only EXIF found in the header is read here.
        header_exif = format_name in ("JPEG", "MPO") or "exif" in image.info
        try:
            exif_tags = image.getexif() if header_exif else Image.Exif()
            orientation = int(exif_tags.get(thumbs_mod.EXIF_ORIENTATION, 1))
        except Exception:  # noqa: BLE001 - broken EXIF: the thumbnailer decides
            orientation = 1
        _draft(image, format_name, len(data))
        # Refused now if its deferred decode could never fit the budget.
        policy.check_decode_cost(image.size, image.mode, format_name, budget.memory_bytes)
        exif = exif_summary(image) if header_exif else {}
    width, height = thumbs_mod.shown_size(stored_size, orientation)
    return PreparedImage(
        data=data,
        content_type=content_type,
        format=format_name,
        sha256=hashlib.sha256(data).hexdigest(),
        width=width,
        height=height,
        exif=exif,
        thumb_content_type="",
        thumb_small=b"",
        thumb_small_size=(0, 0),
        thumb_preview=b"",
        thumb_preview_size=(0, 0),
        thumbs_pending=True,
    )


def render_thumbnails(data: bytes, *, budget: DecodeBudget | None = None) -> thumbs_mod.Thumbnails:
    """The thumbnails of stored bytes (the thumbnailer's work): decoded once, at the reduced
    scale they need; ImageRefusedError when the file is corrupt."""
    return _decode(data, DEFAULT_MAX_PIXELS, budget or _SHARED_BUDGET)[0]


def prepare_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    budget: DecodeBudget | None = None,
) -> PreparedImage:
    """Decode, check and summarise `data`, thumbnails made; ImageRefusedError (an
    InvalidImageError) says what is wrong with it, with the policy reason."""
    if not data:
        raise ImageRefusedError("the image is empty")
    budget = budget or _SHARED_BUDGET
    thumbs, format_name, content_type, exif = _decode(data, max_pixels, budget)
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


def _decode(
    data: bytes, max_pixels: int, budget: DecodeBudget
) -> tuple[thumbs_mod.Thumbnails, str, str, dict[str, str]]:
    with warnings.catch_warnings():
        # Our own pixel limit is authoritative (policy.check_pixels, before any pixel is
        # decoded); Pillow's bomb warning would refuse photos under it.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = _open(data, max_pixels)
        with image:
            format_name = image.format or ""
            content_type = policy.check_format(format_name)
            policy.check_pixels(image.width, image.height, max_pixels)
            stored_size = image.size
            _draft(image, format_name, len(data))
            cost = policy.check_decode_cost(
                image.size, image.mode, format_name, budget.memory_bytes
            )
            with budget.reserve(cost):
                try:
                    image.load()
                except Image.DecompressionBombError as e:
                    raise _bomb(e, max_pixels) from e
                except Exception as e:  # noqa: BLE001
                    raise ImageRefusedError(f"the image is truncated or corrupt: {e}") from e
                exif = exif_summary(image)
                try:
                    thumbs = make_thumbnails(image, format_name, len(data), stored_size)
                except Exception as e:  # noqa: BLE001
                    raise ImageRefusedError(f"the image cannot be rendered: {e}") from e
    return thumbs, format_name, content_type, exif
