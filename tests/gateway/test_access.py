"""Who may write: API keys, CSRF tokens on the pages' forms, cross-site refusals."""

from __future__ import annotations

import io
import re

from gateway.access import owner_for_key


def _csrf_token(client) -> str:
    page = client.get("/upload").get_data(as_text=True)
    return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)


def test_owner_is_the_name_part_of_a_key():
    assert owner_for_key("alice:s3cret") == "alice"
    assert owner_for_key("plainkey").startswith("key-")


def test_form_post_without_csrf_token_is_forbidden(offline_app):
    client = offline_app.test_client()

    reply = client.post("/images/abc/delete")

    assert reply.status_code == 403
    assert b"security token" in reply.data


def test_form_post_with_token_of_another_session_is_forbidden(offline_app):
    token = _csrf_token(offline_app.test_client())
    other = offline_app.test_client()
    other.get("/upload")

    reply = other.post("/images/abc/delete", data={"csrf_token": token})

    assert reply.status_code == 403


def test_form_post_with_page_token_passes_to_storage(offline_app):
    client = offline_app.test_client()
    token = _csrf_token(client)

    reply = client.post("/images/abc/delete", data={"csrf_token": token})

    # Past the CSRF check, the delete reaches storage, which is down in this test.
    assert reply.status_code == 503


def test_api_write_without_key_when_keys_set_is_401(keyed_app):
    reply = keyed_app.test_client().delete("/api/images/abc")

    assert reply.status_code == 401
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in reply.json["error"]["message"]


def test_api_write_with_wrong_key_is_401(keyed_app):
    reply = keyed_app.test_client().delete(
        "/api/images/abc", headers={"Authorization": "Bearer nope"}
    )

    assert reply.status_code == 401
    assert reply.json["error"]["message"] == "the API key is not valid"


def test_api_write_with_valid_key_reaches_storage(keyed_app):
    reply = keyed_app.test_client().delete(
        "/api/images/abc", headers={"Authorization": "Bearer alice:s3cret"}
    )

    assert reply.status_code == 503


def test_reads_stay_open_when_keys_set(keyed_app):
    reply = keyed_app.test_client().get("/api/openapi.json")

    assert reply.status_code == 200


def test_page_form_needs_login_when_keys_set(keyed_app):
    client = keyed_app.test_client()
    token = _csrf_token(client)

    reply = client.post("/images/abc/delete", data={"csrf_token": token})

    assert reply.status_code == 401


def test_login_with_key_lets_the_page_write(keyed_app):
    client = keyed_app.test_client()
    token = _csrf_token(client)

    login = client.post("/login", data={"csrf_token": token, "key": "alice:s3cret"})
    reply = client.post("/images/abc/delete", data={"csrf_token": token})

    assert login.status_code == 303
    assert reply.status_code == 503


def test_login_with_wrong_key_is_refused(keyed_app):
    client = keyed_app.test_client()
    token = _csrf_token(client)

    reply = client.post("/login", data={"csrf_token": token, "key": "guess"})

    assert reply.status_code == 401
    assert b"not valid" in reply.data


def test_cross_site_api_upload_is_forbidden_without_keys(offline_app):
    reply = offline_app.test_client().post(
        "/api/images",
        data={"file": (io.BytesIO(b"\xff\xd8\xff"), "a.jpg")},
        headers={"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
    )

    assert reply.status_code == 403
    assert "cross-site" in reply.json["error"]["message"]


def test_oversized_request_is_413_json(offline_app):
    limit = offline_app.config["MAX_CONTENT_LENGTH"]

    reply = offline_app.test_client().post(
        "/api/images", data={"file": (io.BytesIO(b"\xff" * (limit + 1)), "big.jpg")}
    )

    assert reply.status_code == 413
    assert "larger than the limit" in reply.json["error"]["message"]


def test_pages_send_security_headers(offline_app):
    reply = offline_app.test_client().get("/upload")

    assert "script-src 'self'" in reply.headers["Content-Security-Policy"]
    assert reply.headers["X-Content-Type-Options"] == "nosniff"


def test_page_script_upload_uses_session_login_when_keys_set(keyed_app):
    client = keyed_app.test_client()
    token = _csrf_token(client)
    photo = {"file": (io.BytesIO(b"\xff\xd8\xff\xe0 jpeg"), "a.jpg")}

    before_login = client.post("/api/images", data=dict(photo), headers={"X-CSRF-Token": token})
    client.post("/login", data={"csrf_token": token, "key": "alice:s3cret"})
    photo = {"file": (io.BytesIO(b"\xff\xd8\xff\xe0 jpeg"), "a.jpg")}
    after_login = client.post("/api/images", data=photo, headers={"X-CSRF-Token": token})

    assert before_login.status_code == 401
    # Logged in, the upload is let through to storage (down in this test).
    assert after_login.status_code == 503
    assert after_login.json["results"][0]["error"].startswith("the storage service")
