"""Album routes without any service running: private mode sends strangers to the login page
(pages) or answers 401 (API); writes need a key; storage away is a 503 with a message; the
"in album" phrase is split off a query."""

from __future__ import annotations

import pytest

from gateway.albums import split_album_phrase


def test_a_private_gateway_sends_strangers_to_log_in(keyed_app):
    client = keyed_app.test_client()

    page = client.get("/albums", headers={"Accept": "text/html"})
    api = client.get("/api/albums")

    assert page.status_code == 303 and "/login" in page.headers["Location"]
    assert api.status_code == 401 and api.json["error"]["message"]


def test_album_writes_need_a_key(keyed_app):
    client = keyed_app.test_client()

    made = client.post("/api/albums", json={"name": "x"})
    renamed = client.patch("/api/albums/a1", json={"name": "x"})
    added = client.post("/api/albums/a1/images", json={"ids": ["i"]})

    assert [made.status_code, renamed.status_code, added.status_code] == [401, 401, 401]


def test_storage_away_is_503_with_a_message(offline_app):
    reply = offline_app.test_client().get("/api/albums")

    assert reply.status_code == 503
    assert reply.json["error"]["message"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("cat in album Summer 2019", ("cat", "Summer 2019")),
        ('in album "Trip to Rome" sunset', ("sunset", "Trip to Rome")),
        ("in album Rome", ("", "Rome")),
        ("IN ALBUM  Rome  ", ("", "Rome")),
        ("cat in the garden", ("cat in the garden", "")),
        ("violin in albumen", ("violin in albumen", "")),
    ],
)
def test_the_in_album_phrase_is_split_off_the_query(query, expected):
    assert split_album_phrase(query) == expected
