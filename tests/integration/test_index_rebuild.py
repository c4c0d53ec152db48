"""A lost search index is rebuilt from storage: on request (API, `imagerepo reindex`) and by
the gateway itself when it finds search empty while storage holds analysed images."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from gateway.cli import run_reindex

from .conftest import Stack, build_stack, fresh_jpeg


@pytest.fixture
def own_stack(tmp_path, vision_engine) -> Iterator[Stack]:
    built = build_stack(tmp_path, vision_engine, reconcile_interval_s=0.0)
    yield built
    built.close()


def _upload(url: str, name: str, data: bytes) -> str:
    reply = requests.post(f"{url}/api/images", files={"file": (name, data)}, timeout=120)
    assert reply.status_code == 201, reply.text
    assert reply.json()["results"][0]["image"]["status"] == "ready"
    return str(reply.json()["results"][0]["image"]["id"])


def _hits(url: str, query: str) -> list[str]:
    reply = requests.get(f"{url}/api/search", params={"q": query}, timeout=30)
    return [hit["image"]["id"] for hit in reply.json()["hits"]]


def test_reindex_brings_back_a_lost_index_with_tags_and_without_deleted_images(
    own_stack, photo_jpegs
):
    url = own_stack.gateway.url
    cat = _upload(url, "chelsea.jpg", fresh_jpeg(photo_jpegs["chelsea"]))
    coffee = _upload(url, "coffee.jpg", fresh_jpeg(photo_jpegs["coffee"]))
    rocket = _upload(url, "rocket.jpg", fresh_jpeg(photo_jpegs["rocket"]))
    requests.post(f"{url}/api/images/{coffee}/tags", json={"add": ["breakfast"]}, timeout=30)
    requests.delete(f"{url}/api/images/{rocket}", timeout=30)
    own_stack.lose_search_index()
    lost = _hits(url, "espresso")

    status = run_reindex(url, progress=False, poll_s=0.1)

    assert lost == []
    assert status["state"] == "done", status
    assert (status["total"], status["streamed"], status["indexed"]) == (2, 2, 2)
    assert _hits(url, "espresso") == [coffee]
    assert _hits(url, "breakfast") == [coffee]
    assert _hits(url, "kitten")[:1] == [cat]
    assert rocket not in _hits(url, "rocket")
    similar = requests.get(f"{url}/api/images/{cat}/similar", timeout=30).json()["similar"]
    assert [hit["image"]["id"] for hit in similar] == [coffee]
    page = requests.get(f"{url}/status", timeout=30).text
    assert "done: 2 of 2 streamed, 2 indexed" in page


def test_rebuild_needs_an_api_key_when_keys_are_set(own_stack):
    keyed = own_stack.start_gateway(api_keys=frozenset({"alice:wonderland"}), private=False)
    try:
        refused = requests.post(f"{keyed.url}/api/index/rebuild", timeout=30)
        progress = requests.get(f"{keyed.url}/api/index/rebuild", timeout=30)
    finally:
        keyed.stop()

    assert refused.status_code == 401
    assert progress.json()["state"] == "idle"


def test_a_gateway_that_finds_the_index_empty_rebuilds_it_by_itself(own_stack, photo_jpegs):
    coffee = _upload(own_stack.gateway.url, "coffee.jpg", fresh_jpeg(photo_jpegs["coffee"]))
    own_stack.lose_search_index()

    restarted = own_stack.start_gateway(reconcile_interval_s=0.2)
    try:
        deadline = time.monotonic() + 60
        while _hits(restarted.url, "espresso") != [coffee] and time.monotonic() < deadline:
            time.sleep(0.2)
        found = _hits(restarted.url, "espresso")
        progress = requests.get(f"{restarted.url}/api/index/rebuild", timeout=30).json()
    finally:
        restarted.stop()

    assert found == [coffee]
    assert progress["state"] == "done" and "search index empty" in progress["reason"]
