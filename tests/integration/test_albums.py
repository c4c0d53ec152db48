"""Albums over REST on the whole stack (storage keeps them, search filters by them): create,
add, list, page, rename, search "in album", trash and restore, remove, delete; owners; every
answer checked against gateway/openapi.json."""

from __future__ import annotations

import uuid

import pytest
import requests

from .conftest import fresh_jpeg
from .test_api_schemas import check


def _upload(url: str, data: bytes, name: str, headers: dict | None = None) -> str:
    reply = requests.post(
        f"{url}/api/images", files={"file": (name, data)}, headers=headers or {}, timeout=120
    )
    assert reply.status_code == 201, reply.text
    return reply.json()["results"][0]["image"]["id"]


def _search(url: str, **params) -> dict:
    reply = requests.get(f"{url}/api/search", params=params, timeout=60)
    return check("get", "/api/search", reply)


def _hit_ids(body: dict) -> list[str]:
    return [h["image"]["id"] for h in body["hits"]]


def test_album_lifecycle_over_rest(gateway_url, photo_jpegs):
    url = gateway_url
    word = f"zq{uuid.uuid4().hex[:8]}"
    a = _upload(url, fresh_jpeg(photo_jpegs["coffee"]), f"{word}-a.jpg")
    b = _upload(url, fresh_jpeg(photo_jpegs["astronaut"]), f"{word}-b.jpg")
    c = _upload(url, fresh_jpeg(photo_jpegs["coffee"]), f"{word}-c.jpg")
    name = f"Trip {word}"

    made = requests.post(f"{url}/api/albums", json={"name": name, "image_ids": [b]}, timeout=30)
    album = check("post", "/api/albums", made)
    added = requests.post(
        f"{url}/api/albums/{album['id']}/images", json={"ids": [a, b, "no-such-image"]}, timeout=30
    )
    got = requests.get(f"{url}/api/albums/{album['id']}", timeout=30)

    assert made.status_code == 201 and made.headers["Location"] == f"/api/albums/{album['id']}"
    assert album["name"] == name and album["image_count"] == 1
    body = check("post", "/api/albums/{album_id}/images", added)
    assert body["added"] == [a] and body["already_in_album"] == [b]
    assert body["not_found"] == ["no-such-image"] and body["album"]["image_count"] == 2
    page = check("get", "/api/albums/{album_id}", got)
    assert [i["id"] for i in page["images"]] == [b, a]
    assert page["cover_image_id"] == b and page["links"]["cover"].endswith(f"/{b}/thumbnail")
    listed = check("get", "/api/albums", requests.get(f"{url}/api/albums", timeout=30))
    assert album["id"] in [x["id"] for x in listed["albums"]]
    holding = requests.get(f"{url}/api/albums", params={"image_id": c}, timeout=30)
    assert album["id"] not in [x["id"] for x in check("get", "/api/albums", holding)["albums"]]

    # Search limited to the album: by id, by "in album <name>", and the album alone.
    assert sorted(_hit_ids(_search(url, q=word))) == sorted([a, b, c])
    assert sorted(_hit_ids(_search(url, q=word, album=album["id"]))) == sorted([a, b])
    by_name = _search(url, q=f"{word}-a in album {name.lower()}")
    assert _hit_ids(by_name)[0] == a and c not in _hit_ids(by_name)
    assert by_name["album"]["id"] == album["id"]
    alone = _search(url, q=f'in album "{name}"')
    assert _hit_ids(alone) == [b, a]
    nothing = _search(url, q=f"{word} in album no such album {word}")
    assert nothing["hits"] == [] and "no album named" in nothing["note"]

    # A photo in the trash leaves the album until it is restored.
    requests.delete(f"{url}/api/images/{b}", timeout=60).raise_for_status()
    after_trash = requests.get(f"{url}/api/albums/{album['id']}", timeout=30).json()
    assert [i["id"] for i in after_trash["images"]] == [a] and after_trash["image_count"] == 1
    requests.post(f"{url}/api/images/{b}/restore", timeout=60).raise_for_status()
    assert [
        i["id"]
        for i in requests.get(f"{url}/api/albums/{album['id']}", timeout=30).json()["images"]
    ] == [b, a]

    renamed = requests.patch(
        f"{url}/api/albums/{album['id']}", json={"name": f"{name} again"}, timeout=30
    )
    assert check("patch", "/api/albums/{album_id}", renamed)["name"] == f"{name} again"
    removed = requests.delete(
        f"{url}/api/albums/{album['id']}/images", json={"ids": [b, c]}, timeout=30
    )
    body = check("delete", "/api/albums/{album_id}/images", removed)
    assert body["removed"] == [b] and body["not_in_album"] == [c]
    deleted = requests.delete(f"{url}/api/albums/{album['id']}", timeout=30)
    assert check("delete", "/api/albums/{album_id}", deleted)["id"] == album["id"]
    gone = requests.get(f"{url}/api/albums/{album['id']}", timeout=30)
    assert gone.status_code == 404
    check("get", "/api/albums/{album_id}", gone)
    assert requests.get(f"{url}/api/images/{a}", timeout=30).status_code == 200


def test_bad_album_requests_are_4xx_with_a_message(gateway_url):
    url = gateway_url
    name = f"dup {uuid.uuid4().hex[:8]}"
    first = requests.post(f"{url}/api/albums", json={"name": name}, timeout=30)
    album = check("post", "/api/albums", first)

    cases = [
        (
            requests.post(f"{url}/api/albums", json={"name": name.upper()}, timeout=30),
            409,
            "post",
            "/api/albums",
        ),
        (
            requests.post(f"{url}/api/albums", json={"name": "  "}, timeout=30),
            400,
            "post",
            "/api/albums",
        ),
        (
            requests.post(f"{url}/api/albums", json={"name": "x" * 201}, timeout=30),
            400,
            "post",
            "/api/albums",
        ),
        (requests.post(f"{url}/api/albums", json={}, timeout=30), 400, "post", "/api/albums"),
        (
            requests.patch(f"{url}/api/albums/nope", json={"name": "x"}, timeout=30),
            404,
            "patch",
            "/api/albums/{album_id}",
        ),
        (
            requests.post(f"{url}/api/albums/{album['id']}/images", json={"ids": []}, timeout=30),
            400,
            "post",
            "/api/albums/{album_id}/images",
        ),
        (
            requests.post(f"{url}/api/albums/{album['id']}/images", json={"ids": "a"}, timeout=30),
            400,
            "post",
            "/api/albums/{album_id}/images",
        ),
        (
            requests.get(f"{url}/api/albums/{album['id']}?page_size=0", timeout=30),
            400,
            "get",
            "/api/albums/{album_id}",
        ),
    ]
    for reply, status, method, path in cases:
        assert reply.status_code == status, (path, reply.text)
        assert check(method, path, reply)["error"]["message"]


@pytest.fixture(scope="module")
def two_owners(stack):
    server = stack.start_gateway(api_keys=frozenset({"ann:one", "bob:two"}))
    yield server
    server.stop()


def test_only_the_owner_changes_an_album_and_adds_only_their_photos(two_owners, photo_jpegs):
    url = two_owners.url
    ann, bob = {"Authorization": "Bearer ann:one"}, {"Authorization": "Bearer bob:two"}
    anns = _upload(url, fresh_jpeg(photo_jpegs["chelsea"]), "ann.jpg", ann)
    bobs = _upload(url, fresh_jpeg(photo_jpegs["chelsea"]), "bob.jpg", bob)
    album = requests.post(
        f"{url}/api/albums", json={"name": "Ann's"}, headers=ann, timeout=30
    ).json()

    by_bob = requests.post(
        f"{url}/api/albums/{album['id']}/images", json={"ids": [bobs]}, headers=bob, timeout=30
    )
    rename_by_bob = requests.patch(
        f"{url}/api/albums/{album['id']}", json={"name": "mine"}, headers=bob, timeout=30
    )
    anonymous = requests.post(f"{url}/api/albums", json={"name": "x"}, timeout=30)
    by_ann = requests.post(
        f"{url}/api/albums/{album['id']}/images",
        json={"ids": [anns, bobs]},
        headers=ann,
        timeout=30,
    )

    assert by_bob.status_code == 403 and rename_by_bob.status_code == 403
    check("post", "/api/albums/{album_id}/images", by_bob)
    assert anonymous.status_code == 401
    body = check("post", "/api/albums/{album_id}/images", by_ann)
    assert body["added"] == [anns] and body["not_found"] == [bobs]
    bobs_list = requests.get(f"{url}/api/albums", headers=bob, timeout=30).json()["albums"]
    assert album["id"] not in [x["id"] for x in bobs_list]
