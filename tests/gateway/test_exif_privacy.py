"""GPS positions read for the owner and blanked from served originals, pixels untouched."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import ExifTags, Image

from gateway.exif_privacy import gps_coordinates, strip_gps, strippable


def _exif_with_gps() -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Canon"
    exif[ExifTags.Base.Model] = "Canon EOS 5D"
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = "2019:07:14 18:22:05"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (48.0, 51.0, 30.12)
    gps[ExifTags.GPS.GPSLongitudeRef] = "W"
    gps[ExifTags.GPS.GPSLongitude] = (2.0, 17.0, 40.2)
    gps[ExifTags.GPS.GPSAltitude] = 35.0
    return exif


def _photo(photo_jpegs, fmt: str) -> bytes:
    with Image.open(io.BytesIO(photo_jpegs["chelsea"])) as im:
        out = io.BytesIO()
        exif = _exif_with_gps().tobytes()
        im.save(out, fmt, exif=exif, **({"quality": 90} if fmt != "PNG" else {}))
    return out.getvalue()


def _pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def test_coordinates_are_read_as_signed_degrees(photo_jpegs):
    where = gps_coordinates(_photo(photo_jpegs, "JPEG"))

    assert where is not None
    assert where.latitude == pytest.approx(48.85837, abs=1e-5)
    assert where.longitude == pytest.approx(-2.29450, abs=1e-5)
    assert where.human() == "48.85837° N, 2.29450° W"


def test_the_first_mebibyte_of_a_jpeg_is_enough_to_find_it(photo_jpegs):
    data = _photo(photo_jpegs, "JPEG")

    assert gps_coordinates(data[:4096]) == gps_coordinates(data)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "HEIF", "AVIF"])
def test_gps_is_blanked_and_nothing_else_changes(photo_jpegs, fmt):
    data = _photo(photo_jpegs, fmt)

    stripped = strip_gps(data)

    assert len(stripped) == len(data)  # blanked in place: no offset moves
    assert gps_coordinates(stripped) is None
    with Image.open(io.BytesIO(stripped)) as im:
        exif = im.getexif()
        assert exif.get_ifd(ExifTags.IFD.GPSInfo) == {}
        assert exif[ExifTags.Base.Model] == "Canon EOS 5D"  # the rest of the EXIF stays
        taken = exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal]
        assert taken == "2019:07:14 18:22:05"
    np.testing.assert_array_equal(_pixels(stripped), _pixels(data))  # not re-encoded
    changed = np.flatnonzero(np.frombuffer(stripped, np.uint8) != np.frombuffer(data, np.uint8))
    assert changed.size and changed.max() - changed.min() < 200  # only the GPS directory
    assert strippable(data)


def test_a_photo_without_gps_is_served_as_it_is(photo_jpegs):
    data = photo_jpegs["coffee"]

    assert strip_gps(data) is data
    assert gps_coordinates(data) is None


def test_xmp_gps_properties_are_blanked_too(photo_jpegs):
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description '
        b'exif:GPSLatitude="48,51.502N" exif:GPSLongitude="2,17.67W">'
        b"<exif:GPSAltitude>35/1</exif:GPSAltitude></rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    with Image.open(io.BytesIO(photo_jpegs["coffee"])) as im:
        out = io.BytesIO()
        im.save(out, "JPEG", xmp=xmp)
    data = out.getvalue()

    stripped = strip_gps(data)

    assert len(stripped) == len(data)
    assert b"48,51.502N" not in stripped and b"2,17.67W" not in stripped
    assert b"35/1" not in stripped
    np.testing.assert_array_equal(_pixels(stripped), _pixels(data))


def test_broken_exif_is_left_alone_without_error():
    junk = b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00MM\x00*\xff\xff\xff\xff" + b"\x00" * 50

    assert strip_gps(junk) == junk
    assert gps_coordinates(junk) is None
