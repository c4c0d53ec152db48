"""Uploads while vision or search is away succeed as PENDING and are finished on their return."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from PIL import Image

from .conftest import Stack, build_stack


@pytest.fixture
def own_stack(tmp_path, vision_engine) -> Iterator[Stack]:
    """A stack of its own (services get stopped here), reconciling every 0.3 s."""
    built = build_stack(tmp_path, vision_engine, reconcile_interval_s=0.3)
    yield built
    built.close()


def _upload(url: str, name: str, data: bytes) -> dict:
    reply = requests.post(f"{url}/api/images", files={"file": (name, data)}, timeout=120)
    assert reply.status_code == 201, reply.text
    return reply.json()["results"][0]


def _wait_for_status(url: str, image_id: str, status: str, timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        image = requests.get(f"{url}/api/images/{image_id}", timeout=10).json()
        if image["status"] == status or time.monotonic() > deadline:
            return image
        time.sleep(0.2)


def test_upload_with_vision_stopped_is_finished_after_it_restarts(own_stack, photo_jpegs):
    url = own_stack.gateway.url
    own_stack.stop("vision")

    result = _upload(url, "waiting-cat.jpg", photo_jpegs["chelsea"])
    image_id = result["image"]["id"]
    time.sleep(1.0)  # a few reconciler passes while vision is still away
    still = requests.get(f"{url}/api/images/{image_id}", timeout=10).json()
    own_stack.start("vision")
    done = _wait_for_status(url, image_id, "ready")

    assert result["image"]["status"] == "pending"
    assert result["pending_reason"] == "waiting for vision: UNAVAILABLE"
    assert still["status"] == "pending"
    assert done["status"] == "ready"
    assert done["status_detail"] == ""
    assert any("cat" in label["name"] for label in done["labels"])
    hits = requests.get(f"{url}/api/search", params={"q": "cat"}, timeout=10).json()["hits"]
    assert image_id in [h["image"]["id"] for h in hits]


def test_upload_with_search_stopped_keeps_analysis_and_is_indexed_later(own_stack, photo_jpegs):
    url = own_stack.gateway.url
    own_stack.stop("search")

    result = _upload(url, "waiting-coffee.jpg", photo_jpegs["coffee"])
    own_stack.start("search")
    done = _wait_for_status(url, result["image"]["id"], "ready")

    assert result["image"]["status"] == "pending"
    assert result["pending_reason"] == "waiting for search: UNAVAILABLE"
    # Analysis was saved at upload: the reconciler only had to index it.
    assert result["image"]["best_label"] == "espresso"
    assert done["status"] == "ready"
    hits = requests.get(f"{url}/api/search", params={"q": "espresso"}, timeout=10).json()["hits"]
    assert [h["image"]["id"] for h in hits] == [result["image"]["id"]]


def test_delete_while_search_stopped_is_removed_from_index_later(own_stack, photo_jpegs):
    url = own_stack.gateway.url
    image_id = _upload(url, "rocket.jpg", photo_jpegs["rocket"])["image"]["id"]
    own_stack.stop("search")

    deleted = requests.delete(f"{url}/api/images/{image_id}", timeout=10)
    own_stack.start("search")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        report = requests.get(f"{url}/api/status", timeout=10).json()
        if report["storage"]["pending_removals"] == 0:
            break
        time.sleep(0.2)

    assert deleted.status_code == 200
    assert report["search"]["document_count"] == 0
    assert report["storage"]["pending_removals"] == 0


def test_image_the_models_cannot_read_is_marked_failed_not_left_pending(own_stack):
    # 49 megapixels: storage accepts it (its limit is 100), vision refuses (its limit is 40).
    buf = io.BytesIO()
    Image.new("L", (7000, 7000), 128).save(buf, "PNG")

    result = _upload(own_stack.gateway.url, "huge-grey.png", buf.getvalue())

    assert result["image"]["status"] == "failed"
    assert result["image"]["status_detail"].startswith("vision could not process this image")
    assert result["pending_reason"] == ""


def test_image_vision_keeps_timing_out_on_is_failed_after_max_attempts_and_can_be_retried(
    tmp_path, vision_engine
):
    # A deadline no analysis can meet: every attempt ends in DEADLINE_EXCEEDED.
    slow = build_stack(
        tmp_path,
        vision_engine,
        reconcile_interval_s=0.3,
        analyze_timeout_s=0.001,
        max_analysis_attempts=3,
    )
    try:
        url = slow.gateway.url
        buf = io.BytesIO()
        Image.new("RGB", (64, 48), (200, 30, 30)).save(buf, "PNG")

        result = _upload(url, "red.png", buf.getvalue())
        done = _wait_for_status(url, result["image"]["id"], "failed", timeout_s=30)
        # A gateway that gives vision enough time can retry it (the impatient one's
        # reconciler is stopped first so it does not race the retry).
        slow.gateway.app.extensions["imagerepo"].reconciler.stop()
        patient = slow.start_gateway(reconcile_interval_s=0.0)
        retried = requests.post(f"{patient.url}/api/images/{result['image']['id']}/retry")
        again = requests.post(f"{patient.url}/api/images/{result['image']['id']}/retry")
        patient.stop()
    finally:
        slow.close()

    assert result["image"]["status"] == "pending"
    assert result["pending_reason"] == "waiting for vision: DEADLINE_EXCEEDED"
    assert done["status"] == "failed"
    assert done["status_detail"].endswith("after 3 attempts")
    assert "DEADLINE_EXCEEDED" in done["status_detail"]
    assert retried.status_code == 200
    assert retried.json()["status"] == "ready"
    assert retried.json()["labels"]
    assert again.status_code == 409


def test_search_page_still_finds_filenames_while_search_is_away(own_stack, photo_jpegs):
    url = own_stack.gateway.url
    stored = _upload(url, "IMG_0042.jpg", photo_jpegs["flower"])
    own_stack.stop("search")

    page = requests.get(f"{url}/search", params={"q": "IMG_0042.jpg"}, timeout=30)
    api = requests.get(f"{url}/api/search", params={"q": "flower"}, timeout=30)

    assert page.status_code == 200
    assert "Searching by content is unavailable" in page.text
    assert stored["image"]["links"]["page"] in page.text
    assert api.status_code == 503
    assert api.json()["error"]["message"] == "the search service is unavailable; try again shortly"


def test_concurrent_uploads_are_finished_by_their_own_requests(
    tmp_path, vision_engine, photo_jpegs
):
    # A reconciler looking every 50 ms must leave images whose upload is still under way alone.
    busy = build_stack(tmp_path, vision_engine, reconcile_interval_s=0.05)
    try:
        names = ["chelsea", "coffee", "rocket", "astronaut", "motorcycle", "china"]
        with ThreadPoolExecutor(max_workers=6) as pool:
            results = list(
                pool.map(lambda n: _upload(busy.gateway.url, f"{n}.jpg", photo_jpegs[n]), names)
            )
    finally:
        busy.close()

    assert [r["image"]["status"] for r in results] == ["ready"] * len(names)
    assert all("vision_analyze" in r["timings_ms"] for r in results)


def test_tags_added_while_pending_are_searchable_once_finished(own_stack, photo_jpegs):
    url = own_stack.gateway.url
    own_stack.stop("vision")
    image_id = _upload(url, "tag-me-later.jpg", photo_jpegs["rocket"])["image"]["id"]

    tagged = requests.post(
        f"{url}/api/images/{image_id}/tags", json={"add": ["launchpad"]}, timeout=30
    )
    own_stack.start("vision")
    done = _wait_for_status(url, image_id, "ready")
    hits = requests.get(f"{url}/api/search", params={"q": "launchpad"}, timeout=10).json()["hits"]

    assert tagged.status_code == 200
    assert tagged.json()["status"] == "pending"
    assert done["tags"] == ["launchpad"]
    assert hits[0]["image"]["id"] == image_id
    assert "tags" in {r["field"] for r in hits[0]["reasons"]}


def test_status_page_reports_a_stopped_service_and_still_renders(own_stack):
    url = own_stack.gateway.url
    own_stack.stop("vision")

    page = requests.get(f"{url}/status", timeout=30)
    health = requests.get(f"{url}/api/health", timeout=30)

    assert page.status_code == 200
    assert "the vision service is unavailable" in page.text
    assert "efficientnet" not in page.text
    assert health.status_code == 503
    assert health.json()["services"]["vision"] == "UNAVAILABLE"
    assert health.json()["services"]["storage"] == "SERVING"
