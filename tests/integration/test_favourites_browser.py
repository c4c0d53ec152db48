"""Favourites in a real headless Chromium: the star toggles in one click (with and without
the page script), the Favourites page lists exactly the starred photos, and screenshots of it
at 1366 and 390 px wide are saved under tests/artifacts/screenshots/."""

from __future__ import annotations

import uuid

import requests
from playwright.sync_api import Browser, Page, expect

from .browser_support import DESKTOP, PHONE, new_context, shoot, upload
from .conftest import fresh_jpeg


def _upload(url: str, data: bytes) -> dict:
    return upload(url, data, f"star-{uuid.uuid4().hex[:8]}.jpg")


def _starred(url: str, image_id: str) -> bool:
    return bool(requests.get(f"{url}/api/images/{image_id}", timeout=30).json()["favourite"])


def _star_on_tile(page: Page, image_id: str):
    return page.locator(f'figure.tile[data-id="{image_id}"] button.star')


def test_star_on_a_tile_toggles_in_one_click_and_fills_the_favourites_page(
    browser: Browser, gateway_url, photo_jpegs
):
    url = gateway_url
    image = _upload(url, fresh_jpeg(photo_jpegs["coffee"]))
    context = new_context(browser)
    page = context.new_page()
    page.set_default_timeout(60_000)
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
    for width, viewport in (("1366", DESKTOP), ("390", PHONE)):
        shot_context = new_context(browser, viewport)
        shot = shot_context.new_page()
        shot.goto(url + "/favourites")
        shoot(shot, f"favourites-{width}-light")
        assert shot.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        shot_context.close()

    # Unstar from the Favourites page: storage forgets it, the page no longer lists it.
    _star_on_tile(page, image["id"]).click()
    expect(_star_on_tile(page, image["id"])).to_have_attribute("aria-pressed", "false")
    assert not _starred(url, image["id"])
    page.goto(url + "/favourites")
    expect(page.locator(f'figure.tile[data-id="{image["id"]}"]')).to_have_count(0)
    context.close()


def test_star_on_the_image_page_works_without_script(browser: Browser, gateway_url, photo_jpegs):
    url = gateway_url
    image = _upload(url, fresh_jpeg(photo_jpegs["astronaut"]))
    context = new_context(browser, java_script_enabled=False)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(f"{url}/images/{image['id']}")
    page.locator("section.preview button.star").click()  # a plain form post, then back here
    expect(page.locator("section.preview button.star")).to_have_attribute("aria-pressed", "true")
    assert page.url.endswith(f"/images/{image['id']}")
    assert _starred(url, image["id"])
    context.close()


def test_viewer_stars_the_photo_and_offers_undo_after_a_delete(
    browser: Browser, gateway_url, photo_jpegs
):
    url = gateway_url
    image = _upload(url, fresh_jpeg(photo_jpegs["china"]))
    context = new_context(browser)
    page = context.new_page()
    page.set_default_timeout(60_000)
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
    context.close()
