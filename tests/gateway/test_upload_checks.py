"""Upload checks: names, sizes and content sniffed from bytes, before anything is stored."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from werkzeug.datastructures import FileStorage, Headers

from gateway.errors import BadRequestError, PayloadTooLargeError, UnsupportedMediaTypeError
from gateway.sizes import size_text
from gateway.upload_checks import check_upload, clean_filename, sniff_image_type, upload_filename


def _encoded(photo: bytes, fmt: str) -> bytes:
    out = io.BytesIO()
    with Image.open(io.BytesIO(photo)) as im:
        im.convert("RGB").save(out, fmt)
    return out.getvalue()


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [
        ("JPEG", "image/jpeg"),
        ("PNG", "image/png"),
        ("GIF", "image/gif"),
        ("WEBP", "image/webp"),
        ("BMP", "image/bmp"),
        ("TIFF", "image/tiff"),
    ],
)
def test_sniff_recognises_real_encoded_photo(photo_jpegs, fmt, content_type):
    assert sniff_image_type(_encoded(photo_jpegs["coffee"], fmt)) == content_type


def test_sniff_ignores_text_named_like_an_image():
    assert sniff_image_type(b"#!/bin/sh\necho not a picture\n") is None


def test_check_upload_refuses_text_with_jpg_name():
    with pytest.raises(UnsupportedMediaTypeError, match="not an image"):
        check_upload("holiday.jpg", b"just some text", 1000)


def test_check_upload_refuses_empty_file():
    with pytest.raises(BadRequestError, match="empty"):
        check_upload("empty.jpg", b"", 1000)


def test_check_upload_refuses_file_over_limit(photo_jpegs):
    data = photo_jpegs["rocket"]

    with pytest.raises(PayloadTooLargeError, match="over the upload limit") as refused:
        check_upload("rocket.jpg", data, len(data) - 1)

    assert f"of {(len(data) - 1) / 1024:.1f} KiB ({len(data) - 1} bytes)" in str(refused.value)


@pytest.mark.parametrize(
    ("size", "exact", "text"),
    [
        (512, True, "512 bytes"),
        (50_000, False, "48.8 KiB"),
        (50 * 1024 * 1024, True, "50 MiB (52428800 bytes)"),
        (64_172_000, False, "61.2 MiB"),
        (2 * 1024**3, False, "2 GiB"),
    ],
)
def test_size_text_reads_as_people_say_sizes(size, exact, text):
    assert size_text(size, exact=exact) == text


def test_check_upload_returns_sniffed_type_of_png_named_jpg(photo_jpegs):
    assert check_upload("really-a-png.jpg", _encoded(photo_jpegs["coffee"], "PNG"), 10**8) == (
        "image/png"
    )


@pytest.mark.parametrize(
    "name",
    ["../../etc/passwd.jpg", "..\\boot.ini.png", "a/b.jpg", "..", "", "   ", "<script>x.jpg"],
)
def test_clean_filename_refuses_hostile_names(name):
    with pytest.raises(BadRequestError):
        clean_filename(name)


def test_clean_filename_refuses_control_characters():
    with pytest.raises(BadRequestError, match="control"):
        clean_filename("evil\x00.jpg")


def test_clean_filename_keeps_ordinary_names():
    assert clean_filename("  Bob's café & co (1).JPG ") == "Bob's café & co (1).JPG"


@pytest.mark.parametrize(("fmt", "content_type"), [("HEIF", "image/heif"), ("AVIF", "image/avif")])
def test_sniff_recognises_heic_and_avif_photos(photo_jpegs, fmt, content_type):
    assert sniff_image_type(_encoded(photo_jpegs["coffee"], fmt)) == content_type


@pytest.mark.parametrize("name", ["fleur été 🌸.jpg", "ракета.jpg", "東京タワー.png"])
def test_clean_filename_keeps_names_in_any_script(name):
    assert clean_filename(name) == name


def test_clean_filename_composes_a_decomposed_name():
    assert clean_filename("cafe\u0301.jpg") == "café.jpg"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("two\r\nlines.jpg", "control character"),
        ("\u202egpj.exe", "control character"),
        ("ж" * 130 + ".jpg", "over the limit of 255 bytes"),
    ],
)
def test_clean_filename_refuses_what_storage_refuses(name, message):
    with pytest.raises(BadRequestError, match=message):
        clean_filename(name)


@pytest.mark.parametrize("fmt", ["ICO", "PCX", "TGA"])
def test_check_upload_names_an_image_format_that_is_not_accepted(photo_jpegs, fmt):
    with pytest.raises(UnsupportedMediaTypeError, match=f"the {fmt} format is not accepted"):
        check_upload(f"logo.{fmt.lower()}", _encoded(photo_jpegs["coffee"], fmt), 10**8)


@pytest.mark.parametrize(
    ("sent", "parsed", "name"),
    [
        # python-requests sends backslashes raw; werkzeug took them for escapes.
        (r'filename="..\..\windows\evil.jpg"', "....windowsevil.jpg", r"..\..\windows\evil.jpg"),
        # curl escapes a quote: the name is the quote, no backslash.
        (r'filename="say \"cheese\".jpg"', 'say "cheese".jpg', 'say "cheese".jpg'),
        ('filename="fleur été.jpg"', "fleur été.jpg", "fleur été.jpg"),
    ],
)
def test_the_filename_is_read_as_sent(sent, parsed, name):
    upload = FileStorage(
        io.BytesIO(b""),
        filename=parsed,
        headers=Headers({"Content-Disposition": f'form-data; name="file"; {sent}'}),
    )

    assert upload_filename(upload) == name
