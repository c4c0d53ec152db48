"""What the viewer says when the gateway refuses a delete, in a real headless Chromium: a
gateway with API keys, where Bob (logged in) opens Ann's photo. It said only "Could not
delete: the server answered 403"; it now gives the gateway's reason, and the photo stays."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from playwright.sync_api import Page, expect

from .browser_support import upload
from .conftest import GatewayServer, fresh_jpeg


@pytest.fixture
def keyed_url(stack) -> Iterator[str]:
    server: GatewayServer = stack.start_gateway(api_keys=frozenset({"ann:one", "bob:two"}))
    yield str(server.url)
    server.stop()


def test_a_refused_delete_in_the_viewer_says_why(page: Page, keyed_url, photo_jpegs):
    anns = upload(
        keyed_url, fresh_jpeg(photo_jpegs["coffee"]), headers={"Authorization": "Bearer ann:one"}
    )
    page.goto(f"{keyed_url}/login")
    page.fill("input[name=key]", "bob:two")
    page.press("input[name=key]", "Enter")
    page.wait_for_url(f"{keyed_url}/")
    page.goto(f"{keyed_url}/#view={anns['id']}")
    expect(page.locator("#lightbox")).to_be_visible()

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#lb-delete")

    caption = page.locator("#lb-caption")
    expect(caption).to_contain_text("Could not delete")
    expect(caption).to_contain_text("another owner")
    got = requests.get(
        f"{keyed_url}/api/images/{anns['id']}", headers={"Authorization": "Bearer ann:one"}
    )
    assert got.json()["trashed_at"] is None
