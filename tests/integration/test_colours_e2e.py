"""Dominant colours end to end on the real stack: vision names them, the analysis worker hands
them to storage, search indexes them from the feed, and colour words find and narrow photos."""

from __future__ import annotations

import time

import pytest
import requests

from imagerepo.storage.v1 import storage_service_pb2 as storage_pb

from .conftest import fresh_jpeg
from .test_gateway_e2e import unique, upload


@pytest.fixture(scope="module")
def uploaded(stack, gateway_url, photo_jpegs) -> dict[str, str]:
    names = ["flower", "coffee", "rocket", "chelsea"]
    with requests.Session() as http:
        files = [(unique(f"{n}.jpg"), fresh_jpeg(photo_jpegs[n])) for n in names]
        reply = upload(http, gateway_url, *files)
    assert reply.status_code == 201, reply.text
    results = reply.json()["results"]
    assert all(r["image"]["status"] == "ready" for r in results), results
    return {n: r["image"]["id"] for n, r in zip(names, results, strict=True)}


def _colours(stack, image_id: str) -> dict[str, float]:
    meta = stack.storage_stub().GetImage(storage_pb.GetImageRequest(image_id=image_id)).image
    return {c.name: c.share for c in meta.colours}


def _hits(http, gateway_url: str, query: str, wanted: str) -> list[dict]:
    """Search hits for `query`, waiting (briefly) until the feed has indexed `wanted`."""
    deadline = time.monotonic() + 30
    while True:
        reply = http.get(f"{gateway_url}/api/search", params={"q": query, "page_size": 50})
        assert reply.status_code == 200, reply.text
        hits = reply.json()["hits"]
        if wanted in [h["image"]["id"] for h in hits] or time.monotonic() > deadline:
            return hits
        time.sleep(0.2)


def test_storage_holds_the_colours_vision_named(stack, uploaded):
    assert {"red", "brown"} <= _colours(stack, uploaded["coffee"]).keys()
    rocket = _colours(stack, uploaded["rocket"])
    assert max(rocket, key=rocket.__getitem__) == "blue"
    assert "orange" in _colours(stack, uploaded["flower"])


def test_a_colour_word_finds_photos_of_that_colour(stack, uploaded, http, gateway_url):
    hits = _hits(http, gateway_url, "blue", uploaded["rocket"])
    ids = [h["image"]["id"] for h in hits]
    assert uploaded["rocket"] in ids
    assert uploaded["chelsea"] not in ids  # a brown cat is not blue
    assert "colours" in [r["field"] for r in hits[ids.index(uploaded["rocket"])]["reasons"]]


def test_orange_flower_is_a_flower_that_is_orange(stack, uploaded, http, gateway_url):
    hits = _hits(http, gateway_url, "orange flower", uploaded["flower"])
    ids = [h["image"]["id"] for h in hits]
    assert uploaded["flower"] in ids
    # Every hit before ours is orange too (other tests may upload the same photo).
    for hit in hits[: ids.index(uploaded["flower"]) + 1]:
        assert "orange" in _colours(stack, hit["image"]["id"]), hit
    # The orange espresso table does not make the coffee a flower.
    assert ids.index(uploaded["flower"]) < (
        ids.index(uploaded["coffee"]) if uploaded["coffee"] in ids else len(ids)
    )


def test_the_api_and_the_image_page_show_the_colours(stack, uploaded, http, gateway_url):
    image_id = uploaded["coffee"]
    reply = http.get(f"{gateway_url}/api/images/{image_id}", timeout=30)
    assert reply.status_code == 200, reply.text
    colours = reply.json()["colours"]
    assert {"red", "brown"} <= {c["name"] for c in colours}
    assert all(0 < c["share"] <= 1 for c in colours)

    page = http.get(f"{gateway_url}/images/{image_id}", timeout=30)
    assert page.status_code == 200
    assert "<h2>Colours</h2>" in page.text
    assert "background: red;" in page.text and "/search?q=brown" in page.text
