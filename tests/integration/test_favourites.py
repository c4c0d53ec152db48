"""Favourites through the REST API of the whole stack: star, list starred, unstar."""

from __future__ import annotations

import uuid

import requests

from .conftest import fresh_jpeg
from .test_api_schemas import check


def _upload(url: str, data: bytes) -> dict:
    name = f"fav-{uuid.uuid4().hex[:8]}.jpg"
    reply = requests.post(f"{url}/api/images", files={"file": (name, data)}, timeout=120)
    assert reply.status_code == 201, reply.text
    return reply.json()["results"][0]["image"]


def test_star_list_and_unstar_over_rest(gateway_url, photo_jpegs):
    url = gateway_url
    a = _upload(url, fresh_jpeg(photo_jpegs["chelsea"]))
    b = _upload(url, fresh_jpeg(photo_jpegs["rocket"]))
    assert a["favourite"] is False

    starred = requests.post(
        f"{url}/api/images/{a['id']}/favourite", json={"favourite": True}, timeout=60
    )
    assert check("post", "/api/images/{image_id}/favourite", starred)["favourite"] is True
    assert requests.get(f"{url}/api/images/{a['id']}", timeout=30).json()["favourite"] is True

    listed = check(
        "get",
        "/api/images",
        requests.get(f"{url}/api/images", params={"favourite": "1"}, timeout=30),
    )
    ids = [i["id"] for i in listed["images"]]
    assert a["id"] in ids and b["id"] not in ids
    assert all(i["favourite"] for i in listed["images"])

    # Search follows storage's feed: the favourites filter keeps only starred images.
    found = requests.get(
        f"{url}/api/search", params={"q": a["filename"], "favourites": "1"}, timeout=60
    )
    assert [h["image"]["id"] for h in check("get", "/api/search", found)["hits"]] == [a["id"]]
    other = requests.get(
        f"{url}/api/search", params={"q": b["filename"], "favourites": "1"}, timeout=60
    ).json()
    assert b["id"] not in [h["image"]["id"] for h in other["hits"]]

    bad = requests.post(
        f"{url}/api/images/{a['id']}/favourite", json={"favourite": "yes"}, timeout=30
    )
    assert bad.status_code == 400
    check("post", "/api/images/{image_id}/favourite", bad)

    requests.post(f"{url}/api/images/{a['id']}/favourite", json={"favourite": False}, timeout=60)
    listed = requests.get(f"{url}/api/images", params={"favourite": "1"}, timeout=30).json()
    assert a["id"] not in [i["id"] for i in listed["images"]]
