"""The viewer's previous/next arrows stay visible over any photo, in a real headless Chromium
at phone width, where the photo fills the screen's width and the arrows lie on it: over a
bright photo (sky, a white wallpaper) they were a white glyph on a nearly transparent white
button, that is, invisible."""

from __future__ import annotations

import io
import uuid

import numpy as np
from PIL import Image
from playwright.sync_api import Browser, expect

from .browser_support import PHONE, page_in, upload


def _bright_photo() -> bytes:
    rng = np.random.default_rng()
    pixels = rng.integers(235, 256, size=(900, 1200, 3), dtype=np.uint8)  # a pale sky
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90, comment=uuid.uuid4().hex.encode())
    return out.getvalue()


def test_the_viewer_arrows_stand_out_over_a_bright_photo_on_a_phone(browser: Browser, gateway_url):
    first = upload(gateway_url, _bright_photo(), f"sky-{uuid.uuid4().hex[:8]}.jpg")
    upload(gateway_url, _bright_photo(), f"sky-{uuid.uuid4().hex[:8]}.jpg")

    with page_in(browser, PHONE, scale=1) as page:
        page.goto(f"{gateway_url}/#view={first['id']}")
        image = page.locator("#lb-image")
        expect(image).to_be_visible()
        page.wait_for_function("document.querySelector('#lb-image').complete")
        for arrow in ("#lb-prev", "#lb-next"):
            box = page.locator(arrow).bounding_box()
            over = image.bounding_box()
            assert box and over and over["y"] <= box["y"] and over["x"] <= box["x"], arrow
            shot = page.screenshot(clip=box)

            with Image.open(io.BytesIO(shot)) as im:
                light = np.asarray(im.convert("L"), dtype=np.float32)
            # The button's face, not the photo, fills most of its box: dark behind a light glyph.
            assert light.mean() < 128, (arrow, float(light.mean()))
