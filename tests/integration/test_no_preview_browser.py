"""A photo storage keeps but can make no preview of, in a real headless Chromium.

A real PNG (scikit-image's coffee) with bytes in the middle of its pixel data overwritten and
its chunk checksum fixed passes storage's structural check on the acknowledged path, then the
background thumbnailer's full decode fails and marks its thumbnails FAILED with the reason. The
gallery shows a placeholder sign in its tile (no broken <img>), the viewer and the image page
say why and still offer the original's download and the trash; an <img> drawn for it anyway
(an album cover, a tile drawn before the thumbnailer failed) shows the placeholder picture its
thumbnail URL answers with its 404, whatever shape the tile crops it to; its mosaic page says
why instead of a broken image. Screenshots at 1280 and 390 px, light and dark, are saved
under tests/artifacts/screenshots/no-preview-*.png.
"""

from __future__ import annotations

import time

import pytest
import requests
from playwright.sync_api import Browser, Page, expect

from tests.support import png_damaged_in_pixels

from .browser_support import PHONE, SHOTS, fresh_photo, page_in, shoot, upload
from .test_api_schemas import check

WIDE = {"width": 1280, "height": 900}
DAMAGED_NAME = "café crème damaged.png"
# Every <img> on the page that finished loading without a picture (the broken-image sign).
BROKEN = "() => [...document.images].filter(i => i.complete && i.naturalWidth === 0 && i.src)"


def _image(url: str, image_id: str) -> dict:
    reply = requests.get(f"{url}/api/images/{image_id}", timeout=30)
    return check("get", "/api/images/{image_id}", reply)


@pytest.fixture(scope="module")
def library(url: str, photo_jpegs, photo_paths) -> dict:
    """Three whole photos and the damaged one (uploaded last: first in the gallery), once its
    thumbnails have failed."""
    for name in ("chelsea", "rocket", "china"):
        upload(url, fresh_photo(photo_jpegs[name]), f"{name}.jpg")
    sent = png_damaged_in_pixels(photo_paths["coffee"].read_bytes())
    damaged = upload(url, sent, DAMAGED_NAME)
    deadline = time.monotonic() + 60
    while (image := _image(url, damaged["id"]))["thumbnail_state"] != "failed":
        assert image["thumbnail_state"] == "pending", image["thumbnail_state"]
        assert time.monotonic() < deadline, "the thumbnailer never marked the damaged photo"
        time.sleep(0.2)
    return {"image": image, "sent": sent}


def test_the_api_says_the_thumbnails_failed_and_why(url, library):
    image = library["image"]

    assert image["filename"] == DAMAGED_NAME
    assert "corrupt" in image["thumbnail_detail"]
    assert image["thumbnail_text"].startswith("no preview: the file is damaged")
    # The original is kept as uploaded; its thumbnail URL answers 404 with a placeholder
    # picture (for <img> tags) and says why in its headers, or in JSON when asked for JSON.
    original = requests.get(f"{url}{image['links']['original']}", timeout=30)
    assert original.content == library["sent"]
    thumb = requests.get(f"{url}{image['links']['thumbnail']}", timeout=30)
    check("get", "/api/images/{image_id}/thumbnail", thumb)
    assert thumb.status_code == 404
    assert thumb.headers["Content-Type"] == "image/svg+xml; charset=utf-8"
    assert thumb.headers["X-Thumbnail-State"] == "failed"
    assert thumb.headers["X-Thumbnail-Detail"] == image["thumbnail_detail"]
    as_json = requests.get(
        f"{url}{image['links']['preview']}", headers={"Accept": "application/json"}, timeout=30
    )
    body = check("get", "/api/images/{image_id}/thumbnail", as_json)
    assert (as_json.status_code, body["thumbnail_detail"]) == (404, image["thumbnail_detail"])


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("viewport", [WIDE, PHONE], ids=["1280", "390"])
def test_the_gallery_tile_is_a_sign_with_the_name_not_a_broken_image(
    browser: Browser, url, library, viewport, scheme
):
    image_id = library["image"]["id"]
    with page_in(browser, viewport, scheme) as page:
        page.goto(f"{url}/")
        tile = page.locator(f'figure.tile[data-id="{image_id}"]')
        sign = tile.locator(".no-preview")
        expect(sign).to_be_visible()
        expect(sign).to_contain_text("Preview could not be made")
        expect(sign).to_contain_text(DAMAGED_NAME)
        expect(sign).to_have_attribute("aria-label", f"no preview could be made: {DAMAGED_NAME}")
        assert tile.locator("img").count() == 0
        # The sign fills the tile's picture area, at the photo's own shape (from its header).
        box = sign.bounding_box()
        shape = library["image"]["width"] / library["image"]["height"]
        assert box and box["width"] > 60 and abs(box["width"] / box["height"] - shape) < 0.05
        # The other photos' thumbnails load; nothing on the page is a broken image.
        page.wait_for_function("() => [...document.images].every(i => i.complete)")
        assert page.locator("figure.tile img.thumb").count() == 3
        assert page.evaluate(BROKEN) == []
        shoot(page, f"no-preview-gallery-{viewport['width']}-{scheme}")


def test_the_viewer_says_why_and_still_downloads_and_deletes(browser: Browser, url, library):
    image_id = library["image"]["id"]
    with page_in(browser, WIDE) as page:
        page.goto(f"{url}/")
        page.locator(f'figure.tile[data-id="{image_id}"] .thumb-link').click()
        sign = page.locator("#lb-no-preview")
        expect(sign).to_be_visible()
        expect(sign).to_contain_text("Preview could not be made")
        expect(sign).to_contain_text("corrupt")
        expect(page.locator("#lb-image")).to_be_hidden()
        expect(page.locator("#lb-zoom")).to_be_hidden()
        expect(page.locator("#lb-download")).to_have_attribute(
            "href", library["image"]["links"]["download"]
        )
        shoot(page, "no-preview-viewer-1280", full=False)
        # Next photo: a whole one is drawn again, the sign is gone.
        page.keyboard.press("ArrowRight")
        expect(sign).to_have_count(0)
        page.wait_for_function(
            "() => { const i = document.getElementById('lb-image');"
            " return !i.hidden && i.complete && i.naturalWidth > 0; }"
        )
        page.keyboard.press("ArrowLeft")
        expect(page.locator("#lb-no-preview")).to_be_visible()
        with page.expect_download() as download:
            page.locator("#lb-download").click()
        assert download.value.path().read_bytes() == library["sent"]


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("viewport", [WIDE, PHONE], ids=["1280", "390"])
def test_the_image_page_says_why_and_offers_the_original(
    browser: Browser, url, library, viewport, scheme
):
    image = library["image"]
    with page_in(browser, viewport, scheme) as page:
        page.goto(f"{url}/images/{image['id']}")
        preview = page.locator("section.preview")
        expect(preview.locator(".no-preview")).to_be_visible()
        expect(page.locator("#no-preview-reason")).to_contain_text(image["thumbnail_detail"])
        expect(page.locator("#download")).to_have_attribute("href", image["links"]["download"])
        expect(page.locator("#no-preview-delete")).to_be_visible()
        assert preview.locator("img").count() == 0
        assert page.locator("#view-full").count() == 0
        page.wait_for_function("() => [...document.images].every(i => i.complete)")
        assert page.evaluate(BROKEN) == []
        shoot(page, f"no-preview-image-{viewport['width']}-{scheme}")


def test_an_img_drawn_for_it_anyway_shows_the_placeholder_picture(page: Page, url, library):
    """An album's cover is an <img> of its thumbnail whatever its state (as is a tile drawn
    before the thumbnailer failed): the thumbnail URL's 404 carries a placeholder picture,
    which the browser draws instead of its broken-image sign."""
    image_id = library["image"]["id"]
    made = requests.post(
        f"{url}/api/albums", json={"name": "damaged only", "image_ids": [image_id]}, timeout=30
    )
    album = check("post", "/api/albums", made)
    assert album["links"]["cover"] == f"/api/images/{image_id}/thumbnail"

    page.goto(f"{url}/albums")
    cover = page.locator(f'a[href="/albums/{album["id"]}"].album-cover')
    picture = cover.locator("img")
    expect(picture).to_be_visible()
    page.wait_for_function("() => [...document.images].every(i => i.complete)")
    assert picture.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [300, 300]
    assert page.evaluate(BROKEN) == []
    shoot(page, "no-preview-album-cover-1366")


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("viewport", [WIDE, PHONE], ids=["1280", "390"])
def test_its_mosaic_page_says_why_instead_of_a_broken_image(
    browser: Browser, url, library, viewport, scheme
):
    image = library["image"]
    with page_in(browser, viewport, scheme) as page:
        page.goto(f"{url}/images/{image['id']}/mosaic")
        expect(page.locator("#mosaic-unavailable")).to_be_visible()
        sign = page.locator(".mosaic-no-preview .no-preview")
        expect(sign).to_be_visible()
        expect(sign).to_contain_text("Preview could not be made")
        expect(page.locator("#no-preview-reason")).to_contain_text(image["thumbnail_detail"])
        expect(page.locator("#download")).to_have_attribute("href", image["links"]["download"])
        assert page.locator("#mosaic").count() == 0
        page.wait_for_function("() => [...document.images].every(i => i.complete)")
        assert page.evaluate(BROKEN) == []
        # The sign stays inside the page: nothing scrolls sideways on a phone.
        box = sign.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"]
        assert page.evaluate("() => document.documentElement.scrollWidth") <= viewport["width"]
        shoot(page, f"no-preview-mosaic-{viewport['width']}-{scheme}")


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("viewport", [WIDE, PHONE], ids=["1280", "390"])
def test_its_thumbnail_in_an_img_is_the_placeholder_picture(
    browser: Browser, url, library, viewport, scheme
):
    """<img> tags of both thumbnail sizes, at a tile's shapes (cropped as the gallery crops),
    draw the placeholder in the reader's colour scheme; the URL opened itself shows it too."""
    image = library["image"]
    with page_in(browser, viewport, scheme) as page:
        opened = page.goto(f"{url}{image['links']['thumbnail']}")
        assert opened is not None and opened.status == 404
        assert opened.headers["x-thumbnail-state"] == "failed"
        # The SVG document itself, 300 x 300 at the top left of the window.
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(
            path=str(SHOTS / f"no-preview-thumbnail-url-{viewport['width']}-{scheme}.png"),
            clip={"x": 0, "y": 0, "width": 300, "height": 300},
        )
        page.goto(f"{url}/albums")  # any page of the gallery: its stylesheet and colours
        page.evaluate(
            """([small, preview]) => {
                const main = document.querySelector("main");
                main.replaceChildren();
                const row = document.createElement("div");
                row.id = "shapes";
                row.style.cssText = "display:flex;flex-wrap:wrap;gap:8px;padding:8px";
                for (const [src, w, h] of [[small, 120, 300], [small, 200, 200],
                                           [small, 300, 200], [preview, 360, 120]]) {
                    const box = document.createElement("div");
                    box.className = "tile";
                    box.style.cssText = `width:${w}px;height:${h}px`;
                    const img = document.createElement("img");
                    img.className = "thumb";
                    img.src = src;
                    box.append(img);
                    row.append(box);
                }
                main.append(row);
            }""",
            [image["links"]["thumbnail"], image["links"]["preview"]],
        )
        page.wait_for_function(
            "() => [...document.querySelectorAll('#shapes img')].every(i => i.complete)"
        )
        sizes = page.evaluate(
            "() => [...document.querySelectorAll('#shapes img')]"
            ".map(i => [i.naturalWidth, i.naturalHeight])"
        )
        assert sizes == [[300, 300]] * 4
        assert page.evaluate(BROKEN) == []
        shoot(page, f"no-preview-thumbnail-imgs-{viewport['width']}-{scheme}", full=False)


def test_move_to_trash_from_the_viewer(page: Page, url, library):
    image_id = library["image"]["id"]
    page.goto(f"{url}/#view={image_id}")
    expect(page.locator("#lb-no-preview")).to_be_visible()
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#lb-delete").click()
    expect(page.locator("#deleted-notice")).to_be_visible()
    expect(page.locator(f'figure.tile[data-id="{image_id}"]')).to_have_count(0)
    assert _image(url, image_id)["trashed_at"]
