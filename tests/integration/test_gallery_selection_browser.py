"""What the gallery lacked last round, in a real headless Chromium over a stack of its own.

Favourites and Trash have a selection bar (unstar, add to an album; restore, delete for good),
also without script; photos are selected from the keyboard (Space, Shift+arrows, Shift+Space)
with visible focus and a count read out to screen readers; the image page's photo is sharp on a
2x screen (its original through srcset) while a 1x screen still fetches only the preview (bytes
measured at 1x, 2x and a 3x phone); tiles and the image page of a photo being analysed change
in place when it is done, with a light poll that stops when nothing is pending. Screenshots of
the bars at 1366 and 390 px, light and dark, go to tests/artifacts/screenshots/.
"""

from __future__ import annotations

import io
import re
import uuid
from pathlib import Path

import pytest
import requests
import skimage
from PIL import Image
from playwright.sync_api import Browser, Page, expect

from .browser_support import DESKTOP, HOLD_OLDER, PHONE, fresh_photo, page_in, shoot, upload
from .conftest import Stack

# A real photo larger than the 1024 px preview (scikit-image's retina, 1411 x 1411).
RETINA = Path(skimage.__file__).parent / "data" / "retina.jpg"


def _upload(url: str, data: bytes, name: str = "", wait: bool = True) -> dict:
    return upload(url, data, name or f"pick-{uuid.uuid4().hex[:8]}.jpg", wait=wait)


def _image(url: str, image_id: str) -> requests.Response:
    return requests.get(f"{url}/api/images/{image_id}", timeout=30)


def _star(url: str, image_id: str) -> None:
    requests.post(
        f"{url}/api/images/{image_id}/favourite", json={"favourite": True}, timeout=30
    ).raise_for_status()


def _trash(url: str, image_id: str) -> None:
    requests.delete(f"{url}/api/images/{image_id}", timeout=30).raise_for_status()


def _ids(page: Page, grid: str) -> list[str]:
    return page.locator(f"{grid} figure.tile").evaluate_all("ts => ts.map(t => t.dataset.id)")


# --- favourites and trash: a selection bar of their own ----------------------------------------


def test_favourites_bar_unstars_several_and_adds_them_to_an_album(page: Page, url, photo_jpegs):
    starred = [_upload(url, fresh_photo(photo_jpegs[p])) for p in ("coffee", "chelsea", "rocket")]
    for image in starred:
        _star(url, image["id"])
    page.goto(f"{url}/favourites")
    expect(page.locator("#bulk-form #bulk-unfavourite")).to_be_hidden()  # until one is picked
    ids = _ids(page, "#favourites")
    picks = page.locator("#favourites figure.tile .pick")
    picks.nth(0).click()
    picks.nth(1).click(modifiers=["Shift"])
    expect(page.locator("#selected-count")).to_have_text("2 selected")
    page.click("#bulk-unfavourite")
    expect(page.locator("#bulk-notice")).to_have_text("Removed 2 images from your favourites.")
    for image_id in ids[:2]:
        expect(page.locator(f'figure.tile[data-id="{image_id}"]')).to_have_count(0)
        assert _image(url, image_id).json()["favourite"] is False
    assert _image(url, ids[2]).json()["favourite"] is True

    # The one left goes to a new album from the same bar.
    page.locator("#favourites figure.tile .pick").first.click()
    page.fill("#bulk-new-album", "Starred in bulk")
    page.click("#bulk-add-album")
    expect(page.locator("#album-name")).to_have_text("Starred in bulk")
    expect(page.locator(f'#album-grid figure.tile[data-id="{ids[2]}"]')).to_have_count(1)


def test_trash_bar_restores_several_and_deletes_others_for_good(page: Page, url, photo_jpegs):
    binned = [_upload(url, fresh_photo(photo_jpegs[p])) for p in ("astronaut", "china", "flower")]
    for image in binned:
        _trash(url, image["id"])
    page.goto(f"{url}/trash")
    # The trash has no tag, album or move-to-trash actions: only restore and delete for good.
    for absent in ("#bulk-tag", "#bulk-delete", "#bulk-add-album", "#bulk-zip"):
        expect(page.locator(absent)).to_have_count(0)
    ours = [i for i in _ids(page, "#trash") if i in {b["id"] for b in binned}]
    assert len(ours) == 3
    tile = lambda image_id: page.locator(f'#trash figure.tile[data-id="{image_id}"]')  # noqa: E731
    tile(ours[0]).locator(".pick").click()
    page.click("#bulk-restore")
    expect(page.locator("#trash-notice")).to_have_text("Restored 1 image to the gallery.")
    expect(tile(ours[0])).to_have_count(0)
    assert _image(url, ours[0]).json()["trashed_at"] is None

    tile(ours[1]).locator(".pick").click()
    tile(ours[2]).locator(".pick").click()
    messages: list[str] = []
    page.once("dialog", lambda dialog: (messages.append(dialog.message), dialog.dismiss()))
    page.click("#bulk-delete-forever")
    assert messages == ["Delete 2 photos for good? This cannot be undone."]
    assert _image(url, ours[1]).status_code == 200  # dismissed: nothing happened
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#bulk-delete-forever")
    expect(page.locator("#trash-notice")).to_have_text("Deleted 2 images for good.")
    for image_id in ours[1:]:
        assert _image(url, image_id).status_code == 404


def test_the_trash_and_favourites_bars_work_without_script(browser: Browser, url, photo_jpegs):
    binned = _upload(url, fresh_photo(photo_jpegs["motorcycle"]))
    _trash(url, binned["id"])
    starred = _upload(url, fresh_photo(photo_jpegs["camera"]))
    _star(url, starred["id"])
    with page_in(browser, java_script_enabled=False) as page:
        page.goto(f"{url}/trash")
        page.locator(f'figure.tile[data-id="{binned["id"]}"] .pick').check()
        page.click("#bulk-restore")
        expect(page.locator("#trash-notice")).to_have_text("Restored 1 image to the gallery.")
        assert page.url.startswith(f"{url}/trash")
        assert _image(url, binned["id"]).json()["trashed_at"] is None

        page.goto(f"{url}/favourites")
        page.locator(f'figure.tile[data-id="{starred["id"]}"] .pick').check()
        page.click("#bulk-unfavourite")
        expect(page.locator("#bulk-notice")).to_have_text("Removed 1 image from your favourites.")
        assert _image(url, starred["id"]).json()["favourite"] is False


def test_acting_on_a_selection_in_an_album_comes_back_to_the_album(page: Page, url, photo_jpegs):
    image = _upload(url, fresh_photo(photo_jpegs["rocket"]))
    album = requests.post(
        f"{url}/api/albums",
        json={"name": f"Trip {uuid.uuid4().hex[:6]}", "image_ids": [image["id"]]},
        timeout=30,
    ).json()
    page.goto(f"{url}/albums/{album['id']}")
    page.locator(f'#album-grid figure.tile[data-id="{image["id"]}"] .pick').click()
    page.fill("#bulk-form input[name=tags]", "launch pad")
    page.click("#bulk-tag")
    expect(page.locator("#album-notice")).to_have_text("Tagged 1 image: launch pad.")
    assert page.url.startswith(f"{url}/albums/{album['id']}?")
    assert _image(url, image["id"]).json()["tags"] == ["launch pad"]


def test_restoring_what_is_no_longer_in_the_trash_is_counted_not_an_error(url, photo_jpegs):
    image = _upload(url, fresh_photo(photo_jpegs["page"]))
    with requests.Session() as http:
        form = http.get(f"{url}/trash", timeout=30).text
        token = re.search(r'name="csrf-token" content="([^"]+)"', form)
        assert token
        reply = http.post(
            f"{url}/bulk",
            data={"ids": image["id"], "action": "restore", "back": "/trash"},
            headers={"X-CSRF-Token": token.group(1)},
            timeout=30,
        )
    assert reply.status_code == 200, reply.text
    assert "Restored 0 images to the gallery. 1 image was no longer in the trash." in reply.text


# --- selecting from the keyboard ---------------------------------------------------------------


def _checked(page: Page, grid: str) -> list[str]:
    return page.locator(f"{grid} figure.tile").evaluate_all(
        "ts => ts.filter(t => t.querySelector('.pick').checked).map(t => t.dataset.id)"
    )


def test_space_and_shift_arrows_select_a_range_from_the_keyboard(page: Page, url, photo_jpegs):
    for photo in ("coffee", "chelsea", "rocket", "astronaut", "china", "flower", "motorcycle"):
        _upload(url, fresh_photo(photo_jpegs[photo]))
    page.goto(f"{url}/")
    ids = _ids(page, "#gallery")
    count = page.locator("#selected-count")
    expect(count).to_have_attribute("aria-live", "polite")
    # Screen readers hear how, from each photo's checkbox.
    hint = page.locator("#gallery figure.tile .pick").first.get_attribute("aria-describedby")
    expect(page.locator(f"#{hint}")).to_contain_text("Shift with an arrow key")
    picks = page.locator("#gallery figure.tile .pick")
    picks.nth(0).focus()
    page.keyboard.press("Space")
    expect(count).to_have_text("1 selected")
    page.keyboard.press("Shift+ArrowRight")
    page.keyboard.press("Shift+ArrowRight")
    expect(count).to_have_text("3 selected")
    assert _checked(page, "#gallery") == ids[:3]
    # Focus moved with the range, and the photo in focus is outlined where everyone sees it.
    assert page.evaluate("document.activeElement.closest('figure.tile').dataset.id") == ids[2]
    outline = page.locator(f'figure.tile[data-id="{ids[2]}"]').evaluate(
        "t => [getComputedStyle(t).outlineStyle, parseFloat(getComputedStyle(t).outlineWidth)]"
    )
    assert outline[0] != "none" and outline[1] >= 2
    # Back one: the range shrinks; what it had added goes, the start stays.
    page.keyboard.press("Shift+ArrowLeft")
    expect(count).to_have_text("2 selected")
    assert _checked(page, "#gallery") == ids[:2]

    # Plain arrows move without selecting; Shift+Space selects up to the photo in focus.
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    expect(count).to_have_text("2 selected")
    page.keyboard.press("Shift+Space")
    expect(count).to_have_text("5 selected")
    assert _checked(page, "#gallery") == ids[:5]
    # Space on a selected photo unselects it; the page did not scroll or open anything.
    page.keyboard.press("Space")
    expect(count).to_have_text("4 selected")
    expect(page.locator("#lightbox")).to_be_hidden()

    # Down moves to the row below (the photo there closest across), also from a photo's link.
    page.click("#select-none")
    first = page.locator("#gallery figure.tile .thumb-link").first
    first.focus()
    page.keyboard.press("Space")
    expect(count).to_have_text("1 selected")
    top = first.evaluate("n => n.getBoundingClientRect().top")
    page.keyboard.press("Shift+ArrowDown")
    below = page.evaluate("document.activeElement.getBoundingClientRect().top")
    assert page.evaluate("document.activeElement.matches('.thumb-link')")
    assert below > top + 20
    picked = len(_checked(page, "#gallery"))
    assert picked >= 2
    expect(count).to_have_text(f"{picked} selected")


def test_shift_arrow_past_the_last_photo_loaded_brings_in_older_ones(
    browser: Browser, own_stack: Stack, url, photo_jpegs
):
    # Four at least (two pages of two), whatever ran before: selecting reaches the fourth.
    for photo in ("coffee", "chelsea", "rocket", "astronaut"):
        _upload(url, fresh_photo(photo_jpegs[photo]))
    small = own_stack.start_gateway(gallery_page_size=2)
    try:
        with page_in(browser) as page:
            # No infinite scroll: only the keys can bring older photos in.
            page.add_init_script("delete window.IntersectionObserver")
            page.goto(f"{small.url}/")
            expect(page.locator("#gallery figure.tile")).to_have_count(2)
            page.locator("#gallery figure.tile .pick").first.focus()
            page.keyboard.press("Space")
            tiles = "Array.from(document.querySelectorAll('#gallery figure.tile'))"
            at = f"n => {tiles}.indexOf(document.activeElement.closest('figure.tile')) === n"
            for step in (1, 2, 3):
                page.keyboard.press("Shift+ArrowRight")
                page.wait_for_function(at, arg=step)
            expect(page.locator("#selected-count")).to_have_text("4 selected")
            assert page.locator("#gallery figure.tile").count() >= 4
    finally:
        small.stop()


def test_shift_arrow_pressed_again_while_older_photos_come_in_moves_on_twice(
    browser: Browser, own_stack: Stack, url, photo_jpegs
):
    for photo in ("rocket", "china", "flower", "coffee"):  # two pages, whatever ran before
        _upload(url, fresh_photo(photo_jpegs[photo]))
    small = own_stack.start_gateway(gallery_page_size=2)
    tiles = "Array.from(document.querySelectorAll('#gallery figure.tile'))"
    at = f"n => {tiles}.indexOf(document.activeElement.closest('figure.tile')) === n"
    try:
        with page_in(browser) as page:
            page.add_init_script(HOLD_OLDER)
            page.goto(f"{small.url}/")
            page.locator("#gallery figure.tile .pick").first.focus()
            page.keyboard.press("Space")
            page.keyboard.press("Shift+ArrowRight")
            expect(page.locator("#selected-count")).to_have_text("2 selected")

            # The next page is on its way (held) while Shift+Right is pressed twice.
            page.keyboard.press("Shift+ArrowRight")
            page.keyboard.press("Shift+ArrowRight")
            page.evaluate("releaseOlder()")

            expect(page.locator("#selected-count")).to_have_text("4 selected")
            page.wait_for_function(at, arg=3)
    finally:
        small.stop()


# --- the image page's photo on 1x, 2x and 3x screens -------------------------------------------

_SHOWN = """async img => {
    const file = new Image();
    file.src = img.currentSrc;
    await file.decode();
    const shown = img.getBoundingClientRect().width;
    return {src: img.currentSrc, shown, pixels: file.naturalWidth};
}"""


def _open_image_page(
    browser: Browser, url: str, image_id: str, viewport, scale, shot: str = ""
) -> dict:
    """The image page at this screen: what its photo fetched (bytes per kind) and shows."""
    with page_in(browser, viewport, scale=scale) as page:
        fetched: dict[str, int] = {"preview": 0, "original": 0}

        def count(response) -> None:
            path = response.url.split("?")[0]
            if path.endswith(f"/api/images/{image_id}/original"):
                fetched["original"] += len(response.body())
            elif path.endswith(f"/api/images/{image_id}/thumbnail") and "preview" in response.url:
                fetched["preview"] += len(response.body())

        page.on("response", count)
        page.goto(f"{url}/images/{image_id}")
        page.wait_for_function("() => document.getElementById('preview').complete")
        page.wait_for_load_state("networkidle")
        shown = page.locator("#preview").evaluate(_SHOWN)
        if shot:
            shoot(page, shot, full=False)
        # The viewer over the page chooses the same way.
        page.click("#full-size")
        viewer = page.locator("#lb-image")
        page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=viewer.element_handle()
        )
        page.wait_for_load_state("networkidle")
        shown["viewer"] = viewer.evaluate(_SHOWN)
    return {**shown, **fetched}


def test_the_image_page_is_sharp_on_2x_and_3x_and_light_on_1x(browser: Browser, url):
    # Saved as a camera saves it (quality 98, full colour resolution): heavy enough that
    # storage keeps a 1024 px preview of it, as it does for camera photos.
    with Image.open(RETINA) as im:
        out = io.BytesIO()
        im.convert("RGB").save(out, "JPEG", quality=98, subsampling=0, comment=b"camera")
    large = _upload(url, out.getvalue(), "retina.jpg")
    assert large["width"] > 1024
    preview = requests.get(url + large["links"]["preview"], timeout=30)
    with Image.open(io.BytesIO(preview.content)) as stored:
        assert (stored.format, max(stored.size)) == ("WEBP", 1024), "no stored preview"
    seen = {}
    for name, viewport, scale in (("1x", DESKTOP, 1), ("2x", DESKTOP, 2), ("3x phone", PHONE, 3)):
        shot = f"image-large-{viewport['width']}-{name.split()[0]}-light"
        seen[name] = got = _open_image_page(browser, url, large["id"], viewport, scale, shot)
        for shown in (got, got["viewer"]):
            wanted = min(shown["shown"] * scale, large["width"])
            assert shown["pixels"] >= 0.95 * wanted, f"blurry at {name}: {shown}"
    # A 1x screen never downloads the original; 2x and 3x screens take it instead of the
    # 1024 px preview (no larger preview is stored).
    assert seen["1x"]["original"] == 0 and seen["1x"]["preview"] > 0
    assert "/thumbnail" in seen["1x"]["src"] and "/thumbnail" in seen["1x"]["viewer"]["src"]
    for name in ("2x", "3x phone"):
        assert seen[name]["src"].endswith("/original"), seen[name]
        assert seen[name]["viewer"]["src"].endswith("/original"), seen[name]
        assert seen[name]["preview"] == 0, f"{name} fetched the preview as well"
    print(
        f"\nimage page bytes fetched for a 1411 px photo of {large['byte_size']} B: "
        + ", ".join(
            f"{k}: preview {v['preview']} B, original {v['original']} B" for k, v in seen.items()
        )
    )
    # The photo is laid out as wide as before (the column), not at its original's width.
    assert seen["2x"]["shown"] <= 0.6 * DESKTOP["width"]


def test_a_photo_no_larger_than_its_preview_keeps_the_preview_alone(
    browser: Browser, url, photo_jpegs
):
    small = _upload(url, fresh_photo(photo_jpegs["coffee"]))  # 600 x 400
    got = _open_image_page(browser, url, small["id"], DESKTOP, 2)
    assert got["original"] == 0 and "/thumbnail" in got["src"]
    assert got["shown"] == pytest.approx(small["width"], abs=1)  # not blown up


# --- photos being analysed change in place -----------------------------------------------------


def _api_calls(page: Page) -> list[str]:
    calls: list[str] = []
    page.on(
        "request",
        lambda r: (
            calls.append(r.url) if "/api/images" in r.url and r.resource_type == "fetch" else None
        ),
    )
    return calls


def test_tiles_being_analysed_update_without_a_reload_then_polling_stops(
    browser: Browser, own_stack: Stack, url, photo_jpegs
):
    # Nothing pending: the page asks nothing.
    with page_in(browser) as page:
        calls = _api_calls(page)
        page.goto(f"{url}/")
        expect(page.locator('figure.tile[data-status="pending"]')).to_have_count(0)
        page.wait_for_timeout(5000)
        assert calls == []

        own_stack.stop_analysis()
        try:
            waiting = _upload(url, fresh_photo(photo_jpegs["chelsea"]), "waiting.jpg", wait=False)
            assert waiting["status"] == "pending"
            # Asking while it waits (the first ask comes 2 s after the page is drawn).
            with page.expect_request(lambda r: "status=pending" in r.url):
                page.goto(f"{url}/")
                tile = page.locator(f'figure.tile[data-id="{waiting["id"]}"]')
                expect(tile.locator(".badge")).to_have_text("analysing")
                image_page = page.context.new_page()
                image_page.goto(f"{url}/images/{waiting['id']}")
                expect(image_page.locator("#analysis-state")).to_be_visible()
                page.evaluate("window.notReloaded = true")
                image_page.evaluate("window.notReloaded = true")
            assert any("status=pending" in c for c in calls)
        finally:
            own_stack.start_analysis()

        expect(tile.locator(".badge")).to_have_count(0, timeout=60_000)
        assert tile.get_attribute("data-status") == "ready"
        assert page.evaluate("window.notReloaded") is True
        ready = _image(url, waiting["id"]).json()
        assert tile.locator("img.thumb").get_attribute("alt") == ready["alt"]
        # The image page swapped in its labels and similar photos, in place.
        expect(image_page.locator(".details .labels li").first).to_be_visible(timeout=60_000)
        expect(image_page.locator("#analysis-state")).not_to_contain_text("once it is done")
        assert image_page.evaluate("window.notReloaded") is True
        # Done: no more asking.
        asked = len(calls)
        page.wait_for_timeout(6000)
        assert len(calls) == asked


# --- how the bars look -------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_screenshots_of_the_selection_bars(browser: Browser, url, photo_jpegs, scheme):
    for photo in ("coffee", "rocket", "china"):
        _star(url, _upload(url, fresh_photo(photo_jpegs[photo]))["id"])
        _trash(url, _upload(url, fresh_photo(photo_jpegs[photo]))["id"])
    for width, viewport, scale in (("1366", DESKTOP, 1), ("390", PHONE, 2)):
        with page_in(browser, viewport, scheme, scale) as page:
            for name, grid in (("favourites", "#favourites"), ("trash", "#trash")):
                page.goto(f"{url}/{name}")
                picks = page.locator(f"{grid} figure.tile .pick")
                picks.nth(0).focus()
                page.keyboard.press("Space")
                page.keyboard.press("Shift+ArrowRight")
                expect(page.locator("#selected-count")).to_have_text("2 selected")
                shoot(page, f"{name}-selecting-{width}-{scheme}", full=False)
                assert page.evaluate("document.scrollingElement.scrollWidth") <= viewport["width"]
                # Every action of the bar is on screen, none cut off at the side.
                for button in page.locator("#bulk-form .bulk-actions button").all():
                    box = button.bounding_box()
                    assert box and box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"]
