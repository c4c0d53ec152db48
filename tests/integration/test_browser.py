"""The gallery in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright).

Upload through the page, see the thumbnail, search, open the image, tag it, report a label,
delete it; screenshots of the main pages go to tests/artifacts/ and are checked to render.
"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from .browser_support import ARTIFACTS, wait_searchable
from .conftest import GatewayServer, Stack, fresh_jpeg


def _photo_files(tmp_path: Path, photo_jpegs: dict[str, bytes], names: list[str]) -> list[Path]:
    """Fresh crops of real photos (new bytes, so they are stored rather than duplicates)."""
    paths = []
    for name in names:
        with Image.open(io.BytesIO(photo_jpegs[name])) as im:
            buf = io.BytesIO()
            im.crop((3, 3, im.width - 3, im.height - 3)).save(
                buf, "JPEG", quality=91, comment=uuid.uuid4().hex.encode()
            )
        path = tmp_path / f"{name}-browser.jpg"
        path.write_bytes(buf.getvalue())
        paths.append(path)
    return paths


def _screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    with Image.open(path) as shot:
        pixels = np.asarray(shot.convert("L"), dtype=np.float32)
    assert pixels.std() > 10, f"{name} screenshot looks blank"
    return path


def _image_loaded(page: Page, selector: str) -> bool:
    """The image has arrived and decodes (waited for: a lazy tile asks for it after layout,
    and a thumbnail may still be being made on a busy machine)."""
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0",
        arg=page.locator(selector).element_handle(),
        timeout=30_000,
    )
    return bool(page.eval_on_selector(selector, "img => img.complete && img.naturalWidth > 0"))


def test_upload_search_open_tag_report_and_delete_in_browser(
    page: Page, gateway_url: str, tmp_path: Path, photo_jpegs
):
    files = _photo_files(tmp_path, photo_jpegs, ["coffee", "rocket"])
    # A close-up of the same cup, so the coffee photo has a similar image to show.
    with Image.open(io.BytesIO(photo_jpegs["coffee"])) as im:
        closeup = im.crop((im.width // 8, im.height // 8, im.width * 7 // 8, im.height * 7 // 8))
        files.append(tmp_path / "coffee-closeup.jpg")
        closeup.save(files[-1], "JPEG", quality=90)

    # Upload three photos at once through the page (the file input's change starts the XHRs).
    page.goto(f"{gateway_url}/upload")
    page.set_input_files("#files", [str(p) for p in files])
    expect(page.locator("#upload-list li.stored")).to_have_count(3)
    _screenshot(page, "upload")
    coffee_href = (
        page.locator("#upload-list li", has_text="coffee-browser.jpg")
        .locator("a")
        .get_attribute("href")
    )
    image_id = coffee_href.rsplit("/", 1)[1]
    closeup_href = (
        page.locator("#upload-list li", has_text="coffee-closeup.jpg")
        .locator("a")
        .get_attribute("href")
    )
    closeup_id = closeup_href.rsplit("/", 1)[1]

    # The gallery shows its thumbnail, newest first, with its best label.
    page.goto(f"{gateway_url}/")
    tile = page.locator(f'figure.tile[data-id="{image_id}"]')
    expect(tile).to_be_visible()
    expect(tile.locator(".label")).to_have_text("espresso")
    assert _image_loaded(page, f'figure.tile[data-id="{image_id}"] img')
    _screenshot(page, "gallery")

    # Search as you type offers completions; the results say why each matched.
    wait_searchable(gateway_url, "espresso", [image_id])
    page.fill("#q", "espr")
    expect(page.locator("#suggestions [role=option][data-value='espresso']")).to_have_count(1)
    expect(page.locator("#q")).to_have_attribute("aria-expanded", "true")
    page.fill("#q", "espresso")
    page.press("#q", "Enter")
    page.wait_for_url("**/search?q=espresso")
    result = page.locator(f'#results figure.tile[data-id="{image_id}"]')
    expect(result).to_be_visible()
    expect(page.locator("#results .why").first).to_contain_text("looks like espresso")
    _screenshot(page, "search")

    # A click opens the viewer; its "Details" link opens the image page: preview, labels with
    # bars, similar images.
    result.locator("a").first.click()
    expect(page.locator("#lightbox")).to_be_visible()
    page.click("#lb-details")
    page.wait_for_url(f"**/images/{image_id}")
    expect(page.locator("#filename")).to_have_text("coffee-browser.jpg")
    expect(page.locator(".labels li").first).to_contain_text("espresso")
    assert _image_loaded(page, "#preview")
    expect(page.locator(f'#similar figure.tile[data-id="{closeup_id}"]')).to_be_visible()
    _screenshot(page, "image")

    # Tag it, and report a label as wrong.
    page.fill("input[name=add]", "morning, cafe")
    page.click(".tag-form button")
    expect(page.locator(".tags li", has_text="morning")).to_be_visible()
    page.locator(".labels li").first.locator("button").click()
    expect(page.locator(".notice")).to_contain_text("feedback was recorded")

    # Delete it after confirming; it leaves the gallery.
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#delete-button")
    page.wait_for_url("**/?deleted=*")
    expect(page.locator(".notice")).to_contain_text("deleted")
    expect(page.locator(f'figure.tile[data-id="{image_id}"]')).to_have_count(0)


def test_upload_page_shows_per_file_errors(page: Page, gateway_url: str, tmp_path: Path):
    fake = tmp_path / "not-a-photo.jpg"
    fake.write_text("plain text")

    page.goto(f"{gateway_url}/upload")
    page.set_input_files("#files", [str(fake)])

    row = page.locator("#upload-list li.rejected")
    expect(row).to_contain_text("not an image")


def test_status_and_mosaic_pages_render(page: Page, gateway_url: str, tmp_path, photo_jpegs):
    page.goto(f"{gateway_url}/upload")
    page.set_input_files(
        "#files", [str(p) for p in _photo_files(tmp_path, photo_jpegs, ["astronaut"])]
    )
    expect(page.locator("#upload-list li.stored")).to_have_count(1)
    href = page.locator("#upload-list li.stored a").get_attribute("href")

    page.goto(f"{gateway_url}/status")
    expect(page.locator("#health td").first).to_have_text("working")
    _screenshot(page, "status")
    page.goto(f"{gateway_url}{href}/mosaic?columns=40")
    page.wait_for_function("document.querySelector('#mosaic').complete")
    assert _image_loaded(page, "#mosaic")
    _screenshot(page, "mosaic")


@pytest.fixture
def strict_gateway(stack: Stack) -> Iterator[GatewayServer]:
    """A gateway over the same services that treats every image as over the moderation
    threshold (no explicit photo is needed to see the blur; a score can be exactly 0, and only
    a score above the threshold is blurred)."""
    server = stack.start_gateway(moderation_threshold=-1.0)
    yield server
    server.stop()


def test_moderated_images_are_blurred_until_revealed(page: Page, strict_gateway, photos_present):
    page.goto(f"{strict_gateway.url}/")
    first = page.locator("figure.tile").first
    image = first.locator("img")

    blurred = image.evaluate("img => getComputedStyle(img).filter")
    first.locator("button.reveal").click()
    expect(image).not_to_have_class(re.compile("blurred"))
    # Once the short fade is over, the picture is sharp.
    image.evaluate(
        "img => new Promise(done => { const check = () => getComputedStyle(img).filter === 'none'"
        " ? done() : requestAnimationFrame(check); check(); })"
    )

    assert "blur" in blurred
    assert first.locator("button.reveal").count() == 0


@pytest.fixture
def photos_present(http, gateway_url, photo_jpegs) -> None:
    reply = http.post(
        f"{gateway_url}/api/images", files={"file": ("blur-me.jpg", photo_jpegs["flower"])}
    )
    assert reply.status_code == 201


def test_drag_and_drop_uploads_with_progress(page: Page, gateway_url: str, photo_jpegs):
    data = list(fresh_jpeg(photo_jpegs["motorcycle"]))

    page.goto(f"{gateway_url}/upload")
    # What a browser does when a file is dropped: a drop event carrying a DataTransfer.
    page.evaluate(
        """bytes => {
            const file = new File([new Uint8Array(bytes)], "dropped.jpg", {type: "image/jpeg"});
            const transfer = new DataTransfer();
            transfer.items.add(file);
            const zone = document.getElementById("dropzone");
            zone.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true}));
        }""",
        data,
    )

    row = page.locator("#upload-list li", has_text="dropped.jpg")
    expect(row).to_have_class(re.compile("stored"))
    assert row.locator("progress").get_attribute("value") == "100"


def test_find_similar_from_an_uploaded_picture(page: Page, gateway_url: str, tmp_path, photo_jpegs):
    stored = _photo_files(tmp_path, photo_jpegs, ["chelsea"])
    page.goto(f"{gateway_url}/upload")
    page.set_input_files("#files", [str(p) for p in stored])
    expect(page.locator("#upload-list li.stored")).to_have_count(1)
    query = tmp_path / "query-cat.jpg"
    with Image.open(io.BytesIO(photo_jpegs["chelsea"])) as im:
        im.rotate(5).resize((im.width // 2, im.height // 2)).save(query, "JPEG")

    page.goto(f"{gateway_url}/search")
    page.set_input_files(".similar-form input[type=file]", str(query))
    page.click(".similar-form button")

    expect(page.locator("h2", has_text="Images similar to query-cat.jpg")).to_be_visible()
    expect(page.locator("#similar figure.tile").first).to_be_visible()
    assert "cat" in page.locator("p.muted", has_text="It looks like").inner_text()
    _screenshot(page, "similar")


def test_the_same_photo_again_links_to_the_copy_already_stored(
    page: Page, gateway_url: str, tmp_path, photo_jpegs
):
    (first,) = _photo_files(tmp_path, photo_jpegs, ["china"])
    again = tmp_path / "china-again.jpg"
    again.write_bytes(first.read_bytes())

    page.goto(f"{gateway_url}/upload")
    page.set_input_files("#files", [str(first)])
    expect(page.locator("#upload-list li.stored")).to_have_count(1)
    original = page.locator("#upload-list li.stored a").get_attribute("href")
    page.set_input_files("#files", [str(again)])

    # One copy per photo: the same bytes again are not stored twice, and the row says where
    # the photo already is.
    row = page.locator("#upload-list li.duplicate")
    expect(row).to_contain_text("already in your library")
    assert row.locator("a").first.get_attribute("href") == original
