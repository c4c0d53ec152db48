"""Upload validation and what is computed at put time: type, EXIF, orientation, thumbnails."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from storage_service.columnstore import thumbnails
from storage_service.columnstore.errors import InvalidImageError
from storage_service.columnstore.image_check import prepare_image


def _with_exif(photo: bytes, orientation: int) -> bytes:
    with Image.open(io.BytesIO(photo)) as im:
        exif = Image.Exif()
        exif[0x010F] = "Canon"  # Make
        exif[0x0110] = "EOS 5D"  # Model
        exif[0x0112] = orientation
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=90, exif=exif)
        return buf.getvalue()


def test_exif_orientation_is_applied_to_size_and_thumbnails(photo_jpegs):
    rotated = _with_exif(photo_jpegs["china"], orientation=6)  # stored 640x427, shown 427x640

    image = prepare_image(rotated)

    assert (image.width, image.height) == (427, 640)
    assert image.thumb_small_size == (171, 256)
    assert image.thumb_preview_size == (427, 640)
    assert image.exif["camera_make"] == "Canon"
    assert image.exif["camera_model"] == "EOS 5D"
    with Image.open(io.BytesIO(image.thumb_small)) as thumb:
        assert (thumb.format, thumb.size) == ("WEBP", (171, 256))


def _camera_sized(photo: bytes, size: tuple[int, int] = (3000, 2000)) -> bytes:
    """The photo enlarged to camera size with sensor-like noise, so it weighs what one does."""
    with Image.open(io.BytesIO(photo)) as im:
        big = im.convert("RGB").resize(size, Image.Resampling.BICUBIC)
    noise = np.random.default_rng(1).normal(0, 5, (size[1], size[0], 3))
    pixels = np.clip(np.asarray(big, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=92)
    return buf.getvalue()


def test_camera_sized_photo_gets_a_1024_preview_of_at_most_a_tenth_of_its_bytes(photo_jpegs):
    data = _camera_sized(photo_jpegs["astronaut"])

    large = prepare_image(data)

    assert large.thumb_preview_size == (1024, 683)
    assert len(large.thumb_preview) * thumbnails.CHEAP.preview_min_saving <= len(data)
    assert large.thumb_small_size == (256, 171)


def test_web_sized_photo_over_1024_px_is_its_own_preview(photo_jpegs):
    """2048x2048 in 373 KB: a 1024 px preview would take 66 KB (5.7x less), which would add
    18% to what the image costs on disk; the original is shown instead."""
    with Image.open(io.BytesIO(photo_jpegs["astronaut"])) as im:
        buf = io.BytesIO()
        im.resize((2048, 2048)).save(buf, "JPEG", quality=85)

    large = prepare_image(buf.getvalue())
    small = prepare_image(photo_jpegs["astronaut"])

    assert (large.thumb_preview, large.thumb_preview_size) == (b"", (0, 0))
    assert large.thumb_small_size == (256, 256)
    assert (small.thumb_preview, small.thumb_preview_size) == (b"", (0, 0))


def test_content_type_is_sniffed_from_the_bytes(photo_paths):
    png = prepare_image(photo_paths["coffee"].read_bytes())

    assert (png.content_type, png.format) == ("image/png", "PNG")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "empty"),
        (b"GIF89a but not really", "not an image"),
        (b"plain text, not a photo at all", "not an image"),
    ],
)
def test_bytes_that_are_no_image_are_refused_with_a_reason(payload, message):
    with pytest.raises(InvalidImageError, match=message):
        prepare_image(payload)


def test_truncated_photo_is_refused(photo_jpegs):
    data = photo_jpegs["coffee"]

    with pytest.raises(InvalidImageError, match="truncated"):
        prepare_image(data[: len(data) * 2 // 3])


def test_decompression_bomb_is_refused_before_decoding():
    buf = io.BytesIO()
    Image.new("1", (12000, 12000)).save(buf, "PNG")

    with pytest.raises(InvalidImageError, match="bomb"):
        prepare_image(buf.getvalue(), max_pixels=50_000_000)


def _blank_png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("1", (width, height)).save(buf, "PNG")
    return buf.getvalue()


def test_a_photo_under_our_pixel_limit_is_kept_though_pillow_would_warn():
    # 94.1M pixels: over Pillow's own warning limit (89.5M), under the 100M storage allows.
    prepared = prepare_image(_blank_png(9700, 9700), max_pixels=100_000_000)

    assert (prepared.width, prepared.height) == (9700, 9700)


def test_a_bomb_over_pillows_own_error_limit_is_refused_against_ours():
    # 225M pixels: Pillow refuses it in its header read (over twice its 89.5M); the message
    # names the image's pixels and the limit storage is configured with, not Pillow's.
    with pytest.raises(InvalidImageError) as refused:
        prepare_image(_blank_png(15000, 15000), max_pixels=100_000_000)

    message = str(refused.value)
    assert message == (
        "decompression bomb refused: the image has 225000000 pixels, over the limit of 100000000"
    )
