"""Large uploads go to vision as a smaller copy; small ones as they are."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from vision_service.analysis_copy import ANALYZE_MAX_BYTES, ANALYZE_MAX_SIDE_PX, bytes_for_analysis


def test_small_upload_is_sent_unchanged(photo_jpegs):
    data = photo_jpegs["coffee"]

    assert bytes_for_analysis(data) is data


def test_large_upload_becomes_a_jpeg_within_the_side_limit(photo_jpegs):
    with Image.open(io.BytesIO(photo_jpegs["rocket"])) as im:
        big = np.asarray(im.resize((im.width * 8, im.height * 8)))
    noisy = big ^ np.random.default_rng(0).integers(0, 64, big.shape, dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noisy).save(buf, "PNG", compress_level=1)
    assert len(buf.getvalue()) > ANALYZE_MAX_BYTES

    copy = bytes_for_analysis(buf.getvalue())

    with Image.open(io.BytesIO(copy)) as small:
        assert small.format == "JPEG"
        assert max(small.size) == ANALYZE_MAX_SIDE_PX
        assert abs(small.size[0] / small.size[1] - noisy.shape[1] / noisy.shape[0]) < 0.01
    assert len(copy) < ANALYZE_MAX_BYTES


def test_large_unreadable_upload_is_left_for_vision_to_judge():
    data = b"\x89PNG\r\n\x1a\n" + b"\x00" * (ANALYZE_MAX_BYTES + 1)

    assert bytes_for_analysis(data) is data
