"""EXIF as people read it, from storage's string summary."""

from __future__ import annotations

from datetime import datetime

import pytest

from gateway.exif_display import (
    aperture,
    camera,
    describe,
    exposure,
    focal_length,
    iso,
    parse_number,
    taken_at,
)


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("0.004", "1/250 s"),  # what Pillow's IFDRational prints
        ("(1, 250)", "1/250 s"),  # what older rows hold
        ("1/250", "1/250 s"),
        ("0.03333333333333333", "1/30 s"),
        ("0.5", "1/2 s"),
        ("1.0", "1 s"),
        ("2.5", "2.5 s"),
        ("30", "30 s"),
    ],
)
def test_shutter_speed_reads_as_a_fraction_of_a_second(stored, shown):
    assert exposure(stored) == shown


@pytest.mark.parametrize("bad", ["", None, "abc", "(1, 0)", "0", "-1", "nan", "1/0"])
def test_unreadable_values_are_left_out_not_shown_raw(bad):
    assert exposure(bad) is None
    assert aperture(bad) is None
    assert focal_length(bad) is None
    assert iso(bad) is None


def test_aperture_focal_length_and_iso():
    assert aperture("5.6") == "f/5.6"
    assert aperture("(28, 10)") == "f/2.8"
    assert aperture("8.0") == "f/8"
    assert focal_length("50.0") == "50 mm"
    assert focal_length("(2350, 100)") == "24 mm"  # 23.5 rounds to a whole mm at 10 mm and up
    assert focal_length("4.25") == "4.2 mm"  # phone lenses keep a decimal
    assert iso("200") == "ISO 200"


def test_numbers_parse_from_every_stored_shape():
    assert parse_number("(1, 250)") == pytest.approx(0.004)
    assert parse_number(" 1/250 ") == pytest.approx(0.004)
    assert parse_number("1e-3") == pytest.approx(0.001)


def test_date_taken_reads_the_exif_colon_format():
    assert taken_at("2019:07:14 18:22:05") == datetime(2019, 7, 14, 18, 22, 5)
    assert taken_at("0000:00:00 00:00:00") is None  # cameras write zeros when unset
    assert taken_at("yesterday") is None


@pytest.mark.parametrize(
    ("make", "model", "shown"),
    [
        ("Canon", "Canon EOS 5D Mark III", "Canon EOS 5D Mark III"),
        ("NIKON CORPORATION", "NIKON D750", "NIKON D750"),
        ("FUJIFILM", "X-T3", "FUJIFILM X-T3"),
        ("", "iPhone 12", "iPhone 12"),
        ("Apple", "", "Apple"),
        ("", "", None),
    ],
)
def test_camera_names_the_maker_once(make, model, shown):
    assert camera(make, model) == shown


def test_summary_reads_like_a_photo_app():
    shown = describe(
        {
            "camera_make": "Canon",
            "camera_model": "Canon EOS 5D Mark III",
            "lens_model": "EF50mm f/1.8 STM",
            "taken_at": "2019:07:14 18:22:05",
            "exposure_time": "0.004",
            "f_number": "5.6",
            "focal_length": "50.0",
            "iso": "200",
            "orientation": "1",
        }
    )

    assert shown.exposure == "1/250 s, f/5.6, 50 mm, ISO 200"
    assert shown.camera == "Canon EOS 5D Mark III"
    assert shown.lens == "EF50mm f/1.8 STM"
    assert shown.taken == "14 July 2019, 18:22"
    assert [name for name, _ in shown.rows()] == ["Taken", "Camera", "Lens", "Exposure"]


def test_no_exif_shows_nothing():
    assert describe({}).rows() == []
