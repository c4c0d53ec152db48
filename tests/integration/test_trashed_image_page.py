"""The page of a photo in the trash (reached from a Trash tile, a bookmark or a filename
lookup), against the real stack: it says the photo is in the trash and for how long, offers
Restore instead of "Move to trash", and shows no search error about the photo's absence from
the index; restoring from it brings the photo back and returns to its page."""

from __future__ import annotations

import re

import pytest

from .conftest import fresh_jpeg
from .test_gateway_e2e import unique, upload


@pytest.fixture
def trashed_id(gateway_url, http, photo_jpegs) -> str:
    stored = upload(http, gateway_url, (unique("rocket.jpg"), fresh_jpeg(photo_jpegs["rocket"])))
    assert stored.status_code == 201, stored.text
    image_id = str(stored.json()["results"][0]["image"]["id"])
    assert http.delete(f"{gateway_url}/api/images/{image_id}").status_code == 200
    return image_id


def test_a_trashed_photo_page_says_so_and_offers_restore_not_trash(gateway_url, http, trashed_id):
    page = http.get(f"{gateway_url}/images/{trashed_id}")

    assert page.status_code == 200
    notice = re.search(r'id="trashed-notice"[^>]*>(.*?)</div>', page.text, re.S)
    assert notice is not None, "no notice that the photo is in the trash"
    assert "in the trash" in notice.group(1) and "30 days" in notice.group(1)
    assert f'id="restore-{trashed_id}"' in page.text
    assert 'id="delete-button"' not in page.text
    assert "in the index" not in page.text
    assert "Similar images" not in page.text


def test_restoring_from_a_trashed_photo_page_returns_to_it_restored(gateway_url, http, trashed_id):
    page = http.get(f"{gateway_url}/images/{trashed_id}").text
    form = re.search(r'<form[^>]*class="inline restore-form".*?</form>', page, re.S)
    assert form is not None, "no restore form on the page"
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.group(0)).group(1)
    back = re.search(r'name="back" value="([^"]*)"', form.group(0)).group(1)

    restored = http.post(
        f"{gateway_url}/images/{trashed_id}/restore", data={"csrf_token": token, "back": back}
    )

    assert restored.status_code == 200
    assert restored.url.endswith(f"/images/{trashed_id}")
    assert 'id="trashed-notice"' not in restored.text
    assert 'id="delete-button"' in restored.text
    assert http.get(f"{gateway_url}/api/images/{trashed_id}").json()["trashed_at"] is None
