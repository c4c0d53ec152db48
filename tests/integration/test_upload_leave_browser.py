"""Leaving the upload page while photos are still being sent, in a real headless Chromium: the
browser asks first (beforeunload), since leaving drops every photo not yet sent without a word;
once all are done, leaving is not questioned."""

from __future__ import annotations

import uuid

from playwright.sync_api import Page, Route, expect

from .conftest import fresh_jpeg


def test_leaving_while_photos_upload_is_asked_first(page: Page, gateway_url, photo_jpegs, tmp_path):
    files = []
    for name in ("coffee", "china", "rocket"):
        path = tmp_path / f"leave-{uuid.uuid4().hex[:8]}.jpg"
        path.write_bytes(fresh_jpeg(photo_jpegs[name]))
        files.append(str(path))
    held: list[Route] = []
    released: list[bool] = []

    def hold(route: Route) -> None:  # sent, and not answered until released
        if released:
            route.continue_()
        else:
            held.append(route)

    page.route("**/api/images", hold)
    page.goto(f"{gateway_url}/upload")
    page.click("h1")  # a person on the page (browsers ask only then)
    page.set_input_files("#files", files)
    page.wait_for_function("document.querySelectorAll('#upload-list li').length === 3")
    asked: list[str] = []
    page.on("dialog", lambda dialog: (asked.append(dialog.type), dialog.dismiss()))

    page.evaluate("() => { location.href = '/albums'; }")
    page.wait_for_timeout(1000)

    assert asked == ["beforeunload"]
    assert page.url.endswith("/upload")
    released.append(True)
    for route in held:
        route.continue_()
    expect(page.locator("#summary-text")).to_contain_text("3 of 3 done")
    page.evaluate("() => { location.href = '/albums'; }")
    page.wait_for_url(f"{gateway_url}/albums")
    assert asked == ["beforeunload"]
