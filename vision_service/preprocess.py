"""Image decoding and model input tensors: pure functions, no model and no gRPC.

`decode_image` turns uploaded bytes into one RGB working image whatever the container (JPEG,
PNG, WebP, GIF first frame, BMP, TIFF) or pixel mode (CMYK, greyscale, palette, alpha, 16-bit,
float), with the EXIF orientation applied. Anything it cannot read safely — not an image, a
truncated file, a decompression bomb — raises `InvalidImageError` with a message for the user.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from storage_service.columnstore import policy
from vision_service.errors import InvalidImageError

# The formats storage accepts (the shared policy; importing it registers the HEIC/HEIF opener).
SUPPORTED_FORMATS = tuple(policy.ACCEPTED_FORMATS)

CLASSIFIER_SIZE = 224
CLASSIFIER_RESIZE = 256
# The working copy never needs more than this on its long side: OCR detection runs at 960 at
# most and the classifiers at 256, while a 48 MP photo would otherwise cost ~150 MB as RGB.
WORKING_MAX_SIDE = 1600
# EXIF orientations that swap width and height (transpose, 90 and 270 degree rotations).
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}
# Orientations that need any transposition (1 is upright; other values are invalid and ignored,
# as ImageOps.exif_transpose does).
_TRANSPOSING_ORIENTATIONS = {2, 3, 4, 5, 6, 7, 8}
_EXIF_ORIENTATION_TAG = 0x0112
_WHITE = (255, 255, 255)


@dataclass(frozen=True)
class DecodedImage:
    """An upright RGB working copy (at most WORKING_MAX_SIDE on its long side) plus the
    original's upright size and container format."""

    rgb: Image.Image
    width: int
    height: int
    format: str
    # True when libjpeg decoded at a reduced scale for a caller that needed less than the
    # full working copy: a caller that then needs detail (OCR) decodes again.
    reduced: bool = False


def decode_image(
    data: bytes, *, max_pixels: int, min_long_side: int = WORKING_MAX_SIDE, min_short_side: int = 0
) -> DecodedImage:
    """Decode `data` to an upright RGB image; InvalidImageError on anything unreadable.

    A JPEG much larger than `min_long_side` x `min_short_side` is decoded at a reduced scale
    by libjpeg itself (1/2, 1/4 or 1/8, never below those sides): a 12 MP photo needed only
    for labels decodes ~20x faster than in full.
    """
    if not data:
        raise InvalidImageError("image data is empty")
    try:
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that; our own limit below
            # decides, so a warning here is noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            return _decode_opened(image, max_pixels, min_long_side, min_short_side)
    except InvalidImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise InvalidImageError(f"decompression bomb refused: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise InvalidImageError("not an image this service can read") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        # Pillow reports truncated or corrupt data as OSError ("image file is truncated"),
        # and malformed headers as ValueError/SyntaxError.
        raise InvalidImageError(f"corrupt or truncated image: {exc}") from exc


def _decode_opened(
    image: Image.Image, max_pixels: int, min_long_side: int, min_short_side: int
) -> DecodedImage:
    fmt = (image.format or "").upper()
    if fmt not in SUPPORTED_FORMATS:
        raise InvalidImageError(
            f"unsupported image format {fmt or 'unknown'!r} (accepted: "
            f"{policy.ACCEPTED_FORMAT_NAMES})"
        )
    width, height = image.size
    if width <= 0 or height <= 0:
        raise InvalidImageError(f"image has no pixels ({width}x{height})")
    stored_size = image.size
    if fmt == "JPEG" and image.mode in ("RGB", "L", "CMYK"):
        image.draft(image.mode, _draft_size(image.size, min_long_side, min_short_side))
    # The limit is on the pixels that will actually be decoded: a 48 MP phone JPEG decodes at
    # 1/8 scale and is fine, a PNG that inflates to 48 MP is not. Checked from the header,
    # before anything is decompressed.
    decoded_w, decoded_h = image.size
    if decoded_w * decoded_h > max_pixels:
        raise InvalidImageError(
            f"image of {width}x{height} pixels would decode to {decoded_w * decoded_h} pixels, "
            f"over the limit of {max_pixels} (decompression bomb guard)"
        )
    orientation = image.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    if orientation in _SWAPPING_ORIENTATIONS:
        width, height = height, width
    image.seek(0)  # first frame of an animated GIF/WebP/TIFF
    image.load()
    reduced = image.size != stored_size and min_long_side < WORKING_MAX_SIDE
    if orientation in _TRANSPOSING_ORIENTATIONS:
        # Only then: for an upright photo exif_transpose would parse the EXIF again and copy
        # every pixel (0.1-0.2 ms of a 1.2 ms decode) to return the same image.
        image = ImageOps.exif_transpose(image)
    rgb = to_rgb(image)
    rgb.thumbnail((WORKING_MAX_SIDE, WORKING_MAX_SIDE), Image.Resampling.BICUBIC, reducing_gap=3.0)
    return DecodedImage(rgb=rgb, width=width, height=height, format=fmt, reduced=reduced)


def _draft_size(size: tuple[int, int], min_long: int, min_short: int) -> tuple[int, int]:
    """The smallest size, same aspect, whose long and short sides reach the minimums (draft
    then picks the largest DCT reduction that stays at or above it)."""
    w, h = size
    scale = min(1.0, max(min_long / max(w, h), min_short / min(w, h)))
    return (math.ceil(w * scale), math.ceil(h * scale))


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB: alpha composited on white, high bit depths rescaled."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16"):
        return _grey_to_rgb(np.asarray(image).astype(np.float64), 0.0, 65535.0)
    if mode == "I":
        # 32-bit integer images from PNG/TIFF usually carry 16-bit data; an 8-bit range
        # stays as it is.
        pixels = np.asarray(image).astype(np.float64)
        return _grey_to_rgb(pixels, 0.0, 255.0 if pixels.max(initial=0) <= 255 else 65535.0)
    if mode == "F":
        pixels = np.nan_to_num(np.asarray(image).astype(np.float64))
        return _grey_to_rgb(pixels, float(pixels.min(initial=0)), float(pixels.max(initial=0)))
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, _WHITE)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    # CMYK, YCbCr, LAB, HSV, L, 1 and P convert directly.
    return image.convert("RGB")


def _grey_to_rgb(pixels: np.ndarray, low: float, high: float) -> Image.Image:
    """Map greyscale values in low..high linearly to 0..255, as RGB."""
    scale = 255.0 / ((high - low) or 1.0)
    grey = np.clip((pixels - low) * scale, 0, 255).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


def classifier_input(rgb: Image.Image) -> np.ndarray:
    """EfficientNet-Lite0 input: short side to 256 (bicubic), centre crop 224, (x - 127) / 128,
    CHW float32.

    Resize-then-crop is done as one resize of the source region that the crop keeps (Pillow's
    `box`), which gives the same pixels for half the work: only the 224x224 output is computed.
    """
    w, h = rgb.size
    # The crop keeps 224/256 of the resized short side, centred: that is this source square.
    side = min(w, h) * CLASSIFIER_SIZE / CLASSIFIER_RESIZE
    left, top = (w - side) / 2, (h - side) / 2
    crop = rgb.resize(
        (CLASSIFIER_SIZE, CLASSIFIER_SIZE),
        Image.Resampling.BICUBIC,
        box=(left, top, left + side, top + side),
        reducing_gap=3.0,
    )
    return _normalised_chw(np.asarray(crop))


def _normalised_chw(pixels: np.ndarray) -> np.ndarray:
    """uint8 HWC RGB -> float32 CHW, (x - 127) / 128."""
    out = np.empty((3, pixels.shape[0], pixels.shape[1]), dtype=np.float32)
    for channel in range(3):
        np.subtract(pixels[:, :, channel], 127.0, out=out[channel], dtype=np.float32)
    out *= 1.0 / 128.0
    return out


def to_bgr_array(rgb: Image.Image) -> np.ndarray:
    """HWC uint8 BGR, the layout OpenCV-based OCR expects."""
    return np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])
