"""Trash through the whole stack: REST (delete to trash, listed only there, out of search,
restore, permanent delete, empty trash) and the pages in a real headless Chromium (delete
then Undo, restore from the Trash page, empty trash), with screenshots at 1366 and 390 px."""

from __future__ import annotations

import uuid

import requests
from playwright.sync_api import Browser, expect

from .browser_support import page_in, shoot_widths, upload
from .conftest import fresh_jpeg
from .test_api_schemas import check


def _upload(url: str, data: bytes, name: str = "") -> dict:
    return upload(url, data, name or f"trash-{uuid.uuid4().hex[:8]}.jpg")


def _listed(url: str, **params) -> list[str]:
    reply = requests.get(f"{url}/api/images", params={"page_size": 1000, **params}, timeout=30)
    return [i["id"] for i in check("get", "/api/images", reply)["images"]]


def _found(url: str, query: str) -> list[str]:
    hits = requests.get(f"{url}/api/search", params={"q": query}, timeout=60).json()["hits"]
    return [h["image"]["id"] if "image" in h else h["id"] for h in hits]


def test_delete_moves_to_trash_and_restore_brings_it_back_over_rest(gateway_url, photo_jpegs):
    url = gateway_url
    name = f"trashme-{uuid.uuid4().hex[:8]}.jpg"
    image = _upload(url, fresh_jpeg(photo_jpegs["coffee"]), name)
    assert image["trashed_at"] is None
    assert image["id"] in _found(url, name)

    reply = requests.delete(f"{url}/api/images/{image['id']}", timeout=60)
    body = check("delete", "/api/images/{image_id}", reply)
    assert body["permanent"] is False and body["deleted"]["trashed_at"]
    assert image["id"] not in _listed(url)
    assert image["id"] in _listed(url, trashed="1")
    assert image["id"] not in _found(url, name)
    assert requests.get(f"{url}/api/images/{image['id']}", timeout=30).status_code == 200

    restored = requests.post(f"{url}/api/images/{image['id']}/restore", timeout=60)
    assert check("post", "/api/images/{image_id}/restore", restored)["trashed_at"] is None
    assert image["id"] in _listed(url) and image["id"] not in _listed(url, trashed="1")
    assert image["id"] in _found(url, name)
    again = requests.post(f"{url}/api/images/{image['id']}/restore", timeout=60)
    assert again.status_code == 409
    check("post", "/api/images/{image_id}/restore", again)

    gone = requests.delete(f"{url}/api/images/{image['id']}?permanent=1", timeout=60)
    assert check("delete", "/api/images/{image_id}", gone)["permanent"] is True
    assert requests.get(f"{url}/api/images/{image['id']}", timeout=30).status_code == 404


def test_empty_trash_over_rest(gateway_url, photo_jpegs):
    url = gateway_url
    image = _upload(url, fresh_jpeg(photo_jpegs["rocket"]))
    requests.delete(f"{url}/api/images/{image['id']}", timeout=60)
    reply = requests.post(f"{url}/api/trash/empty", timeout=120)
    assert image["id"] in check("post", "/api/trash/empty", reply)["deleted"]
    assert _listed(url, trashed="1") == []
    assert requests.get(f"{url}/api/images/{image['id']}", timeout=30).status_code == 404


def test_delete_offers_undo_then_trash_page_restores_and_empties(
    browser: Browser, gateway_url, photo_jpegs
):
    url = gateway_url
    first = _upload(url, fresh_jpeg(photo_jpegs["chelsea"]))
    second = _upload(url, fresh_jpeg(photo_jpegs["astronaut"]))
    with page_in(browser) as page:
        # Delete from the image page (asks first), then Undo from the gallery's notice.
        page.goto(f"{url}/images/{first['id']}")
        messages: list[str] = []
        page.once("dialog", lambda dialog: (messages.append(dialog.message), dialog.accept()))
        page.click("#delete-button")
        page.wait_for_url("**/?deleted=*")
        assert "to the trash" in messages[0]
        expect(page.locator("#deleted-notice")).to_contain_text("moved to the trash")
        expect(page.locator(f'#gallery figure.tile[data-id="{first["id"]}"]')).to_have_count(0)
        page.click(f"#restore-{first['id']}")
        expect(page.locator(f'#gallery figure.tile[data-id="{first["id"]}"]')).to_have_count(1)
        assert first["id"] in _listed(url)

        # Both to the trash; the Trash page lists them, restores one, empties the rest.
        for image in (first, second):
            requests.delete(f"{url}/api/images/{image['id']}", timeout=60)
        page.goto(f"{url}/trash")
        expect(page.locator(f'#trash figure.tile[data-id="{first["id"]}"]')).to_be_visible()
        expect(page.locator(f'#trash figure.tile[data-id="{second["id"]}"]')).to_be_visible()
        shoot_widths(browser, url, {"trash": "/trash"})
        page.click(f"#restore-{first['id']}")
        expect(page.locator(f'#trash figure.tile[data-id="{first["id"]}"]')).to_have_count(0)
        assert first["id"] in _listed(url)

        page.once("dialog", lambda dialog: dialog.accept())
        page.click("#empty-trash")
        expect(page.locator("#trash-notice")).to_contain_text("for good")
        expect(page.locator("#trash-empty")).to_be_visible()
        assert requests.get(f"{url}/api/images/{second['id']}", timeout=30).status_code == 404
