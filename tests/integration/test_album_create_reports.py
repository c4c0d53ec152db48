"""Creating an album with its first photos over the REST API, against the real stack: ids
storage could not add (gone, or another owner's) are named in the answer's `not_found`, as
adding to an album already did; the album was made without them and the answer did not say."""

from __future__ import annotations

import uuid

from .conftest import fresh_jpeg
from .test_gateway_e2e import unique, upload


def test_an_album_made_with_an_unknown_id_names_it_in_not_found(gateway_url, http, photo_jpegs):
    stored = upload(http, gateway_url, (unique("coffee.jpg"), fresh_jpeg(photo_jpegs["coffee"])))
    assert stored.status_code == 201, stored.text
    image_id = stored.json()["results"][0]["image"]["id"]

    reply = http.post(
        f"{gateway_url}/api/albums",
        json={"name": f"Kitchen {uuid.uuid4().hex[:6]}", "image_ids": [image_id, "gone"]},
    )

    assert reply.status_code == 201, reply.text
    assert reply.json()["image_count"] == 1
    assert reply.json()["not_found"] == ["gone"]


def test_an_album_made_without_photos_has_nothing_not_found(gateway_url, http):
    reply = http.post(f"{gateway_url}/api/albums", json={"name": f"Empty {uuid.uuid4().hex[:6]}"})

    assert reply.status_code == 201, reply.text
    assert reply.json()["not_found"] == []
