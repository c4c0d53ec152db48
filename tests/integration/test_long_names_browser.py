"""Long unbroken names never push a page wider than the screen, in a real headless Chromium at
the phone and desktop widths: a 200-character filename on its photo's page and mosaic page, a
200-character album name on the photo's page, and a long search word on the search page and
in "in album ..." searches (each made the page scroll sideways, up to 3310 px wide)."""

from __future__ import annotations

import uuid

import requests
from playwright.sync_api import Browser

from .browser_support import DESKTOP, PHONE, page_in, upload
from .conftest import fresh_jpeg


def test_long_names_and_words_fit_the_screen(browser: Browser, gateway_url, photo_jpegs):
    name = uuid.uuid4().hex[:8] + "x" * 190 + ".jpg"
    image = upload(gateway_url, fresh_jpeg(photo_jpegs["china"]), name)
    album = requests.post(
        f"{gateway_url}/api/albums",
        json={"name": "L" * 192 + uuid.uuid4().hex[:8], "image_ids": [image["id"]]},
        timeout=30,
    )
    assert album.status_code == 201, album.text
    word = "Q" * 150
    paths = [
        f"/images/{image['id']}",
        f"/images/{image['id']}/mosaic",
        f"/search?q={word}",
        f"/search?q=in+album+{word}",
        f"/images/{word}",
    ]

    too_wide = []
    for viewport in (PHONE, DESKTOP):
        with page_in(browser, viewport) as page:
            for path in paths:
                page.goto(gateway_url + path)
                width = page.evaluate("document.documentElement.scrollWidth")
                if width > viewport["width"]:
                    too_wide.append((viewport["width"], path[:40], width))

    assert too_wide == []
