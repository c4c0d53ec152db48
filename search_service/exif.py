"""Typed search fields from the EXIF summary storage keeps (strings keyed by storage's names:
`taken_at`, `modified_at`, `camera_make`, `camera_model`)."""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping

# "2019:06:15 10:20:30" (EXIF), also with dashes or a T, seconds optional.
_DATE = re.compile(r"^\s*(\d{4})[:\-/](\d{2})[:\-/](\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2}))?)?")
_EARLIEST, _LATEST = 1826, 2200  # the first photograph; anything later is a broken clock


def parse_exif_date(text: str) -> int:
    """Seconds since the epoch of an EXIF date (its local time read as UTC); 0 if unusable."""
    found = _DATE.match(text or "")
    if not found:
        return 0
    year, month, day = (int(found.group(i)) for i in (1, 2, 3))
    hour, minute, second = (int(found.group(i) or 0) for i in (4, 5, 6))
    if not (_EARLIEST <= year <= _LATEST and 1 <= month <= 12):
        return 0
    if not (1 <= day <= calendar.monthrange(year, month)[1]):
        return 0
    if hour > 23 or minute > 59 or second > 60:
        return 0
    return calendar.timegm((year, month, day, hour, minute, min(second, 59), 0, 0, 0))


def _clean(text: str) -> str:
    return " ".join(text.replace("\x00", " ").split())[:100]


def typed_fields(exif: Mapping[str, str]) -> tuple[int, str, str]:
    """(taken_at_unix_s, camera_make, camera_model) from an EXIF summary."""
    taken = parse_exif_date(exif.get("taken_at", "")) or parse_exif_date(
        exif.get("modified_at", "")
    )
    return taken, _clean(exif.get("camera_make", "")), _clean(exif.get("camera_model", ""))
