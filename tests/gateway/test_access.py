"""Who may read and write: API keys, private mode, owners and admins, login rate limits, CSRF
tokens on the pages' forms, cross-site refusals."""

from __future__ import annotations

import io
import re

import pytest
from flask import Flask

from gateway.access import ADMIN_ENDPOINTS, MODEL_ENDPOINTS, OPEN_ENDPOINTS, owner_for_key
from gateway.app import create_app, stop_app

from .conftest import offline_config


def _csrf_token(client) -> str:
    page = client.get("/login").get_data(as_text=True)
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


def test_reads_need_a_key_when_keys_set(keyed_app):
    client = keyed_app.test_client()

    api = client.get("/api/images")
    page = client.get("/", headers={"Accept": "text/html"})
    with_key = client.get("/api/images", headers={"Authorization": "Bearer alice:s3cret"})

    assert api.status_code == 401
    assert page.status_code == 303 and page.headers["Location"].startswith("/login")
    # Past the key check, the read reaches storage, which is down in this test.
    assert with_key.status_code == 503


def test_reads_stay_open_when_keys_set_and_private_is_off():
    app = create_app(offline_config(api_keys=frozenset({"alice:s3cret"}), private=False))
    try:
        reply = app.test_client().get("/api/images")
        write = app.test_client().delete("/api/images/abc")
    finally:
        stop_app(app)

    assert reply.status_code == 503  # storage is down: the read was let through
    assert write.status_code == 401


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
    assert reply.json["error"]["message"] == (
        "the upload is larger than the limit of 50 MiB (52428800 bytes)"
    )


def test_oversized_upload_from_the_page_is_413_html_in_mib():
    app = create_app(offline_config(max_upload_bytes=50_000))
    try:
        reply = app.test_client().post(
            "/upload",
            data={"files": (io.BytesIO(b"\xff" * 50_001), "big.jpg")},
            headers={"Accept": "text/html"},
        )
    finally:
        stop_app(app)

    assert reply.status_code == 413
    assert reply.mimetype == "text/html"
    assert "larger than the limit of 48.8 KiB (50000 bytes)" in reply.get_data(as_text=True)


def test_upload_page_says_the_size_limit_as_people_read_it(offline_app):
    page = offline_app.test_client().get("/upload").get_data(as_text=True)

    assert "up to 50 MiB each" in page


@pytest.mark.parametrize("app_fixture", ["offline_app", "keyed_app"])
def test_site_icon_answers_where_pages_link_it_and_at_favicon_ico(request, app_fixture):
    client = request.getfixturevalue(app_fixture).test_client()
    page = client.get("/login").get_data(as_text=True)
    linked = re.search(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">', page)
    assert linked, "the pages link their icon"

    answers = [client.get(url) for url in (linked.group(1), "/favicon.ico")]

    assert [a.status_code for a in answers] == [200, 200], "open even on a private gateway"
    assert [a.mimetype for a in answers] == ["image/svg+xml"] * 2
    assert answers[0].data == answers[1].data and answers[1].data.startswith(b"<svg")


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


# --- every route under both settings -----------------------------------------------------


def _routes(app: Flask) -> list[tuple[str, str, str]]:
    """(endpoint, method, url) of every route, path parameters filled with 'x'."""
    found = []
    for rule in app.url_map.iter_rules():
        url = re.sub(r"<[^>]+>", "x", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((rule.endpoint, method, url))
    return found


def _call(client, method: str, url: str, **kwargs):
    return client.open(url, method=method, headers={"Accept": "text/html"}, **kwargs)


def test_private_gateway_refuses_every_route_but_the_open_ones_to_strangers(keyed_app):
    client = keyed_app.test_client()
    refused, let_through = {}, {}

    for endpoint, method, url in _routes(keyed_app):
        reply = _call(client, method, url)
        to_login = reply.status_code == 303 and reply.headers["Location"].startswith("/login")
        (refused if reply.status_code == 401 or to_login else let_through)[endpoint, method] = (
            reply.status_code
        )

    assert {endpoint for endpoint, _method in let_through} <= OPEN_ENDPOINTS
    assert len(refused) > 40  # the pages and the API, not a handful


def test_public_reads_with_keys_still_guard_models_admin_and_writes():
    app = create_app(offline_config(api_keys=frozenset({"alice:s3cret"}), private=False))
    client = app.test_client()
    try:
        replies = {
            (endpoint, method): _call(client, method, url).status_code
            for endpoint, method, url in _routes(app)
        }
    finally:
        stop_app(app)

    reads = {k: v for k, v in replies.items() if k[1] == "GET"}
    assert not [k for k, v in reads.items() if v == 401]
    guarded = {k: v for k, v in replies.items() if k[0] in MODEL_ENDPOINTS | ADMIN_ENDPOINTS}
    assert guarded and set(guarded.values()) == {401}
    writes = {
        k: v
        for k, v in replies.items()
        if k[1] in ("DELETE", "POST")
        and k[0] not in OPEN_ENDPOINTS | MODEL_ENDPOINTS | {"api.lookup_images"}
    }
    assert writes and set(writes.values()) <= {401, 403}


def test_without_keys_nothing_asks_for_one(offline_app):
    client = offline_app.test_client()

    statuses = {_call(client, method, url).status_code for _e, method, url in _routes(offline_app)}

    assert 401 not in statuses


def test_model_endpoints_need_a_key_when_keys_are_set():
    app = create_app(offline_config(api_keys=frozenset({"alice:s3cret"}), private=False))
    photo = {"file": (io.BytesIO(b"\xff\xd8\xff\xe0 jpeg"), "a.jpg")}
    try:
        anonymous = app.test_client().post("/api/predict", data=dict(photo))
        photo = {"file": (io.BytesIO(b"\xff\xd8\xff\xe0 jpeg"), "a.jpg")}
        keyed = app.test_client().post(
            "/api/predict", data=photo, headers={"Authorization": "Bearer alice:s3cret"}
        )
    finally:
        stop_app(app)

    assert anonymous.status_code == 401
    assert keyed.status_code != 401


def test_private_mode_without_keys_is_refused_at_start():
    with pytest.raises(ValueError, match="needs API keys"):
        create_app(offline_config(private=True))


# --- login rate limit ----------------------------------------------------------------------------


def test_failed_logins_are_rate_limited_per_client(keyed_app):
    client = keyed_app.test_client()
    token = _csrf_token(client)

    statuses = [
        client.post("/login", data={"csrf_token": token, "key": f"guess{i}"}).status_code
        for i in range(7)
    ]
    right_key_meanwhile = client.post("/login", data={"csrf_token": token, "key": "alice:s3cret"})
    other_client = keyed_app.test_client()
    other_token = _csrf_token(other_client)
    elsewhere = other_client.post(
        "/login",
        data={"csrf_token": other_token, "key": "alice:s3cret"},
        environ_base={"REMOTE_ADDR": "10.9.9.9"},
    )

    assert statuses == [401] * 5 + [429] * 2
    assert right_key_meanwhile.status_code == 429
    assert int(right_key_meanwhile.headers["Retry-After"]) > 0
    assert elsewhere.status_code == 303


def test_wrong_api_keys_count_as_failed_attempts(keyed_app):
    client = keyed_app.test_client()

    statuses = [
        client.get("/api/images", headers={"Authorization": f"Bearer no{i}"}).status_code
        for i in range(6)
    ]

    assert statuses == [401] * 5 + [429]


# --- the session secret -----------------------------------------------------------------------


def test_the_session_secret_is_created_once_in_the_data_dir(tmp_path):
    first = create_app(offline_config(secret_key="", data_dir=tmp_path))
    second = create_app(offline_config(secret_key="", data_dir=tmp_path))
    try:
        secrets = (first.config["SECRET_KEY"], second.config["SECRET_KEY"])
    finally:
        stop_app(first)
        stop_app(second)

    assert secrets[0] == secrets[1] and len(secrets[0]) == 64
    assert (tmp_path / "session_secret").stat().st_mode & 0o777 == 0o600


# --- owners and admins, against a real storage service --------------------------------------


@pytest.fixture
def owned_gateway(tmp_path, photo_jpegs):
    """A private gateway over a real storage service (vision and search down), with one image
    uploaded by alice and one by bob."""
    from storage_service.columnstore.store import ColumnStore
    from storage_service.server import build_server

    store = ColumnStore.open(tmp_path / "storage")
    server, port, health = build_server(store, "127.0.0.1:0")
    server.start()
    health.set_serving(True)
    app = create_app(
        offline_config(
            storage_address=f"127.0.0.1:{port}",
            api_keys=frozenset({"alice:a-secret", "bob:b-secret"}),
            admin_keys=frozenset({"root:r-secret"}),
        )
    )
    client = app.test_client()
    ids = {}
    for who, photo in (("alice", "coffee"), ("bob", "rocket")):
        reply = client.post(
            "/api/images",
            data={"file": (io.BytesIO(photo_jpegs[photo]), f"{photo}.jpg")},
            headers={"Authorization": f"Bearer {who}:{who[0]}-secret"},
        )
        assert reply.status_code in (201, 207), reply.json
        ids[who] = reply.json["results"][0]["image"]["id"]
    yield client, ids
    stop_app(app)
    server.stop(None).wait()
    store.close()


def _as(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {who}:{who[0]}-secret"}


def test_uploads_belong_to_the_key_owner(owned_gateway):
    client, ids = owned_gateway

    owners = {who: client.get(f"/api/images/{i}", headers=_as(who)).json for who, i in ids.items()}

    assert {who: image["owner"] for who, image in owners.items()} == {
        "alice": "alice",
        "bob": "bob",
    }


def test_a_key_changes_only_its_owner_images(owned_gateway):
    client, ids = owned_gateway

    tag_other = client.post(
        f"/api/images/{ids['bob']}/tags", json={"add": ["x"]}, headers=_as("alice")
    )
    delete_other = client.delete(f"/api/images/{ids['bob']}", headers=_as("alice"))
    bulk_mixed = client.post(
        "/api/images/bulk-delete", json={"ids": [ids["alice"], ids["bob"]]}, headers=_as("alice")
    )
    bulk_comma = client.post(
        "/api/images/bulk-delete",
        json={"ids": [f"{ids['alice']},{ids['bob']}"]},
        headers=_as("alice"),
    )
    still_there = [
        client.get(f"/api/images/{i}", headers=_as("bob")).status_code for i in ids.values()
    ]
    tag_own = client.post(
        f"/api/images/{ids['alice']}/tags", json={"add": ["mine"]}, headers=_as("alice")
    )
    delete_own = client.delete(f"/api/images/{ids['alice']}", headers=_as("alice"))

    assert [tag_other.status_code, delete_other.status_code] == [403, 403]
    assert "belongs to another owner" in delete_other.json["error"]["message"]
    assert [bulk_mixed.status_code, bulk_comma.status_code] == [403, 403]
    assert still_there == [200, 200]
    assert tag_own.status_code == 200 and "mine" in tag_own.json["tags"]
    assert delete_own.status_code == 200


def test_an_admin_key_changes_anyone_images_and_alone_resolves_every_group(owned_gateway):
    client, ids = owned_gateway

    rebuild_by_owner = client.post("/api/duplicates/resolve-exact", headers=_as("alice"))
    admin_tags = client.post(
        f"/api/images/{ids['bob']}/tags", json={"add": ["ok"]}, headers=_as("root")
    )
    admin_delete = client.delete(f"/api/images/{ids['bob']}", headers=_as("root"))

    assert rebuild_by_owner.status_code == 403
    assert admin_tags.status_code == 200
    assert admin_delete.status_code == 200


def test_a_logged_in_page_changes_only_its_owner_images(owned_gateway):
    client, ids = owned_gateway
    token = _csrf_token(client)
    client.post("/login", data={"csrf_token": token, "key": "alice:a-secret"})

    other = client.post(f"/images/{ids['bob']}/delete", data={"csrf_token": token})
    own = client.post(f"/images/{ids['alice']}/delete", data={"csrf_token": token})

    assert other.status_code == 403
    assert own.status_code == 303


def test_ids_already_gone_are_left_to_the_bulk_route(owned_gateway):
    client, ids = owned_gateway

    reply = client.post(
        "/api/images/bulk-delete",
        json={"ids": ["no-such-image", ids["alice"]]},
        headers=_as("alice"),
    )

    assert reply.status_code == 200
    assert reply.json == {"deleted": [ids["alice"]], "missing": ["no-such-image"]}
