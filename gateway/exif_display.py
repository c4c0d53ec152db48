"""EXIF as people read it: "1/250 s, f/5.6, 50 mm, ISO 200", the camera, the lens, when.

Storage keeps a short EXIF summary as strings (`camera_make`, `exposure_time`, ...), written by
Pillow: rationals as decimals ("0.004"), older rows as tuples ("(1, 250)") or fractions
("1/250"), dates as "2019:07:14 18:22:05". Everything here is pure and forgiving: a value that
cannot be read is left out, never shown raw.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime

_EXIF_DATE_FORMATS = (
    "%Y:%m:%d %H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%Y:%m:%d %H:%M",
    "%Y-%m-%dT%H:%M:%S",
)
_NUMBER = r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"


def parse_number(text: str | None) -> float | None:
    """A rational as stored: "0.004", "1/250", "(1, 250)", "50.0"; None when unreadable or
    not a finite number (a 0 denominator)."""
    if not text:
        return None
    raw = text.strip()
    match = re.fullmatch(rf"\(?\s*({_NUMBER})\s*(?:[,/]\s*({_NUMBER}))?\s*\)?", raw)
    if not match:
        return None
    numerator = float(match.group(1))
    if match.group(2) is not None:
        denominator = float(match.group(2))
        if denominator == 0:
            return None
        numerator /= denominator
    return numerator if math.isfinite(numerator) else None


def _trim(value: float, digits: int = 1) -> str:
    text = f"{value:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def exposure(text: str | None) -> str | None:
    """Shutter speed: 0.004 -> "1/250 s", 0.5 -> "1/2 s", 2.5 -> "2.5 s"."""
    seconds = parse_number(text)
    if seconds is None or seconds <= 0:
        return None
    if seconds >= 1:
        return f"{_trim(seconds)} s"
    return f"1/{round(1 / seconds)} s"


def aperture(text: str | None) -> str | None:
    value = parse_number(text)
    return f"f/{_trim(value)}" if value is not None and value > 0 else None


def focal_length(text: str | None) -> str | None:
    value = parse_number(text)
    if value is None or value <= 0:
        return None
    return f"{_trim(value, 0 if value >= 10 else 1)} mm"


def iso(text: str | None) -> str | None:
    value = parse_number(text)
    return f"ISO {round(value)}" if value is not None and value > 0 else None


def taken_at(text: str | None) -> datetime | None:
    """The EXIF date (local time of the camera, no zone), or None when absent or zeroed."""
    if not text:
        return None
    raw = text.strip().rstrip("\x00")
    for fmt in _EXIF_DATE_FORMATS:
        try:
            return datetime.strptime(raw, fmt)
        except ValueError:
            continue
    return None


def human_datetime(moment: datetime) -> str:
    """ "14 July 2019, 18:22" (no zone: EXIF times are the camera's clock)."""
    return f"{moment.day} {moment:%B %Y}, {moment:%H:%M}"


def camera(make: str | None, model: str | None) -> str | None:
    """ "Canon" + "Canon EOS 5D" -> "Canon EOS 5D"; "NIKON CORPORATION" + "NIKON D750" ->
    "NIKON D750"; make alone or model alone as they are."""
    make, model = (make or "").strip(), (model or "").strip()
    if not make:
        return model or None
    if not model:
        return make
    brand = make.split()[0]
    if model.lower().startswith(brand.lower()):
        return model
    return f"{make} {model}"


@dataclass(frozen=True)
class ExifDisplay:
    """What the image page shows under "Camera"; every field may be missing."""

    exposure: str | None = None  # "1/250 s, f/5.6, 50 mm, ISO 200"
    camera: str | None = None
    lens: str | None = None
    taken: str | None = None  # "14 July 2019, 18:22"
    software: str | None = None

    def rows(self) -> list[tuple[str, str]]:
        named = (
            ("Taken", self.taken),
            ("Camera", self.camera),
            ("Lens", self.lens),
            ("Exposure", self.exposure),
            ("Software", self.software),
        )
        return [(name, value) for name, value in named if value]


def describe(exif: dict[str, str]) -> ExifDisplay:
    """The readable form of storage's EXIF summary."""
    parts = [
        exposure(exif.get("exposure_time")),
        aperture(exif.get("f_number")),
        focal_length(exif.get("focal_length")),
        iso(exif.get("iso")),
    ]
    when = taken_at(exif.get("taken_at"))
    return ExifDisplay(
        exposure=", ".join(p for p in parts if p) or None,
        camera=camera(exif.get("camera_make"), exif.get("camera_model")),
        lens=(exif.get("lens_model") or "").strip() or None,
        taken=human_datetime(when) if when else None,
        software=(exif.get("software") or "").strip() or None,
    )
