"""In Chromium at 1280 x 800 and 390 x 844 px: the gallery's "Download zip" button over a photo
deleted meanwhile lands on the HTML error page with the reason (not raw JSON); the upload page
says the size limit in MiB; the pages' icon and /favicon.ico answer (no 404 on each page load).
Screenshots download-errors-*.png."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser, expect

from .browser_support import fresh_photo, page_in, shoot

SIZES = {"1280": {"width": 1280, "height": 800}, "390": {"width": 390, "height": 844}}
EXTRA_SHOTS = Path("/tmp/h86-shots")


def _keep(path: Path) -> None:
    EXTRA_SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, EXTRA_SHOTS / path.name)


def _stored(gateway_url: str, data: bytes, name: str) -> str:
    reply = requests.post(
        f"{gateway_url}/api/images?wait=0", files={"file": (name, data)}, timeout=60
    )
    assert reply.status_code == 201, reply.text
    return reply.json()["results"][0]["image"]["id"]


@pytest.mark.parametrize("size", SIZES)
def test_zip_button_over_a_photo_deleted_meanwhile_shows_the_error_page(
    browser: Browser, gateway_url, photo_jpegs, size
):
    image_id = _stored(gateway_url, fresh_photo(photo_jpegs["coffee"]), f"zip-gone-{size}.jpg")
    with page_in(browser, SIZES[size]) as page:
        page.goto(f"{gateway_url}/?order=uploaded")
        page.locator(f'input.pick[value="{image_id}"]').check(force=True)
        gone = requests.delete(f"{gateway_url}/api/images/{image_id}?permanent=1", timeout=30)
        assert gone.status_code in (200, 204), gone.text

        page.locator("#bulk-zip").click(force=True)

        expect(page.locator("#error-message")).to_contain_text("none of the selected photos exists")
        assert page.locator("h1").inner_text() == "404"
        _keep(shoot(page, f"download-errors-zip-{size}"))
        assert page.evaluate("document.documentElement.scrollWidth") <= SIZES[size]["width"]


@pytest.mark.parametrize("size", SIZES)
def test_upload_page_says_the_limit_and_its_icon_answers(browser: Browser, gateway_url, size):
    with page_in(browser, SIZES[size]) as page:
        failed: list[str] = []
        page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
        page.goto(f"{gateway_url}/upload")

        expect(page.locator(".formats")).to_contain_text("up to 50 MiB each")
        icon = page.locator('link[rel="icon"]').get_attribute("href")
        statuses = page.evaluate(
            """async (icon) => Promise.all([icon, "/favicon.ico"].map(async (u) => {
                   const r = await fetch(u); return [r.status, r.headers.get("content-type")];
               }))""",
            icon,
        )
        _keep(shoot(page, f"download-errors-upload-{size}"))

    assert icon and icon.endswith(".svg")
    assert [status for status, _type in statuses] == [200, 200]
    assert all(kind.startswith("image/svg+xml") for _status, kind in statuses)
    assert failed == []
