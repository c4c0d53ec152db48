"""What search says in words, end to end on the real stack: a query in another language says
how it was read, and a word no photo carries shows the closest concepts with a plain note, in
the JSON API and on the search page."""

from __future__ import annotations

import time

import pytest
import requests

from .browser_support import wait_searchable
from .conftest import fresh_jpeg
from .test_gateway_e2e import unique, upload


@pytest.fixture(scope="module")
def cat_id(stack, gateway_url, photo_jpegs) -> str:
    with requests.Session() as http:
        reply = upload(
            http, gateway_url, (unique("IMG_0412.jpg"), fresh_jpeg(photo_jpegs["chelsea"]))
        )
    assert reply.status_code == 201, reply.text
    image = reply.json()["results"][0]["image"]
    assert image["status"] == "ready", image
    return image["id"]


def _search(http, gateway_url: str, query: str, wanted: str) -> tuple[dict, list[str]]:
    """The API's first page for `query` and the ids of every hit over its pages, waiting
    (briefly) until the feed has indexed `wanted`. The stack is shared: other tests' photos of
    the same cat may outrank this one, so it is looked for on every page, not only the first."""
    deadline = time.monotonic() + 30
    while True:
        first, ids, token = None, [], ""
        for _ in range(20):
            params = {"q": query, "page_size": 50, "page_token": token}
            reply = http.get(f"{gateway_url}/api/search", params=params)
            assert reply.status_code == 200, reply.text
            body = reply.json()
            first = first or body
            ids += [h["image"]["id"] for h in body["hits"]]
            token = body.get("next_page_token", "")
            if wanted in ids or not token:
                break
        if wanted in ids or time.monotonic() > deadline:
            return first, ids
        time.sleep(0.2)


def test_a_word_no_photo_carries_shows_the_closest_concept_and_says_so(
    stack, cat_id, http, gateway_url
):
    # The library has a tabby cat and no lion: a page with the cat beats an empty one, and it
    # says plainly why the cat is there.
    body, found = _search(http, gateway_url, "lion", cat_id)
    assert cat_id in found
    assert body["closest"], body
    assert body["note"].startswith("no photo is labelled 'lion'; showing the closest: ")
    assert body["closest"][0] in body["note"]
    page = http.get(f"{gateway_url}/search", params={"q": "lion"}, timeout=30)
    assert page.status_code == 200
    assert 'id="search-note">No photo is labelled' in page.text
    assert body["closest"][0] in page.text


def test_a_query_in_german_says_how_it_was_read(stack, cat_id, http, gateway_url):
    body, found = _search(http, gateway_url, "Katze", cat_id)
    assert cat_id in found
    assert "German" in body["note"] and "cat" in body["note"], body["note"]
    assert body["closest"] == []
    page = http.get(f"{gateway_url}/search", params={"q": "Katze"}, timeout=30)
    assert "(German)" in page.text.split('id="search-note">', 1)[1].split("</p>", 1)[0]


def test_a_word_the_library_knows_needs_no_note(stack, cat_id, http, gateway_url):
    body, found = _search(http, gateway_url, "cat", cat_id)
    assert cat_id in found
    assert body["note"] == "" and body["closest"] == []


def test_a_word_nothing_is_close_to_says_so_in_words(stack, cat_id, http, gateway_url):
    # The cat is indexed first (so the library has labels to be close to); no photo matches
    # "1887", so waiting for the cat among its hits would only wait out the whole deadline.
    wait_searchable(gateway_url, "cat", [cat_id])
    reply = http.get(f"{gateway_url}/api/search", params={"q": "1887", "page_size": 50})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["hits"] == [] and body["closest"] == []
    assert body["note"] == "no photo matches '1887', and nothing in the library is close to it"
    page = http.get(f"{gateway_url}/search", params={"q": "1887"}, timeout=30)
    assert 'id="search-note">No photo matches' in page.text
