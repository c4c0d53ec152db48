"""HEIC and AVIF photos (what phones upload) through the whole stack: stored as sent, analysed
by vision, shown through WebP thumbnails and a preview, found again by search."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from storage_service.columnstore import policy

assert policy.ACCEPTED_FORMATS["HEIF"]  # importing the policy registers the HEIC opener


def _encoded(path, fmt: str, seed: int) -> bytes:
    with Image.open(path) as im:
        rgb = im.convert("RGB")
        rgb = rgb.crop((seed, seed, rgb.width - seed, rgb.height - seed))
        buf = io.BytesIO()
        rgb.save(buf, fmt, quality=85)
        return buf.getvalue()


@pytest.mark.parametrize(("fmt", "suffix", "seed"), [("HEIF", "heic", 3), ("AVIF", "avif", 5)])
def test_a_phone_format_photo_is_stored_analysed_and_shown(
    http, gateway_url, photo_paths, fmt, suffix, seed
):
    data = _encoded(photo_paths["chelsea"], fmt, seed)

    reply = http.post(
        f"{gateway_url}/api/images", files={"file": (f"cat.{suffix}", data)}, timeout=120
    )
    assert reply.status_code == 201, reply.text
    image = reply.json()["results"][0]["image"]
    original = http.get(f"{gateway_url}/api/images/{image['id']}/original", timeout=30)
    small = http.get(f"{gateway_url}/api/images/{image['id']}/thumbnail", timeout=30)
    preview = http.get(
        f"{gateway_url}/api/images/{image['id']}/thumbnail", params={"size": "preview"}
    )
    meta = http.get(f"{gateway_url}/api/images/{image['id']}", timeout=30).json()

    assert original.content == data
    assert small.headers["Content-Type"] == "image/webp"
    assert preview.headers["Content-Type"] == "image/webp"
    with Image.open(io.BytesIO(small.content)) as thumb:
        assert max(thumb.size) == 256
    assert meta["status"] == "ready", meta
    assert any("cat" in label["name"] for label in meta["labels"]), meta["labels"]
