"""Resolving a duplicate group against the real stack when the copy chosen to keep was moved
to the trash meanwhile (in another tab): it is refused before anything is deleted, so the
photo never ends up with every copy in the trash, where storage deletes them for good once the
retention ends."""

from __future__ import annotations

import re

from .conftest import fresh_jpeg
from .test_gateway_e2e import unique


def _two_copies(gateway_url, http, photo: bytes) -> tuple[str, str]:
    name = unique("copy.jpg")
    first = http.post(f"{gateway_url}/api/images", files={"file": (name, photo)})
    second = http.post(
        f"{gateway_url}/api/images", files={"file": (name, photo)}, data={"keep_duplicate": "1"}
    )
    assert first.status_code == 201 and second.status_code == 201, second.text
    return first.json()["results"][0]["image"]["id"], second.json()["results"][0]["image"]["id"]


def _trashed(gateway_url, http, image_id: str) -> bool:
    return http.get(f"{gateway_url}/api/images/{image_id}").json()["trashed_at"] is not None


def test_keeping_a_copy_that_is_in_the_trash_is_refused_and_deletes_nothing(
    gateway_url, http, photo_jpegs
):
    keep, other = _two_copies(gateway_url, http, fresh_jpeg(photo_jpegs["coffee"]))
    assert http.delete(f"{gateway_url}/api/images/{keep}").status_code == 200

    reply = http.post(
        f"{gateway_url}/api/duplicates/resolve", json={"keep": keep, "remove": [other]}
    )

    assert reply.status_code == 409
    assert "trash" in reply.json()["error"]["message"]
    assert not _trashed(gateway_url, http, other)


def test_the_duplicates_page_refuses_the_same_with_a_message(gateway_url, http, photo_jpegs):
    keep, other = _two_copies(gateway_url, http, fresh_jpeg(photo_jpegs["china"]))
    assert http.delete(f"{gateway_url}/api/images/{keep}").status_code == 200
    page = http.get(f"{gateway_url}/duplicates").text
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)

    reply = http.post(
        f"{gateway_url}/duplicates/resolve",
        data={"csrf_token": token, "keep": keep, "members": [keep, other]},
    )

    assert reply.status_code == 409
    assert "trash" in re.search(r'id="error-message">([^<]*)', reply.text).group(1)
    assert not _trashed(gateway_url, http, other)
