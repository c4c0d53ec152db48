"""The gateway's /metrics counts its requests by route and status; every answer carries a
request id (the caller's when it sends a sane one)."""

from __future__ import annotations

import re

from .conftest import offline_config


def _count(text: str, route: str, status: str) -> float:
    labels = f'method="GET",route="{route}",status="{status}"'
    pattern = r"^http_requests_total\{" + re.escape(labels) + r"\} (\S+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_metrics_count_requests_by_route_and_status(offline_app):
    client = offline_app.test_client()
    before = client.get("/metrics").get_data(as_text=True)

    for _ in range(3):
        client.get("/api/health")  # services down: 503
    client.get("/api/openapi.json")
    after = client.get("/metrics")

    text = after.get_data(as_text=True)
    assert after.status_code == 200
    assert after.mimetype == "text/plain"
    assert _count(text, "/api/health", "503") - _count(before, "/api/health", "503") == 3
    assert (
        _count(text, "/api/openapi.json", "200") - _count(before, "/api/openapi.json", "200") == 1
    )
    assert 'http_request_duration_seconds_count{method="GET",route="/api/health"}' in text
    assert "imagerepo_pending_images NaN" in text  # storage is down: the lag is unknown


def test_every_answer_carries_a_request_id(offline_app):
    client = offline_app.test_client()

    given = client.get("/api/openapi.json", headers={"X-Request-Id": "abc-123"})
    fresh = client.get("/api/openapi.json")
    hostile = client.get("/api/openapi.json", headers={"X-Request-Id": 'a b"<i>' + "x" * 100})

    assert given.headers["X-Request-Id"] == "abc-123"
    assert re.fullmatch(r"[0-9a-f]{16}", fresh.headers["X-Request-Id"])
    assert re.fullmatch(r"[0-9a-f]{16}", hostile.headers["X-Request-Id"])


def test_metrics_need_a_key_when_the_gateway_is_private():
    from gateway.app import create_app, stop_app

    app = create_app(offline_config(api_keys=frozenset({"ops:k"})))
    try:
        anonymous = app.test_client().get("/metrics")
        keyed = app.test_client().get("/metrics", headers={"Authorization": "Bearer ops:k"})
    finally:
        stop_app(app)

    assert anonymous.status_code == 401
    assert keyed.status_code == 200
