"""Acting on a selection in which one photo is gone meanwhile (deleted for good in another
tab), against the real stack: the others are tagged or taken out of the favourites and the
gone one is named, as a bulk delete already did, instead of a 404 for the whole selection
after part of it was changed."""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

import pytest

from .conftest import fresh_jpeg
from .test_gateway_e2e import unique, upload


@pytest.fixture
def photo_id(gateway_url, http, photo_jpegs) -> str:
    stored = upload(http, gateway_url, (unique("clock.jpg"), fresh_jpeg(photo_jpegs["coffee"])))
    assert stored.status_code == 201, stored.text
    return str(stored.json()["results"][0]["image"]["id"])


def test_bulk_tags_tag_the_photos_still_there_and_name_the_gone_ones(gateway_url, http, photo_id):
    reply = http.post(
        f"{gateway_url}/api/images/bulk-tags",
        json={"ids": [photo_id, "gone-meanwhile"], "add": ["kitchen"]},
    )

    assert reply.status_code == 200, reply.text
    assert [i["id"] for i in reply.json()["images"]] == [photo_id]
    assert reply.json()["missing"] == ["gone-meanwhile"]
    assert "kitchen" in http.get(f"{gateway_url}/api/images/{photo_id}").json()["tags"]


def test_unfavouriting_a_selection_with_a_gone_photo_says_so(gateway_url, http, photo_id):
    starred = http.post(f"{gateway_url}/api/images/{photo_id}/favourite", json={"favourite": True})
    assert starred.status_code == 200, starred.text
    page = http.get(f"{gateway_url}/favourites").text
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)

    reply = http.post(
        f"{gateway_url}/bulk",
        data={
            "csrf_token": token,
            "ids": [photo_id, "gone-meanwhile"],
            "action": "unfavourite",
            "back": "/favourites",
        },
        allow_redirects=False,
    )

    assert reply.status_code == 303, reply.text
    notice = unquote_plus(reply.headers["Location"])
    assert "Removed 1 image from your favourites" in notice
    assert "1 image was no longer there" in notice
    assert http.get(f"{gateway_url}/api/images/{photo_id}").json()["favourite"] is False
