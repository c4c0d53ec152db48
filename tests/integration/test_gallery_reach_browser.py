"""The gallery as a demanding user checks it, in a real headless Chromium over a stack of its own.

Every main page fits a 390 px phone (nothing scrolls sideways, the links fold into a menu),
every focusable control shows its focus, thumbnails are sharp on 1x, 2x and 3x screens and keep
their shape, the viewer reaches photos beyond the first page (a shared link, and "next" past
the last photo loaded), and screenshots of every main page, light and dark, at 1366 and 390 px
are saved under tests/artifacts/screenshots/.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import Iterator
from datetime import datetime

import pytest
import requests
from PIL import ExifTags, Image
from playwright.sync_api import Browser, Page, expect

from .browser_support import DESKTOP, HOLD_OLDER, PHONE, follow, fresh_photo, page_in, shoot, upload
from .conftest import Stack
from .test_api_schemas import check

# This module's phones have 3x screens (the shared contexts default to 2x).
PHONE_SCALE = 3

# (name, photo, date taken or None, favourite, trashed)
PHOTOS = [
    ("harbour 2017.jpg", "coffee", "2017:05:01 10:00:00", True, False),
    ("launch.jpg", "rocket", "2019:07:14 18:22:05", False, False),
    ("Пагода.jpg", "china", "2021:08:20 12:00:00", True, False),
    ("chelsea.jpg", "chelsea", None, True, False),
    ("astronaut.jpg", "astronaut", None, False, False),
    ("motorcycle.jpg", "motorcycle", "2021:08:02 09:10:00", False, False),
    ("old scan.jpg", "page", None, False, True),
    ("camera.jpg", "camera", None, False, True),
    # A month with enough photos to fill whole rows.
    *[
        (f"march {day}.jpg", photo, f"2015:03:0{day} 12:00:00", False, False)
        for day, photo in enumerate(["flower", "coffee", "rocket", "china", "motorcycle"], 1)
    ],
]
MARCH = [f"march {day}.jpg" for day in range(5, 0, -1)]


def _scale(viewport: dict[str, int]) -> float | None:
    return PHONE_SCALE if viewport["width"] < 500 else None


def _jpeg(photo: bytes, taken: str | None) -> bytes:
    if not taken:
        return fresh_photo(photo)
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Canon"
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = taken
    return fresh_photo(photo, exif)


@pytest.fixture(scope="module")
def library(url: str, photo_jpegs) -> dict[str, dict]:
    """The photos above by filename: some dated by their camera, some starred, two in the trash."""
    images = {}
    for name, photo, taken, favourite, trashed in PHOTOS:
        image = upload(url, _jpeg(photo_jpegs[photo], taken), name)
        if favourite:
            requests.post(
                f"{url}/api/images/{image['id']}/favourite", json={"favourite": True}, timeout=30
            ).raise_for_status()
        if trashed:
            requests.delete(f"{url}/api/images/{image['id']}", timeout=30).raise_for_status()
        images[name] = image
    return images


@pytest.fixture
def two_a_page(own_stack: Stack, library) -> Iterator[str]:
    """The URL of a gateway of its own over the module's stack (the library uploaded), showing
    two photos a page; stopped after the test, whatever happened."""
    small = own_stack.start_gateway(gallery_page_size=2)
    try:
        yield small.url
    finally:
        small.stop()


def _main_pages(library: dict[str, dict]) -> dict[str, str]:
    first = library["launch.jpg"]["id"]
    return {
        "gallery": "/",
        "year": "/?year=2019",
        "favourites": "/favourites",
        "trash": "/trash",
        "upload": "/upload",
        "duplicates": "/duplicates",
        "status": "/status",
        "search": "/search?q=canon",
        "image": f"/images/{first}",
        "mosaic": f"/images/{first}/mosaic?columns=24",
        "viewer": f"/#view={first}",
    }


# --- the 390 px phone ---------------------------------------------------------------------------

# Only the viewer's stage scrolls (a photo zoomed to full size); tables wrap their cells.
_MAY_SCROLL = ".lb-stage"
_SIDEWAYS = """(allowed) => {
    const out = [];
    for (const node of document.querySelectorAll('body *')) {
        if (node.closest(allowed)) continue;
        const style = getComputedStyle(node);
        if (!['auto', 'scroll'].includes(style.overflowX)) continue;
        if (node.scrollWidth > node.clientWidth + 1) out.push(node.tagName + '#' + node.id);
    }
    return out;
}"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_no_main_page_scrolls_sideways_on_a_390_px_phone(browser: Browser, url, library, scheme):
    with page_in(browser, PHONE, scheme, scale=PHONE_SCALE) as page:
        for name, path in _main_pages(library).items():
            page.goto(url + path)
            page.wait_for_load_state("networkidle")

            width = page.evaluate("document.scrollingElement.scrollWidth")
            inner = page.evaluate("innerWidth")
            assert width <= inner, f"{name} is {width} px wide on a {inner} px screen"
            assert page.evaluate(_SIDEWAYS, _MAY_SCROLL) == [], (
                f"{name} has a part that scrolls sideways"
            )
            header = page.locator("header.top").bounding_box()
            assert header is not None and header["height"] <= 100, f"{name}: header {header}"
            shoot(page, f"{name}-390-{scheme}", full=name != "viewer")


def test_the_phone_menu_holds_every_link_and_closes_again(browser: Browser, url, library):
    with page_in(browser, PHONE, scale=PHONE_SCALE) as page:
        page.goto(f"{url}/favourites")
        links = page.locator("#main-nav a")
        button = page.locator("#menu-button")
        expect(button).to_be_visible()
        expect(links.first).to_be_hidden()

        button.click()

        expect(button).to_have_attribute("aria-expanded", "true")
        for link in links.all():
            expect(link).to_be_visible()
            box = link.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
        expect(page.locator('#main-nav a[aria-current="page"]')).to_have_text("Favourites")
        shoot(page, "menu-390-light", full=False)
        page.keyboard.press("Escape")
        expect(links.first).to_be_hidden()
        expect(button).to_be_focused()

        button.click()
        page.locator("#main-nav a", has_text="Trash").click()
        page.wait_for_url("**/trash")


def test_without_script_the_phone_links_wrap_instead_of_scrolling(browser: Browser, url, library):
    with page_in(browser, PHONE, scale=PHONE_SCALE, java_script_enabled=False) as page:
        page.goto(f"{url}/")

        expect(page.locator("#menu-button")).to_be_hidden()
        for link in page.locator("#main-nav a").all():
            box = link.bounding_box()
            assert box is not None and box["x"] + box["width"] <= PHONE["width"]
        assert page.evaluate(_SIDEWAYS, _MAY_SCROLL) == []


def test_on_a_desktop_the_links_show_without_a_menu(page: Page, url, library):
    page.goto(f"{url}/trash")

    expect(page.locator("#menu-button")).to_be_hidden()
    expect(page.locator("#main-nav a").first).to_be_visible()
    expect(page.locator('#main-nav a[aria-current="page"]')).to_have_text("Trash")


# --- screenshots, light and dark ---------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_screenshots_of_every_main_page_at_1366(browser: Browser, url, library, scheme):
    with page_in(browser, DESKTOP, scheme) as page:
        for name, path in _main_pages(library).items():
            page.goto(url + path)
            shoot(page, f"{name}-1366-{scheme}", full=name != "viewer")
            assert page.evaluate("document.scrollingElement.scrollWidth") <= DESKTOP["width"]
            if scheme == "dark":
                # Dark pages stay dark all the way down (no light card or strip left behind).
                for selector in (
                    "body",
                    "main .heading",
                    ".tile",
                    ".bulk",
                    ".group",
                    ".upload-summary",
                ):
                    for node in page.locator(selector).all()[:3]:
                        colour = node.evaluate("n => getComputedStyle(n).backgroundColor")
                        rgb = [int(v) for v in re.findall(r"\d+", colour)[:3]]
                        alpha = re.findall(r"[\d.]+", colour)[3:4]
                        if alpha and float(alpha[0]) == 0:
                            continue
                        assert sum(rgb) < 200, f"{name}: {selector} is {colour} in dark mode"


# --- thumbnails -------------------------------------------------------------------------------

# The pixels of the file the browser chose (naturalWidth is scaled by the srcset's claim).
_SHARPNESS = """async tiles => Promise.all(tiles.map(async tile => {
    const img = tile.querySelector('img.thumb');
    const file = new Image();
    file.src = img.currentSrc;
    await file.decode();
    return {id: tile.dataset.id, shown: img.getBoundingClientRect().width,
            pixels: file.naturalWidth, src: img.currentSrc};
}))"""


@pytest.mark.parametrize(
    ("viewport", "scale"), [(DESKTOP, 1), (DESKTOP, 2), (PHONE, 2), (PHONE, 3)]
)
def test_thumbnails_are_sharp_at_every_pixel_ratio(browser: Browser, url, library, viewport, scale):
    widths = {image["id"]: image["width"] for image in library.values()}
    with page_in(browser, viewport, scale=scale) as page:
        page.goto(f"{url}/")
        tiles = page.locator("#gallery figure.tile")
        for tile in tiles.all():
            tile.scroll_into_view_if_needed()
            page.wait_for_function(
                "img => img.complete && img.naturalWidth > 0",
                arg=tile.locator("img").element_handle(),
            )

        for tile in tiles.evaluate_all(_SHARPNESS):
            # As many image pixels as screen pixels, up to what the photo itself has.
            wanted = min(tile["shown"] * scale, widths[tile["id"]], 1024)
            assert tile["pixels"] >= 0.9 * wanted, f"blurry at {scale}x: {tile}"


def test_tiles_keep_the_shape_of_their_photo(page: Page, url, library):
    page.goto(f"{url}/")

    for image in library.values():
        if image["id"] in {library[n]["id"] for n in ("old scan.jpg", "camera.jpg")}:
            continue  # in the trash
        box = page.locator(f'#gallery figure.tile[data-id="{image["id"]}"] .thumb-link')
        shown = box.bounding_box()
        assert shown is not None
        ratio = max(0.4, min(3.0, image["width"] / image["height"]))
        assert abs(shown["width"] / shown["height"] - ratio) / ratio < 0.04, image["filename"]


_ROWS = """grid => {
    const rows = new Map();
    for (const tile of grid.querySelectorAll(':scope > figure.tile')) {
        const box = tile.querySelector('.thumb-link').getBoundingClientRect();
        const top = Math.round(box.top);
        if (!rows.has(top)) rows.set(top, {left: box.left, right: box.right, height: box.height});
        const row = rows.get(top);
        row.left = Math.min(row.left, box.left);
        row.right = Math.max(row.right, box.right);
    }
    const frame = grid.getBoundingClientRect();
    return {left: frame.left, right: frame.right, rows: Array.from(rows.values())};
}"""


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE, {"width": 800, "height": 900}])
def test_rows_are_justified_edge_to_edge(browser: Browser, url, library, viewport):
    with page_in(browser, viewport, scale=_scale(viewport)) as page:
        page.goto(f"{url}/")
        page.wait_for_load_state("networkidle")

        grids = page.locator("#gallery .grid.justified").evaluate_all(f"gs => gs.map({_ROWS})")
        full_rows = [(grid, row) for grid in grids for row in grid["rows"][:-1]]
        assert full_rows, "the library should fill at least one row somewhere"
        for grid, row in full_rows:
            # Every row but a month's last reaches both edges of the grid.
            assert (
                abs(row["left"] - grid["left"]) <= 1 and abs(row["right"] - grid["right"]) <= 2
            ), row
        target = 130 if viewport["width"] < 600 else 220
        for grid in grids:
            for row in grid["rows"]:
                assert 0.5 * target <= row["height"] <= 1.6 * target, row


_SYNTHETIC = """ratios => {
    const grid = document.createElement('div');
    grid.className = 'grid justified';
    grid.id = 'synthetic';
    for (const ar of ratios) {
        const tile = document.createElement('figure');
        tile.className = 'tile';
        tile.style.setProperty('--ar', String(ar));
        const link = document.createElement('a');
        link.className = 'thumb-link';
        tile.append(link);
        grid.append(tile);
    }
    document.querySelector('main').append(grid);
    document.dispatchEvent(new CustomEvent('tiles:changed'));
}"""


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE])
def test_a_mix_of_wide_and_tall_photos_still_fills_even_rows(
    browser: Browser, url, library, viewport
):
    # Panoramas next to portraits: plain flex rows would stretch a photo left alone on a row.
    ratios = [1.5, 2.8, 1.5, 0.7, 3.0, 1.0, 0.75, 2.8, 1.33, 1.5, 0.6, 2.2, 1.5, 1.5]
    with page_in(browser, viewport, scale=_scale(viewport)) as page:
        page.goto(f"{url}/favourites")
        page.evaluate(_SYNTHETIC, ratios)

        grid = page.locator("#synthetic").evaluate(_ROWS)
        target = 130 if viewport["width"] < 600 else 220
        for row in grid["rows"][:-1]:
            assert abs(row["left"] - grid["left"]) <= 1 and abs(row["right"] - grid["right"]) <= 2
        for row in grid["rows"]:
            assert 0.5 * target <= row["height"] <= 1.6 * target, (row, grid["rows"])


def test_captions_name_the_file_unless_the_model_is_sure(page: Page, url, library):
    page.goto(f"{url}/")

    for tile in page.locator("#gallery figure.tile").all():
        image = requests.get(f"{url}/api/images/{tile.get_attribute('data-id')}", timeout=30).json()
        caption = tile.locator("figcaption .label").inner_text()
        sure = [label for label in image["labels"] if label["probability"] >= 0.6]
        # None of these names was made up by a camera, so no tile falls back to its date.
        assert caption == (sure[0]["name"] if sure else image["filename"])


# --- focus you can see --------------------------------------------------------------------------

_FOCUS = """() => {
    const node = document.activeElement;
    const style = getComputedStyle(node);
    const ring = style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2;
    const box = node.getBoundingClientRect();
    return {tag: node.tagName, id: node.id, cls: String(node.className), ring,
            shadow: style.boxShadow !== 'none', seen: box.width > 0 && box.height > 0};
}"""


@pytest.mark.parametrize("path", ["/", "/favourites", "/trash", "/upload"])
def test_every_control_reached_by_tab_shows_its_focus(page: Page, url, library, path):
    page.goto(url + path)
    page.wait_for_load_state("networkidle")

    seen = 0
    for _ in range(30):
        page.keyboard.press("Tab")
        focused = page.evaluate(_FOCUS)
        if focused["tag"] == "BODY":
            break
        assert focused["seen"] and (focused["ring"] or focused["shadow"]), focused
        seen += 1
    assert seen >= 8


# --- the viewer beyond the first page ---------------------------------------------------------


def test_a_shared_viewer_link_opens_a_photo_not_on_the_first_page(
    browser: Browser, two_a_page: str, library
):
    with page_in(browser) as page:
        # The first page alone: infinite scroll would bring more in while it is read.
        page.add_init_script("delete window.IntersectionObserver")
        page.goto(f"{two_a_page}/")
        first_page = page.locator("#gallery figure.tile").evaluate_all(
            "ts => ts.map(t => t.dataset.id)"
        )
    assert len(first_page) == 2
    far = next(
        image
        for image in library.values()
        if image["id"] not in first_page and image["filename"] not in ("old scan.jpg", "camera.jpg")
    )

    # Opened afresh, as a shared link is (not a hash change on a page that holds it).
    with page_in(browser) as page:
        page.goto(f"{two_a_page}/#view={far['id']}")

        expect(page.locator("#lightbox")).to_be_visible()
        expect(page.locator("#lb-caption")).to_have_text(re.compile(re.escape(far["filename"])))
        assert far["id"] in page.url


def test_next_past_the_last_photo_loaded_brings_in_older_ones(
    browser: Browser, two_a_page: str, library
):
    with page_in(browser, {"width": 1366, "height": 2000}) as page:
        # No infinite scroll: only the viewer's own "next" can bring older photos in.
        page.add_init_script("delete window.IntersectionObserver")
        page.goto(f"{two_a_page}/")
        page.locator("#gallery figure.tile .thumb-link").first.click()
        expect(page.locator("#lb-position")).to_contain_text("1 of")

        seen = [page.evaluate("location.hash")]
        for _ in range(4):
            page.keyboard.press("ArrowRight")
            page.wait_for_function("was => location.hash !== was", arg=seen[-1])
            seen.append(page.evaluate("location.hash"))

        assert len(set(seen)) == 5  # five different photos: it did not wrap round after two


def test_next_pressed_again_while_older_photos_come_in_moves_on_twice(
    browser: Browser, two_a_page: str, library
):
    with page_in(browser) as page:
        page.add_init_script(HOLD_OLDER)
        page.goto(f"{two_a_page}/")
        page.locator("#gallery figure.tile .thumb-link").first.click()
        page.keyboard.press("ArrowRight")
        expect(page.locator("#lb-position")).to_have_text("2 of 2")  # the last one loaded

        # The next page is on its way (held) while "next" is pressed twice.
        page.keyboard.press("ArrowRight")
        page.keyboard.press("ArrowRight")
        page.evaluate("releaseOlder()")

        expect(page.locator("#lb-position")).to_have_text("4 of 4")
        fourth = page.locator("#gallery figure.tile").nth(3).get_attribute("data-id")
        expect(page).to_have_url(re.compile(f"#view={fourth}$"))


# --- bulk wording -------------------------------------------------------------------------------


def test_bulk_delete_asks_in_the_words_of_what_it_does(page: Page, url, library):
    page.goto(f"{url}/")
    page.locator("#gallery figure.tile .pick").first.click()
    messages: list[str] = []
    page.once("dialog", lambda dialog: (messages.append(dialog.message), dialog.dismiss()))

    page.click("#bulk-delete")

    assert messages == ["Move 1 photo to the trash?"]


# --- the timeline: the whole library by date taken ---------------------------------------------

# Newest taken first: the undated ones by upload time (when the tests run), newest upload first.
TAKEN_NEWEST = [
    "astronaut.jpg",
    "chelsea.jpg",
    "Пагода.jpg",
    "motorcycle.jpg",
    "launch.jpg",
    "harbour 2017.jpg",
    *MARCH,
]
UNDATED = TAKEN_NEWEST[:2]


def _walk(url: str, **params) -> list[str]:
    """Every page of GET /api/images, two at a time, each checked against the OpenAPI schema."""
    names, token = [], ""
    while True:
        reply = requests.get(
            f"{url}/api/images", params={"page_size": 2, "page_token": token, **params}, timeout=30
        )
        body = check("get", "/api/images", reply)
        assert reply.status_code == 200, body
        names += [image["filename"] for image in body["images"]]
        token = body["next_page_token"]
        if not token:
            return names


def test_the_api_lists_the_whole_library_by_date_taken(url, library):
    assert _walk(url, order="taken_newest") == TAKEN_NEWEST
    assert _walk(url, order="taken_oldest") == TAKEN_NEWEST[::-1]
    assert _walk(url, taken_from="2019", taken_to="2021") == TAKEN_NEWEST[2:5]
    assert _walk(url, taken_to="2019-07-14") == ["launch.jpg", "harbour 2017.jpg", *MARCH]
    assert _walk(url, taken_from="2015-03-02", taken_to="2015-03-04") == MARCH[1:4]
    assert _walk(url, order="taken_oldest", taken_from="2021-08-03") == [
        "Пагода.jpg",
        *TAKEN_NEWEST[:2][::-1],
    ]
    # Without an order: newest upload first, as before.
    assert _walk(url) == [name for name, *_ in PHOTOS if name in TAKEN_NEWEST][::-1]

    for bad in (
        {"order": "sideways"},
        {"taken_from": "soon"},
        {"taken_from": "2021", "taken_to": "2019"},
    ):
        reply = requests.get(f"{url}/api/images", params=bad, timeout=30)
        assert reply.status_code == 400, bad
        check("get", "/api/images", reply)


def _months_shown(page: Page) -> list[str]:
    return page.locator("#gallery .month-title").all_inner_texts()


def _upload_months(library: dict[str, dict]) -> list[str]:
    """The month titles of the undated photos, newest first: the months they were uploaded in
    (as the API dates them), not the month the test runs in (a run may cross midnight)."""
    titles = [f"{datetime.strptime(library[n]['date'][:7], '%Y-%m'):%B %Y}" for n in UNDATED]
    return list(dict.fromkeys(titles))


def _upload_years(library: dict[str, dict]) -> list[str]:
    """The year links of the undated photos (the years they were uploaded in), newest first."""
    years = Counter(library[n]["date"][:4] for n in UNDATED)
    return [f"{year} · {count}" for year, count in sorted(years.items(), reverse=True)]


def test_months_run_on_across_pages_in_date_taken_order(browser: Browser, two_a_page: str, library):
    with page_in(browser, java_script_enabled=False) as page:
        page.goto(f"{two_a_page}/")
        pages = []
        while True:
            pages.append(_months_shown(page))
            if not page.locator("#older").count():
                break
            follow(page.locator("#older"))
    assert pages == [
        _upload_months(library),
        ["August 2021"],
        ["July 2019", "May 2017"],
        ["March 2015"],
        ["March 2015"],
        ["March 2015"],
    ]

    with page_in(browser, {"width": 1366, "height": 500}) as page:
        page.goto(f"{two_a_page}/")
        tiles = page.locator("#gallery figure.tile")
        for _ in range(len(TAKEN_NEWEST)):  # a page at most each turn
            shown = tiles.count()  # before asking whether more are coming: none is missed
            if not page.locator("#older").count():
                break
            page.mouse.wheel(0, 4000)
            expect(tiles).not_to_have_count(shown)
        expect(tiles).to_have_count(len(TAKEN_NEWEST))
        expect(page.locator("#older")).to_have_count(0)
        captions = tiles.evaluate_all("ts => ts.map(t => t.dataset.caption)")
        assert captions == TAKEN_NEWEST
        assert _months_shown(page) == [
            *_upload_months(library),
            "August 2021",
            "July 2019",
            "May 2017",
            "March 2015",
        ]


def test_the_year_links_jump_and_count_and_the_order_can_be_reversed(page: Page, url, library):
    page.goto(f"{url}/")
    years = page.locator("nav.years li a")
    assert years.all_inner_texts() == [
        *_upload_years(library),
        "2021 · 2",
        "2019 · 1",
        "2017 · 1",
        "2015 · 5",
    ]

    years.filter(has_text="2019").click()

    page.wait_for_url("**/?year=2019")
    expect(page.locator("nav.years a[aria-current]")).to_have_text("2019 · 1")
    assert _months_shown(page) == ["July 2019", "May 2017", "March 2015"]
    expect(page.locator("#gallery-count")).to_have_text("7 photos from 2019 or earlier")

    page.select_option("#order", "taken_oldest")  # applies at once, no button
    page.wait_for_url("**/?order=taken_oldest")
    assert _months_shown(page)[:3] == ["March 2015", "May 2017", "July 2019"]
    page.locator("nav.years li a", has_text="2021").click()
    page.wait_for_url("**/?year=2021&order=taken_oldest")
    assert _months_shown(page)[0] == "August 2021"
    captions = page.locator("#gallery figure.tile").evaluate_all(
        "ts => ts.map(t => t.dataset.caption)"
    )
    assert captions == TAKEN_NEWEST[:4][::-1]


# --- plain words and what a page shows once ----------------------------------------------------


def test_the_upload_summary_shows_only_once_files_are_chosen(page: Page, url, library):
    page.goto(f"{url}/upload")

    expect(page.locator("#upload-summary")).to_be_hidden()
    expect(page.locator("#upload-cancel")).to_be_hidden()


def test_the_status_page_says_how_services_are_in_words(browser: Browser, url, library):
    with page_in(browser, PHONE, scale=PHONE_SCALE) as page:
        page.goto(f"{url}/status")

        assert page.locator("#health td").all_inner_texts() == ["working"] * 3
        assert "SERVING" not in page.locator("main").inner_text()
        for table in page.locator("main table").all():
            box = table.bounding_box()
            assert box is not None and box["x"] + box["width"] <= PHONE["width"]


def test_a_near_copy_is_listed_once_beside_the_photo(page: Page, url, library):
    # launch.jpg and march 3.jpg are the same photo with different dates: near duplicates.
    page.goto(f"{url}/images/{library['launch.jpg']['id']}")
    copy = library["march 3.jpg"]["id"]

    expect(page.locator(f'#duplicates figure.tile[data-id="{copy}"]')).to_have_count(1)
    expect(page.locator(f'#similar figure.tile[data-id="{copy}"]')).to_have_count(0)
    # On a wide screen they sit under the photo, not below the whole page.
    related = page.locator("section.related").bounding_box()
    details = page.locator("section.details").bounding_box()
    preview = page.locator("section.preview").bounding_box()
    assert related and details and preview
    assert related["x"] + related["width"] <= details["x"]
    assert related["y"] < preview["y"] + preview["height"] + 100


def test_closing_the_viewer_gives_focus_back_to_the_photo_it_opened_from(page: Page, url, library):
    page.goto(f"{url}/")
    link = page.locator("#gallery figure.tile .thumb-link").nth(2)
    link.focus()

    page.keyboard.press("Enter")
    expect(page.locator("#lightbox")).to_be_visible()
    expect(page.locator("#lb-close")).to_be_focused()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Escape")

    expect(page.locator("#lightbox")).to_be_hidden()
    expect(link).to_be_focused()


_TOP_TITLE = """() => {
    const titles = Array.from(document.querySelectorAll('#gallery .month-title'));
    const bar = document.getElementById('bulk-form').getBoundingClientRect();
    const shown = titles.filter(t => {
        const box = t.getBoundingClientRect();
        const x = box.left + 5, y = box.top + box.height / 2;
        const on = document.elementFromPoint(x, y);
        return box.bottom > 0 && box.top < innerHeight && t.contains(on);
    });
    return {texts: shown.map(t => t.textContent),
            tops: shown.map(t => t.getBoundingClientRect().top), barBottom: bar.bottom};
}"""


def test_the_month_in_view_stays_named_at_the_top_while_scrolling(browser: Browser, url, library):
    with page_in(browser, {"width": 1366, "height": 500}) as page:
        page.goto(f"{url}/")
        page.locator(
            'section.month[data-month="2015-03"] figure.tile'
        ).last.scroll_into_view_if_needed()

        seen = page.evaluate(_TOP_TITLE)
        assert "March 2015" in seen["texts"], seen  # not hidden under the selection bar

        page.locator("#gallery figure.tile .pick").first.click()  # selecting: the bar sticks
        page.locator(
            'section.month[data-month="2015-03"] figure.tile'
        ).last.scroll_into_view_if_needed()
        seen = page.evaluate(_TOP_TITLE)
        assert "March 2015" in seen["texts"], seen
        assert min(seen["tops"]) >= seen["barBottom"] - 1


# Last in this module: it adds a photo to the library the tests above count.
def test_a_heic_photo_zooms_to_something_a_browser_can_draw(page: Page, url, library, photo_jpegs):
    import pillow_heif

    pillow_heif.register_heif_opener()
    with Image.open(io.BytesIO(photo_jpegs["chelsea"])) as im:
        out = io.BytesIO()
        im.convert("RGB").save(out, "HEIF", quality=80)
    reply = requests.post(
        f"{url}/api/images", files={"file": ("IMG_4242.HEIC", out.getvalue())}, timeout=120
    )
    assert reply.status_code == 201, reply.text
    heic = reply.json()["results"][0]["image"]

    page.goto(f"{url}/#view={heic['id']}")
    page.click("#lb-zoom")

    expect(page.locator("#lightbox")).to_have_class(re.compile("zoomed"))
    drawn = "() => { const i = document.getElementById('lb-image'); return i.naturalWidth > 0; }"
    page.wait_for_function(drawn, timeout=15_000)
