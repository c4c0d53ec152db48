"""What the download routes answer against the real stack: an original is shown in the browser
(inline, with its filename) unless ?download=1 asks for an attachment; a zip that cannot be made
answers a page's no-JS "Download zip" button with the HTML error page, a script with JSON."""

from __future__ import annotations

import pytest

from .conftest import fresh_jpeg
from .test_gateway_e2e import unique, upload

# What Chromium sends when a page's link or form is followed.
BROWSER_NAVIGATION = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
)


@pytest.fixture(scope="module")
def stored_photo(gateway_url, photo_jpegs) -> tuple[str, str]:
    """(id, filename) of a fresh photo in the shared stack."""
    import requests

    name = unique("harbour.jpg")
    reply = upload(requests, gateway_url, (name, fresh_jpeg(photo_jpegs["coffee"])))
    assert reply.status_code == 201, reply.text
    return reply.json()["results"][0]["image"]["id"], name


@pytest.mark.parametrize("download", [None, "", "0", "false", "FALSE"])
def test_original_without_download_is_inline_with_its_filename(
    gateway_url, http, stored_photo, download
):
    image_id, name = stored_photo
    params = {} if download is None else {"download": download}

    reply = http.get(f"{gateway_url}/api/images/{image_id}/original", params=params)

    assert reply.status_code == 200
    assert reply.headers["Content-Disposition"].startswith("inline;")
    assert f"filename={name}" in reply.headers["Content-Disposition"].replace('"', "")


@pytest.mark.parametrize("download", ["1", "true", "yes"])
def test_original_with_download_is_an_attachment_with_its_filename(
    gateway_url, http, stored_photo, download
):
    image_id, name = stored_photo

    reply = http.get(f"{gateway_url}/api/images/{image_id}/original", params={"download": download})

    assert reply.status_code == 200
    assert reply.headers["Content-Disposition"].startswith("attachment;")
    assert f"filename={name}" in reply.headers["Content-Disposition"].replace('"', "")


def test_zip_button_of_photos_gone_shows_the_error_page(gateway_url, http):
    reply = http.get(
        f"{gateway_url}/api/images/zip",
        params={"ids": ["nope", "gone"], "tags": ""},
        headers={"Accept": BROWSER_NAVIGATION},
    )

    assert reply.status_code == 404
    assert reply.headers["Content-Type"].startswith("text/html")
    assert 'id="error-message"' in reply.text
    assert "none of the selected photos exists" in reply.text
    assert "Back to the gallery" in reply.text


def test_zip_of_photos_gone_asked_for_by_a_script_is_json(gateway_url, http):
    reply = http.get(f"{gateway_url}/api/images/zip", params={"ids": "nope"})

    assert reply.status_code == 404
    assert "none of the" in reply.json()["error"]["message"]
