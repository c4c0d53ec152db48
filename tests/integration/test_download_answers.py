"""What the download routes answer against the real stack: a zip that cannot be made answers a
page's no-JS "Download zip" button with the HTML error page, a script with JSON."""

from __future__ import annotations

# What Chromium sends when a page's link or form is followed.
BROWSER_NAVIGATION = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
)


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
