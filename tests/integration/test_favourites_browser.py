"""Favourites in a real headless Chromium: the star toggles in one click (with and without
the page script), the Favourites page lists exactly the starred photos, and screenshots of it
at 1366 and 390 px wide are saved under tests/artifacts/screenshots/."""

from __future__ import annotations

import uuid

import requests
from playwright.sync_api import Browser, Page, expect

from .browser_support import page_in, shoot_widths, upload
from .conftest import fresh_jpeg


def _upload(url: str, data: bytes) -> dict:
    return upload(url, data, f"star-{uuid.uuid4().hex[:8]}.jpg")


def _starred(url: str, image_id: str) -> bool:
    return bool(requests.get(f"{url}/api/images/{image_id}", timeout=30).json()["favourite"])


def _star_on_tile(page: Page, image_id: str):
    return page.locator(f'figure.tile[data-id="{image_id}"] button.star')


def test_star_on_a_tile_toggles_in_one_click_and_fills_the_favourites_page(
    browser: Browser, page: Page, gateway_url, photo_jpegs
):
    url = gateway_url
    image = _upload(url, fresh_jpeg(photo_jpegs["coffee"]))
    page.goto(url + "/")
    star = _star_on_tile(page, image["id"])
    expect(star).to_have_attribute("aria-pressed", "false")
    star.click()
    expect(star).to_have_attribute("aria-pressed", "true")
    expect(star).to_have_text("★")
    assert page.url.rstrip("/") == url  # toggled in place, no navigation
    assert _starred(url, image["id"])

    page.goto(url + "/favourites")
    expect(page.locator(f'#favourites figure.tile[data-id="{image["id"]}"]')).to_be_visible()
    shoot_widths(browser, url, {"favourites": "/favourites"})

    # Unstar from the Favourites page: storage forgets it, the page no longer lists it.
    _star_on_tile(page, image["id"]).click()
    expect(_star_on_tile(page, image["id"])).to_have_attribute("aria-pressed", "false")
    assert not _starred(url, image["id"])
    page.goto(url + "/favourites")
    expect(page.locator(f'figure.tile[data-id="{image["id"]}"]')).to_have_count(0)


def test_star_on_the_image_page_works_without_script(browser: Browser, gateway_url, photo_jpegs):
    url = gateway_url
    image = _upload(url, fresh_jpeg(photo_jpegs["astronaut"]))
    with page_in(browser, java_script_enabled=False) as page:
        page.goto(f"{url}/images/{image['id']}")
        page.locator("section.preview button.star").click()  # a plain form post, then back here
        star = page.locator("section.preview button.star")
        expect(star).to_have_attribute("aria-pressed", "true")
        assert page.url.endswith(f"/images/{image['id']}")
    assert _starred(url, image["id"])


def test_viewer_stars_the_photo_and_offers_undo_after_a_delete(
    page: Page, gateway_url, photo_jpegs
):
    url = gateway_url
    image = _upload(url, fresh_jpeg(photo_jpegs["china"]))
    page.goto(f"{url}/#view={image['id']}")
    star = page.locator("#lb-star")
    expect(star).to_have_attribute("aria-pressed", "false")
    star.click()
    expect(star).to_have_attribute("aria-pressed", "true")
    expect(_star_on_tile(page, image["id"])).to_have_attribute("aria-pressed", "true")
    assert _starred(url, image["id"])

    messages: list[str] = []
    page.once("dialog", lambda dialog: (messages.append(dialog.message), dialog.accept()))
    page.click("#lb-delete")
    assert "to the trash" in messages[0]
    expect(page.locator("#deleted-notice")).to_contain_text("moved to the trash")
    listed = requests.get(f"{url}/api/images", params={"trashed": "1"}, timeout=30).json()
    assert image["id"] in [i["id"] for i in listed["images"]]
    page.keyboard.press("Escape")
    page.click("#undo-delete")
    expect(page.locator(f'#gallery figure.tile[data-id="{image["id"]}"]')).to_have_count(1)
    got = requests.get(f"{url}/api/images/{image['id']}", timeout=30).json()
    assert got["trashed_at"] is None and got["favourite"] is True
