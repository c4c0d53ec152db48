"""Routes that act on a selection of photos, without any service running: a selection that is
not a list of id strings is refused with a 400 naming it, before any service is asked (it was
a 500, or a string taken apart into one-letter ids). A yes/no parameter with another word
(`favourite=yes`) is a 400 too: it was read as "no", so `?favourite=yes` listed every photo."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/images/bulk-delete", {"ids": 5}),
        ("/api/images/bulk-delete", {"ids": {"a": 1}}),
        ("/api/images/bulk-tags", {"ids": None, "add": ["x"]}),
        ("/api/albums", {"name": "z", "image_ids": 7}),
        ("/api/albums/a1/images", {"ids": {"a": 1}}),
        ("/api/duplicates/resolve", {"keep": "a", "remove": [1]}),
    ],
)
def test_ids_that_are_not_a_list_of_strings_are_a_400_before_any_service_is_asked(
    offline_app, path, body
):
    reply = offline_app.test_client().post(path, json=body)

    assert reply.status_code == 400
    assert "ids" in reply.json["error"]["message"]


def test_a_zip_while_storage_is_away_is_a_503_not_a_broken_download(offline_app):
    reply = offline_app.test_client().get("/api/images/zip?ids=a,b")

    assert reply.status_code == 503
    assert reply.json["error"]["message"]


@pytest.mark.parametrize(
    ("method", "path", "name"),
    [
        ("get", "/api/images?favourite=yes", "favourite"),
        ("get", "/api/images?trashed=2", "trashed"),
        ("get", "/api/search?q=cat&favourites=maybe", "favourites"),
        ("delete", "/api/images/a?permanent=forever", "permanent"),
    ],
)
def test_a_yes_or_no_parameter_with_another_word_is_a_400_naming_it(
    offline_app, method, path, name
):
    reply = getattr(offline_app.test_client(), method)(path)

    assert reply.status_code == 400
    assert name in reply.json["error"]["message"]
