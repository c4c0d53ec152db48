"""Hostile uploads: each gets a clear 4xx message and leaves nothing half-stored."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from PIL import Image

from .conftest import GatewayServer, Stack, fresh_jpeg


def _upload(http, url: str, name: str, data: bytes):
    return http.post(f"{url}/api/images", files={"file": (name, data)}, timeout=120)


def _footprint(stack: Stack, http, url: str) -> tuple[int, int]:
    """(images in storage, documents in search)."""
    images = http.get(f"{url}/api/images", params={"page_size": 1}).json()["total_count"]
    documents = http.get(f"{url}/api/status").json()["search"]["document_count"]
    return images, documents


def _bomb_png() -> bytes:
    """A tiny PNG that decodes to 200 million pixels."""
    buf = io.BytesIO()
    Image.new("1", (20000, 10000)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def small_limit_gateway(stack: Stack) -> Iterator[GatewayServer]:
    """A second gateway over the same services with a 50 KB upload limit."""
    server = stack.start_gateway(max_upload_bytes=50_000)
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("name", "data", "status", "message"),
    [
        ('<script>alert("x")</script>.jpg', b"photo", 400, "'<' or '>'"),
        ("../../etc/cron.d/evil.jpg", b"photo", 400, "holds a path"),
        ("..\\..\\windows\\evil.jpg", b"photo", 400, "holds a path"),
        ("holiday.jpg", b"#!/bin/sh\nrm -rf /\n", 415, "not an image"),
        ("empty.jpg", b"", 400, "empty"),
    ],
)
def test_hostile_upload_is_refused_with_clear_message(
    stack, http, gateway_url, photo_jpegs, name, data, status, message
):
    payload = photo_jpegs["coffee"] if data == b"photo" else data
    before = _footprint(stack, http, gateway_url)

    reply = _upload(http, gateway_url, name, payload)

    assert reply.status_code == status
    assert message in reply.json()["error"]["message"]
    assert reply.json()["results"][0]["result"] == "rejected"
    assert _footprint(stack, http, gateway_url) == before


def test_decompression_bomb_is_refused_and_not_stored(stack, http, gateway_url):
    before = _footprint(stack, http, gateway_url)

    reply = _upload(http, gateway_url, "bomb.png", _bomb_png())

    assert reply.status_code == 400
    assert "decompression bomb" in reply.json()["error"]["message"]
    assert _footprint(stack, http, gateway_url) == before
    assert http.get(f"{gateway_url}/api/images/by-filename/bomb.png").json()["images"] == []


def test_truncated_jpeg_is_refused_and_not_stored(stack, http, gateway_url, photo_jpegs):
    data = photo_jpegs["astronaut"]
    before = _footprint(stack, http, gateway_url)

    reply = _upload(http, gateway_url, "cut.jpg", data[: len(data) // 2])

    assert reply.status_code == 400
    assert "truncated" in reply.json()["error"]["message"]
    assert _footprint(stack, http, gateway_url) == before


def test_oversized_upload_is_413_and_not_stored(stack, http, small_limit_gateway, photo_jpegs):
    url = small_limit_gateway.url
    big = photo_jpegs["astronaut"]
    assert len(big) > 50_000
    before = _footprint(stack, http, url)

    reply = _upload(http, url, "big.jpg", big)

    assert reply.status_code == 413
    assert "limit" in reply.json()["error"]["message"]
    assert _footprint(stack, http, url) == before


def test_mixed_batch_stores_good_files_and_reports_bad_ones(stack, http, gateway_url, photo_jpegs):
    files = [
        ("files", ("good-flower.jpg", fresh_jpeg(photo_jpegs["flower"]))),
        ("files", ("fake.png", b"GIF? no, text")),
    ]

    reply = http.post(f"{gateway_url}/api/images", files=files, timeout=120)

    body = reply.json()
    assert reply.status_code == 207
    assert [r["result"] for r in body["results"]] == ["stored", "rejected"]
    assert body["results"][1]["http_status"] == 415
    assert (body["stored"], body["rejected"]) == (1, 1)


def test_hostile_tag_is_escaped_in_the_image_page(http, gateway_url, photo_jpegs):
    stored = _upload(http, gateway_url, "tagged & 'quoted'.jpg", photo_jpegs["china"]).json()
    image_id = stored["results"][0]["image"]["id"]
    hostile = '<img src=x onerror="alert(1)">'

    http.post(f"{gateway_url}/api/images/{image_id}/tags", json={"add": [hostile]})
    page = http.get(f"{gateway_url}/images/{image_id}").text

    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in page
    assert "tagged &amp; &#39;quoted&#39;.jpg" in page


def test_malformed_tags_body_is_400(http, gateway_url, photo_jpegs):
    stored = _upload(http, gateway_url, "tagme.jpg", photo_jpegs["coffee"]).json()
    image_id = stored["results"][0]["image"]["id"]

    not_json = http.post(f"{gateway_url}/api/images/{image_id}/tags", data="add=x")
    not_list = http.post(f"{gateway_url}/api/images/{image_id}/tags", json={"add": "x"})
    too_long = http.post(f"{gateway_url}/api/images/{image_id}/tags", json={"add": ["x" * 65]})

    assert [r.status_code for r in (not_json, not_list, too_long)] == [400, 400, 400]
    assert "JSON object" in not_json.json()["error"]["message"]
