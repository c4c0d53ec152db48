"""What a thumbnail URL (and the mosaic) answers for each thumbnail state, against a real
storage gRPC server on port 0 and the real gateway app.

Storage's background thumbnailer is stopped here, so an upload stays PENDING until its
thumbnail is asked for: a whole photo's URL then makes it and answers 200 (as a READY one
does), and a real PNG damaged in its pixel data (it passes the structural check on the
acknowledged path) is found damaged by that same first ask and answers 404 with a placeholder
picture and `X-Thumbnail-State: failed`, or the JSON error with the thumbnail fields for a
client that asks for JSON. The mosaic of the damaged photo says so instead of a broken image,
and the other photos' mosaics still build (its thumbnail gives no tiles).
"""

from __future__ import annotations

import io
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image
from playwright.sync_api import Browser, expect
from werkzeug.serving import make_server

from gateway.app import create_app, stop_app
from gateway.placeholders import FAILED_SVG
from imagerepo.storage.v2 import storage_service_pb2 as pb
from imagerepo.storage.v2 import storage_service_pb2_grpc as pb_grpc
from service_runtime.grpc_server import channel_options, new_server
from storage_service.columnstore.store import ColumnStore
from storage_service.servicer import StorageServicer
from storage_service.servicer_v2 import StorageServicerV2
from tests.gateway.conftest import offline_config
from tests.support import png_damaged_in_pixels

from .browser_support import new_context, shoot
from .test_api_schemas import check

DAMAGED = "coffee damaged.png"
# Every <img> that finished loading without a picture (the broken-image sign).
BROKEN = "() => [...document.images].filter(i => i.complete && i.naturalWidth === 0 && i.src)"


@dataclass
class Setup:
    app: Flask
    client: FlaskClient
    stub: pb_grpc.StorageServiceStub
    servicer: StorageServicer


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """Real storage (v1 and v2 on one port 0) whose background thumbnailer is stopped, and the
    gateway app talking v2 to it (vision and search are not needed for these routes)."""
    store = ColumnStore.open(tmp_path_factory.mktemp("thumbnail-answers") / "store")
    servicer = StorageServicer(store)
    servicer.thumbnailer.stop()
    server = new_server(8)
    pb_grpc.add_StorageServiceServicer_to_server(StorageServicerV2(servicer), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=channel_options())
    app = create_app(offline_config(storage_address=f"127.0.0.1:{port}", rpc_timeout_s=30.0))
    yield Setup(app, app.test_client(), pb_grpc.StorageServiceStub(channel), servicer)
    stop_app(app)
    channel.close()
    server.stop(grace=None)
    store.close()


def _put(stub: pb_grpc.StorageServiceStub, data: bytes, filename: str, owner: str = "ann") -> str:
    header = pb.PutImageHeader(filename=filename, owner=owner, expected_size=len(data))
    messages = [pb.PutImageRequest(header=header), pb.PutImageRequest(chunk=data)]
    return str(stub.PutImage(iter(messages), timeout=30).image.id)


def _state(stub: pb_grpc.StorageServiceStub, image_id: str) -> int:
    reply = stub.GetImage(pb.GetImageRequest(image_id=image_id), timeout=30)
    return int(reply.image.thumbnail_state)


@pytest.fixture(scope="module")
def photos(setup: Setup, photo_jpegs: dict[str, bytes], photo_paths: dict[str, Path]) -> dict:
    whole = {
        name: _put(setup.stub, photo_jpegs[name], f"{name}.jpg") for name in ("chelsea", "rocket")
    }
    damaged = _put(setup.stub, png_damaged_in_pixels(photo_paths["coffee"].read_bytes()), DAMAGED)
    return {"whole": whole, "damaged": damaged}


class _Response:
    """A Flask test response read as check() reads a requests.Response."""

    def __init__(self, response) -> None:  # type: ignore[no-untyped-def]
        self.status_code = response.status_code
        self.headers = response.headers
        self.content = response.get_data()

    def json(self):  # type: ignore[no-untyped-def]
        import json

        return json.loads(self.content)


def test_a_pending_photos_thumbnail_is_made_on_the_first_ask_and_answers_200(setup, photos):
    image_id = photos["whole"]["chelsea"]
    assert _state(setup.stub, image_id) == pb.THUMBNAIL_STATE_PENDING
    shown = setup.client.get(f"/api/images/{image_id}").json
    assert shown["thumbnail_state"] == "pending"
    assert shown["thumbnail_detail"] == shown["thumbnail_text"] == ""

    reply = setup.client.get(f"/api/images/{image_id}/thumbnail")

    check("get", "/api/images/{image_id}/thumbnail", _Response(reply))
    assert reply.status_code == 200
    assert reply.mimetype == "image/webp"
    assert reply.headers["X-Thumbnail-State"] == "ready"
    assert "immutable" in reply.headers["Cache-Control"]
    with Image.open(io.BytesIO(reply.get_data())) as thumb:
        assert max(thumb.size) == 256
    assert _state(setup.stub, image_id) == pb.THUMBNAIL_STATE_READY
    # Its ETag answers 304 from then on, without asking storage.
    again = setup.client.get(
        f"/api/images/{image_id}/thumbnail", headers={"If-None-Match": reply.headers["ETag"]}
    )
    assert again.status_code == 304
    assert again.headers["X-Thumbnail-State"] == "ready"


def test_a_failed_photos_thumbnail_is_a_placeholder_picture_with_404(setup, photos):
    image_id = photos["damaged"]
    assert _state(setup.stub, image_id) == pb.THUMBNAIL_STATE_PENDING

    # What an <img> asks for: the first ask finds the file damaged.
    reply = setup.client.get(
        f"/api/images/{image_id}/thumbnail",
        headers={"Accept": "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"},
    )

    check("get", "/api/images/{image_id}/thumbnail", _Response(reply))
    assert reply.status_code == 404
    assert reply.mimetype == "image/svg+xml"
    assert reply.get_data() == FAILED_SVG
    svg = ET.fromstring(reply.get_data())
    assert svg.get("width") == svg.get("height") == "300"
    texts = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert texts == ["No preview", "file is damaged"]
    image = setup.client.get(f"/api/images/{image_id}").json
    assert image["thumbnail_state"] == "failed"
    assert reply.headers["X-Thumbnail-State"] == "failed"
    assert reply.headers["X-Thumbnail-Detail"] == image["thumbnail_detail"]
    assert "corrupt" in reply.headers["X-Thumbnail-Detail"]
    # Kept a minute at most, never as immutable, and no ETag a later real one would match.
    assert reply.headers["Cache-Control"] == "public, max-age=60"
    assert "ETag" not in reply.headers
    assert "Accept" in reply.headers["Vary"]
    # The preview size and a client with no Accept at all (curl, requests) get the same.
    for url, headers in [
        (f"/api/images/{image_id}/thumbnail?size=preview", {}),
        (f"/api/images/{image_id}/thumbnail", {"Accept": "*/*"}),
    ]:
        other = setup.client.get(url, headers=headers)
        assert (other.status_code, other.mimetype) == (404, "image/svg+xml"), url
        assert other.headers["X-Thumbnail-State"] == "failed"


def test_a_client_asking_for_json_gets_the_error_and_why(setup, photos):
    image_id = photos["damaged"]
    setup.client.get(f"/api/images/{image_id}/thumbnail")  # found damaged by now

    reply = setup.client.get(
        f"/api/images/{image_id}/thumbnail", headers={"Accept": "application/json"}
    )

    body = check("get", "/api/images/{image_id}/thumbnail", _Response(reply))
    assert reply.status_code == 404
    assert reply.headers["X-Thumbnail-State"] == "failed"
    assert body["thumbnail_state"] == "failed"
    assert "corrupt" in body["thumbnail_detail"]
    assert body["thumbnail_text"].startswith("no preview: the file is damaged")
    assert body["error"]["code"] == "not_found"
    assert body["error"]["message"].startswith("no thumbnail: the file is damaged")
    assert body["thumbnail_detail"] in body["error"]["message"]
    # An id that does not exist is a plain 404 error: no thumbnail state, no placeholder.
    missing = setup.client.get("/api/images/no-such-image/thumbnail")
    assert missing.status_code == 404
    assert missing.mimetype == "application/json"
    assert "X-Thumbnail-State" not in missing.headers


def test_the_mosaic_of_a_failed_photo_says_why_and_the_others_still_build(setup, photos):
    image_id = photos["damaged"]
    setup.client.get(f"/api/images/{image_id}/thumbnail")  # found damaged by now

    page = setup.client.get(f"/images/{image_id}/mosaic")

    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'id="mosaic-unavailable"' in html
    assert "Preview could not be made" in html
    assert "corrupt" in html
    assert 'id="mosaic"' not in html
    assert f"/api/images/{image_id}/thumbnail" not in html
    assert f'href="/api/images/{image_id}/original?download=1"' in html
    picture = setup.client.get(f"/images/{image_id}/mosaic.jpg")
    assert (picture.status_code, picture.mimetype) == (404, "image/svg+xml")
    assert picture.headers["X-Thumbnail-State"] == "failed"
    # Another photo's mosaic is built from the whole photos' tiles; the damaged one is left
    # out of the tile set instead of failing every mosaic.
    other = setup.client.get(f"/images/{photos['whole']['rocket']}/mosaic.jpg?columns=16")
    assert (other.status_code, other.mimetype) == (200, "image/jpeg")
    with Image.open(io.BytesIO(other.get_data())) as mosaic:
        assert mosaic.width == 16 * 24


@pytest.fixture(scope="module")
def served(setup: Setup) -> Iterator[str]:
    """The same gateway app over real HTTP, for the browser."""
    server = make_server("127.0.0.1", 0, setup.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)


@pytest.mark.parametrize(
    "viewport", [{"width": 1280, "height": 900}, {"width": 390, "height": 844}], ids=["1280", "390"]
)
def test_a_tile_drawn_while_pending_becomes_the_sign_once_found_damaged(
    browser: Browser, setup, served, photos, photo_jpegs, photo_paths, viewport
):
    """The gallery is drawn while two photos' thumbnails are still pending: the whole one's
    first ask makes its thumbnail, the damaged one's finds it damaged and answers the
    placeholder picture; the page then asks their state once and the damaged tile becomes the
    sign (no broken image, no placeholder left), and the viewer says why."""
    name = f"astronaut damaged {viewport['width']}.png"
    # Each viewport's own owner: the same bytes again would be the first upload, already failed.
    owner = f"viewer{viewport['width']}"
    sent = png_damaged_in_pixels(photo_paths["astronaut"].read_bytes())
    damaged = _put(setup.stub, sent, name, owner)
    whole = _put(setup.stub, photo_jpegs["china"], "china.jpg", owner)
    assert _state(setup.stub, damaged) == pb.THUMBNAIL_STATE_PENDING
    context = new_context(browser, viewport)
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        page.goto(f"{served}/")
        tile = page.locator(f'figure.tile[data-id="{damaged}"]')
        sign = tile.locator(".no-preview")
        expect(sign).to_be_visible()
        expect(sign).to_contain_text(name)
        expect(tile).to_have_attribute("data-thumb-state", "failed")
        assert tile.locator("img").count() == 0
        whole_tile = page.locator(f'figure.tile[data-id="{whole}"]')
        expect(whole_tile).to_have_attribute("data-thumb-state", "ready")
        page.wait_for_function("() => [...document.images].every(i => i.complete)")
        size = whole_tile.locator("img.thumb").evaluate("i => [i.naturalWidth, i.naturalHeight]")
        assert size[0] > 0 and size != [300, 300]
        assert page.evaluate(BROKEN) == []
        shoot(page, f"no-preview-drawn-pending-{viewport['width']}")
        tile.locator(".thumb-link").click()
        reason = page.locator("#lb-no-preview")
        expect(reason).to_be_visible()
        expect(reason).to_contain_text("corrupt")
        shoot(page, f"no-preview-drawn-pending-viewer-{viewport['width']}", full=False)
    finally:
        context.close()
