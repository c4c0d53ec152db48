"""What a thumbnail URL (and the mosaic) answers for each thumbnail state, against a real
storage gRPC server on port 0 and the real gateway app.

Storage's background thumbnailer is stopped here, so an upload stays PENDING until its
thumbnail is asked for: a whole photo's URL then makes it and answers 200 (as a READY one
does), and a real PNG damaged in its pixel data (it passes the structural check on the
acknowledged path) is found damaged by that same first ask and answers 404 with a placeholder
picture and `X-Thumbnail-State: failed`, or the JSON error with the thumbnail fields for a
client that asks for JSON. The mosaic of the damaged photo says so instead of a broken image,
and the other photos' mosaics still build (its thumbnail gives no tiles).

Storage busy: the servicer's own decode budget is taken (as a long decode of a large image
takes it) and storage waits 0.3 s for memory (its STORAGE_DECODE_WAIT_S setting), so the first
ask of a pending photo's thumbnail gets storage's real BUSY answer (or, from a storage whose
wait is longer than the gateway's deadline, the deadline ends first): 503 with Retry-After
(storage's RetryInfo hint, else the gateway's setting) and the "Preview being made"
placeholder, and the thumbnail once the budget is free again; in Chromium the tile shows the
placeholder, then the photo.
"""

from __future__ import annotations

import io
import math
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
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
from gateway.placeholders import FAILED_SVG, PENDING_SVG
from imagerepo.storage.v2 import storage_service_pb2 as pb
from imagerepo.storage.v2 import storage_service_pb2_grpc as pb_grpc
from service_runtime.grpc_server import channel_options, new_server
from storage_service.columnstore.store import ColumnStore
from storage_service.errors import BUSY_RETRY_S
from storage_service.servicer import DECODE_WAIT_S, StorageServicer
from storage_service.servicer_v2 import StorageServicerV2
from tests.gateway.conftest import offline_config
from tests.support import png_damaged_in_pixels

from .browser_support import fresh_photo, page_in, shoot
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
    storage_address: str


# Storage's STORAGE_DECODE_WAIT_S here: a busy answer comes quickly.
BUSY_WAIT_S = 0.3


@contextmanager
def storage_serving(
    store_dir: Path, decode_wait_s: float
) -> Iterator[tuple[StorageServicer, str, grpc.Channel]]:
    """Real storage (v2 on port 0) over a new store, its background thumbnailer stopped, that
    waits `decode_wait_s` for decode memory: (servicer, address, channel)."""
    store = ColumnStore.open(store_dir)
    servicer = StorageServicer(store, decode_wait_s=decode_wait_s)
    servicer.thumbnailer.stop()
    server = new_server(8)
    pb_grpc.add_StorageServiceServicer_to_server(StorageServicerV2(servicer), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    address = f"127.0.0.1:{port}"
    channel = grpc.insecure_channel(address, options=channel_options())
    try:
        yield servicer, address, channel
    finally:
        channel.close()
        server.stop(grace=None)
        servicer.stop()
        store.close()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """Real storage (v2 on port 0, waiting BUSY_WAIT_S for decode memory) whose background
    thumbnailer is stopped, and the gateway app talking v2 to it (vision and search are not
    needed for these routes)."""
    store_dir = tmp_path_factory.mktemp("thumbnail-answers") / "store"
    with storage_serving(store_dir, BUSY_WAIT_S) as (servicer, address, channel):
        app = create_app(offline_config(storage_address=address, rpc_timeout_s=30.0))
        yield Setup(app, app.test_client(), pb_grpc.StorageServiceStub(channel), servicer, address)
        stop_app(app)


def _put(stub: pb_grpc.StorageServiceStub, data: bytes, filename: str, owner: str = "ann") -> str:
    header = pb.PutImageHeader(filename=filename, owner=owner, expected_size=len(data))
    messages = [pb.PutImageRequest(header=header), pb.PutImageRequest(chunk=data)]
    return str(stub.PutImage(iter(messages), timeout=30).image.id)


def _state(stub: pb_grpc.StorageServiceStub, image_id: str) -> int:
    reply = stub.GetImage(pb.GetImageRequest(image_id=image_id), timeout=30)
    return int(reply.image.thumbnail_state)


# What an <img> asks for (Chromium's Accept).
IMG_ACCEPT = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"


def _check_placeholder(reply, svg: bytes, lines: list[str]) -> None:  # type: ignore[no-untyped-def]
    """`reply` is the placeholder picture `svg`: 300 px square, its text `lines`."""
    assert reply.mimetype == "image/svg+xml"
    assert reply.get_data() == svg
    drawn = ET.fromstring(reply.get_data())
    assert drawn.get("width") == drawn.get("height") == "300"
    assert [t.text for t in drawn.iter("{http://www.w3.org/2000/svg}text")] == lines


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
        headers={"Accept": IMG_ACCEPT},
    )

    check("get", "/api/images/{image_id}/thumbnail", _Response(reply))
    assert reply.status_code == 404
    _check_placeholder(reply, FAILED_SVG, ["No preview", "file is damaged"])
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
    with page_in(browser, viewport) as page:
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


# --- storage too busy to make a pending thumbnail -----------------------------------------------


@contextmanager
def storage_busy(servicer: StorageServicer) -> Iterator[None]:
    """Storage's decode memory taken, as a long decode of a large image takes it: the servicer's
    real DecodeBudget (shared with its thumbnailer) is reserved whole, so a decode asked for now
    waits for it, and says BUSY after the servicer's decode wait."""
    budget = servicer.decode_budget
    with budget.reserve(budget.memory_bytes):
        yield


def _check_pending_answer(reply, retry_after: str = "2") -> None:  # type: ignore[no-untyped-def]
    check("get", "/api/images/{image_id}/thumbnail", _Response(reply))  # type: ignore[arg-type]
    assert reply.status_code == 503
    assert reply.headers["X-Thumbnail-State"] == "pending"
    assert reply.headers["Retry-After"] == retry_after
    assert reply.headers["Cache-Control"] == "no-store"
    assert "ETag" not in reply.headers
    assert "Accept" in reply.headers["Vary"]


def test_a_thumbnail_storage_is_too_busy_to_make_answers_503_with_retry_after(setup, photo_jpegs):
    image_id = _put(setup.stub, fresh_photo(photo_jpegs["motorcycle"]), "busy.jpg", "busy")
    assert _state(setup.stub, image_id) == pb.THUMBNAIL_STATE_PENDING
    url = f"/api/images/{image_id}/thumbnail"

    with storage_busy(setup.servicer):
        picture = setup.client.get(url, headers={"Accept": IMG_ACCEPT})
        as_json = setup.client.get(url, headers={"Accept": "application/json"})
        preview = setup.client.get(f"{url}?size=preview")
        mosaic = setup.client.get(f"/images/{image_id}/mosaic.jpg")

    _check_pending_answer(picture)
    _check_placeholder(picture, PENDING_SVG, ["Preview", "being made"])
    _check_pending_answer(as_json)
    body = as_json.json
    assert as_json.mimetype == "application/json"
    assert body["error"]["code"] == "service_unavailable"
    assert body["error"]["message"].startswith("no thumbnail yet: preview being made")
    assert body["thumbnail_state"] == "pending"
    assert body["thumbnail_text"].startswith("preview being made")
    for other in (preview, mosaic):
        assert (other.status_code, other.mimetype) == (503, "image/svg+xml")
        assert other.headers["X-Thumbnail-State"] == "pending"
        assert other.headers["Retry-After"] == "2"
    # Nothing was made or marked: still pending, and made on the next ask once storage is free.
    assert _state(setup.stub, image_id) == pb.THUMBNAIL_STATE_PENDING
    ready = setup.client.get(url, headers={"Accept": IMG_ACCEPT})
    assert (ready.status_code, ready.mimetype) == (200, "image/webp")
    assert ready.headers["X-Thumbnail-State"] == "ready"
    assert _state(setup.stub, image_id) == pb.THUMBNAIL_STATE_READY


def test_the_retry_after_is_storages_hint_when_its_busy_answer_carries_one(setup, photo_jpegs):
    """Storage's BUSY answer says when to ask again (RetryInfo): a gateway whose own setting is
    7 s sends storage's hint on, rounded up to whole seconds."""
    image_id = _put(setup.stub, fresh_photo(photo_jpegs["camera"]), "hinted.jpg", "busy")
    own_7_s = create_app(
        offline_config(storage_address=setup.storage_address, thumbnail_retry_after_s=7)
    )
    try:
        with storage_busy(setup.servicer):
            reply = own_7_s.test_client().get(f"/api/images/{image_id}/thumbnail")
    finally:
        stop_app(own_7_s)

    _check_pending_answer(reply, retry_after=str(math.ceil(BUSY_RETRY_S)))
    assert reply.get_data() == PENDING_SVG


def test_the_gateways_deadline_ending_while_storage_waits_is_the_same_pending_answer(
    tmp_path, photo_jpegs
):
    """A storage that waits for decode memory (its default 4 s) longer than the gateway's
    deadline (0.5 s here): the image is asked for again (still pending) and the answer is the
    same 503 with the gateway's own Retry-After (no storage hint came), not a bare 504."""
    with storage_serving(tmp_path / "store", DECODE_WAIT_S) as (servicer, address, channel):
        stub = pb_grpc.StorageServiceStub(channel)
        image_id = _put(stub, fresh_photo(photo_jpegs["camera"]), "slow.jpg", "busy")
        quick = create_app(
            offline_config(storage_address=address, rpc_timeout_s=0.5, thumbnail_retry_after_s=3)
        )
        try:
            with storage_busy(servicer):
                reply = quick.test_client().get(f"/api/images/{image_id}/thumbnail")
        finally:
            stop_app(quick)
    _check_pending_answer(reply, retry_after="3")
    assert reply.get_data() == PENDING_SVG
    # The deadline of a call to a storage that is not there stays a plain error.
    away = create_app(offline_config(rpc_timeout_s=0.5))
    try:
        gone = away.test_client().get(f"/api/images/{image_id}/thumbnail")
    finally:
        stop_app(away)
    assert gone.status_code in (503, 504)
    assert gone.mimetype == "application/json"
    assert "X-Thumbnail-State" not in gone.headers
    assert "Retry-After" not in gone.headers


# An <img>'s picture as [naturalWidth, naturalHeight]: the placeholder is square (its size
# scaled by the srcset candidate's density), the photo (flower, 640 x 427) is not.
TILE_SIZE = "i => [i.naturalWidth, i.naturalHeight]"


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize(
    "viewport", [{"width": 1280, "height": 900}, {"width": 390, "height": 844}], ids=["1280", "390"]
)
def test_a_tile_storage_was_too_busy_for_shows_the_placeholder_then_the_photo(
    browser: Browser, setup, served, photo_jpegs, viewport, scheme
):
    """The gallery is drawn while storage's decode memory is taken: the pending photo's tile
    draws the "Preview being made" picture (no broken image), asks its thumbnail again after the
    Retry-After, and shows the photo once storage is free."""
    width = viewport["width"]
    image_id = _put(
        setup.stub, fresh_photo(photo_jpegs["flower"]), f"busy {width} {scheme}.jpg", "busyview"
    )
    with page_in(browser, viewport, scheme) as page:
        tile = page.locator(f'figure.tile[data-id="{image_id}"]')
        with storage_busy(setup.servicer):
            page.goto(f"{served}/")
            # Loaded, found still pending: the placeholder is drawn and a retry is waiting.
            expect(tile).to_have_attribute("data-thumb-retry", re.compile(r"\d+"))
            img = tile.locator("img.thumb")
            shown = img.evaluate(TILE_SIZE)
            assert shown[0] > 0 and shown[0] == shown[1]
            expect(tile).to_have_attribute("data-thumb-state", "pending")
            assert page.evaluate(BROKEN) == []
            tile.scroll_into_view_if_needed()
            shoot(page, f"thumbnail-busy-{width}-{scheme}", full=False)
            # The viewer opened meanwhile draws the same picture for its preview.
            tile.locator(".thumb-link").click()
            viewer = page.locator("#lb-image")
            expect(page.locator("#lightbox .lb-stage")).to_have_attribute(
                "data-thumb-retry", re.compile(".")
            )
            shown = viewer.evaluate(TILE_SIZE)
            assert shown[0] > 0 and shown[0] == shown[1]
            shoot(page, f"thumbnail-busy-viewer-{width}-{scheme}", full=False)
        # Storage is free: the viewer's preview and (behind it) the tile load the photo.
        page.wait_for_function(
            "() => { const i = document.querySelector('#lb-image');"
            " return i.complete && i.naturalWidth > 0 && i.naturalWidth !== i.naturalHeight; }"
        )
        width_, height = viewer.evaluate(TILE_SIZE)
        assert width_ / height == pytest.approx(640 / 427, abs=0.02)
        shoot(page, f"thumbnail-busy-then-ready-viewer-{width}-{scheme}", full=False)
        page.keyboard.press("Escape")
        expect(tile).to_have_attribute("data-thumb-state", "ready", timeout=30_000)
        page.wait_for_function(
            "id => { const i = document.querySelector(`figure.tile[data-id='${id}'] img.thumb`);"
            " return i && i.complete && i.naturalWidth > 0"
            " && i.naturalWidth !== i.naturalHeight; }",
            arg=image_id,
        )
        width_, height = img.evaluate(TILE_SIZE)
        assert width_ / height == pytest.approx(640 / 427, abs=0.02)
        assert _state(setup.stub, image_id) == pb.THUMBNAIL_STATE_READY
        assert page.evaluate(BROKEN) == []
        shoot(page, f"thumbnail-busy-then-ready-{width}-{scheme}", full=False)


def test_the_image_and_mosaic_pages_drawn_while_storage_is_busy_show_the_photo_once_made(
    browser: Browser, setup, served, photos, photo_jpegs
):
    """The image page's preview and the mosaic page's two pictures draw the placeholder while
    storage is busy, then the photo and its mosaic after the retry."""
    image_id = _put(setup.stub, fresh_photo(photo_jpegs["flower"]), "busy pages.jpg", "busypages")
    square = "i => i.complete && i.naturalWidth > 0 && i.naturalWidth === i.naturalHeight"
    made = "i => i.complete && i.naturalWidth > 0 && i.naturalWidth !== i.naturalHeight"
    with page_in(browser) as page:
        with storage_busy(setup.servicer):
            page.goto(f"{served}/images/{image_id}")
            preview = page.locator("section.preview")
            expect(preview).to_have_attribute("data-thumb-retry", re.compile("."))
            assert page.locator("#preview").evaluate(square)
            assert page.evaluate(BROKEN) == []
        expect(preview).to_have_attribute("data-thumb-state", "ready", timeout=30_000)
        page.wait_for_function(f"() => ({made})(document.querySelector('#preview'))")

        # A second photo, still pending, for the mosaic page.
        other = _put(setup.stub, fresh_photo(photo_jpegs["china"]), "busy mosaic.jpg", "busypages")
        with storage_busy(setup.servicer):
            page.goto(f"{served}/images/{other}/mosaic?columns=16")
            figures = page.locator(".side-by-side figure")
            expect(figures).to_have_count(2)
            for n in range(2):
                expect(figures.nth(n)).to_have_attribute("data-thumb-retry", re.compile("."))
            assert page.locator("#mosaic").evaluate(square)
            assert page.evaluate(BROKEN) == []
            shoot(page, "thumbnail-busy-mosaic-1366-light", full=False)
        for n in range(2):
            expect(figures.nth(n)).to_have_attribute("data-thumb-state", "ready", timeout=30_000)
        page.wait_for_function(f"() => ({made})(document.querySelector('#mosaic'))")
        page.wait_for_function(f"() => ({made})(document.querySelector('.side-by-side img'))")
        shoot(page, "thumbnail-busy-then-ready-mosaic-1366-light", full=False)
