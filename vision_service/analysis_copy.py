"""What to send to vision: the image itself, or for a large file a smaller JPEG copy.

Shared by every caller of vision's Analyze (the analysis worker, the gateway's predict and
similar routes); it needs only Pillow, so the slim gateway image can import it.

A gRPC message is capped at 16 MiB and the models look at 224 px (OCR at up to 960 px), so a
large upload is analysed from a 2048 px copy instead of failing.
"""

from __future__ import annotations

import io

from PIL import Image, ImageOps

ANALYZE_MAX_BYTES = 8 * 1024 * 1024
ANALYZE_MAX_SIDE_PX = 2048


def bytes_for_analysis(data: bytes) -> bytes:
    if len(data) <= ANALYZE_MAX_BYTES:
        return data
    try:
        with Image.open(io.BytesIO(data)) as picture:
            picture.draft("RGB", (ANALYZE_MAX_SIDE_PX, ANALYZE_MAX_SIDE_PX))  # JPEG: decode small
            copy = ImageOps.exif_transpose(picture).convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return data  # not readable here: vision gives the verdict
    copy.thumbnail((ANALYZE_MAX_SIDE_PX, ANALYZE_MAX_SIDE_PX), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    copy.save(out, "JPEG", quality=92)
    return out.getvalue()
