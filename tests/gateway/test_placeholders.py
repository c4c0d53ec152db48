"""The placeholder pictures a thumbnail URL answers with when there is no thumbnail to send
(gateway/placeholders.py), and the setting of the busy answer's Retry-After.

What the route answers with real storage (failed, busy, its deadline) is tested against a
real storage server in tests/integration/test_thumbnail_answers.py; here, the pictures
themselves and the route with storage away.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from gateway.app import create_app, stop_app
from gateway.config import GatewayConfig
from gateway.placeholders import FAILED_SVG, PENDING_SVG
from tests.gateway.conftest import offline_config

SVG = "{http://www.w3.org/2000/svg}"


def _parts(svg: bytes) -> tuple[ET.Element, list[str], str]:
    root = ET.fromstring(svg)
    texts = [str(t.text) for t in root.iter(f"{SVG}text")]
    style = str(root.find(f"{SVG}style").text)  # type: ignore[union-attr]
    return root, texts, style


def test_the_pending_picture_is_the_failed_ones_drawing_with_its_own_sign_and_words():
    pending, pending_texts, pending_style = _parts(PENDING_SVG)
    failed, failed_texts, failed_style = _parts(FAILED_SVG)

    assert pending_texts == ["Preview", "being made"]
    assert failed_texts == ["No preview", "file is damaged"]
    assert pending.get("aria-label", "").startswith("Preview being made")
    assert pending.find(f"{SVG}title").text == pending.get("aria-label")  # type: ignore[union-attr]
    # Square, the same size, background and stripes: one drawing, two signs.
    for attr in ("width", "height", "viewBox"):
        assert pending.get(attr) == failed.get(attr)
    assert pending.get("width") == pending.get("height") == "300"
    assert [r.attrib for r in pending.iter(f"{SVG}rect")][:3] == [
        r.attrib for r in failed.iter(f"{SVG}rect")
    ][:3]
    # Its own sign (an hourglass, not the slashed picture) in its own colour, light and dark.
    assert "M7 5l34 38" in FAILED_SVG.decode() and "M7 5l34 38" not in PENDING_SVG.decode()
    colours = re.compile(r"\.ic\{color:(#[0-9a-f]{6})\}")
    assert colours.findall(pending_style) == ["#2f5fb3", "#8ab4f8"]
    assert colours.findall(failed_style) == ["#b3261e", "#ff8a80"]
    assert "prefers-color-scheme:dark" in pending_style
    # Larger words than the failed one's; otherwise the same style.
    sizes = re.compile(r"font:(?:600 )?(\d+)px")
    assert sizes.findall(pending_style) == ["24", "16"]
    assert sizes.findall(failed_style) == ["18", "13"]
    same = [sizes.sub("", colours.sub("", style)) for style in (pending_style, failed_style)]
    assert same[0] == same[1]
    assert len(PENDING_SVG) < 1500


def test_a_thumbnail_asked_for_while_storage_is_away_is_the_plain_503(offline_app):
    """No picture and no Retry-After: storage not answering is not storage busy."""
    reply = offline_app.test_client().get(
        "/api/images/abc/thumbnail", headers={"Accept": "image/webp,image/*,*/*;q=0.8"}
    )

    assert reply.status_code == 503
    assert reply.mimetype == "application/json"
    assert reply.json["error"]["message"] == "the storage service is unavailable; try again shortly"
    assert "X-Thumbnail-State" not in reply.headers
    assert "Retry-After" not in reply.headers


def test_the_busy_answers_retry_after_is_a_setting():
    assert GatewayConfig().thumbnail_retry_after_s == 2
    assert GatewayConfig.from_env({}).thumbnail_retry_after_s == 2
    configured = GatewayConfig.from_env({"GATEWAY_THUMBNAIL_RETRY_AFTER_S": "5"})
    assert configured.thumbnail_retry_after_s == 5


def test_the_pages_carry_the_retry_after_for_their_script():
    """An <img> cannot read its answer's Retry-After: every page says it (data-thumb-retry-s
    on <body>) and app.js waits that long before asking again."""
    app = create_app(offline_config(thumbnail_retry_after_s=5))
    try:
        page = app.test_client().get("/upload").get_data(as_text=True)
    finally:
        stop_app(app)
    assert '<body data-thumb-retry-s="5">' in page
