"""The project's own callers speak the v2 contracts only: a whole user session through the
gateway (upload, analysis by the worker, indexing from storage's feed, search, similar,
duplicates, albums, the trash, the status page) starts no v1 RPC on any service. v1 stays
served for outside clients, and a v1 call is counted under its own version, which is how an
operator sees who still uses it (docs/contracts.md)."""

from __future__ import annotations

import re
import uuid

from prometheus_client import REGISTRY

from imagerepo.storage.v1 import storage_service_pb2 as storage_v1

from .conftest import fresh_jpeg

_VERSION = re.compile(r"^imagerepo\.[a-z]+\.(v\d+)\.")


def started_by_version() -> dict[str, dict[str, float]]:
    """grpc_server_started_total of imagerepo's services, by contract version, then by
    "service/method" (grpc.health.v1 and reflection are not imagerepo contracts)."""
    out: dict[str, dict[str, float]] = {}
    for metric in REGISTRY.collect():
        if metric.name != "grpc_server_started":
            continue
        for sample in metric.samples:
            if not sample.name.endswith("_total"):
                continue
            service = sample.labels["grpc_service"]
            match = _VERSION.match(service)
            if match:
                key = f"{service}/{sample.labels['grpc_method']}"
                out.setdefault(match.group(1), {})[key] = sample.value
    return out


def grown(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v > before.get(k, 0.0)}


def test_a_whole_session_through_the_gateway_calls_no_v1_rpc(stack, gateway_url, http, photo_jpegs):
    before = started_by_version()

    name = f"cat-{uuid.uuid4().hex[:8]}.jpg"
    sent = fresh_jpeg(photo_jpegs["chelsea"])
    reply = http.post(f"{gateway_url}/api/images", files=[("files", (name, sent))], timeout=120)
    assert reply.status_code == 201, reply.text
    image = reply.json()["results"][0]["image"]
    assert image["status"] == "ready", image
    image_id = image["id"]
    for path, params in (
        ("/api/search", {"q": "cat"}),
        ("/api/search", {"q": "cat", "sort": "taken_newest", "taken_from": "1990"}),
        (f"/api/images/{image_id}/similar", {}),
        ("/api/duplicates", {}),
        ("/api/images", {"order": "taken_newest", "taken_from": "1990"}),
        (f"/api/images/by-filename/{name}", {}),
        (f"/api/images/{image_id}/thumbnail", {"size": "preview"}),
        ("/api/suggest", {"prefix": "ca"}),
        ("/api/status", {}),
    ):
        answer = http.get(f"{gateway_url}{path}", params=params, timeout=60)
        assert answer.status_code == 200, (path, answer.text)
    found = http.get(f"{gateway_url}/api/search", params={"q": "cat"}, timeout=60).json()
    assert image_id in [hit["image"]["id"] for hit in found["hits"]]
    assert http.get(f"{gateway_url}/images/{image_id}", timeout=60).status_code == 200
    album = http.post(
        f"{gateway_url}/api/albums", json={"name": name, "image_ids": [image_id]}, timeout=60
    )
    assert album.status_code == 201, album.text
    in_album = http.get(
        f"{gateway_url}/api/search", params={"q": "cat", "album": album.json()["id"]}, timeout=60
    )
    assert [hit["image"]["id"] for hit in in_album.json()["hits"]] == [image_id]
    for path, body in (
        (f"/api/images/{image_id}/tags", {"add": ["v2"]}),
        (f"/api/images/{image_id}/favourite", {"favourite": True}),
    ):
        assert http.post(f"{gateway_url}{path}", json=body, timeout=60).status_code == 200
    predicted = http.post(f"{gateway_url}/api/predict", files=[("file", (name, sent))], timeout=120)
    assert predicted.status_code == 200, predicted.text
    assert http.delete(f"{gateway_url}/api/images/{image_id}", timeout=60).status_code == 200
    assert http.get(f"{gateway_url}/trash", timeout=60).status_code == 200

    after = started_by_version()

    assert grown(before.get("v1", {}), after.get("v1", {})) == {}
    v2 = grown(before.get("v2", {}), after.get("v2", {}))
    # Every internal caller was on the line: the gateway, the worker, search's feed.
    assert {
        "imagerepo.storage.v2.StorageService/PutImage",
        "imagerepo.storage.v2.StorageService/ClaimAnalysis",
        "imagerepo.storage.v2.StorageService/CompleteAnalysis",
        "imagerepo.vision.v2.VisionService/Analyze",
        "imagerepo.search.v2.SearchService/Search",
        "imagerepo.storage.v2.StorageService/CreateAlbum",
        "imagerepo.storage.v2.StorageService/WatchChanges",
    } <= set(v2) | set(before.get("v2", {})), sorted(v2)


def test_an_outside_v1_call_is_counted_under_v1(stack):
    before = started_by_version().get("v1", {})

    stack.storage_stub().GetStats(storage_v1.GetStatsRequest(), timeout=10)

    assert grown(before, started_by_version().get("v1", {})) == {
        "imagerepo.storage.v1.StorageService/GetStats": 1.0
    }
