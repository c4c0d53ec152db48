"""The viewer over photos already in the trash, in a real headless Chromium: on the Trash page
and on a trashed photo's own page its delete button deletes for good, says so before it does,
and offers no "Undo". It said "Delete", asked "Move ... to the trash?" of a photo already
there, dropped the tile from the Trash page although the photo stayed in the trash, and
offered an Undo that restored it."""

from __future__ import annotations

import uuid

import requests
from playwright.sync_api import Page, expect

from .browser_support import upload
from .conftest import fresh_jpeg


def _trashed(url: str, data: bytes) -> str:
    image = upload(url, data, f"trashed-{uuid.uuid4().hex[:8]}.jpg")
    assert requests.delete(f"{url}/api/images/{image['id']}", timeout=30).status_code == 200
    return str(image["id"])


def test_the_trash_viewer_deletes_for_good_after_saying_so(page: Page, gateway_url, photo_jpegs):
    image_id = _trashed(gateway_url, fresh_jpeg(photo_jpegs["coffee"]))
    page.goto(f"{gateway_url}/trash#view={image_id}")
    remove = page.locator("#lb-delete")
    expect(remove).to_have_text("Delete for good")

    messages: list[str] = []
    page.once("dialog", lambda dialog: (messages.append(dialog.message), dialog.accept()))
    remove.click()

    expect(page.locator(f'figure.tile[data-id="{image_id}"]')).to_have_count(0)
    assert "for good" in messages[0] and "to the trash" not in messages[0]
    assert page.locator("#undo-delete").count() == 0
    gone = requests.get(f"{gateway_url}/api/images/{image_id}", timeout=30)
    assert gone.status_code == 404


def test_a_trashed_photo_page_viewer_deletes_for_good_and_goes_to_the_trash(
    page: Page, gateway_url, photo_jpegs
):
    image_id = _trashed(gateway_url, fresh_jpeg(photo_jpegs["china"]))
    page.goto(f"{gateway_url}/images/{image_id}#view={image_id}")
    remove = page.locator("#lb-delete")
    expect(remove).to_have_text("Delete for good")

    page.once("dialog", lambda dialog: dialog.accept())
    remove.click()

    page.wait_for_url(f"{gateway_url}/trash**")
    assert requests.get(f"{gateway_url}/api/images/{image_id}", timeout=30).status_code == 404
