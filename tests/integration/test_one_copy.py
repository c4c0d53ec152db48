"""One copy per photo at the gateway: the same bytes uploaded again by the same owner are not
stored again (HTTP 200 naming the image already stored), unless a second copy is asked for;
the sha256 lookup tells a client what is stored before it sends anything."""

from __future__ import annotations

import hashlib
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from .conftest import fresh_jpeg


def _upload(url: str, name: str, data: bytes, headers=None, **params) -> requests.Response:
    return requests.post(
        f"{url}/api/images",
        files={"file": (name, data)},
        params=params,
        headers=headers or {},
        timeout=120,
    )


def _copies(url: str, data: bytes, headers=None) -> list[str]:
    digest = hashlib.sha256(data).hexdigest()
    reply = requests.get(f"{url}/api/images/by-sha256/{digest}", headers=headers, timeout=30)
    assert reply.status_code == 200, reply.text
    return [image["id"] for image in reply.json()["images"]]


def test_the_same_bytes_again_answer_200_with_the_image_already_stored(gateway_url, photo_jpegs):
    data = fresh_jpeg(photo_jpegs["rocket"])
    first = _upload(gateway_url, "rocket.jpg", data)

    again = _upload(gateway_url, "rocket-renamed.jpg", data)

    assert first.status_code == 201
    assert again.status_code == 200
    result = again.json()["results"][0]
    assert result["result"] == "already_stored" and result["already_stored"] is True
    assert result["image"]["id"] == first.json()["results"][0]["image"]["id"]
    assert result["image"]["filename"] == "rocket.jpg"
    assert again.json()["already_stored"] == 1 and again.json()["stored"] == 0
    assert "Location" not in again.headers
    assert _copies(gateway_url, data) == [result["image"]["id"]]


def test_keep_duplicate_stores_a_second_copy(gateway_url, photo_jpegs):
    data = fresh_jpeg(photo_jpegs["china"])
    first = _upload(gateway_url, "china.jpg", data).json()["results"][0]["image"]["id"]

    kept = _upload(gateway_url, "china-2.jpg", data, keep_duplicate="1")

    assert kept.status_code == 201
    result = kept.json()["results"][0]
    assert result["result"] == "duplicate" and result["duplicate_of"] == [first]
    assert sorted(_copies(gateway_url, data)) == sorted([first, result["image"]["id"]])


def test_identical_uploads_at_the_same_moment_store_one_copy(gateway_url, photo_jpegs):
    data = fresh_jpeg(photo_jpegs["flower"])

    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda i: _upload(gateway_url, f"f{i}.jpg", data), range(8)))

    statuses = sorted(r.status_code for r in replies)
    ids = {r.json()["results"][0]["image"]["id"] for r in replies}
    assert statuses == [200] * 7 + [201]
    assert len(ids) == 1
    assert _copies(gateway_url, data) == list(ids)


def test_lookup_answers_per_digest_in_order(gateway_url, photo_jpegs):
    stored = fresh_jpeg(photo_jpegs["coffee"])
    image_id = _upload(gateway_url, "coffee.jpg", stored).json()["results"][0]["image"]["id"]
    digests = [hashlib.sha256(b"never sent").hexdigest(), hashlib.sha256(stored).hexdigest()]

    reply = requests.post(f"{gateway_url}/api/images/lookup", json={"sha256": digests}, timeout=30)

    assert reply.status_code == 200
    matches = reply.json()["matches"]
    assert [m["sha256"] for m in matches] == digests
    assert matches[0]["images"] == []
    assert [i["id"] for i in matches[1]["images"]] == [image_id]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"sha256": ["abc"]}, "is not a sha256"),
        ({"sha256": "0" * 64}, "sha256"),
        ({"sha256": ["0" * 64] * 1001}, "at most 1000"),
    ],
)
def test_lookup_of_bad_digests_is_400(gateway_url, body, message):
    reply = requests.post(f"{gateway_url}/api/images/lookup", json=body, timeout=30)

    assert reply.status_code == 400
    assert message in reply.json()["error"]["message"]


def test_lookup_by_a_path_that_is_no_digest_is_400(gateway_url):
    reply = requests.get(f"{gateway_url}/api/images/by-sha256/not-a-digest", timeout=30)

    assert reply.status_code == 400


@pytest.fixture(scope="module")
def two_owner_gateway(stack):
    server = stack.start_gateway(api_keys=frozenset({"ann:one", "bob:two"}))
    yield server
    server.stop()


def test_one_copy_is_per_owner(two_owner_gateway, photo_jpegs):
    url = two_owner_gateway.url
    ann, bob = {"Authorization": "Bearer ann:one"}, {"Authorization": "Bearer bob:two"}
    data = fresh_jpeg(photo_jpegs["chelsea"])

    by_ann = _upload(url, "cat.jpg", data, headers=ann)
    bob_before = _copies(url, data, headers=bob)
    by_bob = _upload(url, "cat.jpg", data, headers=bob)

    assert by_ann.status_code == 201
    assert bob_before == []
    assert by_bob.status_code == 201
    assert _copies(url, data, headers=bob) == [by_bob.json()["results"][0]["image"]["id"]]


def test_upload_page_says_already_in_your_library_with_a_link(gateway_url, photo_jpegs):
    data = fresh_jpeg(photo_jpegs["motorcycle"])
    with requests.Session() as browser:
        form = browser.get(f"{gateway_url}/upload", timeout=30).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
        assert "Keep a second copy" in form

        def send() -> str:
            return browser.post(
                f"{gateway_url}/upload",
                files={"files": ("moto.jpg", data)},
                data={"csrf_token": token},
                timeout=120,
            ).text

        send()
        page = send()

    image_id = _copies(gateway_url, data)[0]
    assert re.search(rf'<a href="/images/{image_id}">already in your library</a>', page), page
