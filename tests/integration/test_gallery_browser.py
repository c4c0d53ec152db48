"""The gallery people expect, in a real headless Chromium over a real stack of its own.

The viewer (keyboard, zoom, shareable URL, delete), selecting many (click, shift-click, select
all) then deleting, tagging or downloading them as a streamed zip, duplicate clean-up, any
filename downloaded byte-exact, GPS shown to the owner and gone from downloads, dark mode, the
390 px phone layout, visible focus, and screenshots of the main pages at 1366 and 390 px wide,
light and dark, saved under tests/artifacts/screenshots/ (gitignored).
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import ExifTags, Image
from playwright.sync_api import Browser, Page, Route, expect

from gateway.exif_privacy import gps_coordinates

from .browser_support import DESKTOP, PHONE, follow, fresh_photo, page_in, shoot, upload
from .conftest import GatewayServer, Stack

NAMES = ["fleur été 🌸.jpg", "ракета.jpg"]


# --- the library -------------------------------------------------------------------------------


def _exif(taken: str, gps: bool = False) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Canon"
    exif[ExifTags.Base.Model] = "Canon EOS 5D Mark III"
    ifd = exif.get_ifd(ExifTags.IFD.Exif)
    ifd[ExifTags.Base.DateTimeOriginal] = taken
    ifd[ExifTags.Base.ExposureTime] = 1 / 250
    ifd[ExifTags.Base.FNumber] = 5.6
    ifd[ExifTags.Base.FocalLength] = 50.0
    ifd[ExifTags.Base.ISOSpeedRatings] = 200
    if gps:
        where = exif.get_ifd(ExifTags.IFD.GPSInfo)
        where[ExifTags.GPS.GPSLatitudeRef] = "N"
        where[ExifTags.GPS.GPSLatitude] = (48.0, 51.0, 30.12)
        where[ExifTags.GPS.GPSLongitudeRef] = "E"
        where[ExifTags.GPS.GPSLongitude] = (2.0, 17.0, 40.2)
    return exif


def _upload(url: str, name: str, data: bytes, headers: dict | None = None) -> dict:
    return upload(url, data, name, headers=headers, statuses=(200, 201))


@pytest.fixture(scope="module")
def library(url: str, photo_jpegs) -> dict[str, dict]:
    """Photos with camera EXIF from two summers, one with a GPS position, two with
    non-Latin-1 names, and plain ones; their images by key, with the bytes sent."""
    sent = {
        "paris": (
            NAMES[0],
            fresh_photo(photo_jpegs["coffee"], _exif("2019:07:14 18:22:05", gps=True)),
        ),
        "rocket": (NAMES[1], fresh_photo(photo_jpegs["rocket"], _exif("2021:08:02 09:10:00"))),
        "cat": ("chelsea.jpg", fresh_photo(photo_jpegs["chelsea"])),
        "astronaut": ("astronaut.jpg", fresh_photo(photo_jpegs["astronaut"])),
        "china": ("china.jpg", fresh_photo(photo_jpegs["china"], _exif("2021:08:20 12:00:00"))),
        "bike": ("motorcycle.jpg", fresh_photo(photo_jpegs["motorcycle"])),
    }
    images = {}
    for key, (name, data) in sent.items():
        images[key] = {**_upload(url, name, data), "sent": data}
    return images


def _fresh(url: str, photo: bytes, name: str) -> dict:
    data = fresh_photo(photo)
    return {**_upload(url, name, data), "sent": data}


def _gone(url: str, image_id: str) -> bool:
    """Gone from the library: deleted for good, or in the trash."""
    reply = requests.get(f"{url}/api/images/{image_id}", timeout=30)
    return reply.status_code == 404 or bool(reply.json().get("trashed_at"))


# --- the viewer --------------------------------------------------------------------------------


def test_viewer_opens_over_the_grid_and_follows_the_keyboard(page: Page, url, library):
    page.goto(f"{url}/")
    tiles = page.locator("#gallery figure.tile")
    ids = tiles.evaluate_all("tiles => tiles.map(t => t.dataset.id)")
    assert len(ids) >= 3

    tiles.first.locator(".thumb-link").click()
    viewer = page.locator("#lightbox")
    expect(viewer).to_be_visible()
    expect(page.locator("#lb-position")).to_have_text(f"1 of {len(ids)}")
    assert page.evaluate("location.hash") == f"#view={ids[0]}"
    expect(page.locator("#lb-image")).to_have_attribute("src", re.compile(r"size=preview"))

    page.keyboard.press("ArrowRight")
    expect(page.locator("#lb-position")).to_have_text(f"2 of {len(ids)}")
    assert page.evaluate("location.hash") == f"#view={ids[1]}"
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowLeft")
    expect(page.locator("#lb-position")).to_have_text(f"2 of {len(ids)}")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")  # wraps round to the last
    expect(page.locator("#lb-position")).to_have_text(f"{len(ids)} of {len(ids)}")

    # Zoom to full size: the original, scrollable.
    page.click("#lb-zoom")
    expect(viewer).to_have_class(re.compile("zoomed"))
    expect(page.locator("#lb-image")).to_have_attribute("src", re.compile(r"/original$"))

    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()
    assert page.evaluate("location.hash") == ""

    # The URL of a photo in the viewer can be shared: opened afresh (not a hash change on the
    # page that already shows it), it opens on that photo.
    shared = page.context.new_page()
    shared.goto(f"{url}/#view={ids[1]}")
    expect(shared.locator("#lightbox")).to_be_visible()
    expect(shared.locator("#lb-position")).to_have_text(f"2 of {len(ids)}")


def test_swipe_moves_the_viewer_on_a_touch_screen(browser: Browser, url, library):
    with page_in(browser, PHONE) as page:
        page.goto(f"{url}/")
        page.locator("#gallery figure.tile .thumb-link").first.click()
        expect(page.locator("#lb-position")).to_contain_text("1 of")

        page.evaluate(
            """() => {
                const stage = document.querySelector('.lb-stage');
                const touch = (x) =>
                    new Touch({identifier: 1, target: stage, clientX: x, clientY: 300});
                stage.dispatchEvent(
                    new TouchEvent('touchstart', {touches: [touch(300)], bubbles: true}));
                stage.dispatchEvent(
                    new TouchEvent('touchend', {changedTouches: [touch(120)], bubbles: true}));
            }"""
        )

        expect(page.locator("#lb-position")).to_contain_text("2 of")


def test_delete_key_in_the_viewer_asks_then_deletes(page: Page, url, photo_jpegs, library):
    doomed = _fresh(url, photo_jpegs["flower"], "delete-me-in-viewer.jpg")
    page.goto(f"{url}/#view={doomed['id']}")
    expect(page.locator("#lb-caption")).to_have_text("delete-me-in-viewer.jpg")

    page.once("dialog", lambda dialog: dialog.dismiss())  # changed my mind: nothing happens
    page.keyboard.press("Delete")
    expect(page.locator("#lb-caption")).to_have_text("delete-me-in-viewer.jpg")
    assert not _gone(url, doomed["id"])

    messages: list[str] = []
    page.once("dialog", lambda dialog: (messages.append(dialog.message), dialog.accept()))
    page.keyboard.press("Delete")

    expect(page.locator(f'figure.tile[data-id="{doomed["id"]}"]')).to_have_count(0)
    expect(page.locator("#lb-caption")).not_to_have_text("delete-me-in-viewer.jpg")
    assert "delete-me-in-viewer.jpg" in messages[0]
    assert _gone(url, doomed["id"])


def test_image_page_opens_its_photo_in_the_viewer(page: Page, url, library):
    page.goto(f"{url}/images/{library['rocket']['id']}")
    page.click("#full-size")
    expect(page.locator("#lightbox")).to_be_visible()
    expect(page.locator("#lb-caption")).to_have_text(NAMES[1])
    assert page.evaluate("location.hash") == f"#view={library['rocket']['id']}"
    page.keyboard.press("Escape")
    expect(page.locator("#lightbox")).to_be_hidden()


# --- selecting many ----------------------------------------------------------------------------


def test_shift_click_selects_a_range_then_delete_asks_and_deletes(page: Page, url, photo_jpegs):
    fresh = [_fresh(url, photo_jpegs["camera"], f"bulk-{i}.jpg") for i in range(3)]
    page.goto(f"{url}/")
    picks = page.locator("#gallery figure.tile .pick")
    ids = page.locator("#gallery figure.tile").evaluate_all("ts => ts.map(t => t.dataset.id)")
    assert set(ids[:3]) == {f["id"] for f in fresh}  # newest (no EXIF date) come first

    picks.nth(0).click()
    picks.nth(2).click(modifiers=["Shift"])
    expect(page.locator("#selected-count")).to_have_text("3 selected")
    expect(page.locator("figure.tile.selected")).to_have_count(3)

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#bulk-delete")

    expect(page.locator("#bulk-notice")).to_have_text("Moved 3 images to the trash.")
    for image in fresh:
        expect(page.locator(f'figure.tile[data-id="{image["id"]}"]')).to_have_count(0)
        assert _gone(url, image["id"])


def test_select_all_on_the_page_and_clear(page: Page, url, library):
    page.goto(f"{url}/")
    count = page.locator("#gallery figure.tile").count()

    page.click("#select-all")
    expect(page.locator("#selected-count")).to_have_text(f"{count} selected")
    # While selecting, a click on a photo toggles it instead of opening the viewer.
    page.locator("#gallery figure.tile .thumb-link").first.click()
    expect(page.locator("#selected-count")).to_have_text(f"{count - 1} selected")
    expect(page.locator("#lightbox")).to_be_hidden()
    page.click("#select-none")
    expect(page.locator("#selected-count")).to_contain_text("Select photos")


def test_selected_photos_are_tagged_together(page: Page, url, library):
    page.goto(f"{url}/")
    for key in ("cat", "bike"):
        page.locator(f'figure.tile[data-id="{library[key]["id"]}"] .pick').check()
    page.fill("#bulk-form input[name=tags]", "holiday, Summer")
    page.click("#bulk-tag")

    expect(page.locator("#bulk-notice")).to_contain_text("Tagged 2 images")
    for key in ("cat", "bike"):
        tags = requests.get(f"{url}/api/images/{library[key]['id']}", timeout=30).json()["tags"]
        assert {"holiday", "summer"} <= set(tags)


def test_selected_photos_download_as_a_zip_of_the_exact_originals(
    page: Page, url, library, tmp_path
):
    chosen = [library["cat"], library["rocket"]]
    page.goto(f"{url}/")
    for image in chosen:
        page.locator(f'figure.tile[data-id="{image["id"]}"] .pick').check()

    with page.expect_download() as info:
        page.click("#bulk-zip")
    saved = tmp_path / "photos.zip"
    info.value.save_as(saved)

    with zipfile.ZipFile(saved) as archive:
        assert archive.testzip() is None
        contents = {name: archive.read(name) for name in archive.namelist()}
    assert contents == {"chelsea.jpg": library["cat"]["sent"], NAMES[1]: library["rocket"]["sent"]}


def test_zip_is_streamed_not_sized_up_front(url, library):
    ids = ",".join(library[k]["id"] for k in ("cat", "astronaut", "china"))
    with requests.get(f"{url}/api/images/zip", params={"ids": ids}, stream=True, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["Content-Type"] == "application/zip"
        assert "Content-Length" not in r.headers  # written as it goes
        body = b"".join(r.iter_content(65536))
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.namelist() == ["chelsea.jpg", "astronaut.jpg", "china.jpg"]


# --- duplicates --------------------------------------------------------------------------------


@pytest.fixture
def keyed_gateway(own_stack: Stack) -> Iterator[GatewayServer]:
    """The same services behind a gateway with API keys: another owner can upload."""
    server = own_stack.start_gateway(api_keys=frozenset({"bob:bobkey"}))
    yield server
    server.stop()


def test_duplicates_keep_one_per_group_and_all_exact_groups_at_once(
    page: Page, url, keyed_gateway, photo_jpegs
):
    # Exact copies: the same bytes uploaded by two owners (each owner keeps one copy).
    same = fresh_photo(photo_jpegs["page"])
    mine = _upload(url, "page-scan.jpg", same)
    bobs = _upload(
        keyed_gateway.url, "page-scan-bob.jpg", same, {"Authorization": "Bearer bob:bobkey"}
    )
    # A near duplicate: the same photo, re-encoded at a lower quality.
    with Image.open(io.BytesIO(photo_jpegs["astronaut"])) as im:
        small = io.BytesIO()
        im.save(small, "JPEG", quality=60)
    near_a = _upload(url, "astro-big.jpg", fresh_photo(photo_jpegs["astronaut"]))
    near_b = _upload(url, "astro-small.jpg", small.getvalue())

    page.goto(f"{url}/duplicates")
    exact = page.locator(
        "#exact_groups form.group", has=page.locator(f'input[value="{mine["id"]}"]')
    )
    expect(exact).to_have_count(1)
    expect(exact).to_contain_text("page-scan.jpg")
    expect(exact).to_contain_text(re.compile(r"\d+\.\d kB · 384×191"))  # size, date too
    # The exact pair is not shown again as a near group.
    expect(
        page.locator("#near_groups form.group", has=page.locator(f'input[value="{bobs["id"]}"]'))
    ).to_have_count(0)
    shoot(page, "duplicates-before-cleanup")

    near = page.locator(
        "#near_groups form.group", has=page.locator(f'input[value="{near_b["id"]}"]')
    )
    near.locator(f'input[type=radio][value="{near_b["id"]}"]').check()  # keep the small one
    page.once("dialog", lambda dialog: dialog.accept())
    near.locator("button.keep-one").click()
    expect(page.locator("#dup-notice")).to_contain_text("Kept one, moved")
    assert _gone(url, near_a["id"]) and not _gone(url, near_b["id"])

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#resolve-all-exact")
    expect(page.locator("#dup-notice")).to_contain_text("Kept the oldest")
    assert not _gone(url, mine["id"]) and _gone(url, bobs["id"])
    expect(page.locator(f'#exact_groups input[value="{mine["id"]}"]')).to_have_count(0)


# --- every filename, every byte ----------------------------------------------------------------


@pytest.mark.parametrize("key", ["paris", "rocket"])
def test_non_latin1_filenames_download_byte_exact(page: Page, url, library, key):
    image = library[key]
    page.goto(f"{url}/images/{image['id']}")

    with page.expect_download() as info:
        page.click("#download")

    assert info.value.suggested_filename == image["filename"]
    body = Path(info.value.path()).read_bytes()
    if key == "paris":  # its GPS position is blanked, nothing else changes
        assert len(body) == len(image["sent"]) and gps_coordinates(body) is None
    else:
        assert body == image["sent"]


def test_originals_answer_ranges_and_conditional_requests(url, library):
    image = library["rocket"]
    link = f"{url}/api/images/{image['id']}/original"

    part = requests.get(link, headers={"Range": "bytes=100-1123"}, timeout=30)
    assert part.status_code == 206
    assert part.content == image["sent"][100:1124]
    assert part.headers["Content-Range"] == f"bytes 100-1123/{len(image['sent'])}"
    assert part.headers["Accept-Ranges"] == "bytes"

    whole = requests.get(link, timeout=30)
    again = requests.get(link, headers={"If-None-Match": whole.headers["ETag"]}, timeout=30)
    assert again.status_code == 304
    disposition = whole.headers["Content-Disposition"]
    assert disposition.startswith("inline; ")
    assert "filename*=UTF-8''%D1%80%D0%B0%D0%BA%D0%B5%D1%82%D0%B0.jpg" in disposition


# --- EXIF and GPS ------------------------------------------------------------------------------


def test_image_page_reads_exif_like_a_photo_app_and_shows_the_place(page: Page, url, library):
    page.goto(f"{url}/images/{library['paris']['id']}")

    exif = page.locator("#exif")
    expect(exif).to_contain_text("1/250 s, f/5.6, 50 mm, ISO 200")
    expect(exif).to_contain_text("Canon EOS 5D Mark III")
    expect(exif).to_contain_text("14 July 2019, 18:22")
    expect(page.locator("#location")).to_contain_text("48.85837° N, 2.29450° E")
    expect(page.locator("#location")).to_contain_text("removed from downloads")
    assert "camera_make" not in page.content()


def test_gps_stays_in_originals_only_when_the_owner_keeps_it(own_stack: Stack, url, library):
    image = library["paris"]
    served = requests.get(f"{url}/api/images/{image['id']}/original", timeout=30).content
    keeper = own_stack.start_gateway(keep_gps=True)
    try:
        kept = requests.get(f"{keeper.url}/api/images/{image['id']}/original", timeout=30).content
    finally:
        keeper.stop()

    assert gps_coordinates(served) is None
    assert kept == image["sent"]
    assert gps_coordinates(kept) is not None
    with Image.open(io.BytesIO(served)) as a, Image.open(io.BytesIO(kept)) as b:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# --- timeline ----------------------------------------------------------------------------------


def test_gallery_groups_by_month_taken_and_jumps_to_a_year(page: Page, url, library):
    page.goto(f"{url}/")
    titles = page.locator("#gallery .month-title").all_inner_texts()
    assert "July 2019" in titles and "August 2021" in titles
    assert titles.index("August 2021") < titles.index("July 2019")  # newest first
    august = page.locator('section.month[data-month="2021-08"] figure.tile')
    expect(august).to_have_count(2)

    page.fill("#jump-year", "2019")
    page.click(".jump button")
    page.wait_for_url("**/?year=2019")
    expect(page.locator("#gallery .month-title").first).to_have_text("July 2019")


def test_the_older_link_works_without_script_and_pages_scroll_in_with_it(
    browser: Browser, own_stack: Stack, library
):
    small = own_stack.start_gateway(gallery_page_size=2)
    try:
        ids = "ts => ts.map(t => t.dataset.id)"
        with page_in(browser, java_script_enabled=False) as page:
            page.goto(f"{small.url}/")
            first = page.locator("figure.tile").evaluate_all(ids)
            follow(page.locator("#older"))  # the click only starts the navigation
            second = page.locator("figure.tile").evaluate_all(ids)
        assert len(first) == 2 and len(second) == 2 and not set(first) & set(second)

        with page_in(browser, {"width": 1366, "height": 400}) as page:
            page.goto(f"{small.url}/")
            page.mouse.wheel(0, 5000)
            expect(page.locator("#gallery figure.tile")).not_to_have_count(2)
            shown = page.locator("#gallery figure.tile").evaluate_all(ids)
            months = page.locator("#gallery section.month").evaluate_all(
                "ss => ss.map(s => s.dataset.month)"
            )
        assert set(first + second) <= set(shown)
        assert months == sorted(set(months), reverse=True)  # one section a month, newest first
    finally:
        small.stop()


# --- look and reach ----------------------------------------------------------------------------


def _background(page: Page) -> tuple[int, ...]:
    css = page.evaluate("getComputedStyle(document.body).backgroundColor")
    return tuple(int(v) for v in re.findall(r"\d+", css)[:3])


def test_dark_mode_follows_the_system_setting(browser: Browser, url, library):
    shades = {}
    for scheme in ("light", "dark"):
        with page_in(browser, scheme=scheme) as page:
            page.goto(f"{url}/")
            shades[scheme] = (
                _background(page),
                page.evaluate("getComputedStyle(document.querySelector('h1')).color"),
            )

    assert sum(shades["light"][0]) > 600 and sum(shades["dark"][0]) < 100
    assert shades["light"][1] != shades["dark"][1]


@pytest.mark.parametrize(
    "path", ["/", "/image", "/status", "/upload", "/duplicates", "/search?q=cat"]
)
def test_pages_fit_a_390_px_phone(browser: Browser, url, library, path):
    with page_in(browser, PHONE) as page:
        page.goto(url + (f"/images/{library['paris']['id']}" if path == "/image" else path))

        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        header = page.locator("header.top").bounding_box()
        assert header is not None and header["height"] <= 100
        if path == "/image":
            for bar in page.locator("section.details > ul.labels .bar").all():
                box = bar.bounding_box()
                assert box is not None and box["width"] >= 50  # readable, not a dot
        if path == "/":
            tile = page.locator("#gallery figure.tile").first.bounding_box()
            assert tile is not None and 100 <= tile["width"] <= 390


def test_keyboard_focus_on_a_photo_is_visible_and_not_clipped(page: Page, url, library):
    page.goto(f"{url}/")
    link = page.locator("#gallery figure.tile .thumb-link").first
    link.focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")  # focus by keyboard, so :focus-visible applies

    style = link.evaluate(
        "a => { const s = getComputedStyle(a);"
        " return [s.outlineStyle, s.outlineWidth, s.outlineOffset]; }"
    )
    assert style == ["solid", "3px", "-3px"]  # drawn inside the tile, which clips overflow


def test_suggestions_are_an_accessible_combobox(page: Page, url, library):
    prefix = library["cat"]["best_label"][:3]  # a word the index surely holds
    page.goto(f"{url}/")
    box = page.locator("#q")
    box.fill(prefix)
    expect(page.locator("#suggestions [role=option]").first).to_be_visible()
    expect(box).to_have_attribute("aria-expanded", "true")

    box.press("ArrowDown")
    active = box.get_attribute("aria-activedescendant")
    expect(page.locator(f"#{active}")).to_have_attribute("aria-selected", "true")
    box.press("Escape")
    expect(box).to_have_attribute("aria-expanded", "false")


def test_alt_text_comes_from_confident_labels(page: Page, url, library):
    page.goto(f"{url}/")
    alt = page.locator(f'figure.tile[data-id="{library["cat"]["id"]}"] img').get_attribute("alt")
    assert alt is not None and alt.startswith("photo: ") and "cat" in alt


def test_upload_page_sums_up_and_a_refusal_shows_no_progress(
    page: Page, url, tmp_path, photo_jpegs
):
    good = tmp_path / "summary-good.jpg"
    good.write_bytes(fresh_photo(photo_jpegs["text"]))
    bad = tmp_path / "not-a-photo.jpg"
    bad.write_text("plain text")

    page.goto(f"{url}/upload")
    page.set_input_files("#files", [str(good), str(bad)])

    expect(page.locator("#summary-text")).to_have_text("2 of 2 done · 1 stored · 1 failed")
    refused = page.locator("#upload-list li.rejected")
    expect(refused).to_contain_text("not an image")
    expect(refused.locator("progress")).to_have_count(0)
    expect(page.locator("#upload-cancel")).to_be_hidden()


def test_states_read_in_plain_words(page: Page, url, library):
    page.goto(f"{url}/search?q=cat")
    text = page.locator("main").inner_text()
    assert "matched:" not in text and "semantic:" not in text
    assert "DEADLINE_EXCEEDED" not in text


# --- screenshots -------------------------------------------------------------------------------


def test_screenshots_of_the_main_pages(browser: Browser, url, library, tmp_path, photo_jpegs):
    upload_file = tmp_path / "screenshot-upload.jpg"
    upload_file.write_bytes(fresh_photo(photo_jpegs["china"]))
    bad = tmp_path / "notes.txt.jpg"
    bad.write_text("not a photo")
    pages = {
        "gallery": "/",
        "image": f"/images/{library['paris']['id']}",
        "search": "/search?q=cat",
        "upload": "/upload",
        "duplicates": "/duplicates",
        "status": "/status",
        "viewer": f"/#view={library['rocket']['id']}",
    }
    taken = []
    for width, viewport in (("1366", DESKTOP), ("390", PHONE)):
        for scheme in ("light", "dark"):
            with page_in(browser, viewport, scheme) as page:
                for name, path in pages.items():
                    page.goto(url + path)
                    if name == "upload":
                        page.set_input_files("#files", [str(upload_file), str(bad)])
                        expect(page.locator("#summary-text")).to_contain_text("2 of 2 done")
                    taken.append(shoot(page, f"{name}-{width}-{scheme}", full=name != "viewer"))
                    assert (
                        page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
                    )
    assert len(taken) == 2 * 2 * len(pages)


# --- HEIC and AVIF -----------------------------------------------------------------------------


def _encoded(photo: bytes, fmt: str) -> bytes:
    import pillow_heif

    pillow_heif.register_heif_opener()
    with Image.open(io.BytesIO(photo)) as im:
        out = io.BytesIO()
        im.convert("RGB").save(out, fmt, quality=80)
    return out.getvalue()


@pytest.mark.parametrize(("fmt", "name"), [("HEIF", "phone-photo.heic"), ("AVIF", "web.avif")])
def test_heic_and_avif_photos_are_uploaded_and_shown(
    page: Page, url, tmp_path, photo_jpegs, fmt, name
):
    path = tmp_path / name
    path.write_bytes(_encoded(photo_jpegs["chelsea"], fmt))

    page.goto(f"{url}/upload")
    page.set_input_files("#files", [str(path)])
    stored = page.locator("#upload-list li.stored")
    expect(stored).to_have_count(1)
    href = stored.locator("a").first.get_attribute("href")
    assert href is not None

    page.goto(f"{url}/")
    tile = page.locator(f'figure.tile[data-id="{href.rsplit("/", 1)[1]}"]')
    expect(tile).to_be_visible()
    # Drawn: the thumbnail arrives after the page has loaded (a lazy <img>, made on request).
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=tile.locator("img").element_handle()
    )
    page.goto(url + href)
    expect(page.locator("#filename")).to_have_text(name)
    page.wait_for_function("document.querySelector('#preview').naturalWidth > 0")
    expect(page.locator(".labels li").first).to_contain_text("cat")


# --- search by date taken ----------------------------------------------------------------------


def test_the_api_sorts_and_filters_search_by_date_taken(url, library):
    by_key = {library[k]["id"]: k for k in ("paris", "rocket", "china")}

    def ids(**params) -> list[str]:
        """The dated Canon photos in the order search gave (others may match the word)."""
        reply = requests.get(f"{url}/api/search", params={"q": "canon", **params}, timeout=30)
        assert reply.status_code == 200, reply.text
        return [hit["image"]["id"] for hit in reply.json()["hits"] if hit["image"]["taken_at"]]

    assert [by_key[i] for i in ids(sort="taken_oldest")] == ["paris", "rocket", "china"]
    assert [by_key[i] for i in ids(sort="taken_newest")] == ["china", "rocket", "paris"]
    assert [by_key[i] for i in ids(sort="taken_oldest", taken_from="2021")] == ["rocket", "china"]
    assert [by_key[i] for i in ids(taken_from="2021-08-01", taken_until="2021-08-10")] == ["rocket"]
    assert [by_key[i] for i in ids(taken_until="2019")] == ["paris"]
    bad = requests.get(f"{url}/api/search", params={"q": "canon", "taken_from": "soon"})
    assert bad.status_code == 400 and "YYYY" in bad.json()["error"]["message"]


def test_search_page_orders_by_date_taken(page: Page, url, library):
    page.goto(f"{url}/search?q=canon")
    page.select_option("#sort", "taken_oldest")
    page.fill("#taken-from", "2019")
    page.click(".search-order button")

    page.wait_for_url("**/search?q=canon&sort=taken_oldest&taken_from=2019&taken_until=")
    shown = page.locator("#results figure.tile").evaluate_all("ts => ts.map(t => t.dataset.id)")
    assert shown[:3] == [library[k]["id"] for k in ("paris", "rocket", "china")]


def test_upload_failures_can_be_retried_and_a_queue_cancelled(
    page: Page, url, tmp_path, photo_jpegs
):
    files = []
    for i, name in enumerate(["coffee", "rocket", "chelsea", "china", "flower", "camera"]):
        path = tmp_path / f"queue-{i}.jpg"
        path.write_bytes(fresh_photo(photo_jpegs[name]))
        files.append(path)
    calls: list[str] = []
    held: list[Route] = []

    def first_fails(route: Route) -> None:
        calls.append(route.request.method)
        if len(calls) == 1:  # the gateway is briefly away for the first file
            route.fulfill(status=503, json={"error": {"status": 503, "message": "try again"}})
        elif len(calls) == 2:
            route.continue_()
        else:  # the rest are still on their way when Cancel is pressed, however fast it runs
            held.append(route)

    page.route("**/api/images", first_fails)
    page.goto(f"{url}/upload")
    page.set_input_files("#files", [str(files[0])])
    expect(page.locator("#summary-text")).to_have_text("1 of 1 done · 0 stored · 1 failed")
    expect(page.locator("#upload-retry")).to_be_visible()

    page.click("#upload-retry")
    expect(page.locator("#summary-text")).to_have_text("1 of 1 done · 1 stored")
    expect(page.locator("#upload-list li.stored")).to_have_count(1)
    expect(page.locator("#upload-retry")).to_be_hidden()

    # Five more, two at a time: cancel while they go (two sent, three waiting); none of them
    # had finished, so all five are cancelled.
    page.set_input_files("#files", [str(p) for p in files[1:]])
    page.click("#upload-cancel")
    expect(page.locator("#summary-text")).to_have_text("6 of 6 done · 1 stored · 5 cancelled")
    expect(page.locator("#upload-list li.cancelled")).to_have_count(5)
    expect(page.locator("#upload-cancel")).to_be_hidden()


def test_a_refused_format_is_named_on_the_upload_page(page: Page, url, tmp_path, photo_jpegs):
    icon = tmp_path / "favicon.ico"
    with Image.open(io.BytesIO(photo_jpegs["coffee"])) as im:
        im.convert("RGB").resize((64, 64)).save(icon, "ICO")

    page.goto(f"{url}/upload")
    page.set_input_files("#files", [str(icon)])

    refused = page.locator("#upload-list li.rejected")
    expect(refused).to_contain_text("the ICO format is not accepted")
    expect(refused.locator("progress")).to_have_count(0)


def test_a_sensitive_photo_stays_blurred_in_the_viewer_until_revealed(
    page: Page, own_stack: Stack, library
):
    # Every photo over the threshold (a score can be exactly 0): no explicit photo needed.
    strict = own_stack.start_gateway(moderation_threshold=-1.0)
    try:
        page.goto(f"{strict.url}/#view={library['cat']['id']}")
        shown = page.locator("#lb-image")
        expect(shown).to_have_class(re.compile("blurred"))
        assert "blur" in shown.evaluate("img => getComputedStyle(img).filter")

        shown.click()  # the first click reveals, it does not load the original
        expect(shown).not_to_have_class(re.compile("blurred"))
        expect(shown).to_have_attribute("src", re.compile("size=preview"))
        tile = page.locator(f'figure.tile[data-id="{library["cat"]["id"]}"] img')
        expect(tile).not_to_have_class(re.compile("blurred"))
    finally:
        strict.stop()
