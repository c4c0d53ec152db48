"""Albums in a real headless Chromium: create an album, add a photo from its page and from the
viewer, add several from the selection bar, see them on the album's own page, remove, rename,
delete; screenshots of the album pages at 1366 and 390 px, light and dark, saved under
tests/artifacts/screenshots/ (and no page wider than the screen)."""

from __future__ import annotations

import uuid

import requests
from playwright.sync_api import Browser, Page, expect

from .browser_support import DESKTOP, PHONE, page_in, shoot, upload, wait_searchable
from .conftest import fresh_jpeg


def _upload(url: str, data: bytes, name: str) -> str:
    return str(upload(url, data, name)["id"])


def _members(url: str, album_id: str) -> list[str]:
    body = requests.get(f"{url}/api/albums/{album_id}", timeout=30).json()
    return [i["id"] for i in body["images"]]


def _tile(page: Page, image_id: str):
    return page.locator(f'figure.tile[data-id="{image_id}"]')


def _album_id(page: Page) -> str:
    return page.url.split("/albums/")[1].split("?")[0]


def test_album_create_add_remove_rename_delete_in_the_browser(
    browser: Browser, page: Page, gateway_url, photo_jpegs
):
    url = gateway_url
    tag = f"t{uuid.uuid4().hex[:6]}"
    ids = [
        _upload(url, fresh_jpeg(photo_jpegs[k]), f"album-{tag}-{k}.jpg")
        for k in ("coffee", "astronaut", "chelsea")
    ]
    outside = _upload(url, fresh_jpeg(photo_jpegs["coffee"]), f"album-{tag}-outside.jpg")
    name = f"Holiday {tag}"
    page.on("dialog", lambda dialog: dialog.accept())

    # Create from the Albums page: it opens the new, empty album.
    page.goto(url + "/albums")
    page.fill("#new-album-name", name)
    page.click("#create-album")
    expect(page.locator("#album-name")).to_have_text(name)
    expect(page.locator("#album-empty")).to_be_visible()
    album_id = _album_id(page)

    # Add one photo from its own page.
    page.goto(f"{url}/images/{ids[0]}")
    expect(page.locator("#in-no-album")).to_be_visible()
    page.select_option("#album-choice", album_id)
    page.click("#add-to-album")
    expect(page.locator("#album-notice")).to_contain_text(f"Added 1 photo to “{name}”")
    expect(page.locator("#in-albums")).to_contain_text(name)
    assert _members(url, album_id) == [ids[0]]

    # Add two more from the gallery's selection bar: the album page opens with all three.
    page.goto(url + "/")
    _tile(page, ids[1]).locator(".pick").check()
    _tile(page, ids[2]).locator(".pick").check()
    expect(page.locator("#bulk-add-album")).to_be_visible()
    page.select_option("#bulk-album", album_id)
    with page_in(browser, PHONE) as phone_page:
        phone_page.goto(url + "/")
        _tile(phone_page, ids[1]).locator(".pick").check()
        shoot(phone_page, "bulk-album-390-light", full=False)
        assert phone_page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.click("#bulk-add-album")
    expect(page.locator("#album-notice")).to_contain_text("Added 2 photos")
    grid = page.locator("#album-grid figure.tile")
    expect(grid).to_have_count(3)
    shown = [grid.nth(i).get_attribute("data-id") for i in range(3)]
    # Album order: the photo added first, then the selection in the gallery's order.
    assert shown == _members(url, album_id) and shown[0] == ids[0] and set(shown) == set(ids)
    expect(page.locator("#album-count")).to_contain_text("3 photos")

    # Search in the album: only its photos, though a fourth shares the word.
    wait_searchable(url, tag, [*ids, outside])
    page.fill("#album-q", tag)
    page.locator("#album-q").press("Enter")
    expect(page.locator("#album-filter")).to_contain_text(name)
    found = page.locator("#results figure.tile")
    expect(found).to_have_count(3)
    assert outside not in [found.nth(i).get_attribute("data-id") for i in range(3)]
    page.goto(f"{url}/albums/{album_id}")

    # Screenshots of the album page and the albums list: desktop and phone, light and dark.
    for scheme in ("light", "dark"):
        for width, viewport in (("1366", DESKTOP), ("390", PHONE)):
            with page_in(browser, viewport, scheme) as shot:
                for path, shot_name in ((f"/albums/{album_id}", "album"), ("/albums", "albums")):
                    shot.goto(url + path)
                    shoot(shot, f"{shot_name}-{width}-{scheme}")
                    assert (
                        shot.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
                    )
                shot.goto(f"{url}/images/{ids[0]}")
                shot.locator("#image-albums").scroll_into_view_if_needed()
                shoot(shot, f"image-albums-{width}-{scheme}", full=False)
                assert shot.evaluate("document.documentElement.scrollWidth") <= viewport["width"]

    # Remove the middle one by selecting it on the album page.
    _tile(page, ids[1]).locator(".pick").check()
    page.click("#album-remove")
    expect(page.locator("#album-notice")).to_contain_text("Removed 1 photo")
    expect(page.locator("#album-grid figure.tile")).to_have_count(2)
    assert _members(url, album_id) == [ids[0], ids[2]]

    # Rename.
    page.locator(".album-manage summary").click()
    page.fill("#rename-album-name", f"{name} renamed")
    page.click("#rename-album")
    expect(page.locator("#album-name")).to_have_text(f"{name} renamed")
    expect(page.locator("#album-notice")).to_contain_text("Renamed")

    # Remove from a photo's page.
    page.goto(f"{url}/images/{ids[2]}")
    page.locator("#in-albums .remove-from-album").click()
    expect(page.locator("#in-no-album")).to_be_visible()
    assert _members(url, album_id) == [ids[0]]

    # Delete the album (after the confirmation): its photos stay.
    page.goto(f"{url}/albums/{album_id}")
    page.locator(".album-manage summary").click()
    page.click("#delete-album")
    expect(page.locator("#album-notice")).to_contain_text("Deleted the album")
    expect(page.locator(f'.album-card[data-album="{album_id}"]')).to_have_count(0)
    assert requests.get(f"{url}/api/albums/{album_id}", timeout=30).status_code == 404
    assert requests.get(f"{url}/api/images/{ids[0]}", timeout=30).status_code == 200


def test_add_to_album_from_the_viewer(page: Page, gateway_url, photo_jpegs):
    url = gateway_url
    image_id = _upload(url, fresh_jpeg(photo_jpegs["coffee"]), f"viewer-{uuid.uuid4().hex[:6]}.jpg")
    album = requests.post(
        f"{url}/api/albums", json={"name": f"Viewer {uuid.uuid4().hex[:6]}"}, timeout=30
    ).json()

    page.goto(url + "/")
    _tile(page, image_id).locator(".thumb-link").click()
    expect(page.locator("#lightbox")).to_be_visible()
    page.select_option("#lb-album", album["id"])
    page.click("#lb-add-album")

    expect(page.locator("#lb-album-status")).to_have_text(f"Added to “{album['name']}”")
    expect(page.locator("#lightbox")).to_be_visible()  # choosing an album kept the viewer open
    assert _members(url, album["id"]) == [image_id]
    shoot(page, "viewer-album-1366-light", full=False)
