"""Byte counts as people read them ("50 MiB", "48.8 KiB"), for messages and pages."""

from __future__ import annotations

_UNITS = (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10))


def size_text(size: int, exact: bool = False) -> str:
    """`size` in the largest binary unit it reaches, whole when it is whole ("50 MiB"), else to
    one decimal ("61.2 MiB"); `exact` adds the byte count in parentheses when it was rounded
    or scaled ("50 MiB (52428800 bytes)"), for a limit someone may have to set."""
    for unit, scale in _UNITS:
        if size >= scale:
            amount = f"{size // scale}" if size % scale == 0 else f"{size / scale:.1f}"
            shown = f"{amount} {unit}"
            return f"{shown} ({size} bytes)" if exact else shown
    return f"{size} bytes"
