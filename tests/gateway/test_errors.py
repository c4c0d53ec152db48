"""gRPC status codes become HTTP statuses in one place, with the service's message."""

from __future__ import annotations

import grpc
import pytest

from gateway.errors import HTTP_STATUS_BY_GRPC_CODE, ServiceError, http_status_for


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
        (grpc.StatusCode.NOT_FOUND, 404),
        (grpc.StatusCode.ALREADY_EXISTS, 409),
        (grpc.StatusCode.PERMISSION_DENIED, 403),
        (grpc.StatusCode.UNAUTHENTICATED, 401),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 413),
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
        (grpc.StatusCode.INTERNAL, 502),
        (grpc.StatusCode.UNIMPLEMENTED, 501),
    ],
)
def test_grpc_code_maps_to_http_status(code, status):
    assert http_status_for(code) == status


def test_every_grpc_code_has_an_http_status():
    assert set(HTTP_STATUS_BY_GRPC_CODE) == set(grpc.StatusCode)


def test_service_error_keeps_service_message_for_bad_input():
    error = ServiceError("storage", "PutImage", grpc.StatusCode.INVALID_ARGUMENT, "truncated JPEG")

    assert (error.status, error.message, error.transient) == (400, "truncated JPEG", False)


def test_service_error_names_the_unavailable_service():
    error = ServiceError("vision", "Analyze", grpc.StatusCode.UNAVAILABLE, "connect failed")

    assert error.status == 503
    assert "vision" in error.message
    assert error.transient


def test_api_call_with_storage_down_is_503_json(offline_app):
    client = offline_app.test_client()

    reply = client.get("/api/images")

    assert reply.status_code == 503
    assert reply.json["error"]["status"] == 503
    assert "storage service is unavailable" in reply.json["error"]["message"]


def test_page_with_storage_down_is_503_html(offline_app):
    client = offline_app.test_client()

    reply = client.get("/")

    assert reply.status_code == 503
    assert reply.mimetype == "text/html"
    assert b"storage service is unavailable" in reply.data


# What Chromium sends when a page's link or no-JS form is followed.
BROWSER_NAVIGATION = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
)


def test_zip_from_the_page_with_storage_down_is_the_503_error_page(offline_app):
    client = offline_app.test_client()

    reply = client.get(
        "/api/images/zip", query_string={"ids": "a1,b2"}, headers={"Accept": BROWSER_NAVIGATION}
    )

    assert reply.status_code == 503
    assert reply.mimetype == "text/html"
    assert b'id="error-message"' in reply.data
    assert b"storage service is unavailable" in reply.data


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "application/json, text/html"])
def test_zip_asked_for_by_a_script_with_storage_down_is_503_json(offline_app, accept):
    headers = {"Accept": accept} if accept else {}

    reply = offline_app.test_client().get(
        "/api/images/zip", query_string={"ids": "a1"}, headers=headers
    )

    assert reply.status_code == 503
    assert reply.json["error"]["status"] == 503


def test_unknown_api_path_is_404_json(offline_app):
    reply = offline_app.test_client().get("/api/no-such-thing")

    assert reply.status_code == 404
    assert reply.json["error"]["status"] == 404


def test_health_reports_each_service_down(offline_app):
    reply = offline_app.test_client().get("/api/health")

    assert reply.status_code == 503
    assert reply.json == {
        "status": "degraded",
        "services": {"storage": "UNAVAILABLE", "vision": "UNAVAILABLE", "search": "UNAVAILABLE"},
    }


def test_a_full_storage_is_507_with_a_clear_message():
    error = ServiceError(
        "storage", "PutImage", grpc.StatusCode.RESOURCE_EXHAUSTED, "storage is full"
    )

    assert error.status == 507
    assert "storage is full" in error.message
    assert "free disk space" in error.message
    assert not error.transient


def test_resource_exhausted_from_another_service_keeps_its_status():
    error = ServiceError("vision", "Analyze", grpc.StatusCode.RESOURCE_EXHAUSTED, "too big")

    assert error.status == 413
