"""Real answers of the running gateway checked against gateway/openapi.json.

Every call below goes to the whole stack; its status code must be documented for that
operation, its Content-Type must be one the document names, and a JSON body must validate
against the documented schema (OpenAPI 3.1 = JSON Schema 2020-12), with every object field
documented: an answer that grows a field the document does not know is drift, and fails here.
"""

from __future__ import annotations

import copy
import fnmatch
import io
import json
import re
import uuid
import zipfile
from typing import Any

import pytest
import requests
from openapi_schema_validator import OAS31Validator

from gateway.api import OPENAPI_PATH

from .conftest import fresh_jpeg


def _strict(node: Any) -> Any:
    """The document with additionalProperties: false wherever an object lists its properties
    and says nothing else about extra ones."""
    if isinstance(node, dict):
        out = {key: _strict(value) for key, value in node.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_strict(value) for value in node]
    return node


DOC = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
STRICT = _strict(copy.deepcopy(DOC))


def _pointer(*parts: str) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def check(method: str, template: str, reply: requests.Response) -> Any:
    """The reply conforms to the documented operation; its JSON body (or None)."""
    operation = DOC["paths"][template][method]
    status = str(reply.status_code)
    assert status in operation["responses"], (
        f"{method.upper()} {template} answered {status}, documented: "
        f"{sorted(operation['responses'])}"
    )
    documented = operation["responses"][status]
    parts = ("paths", template, method, "responses", status)
    if "$ref" in documented:
        name = documented["$ref"].rsplit("/", 1)[1]
        documented = DOC["components"]["responses"][name]
        parts = ("components", "responses", name)
    content = documented.get("content", {})
    if not content:
        assert not reply.content, f"{method.upper()} {template} {status} should have no body"
        return None
    mimetype = reply.headers.get("Content-Type", "").split(";")[0].strip()
    matches = [m for m in content if fnmatch.fnmatch(mimetype, m)]
    assert matches, f"{method.upper()} {template} {status}: {mimetype} not in {list(content)}"
    if mimetype != "application/json":
        return None
    body = reply.json()
    schema = {**STRICT, "$ref": _pointer(*parts, "content", matches[0], "schema")}
    errors = sorted(OAS31Validator(schema).iter_errors(body), key=lambda e: list(e.path))
    assert not errors, f"{method.upper()} {template} {status}: " + "; ".join(
        f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:5]
    )
    return body


@pytest.fixture(scope="module")
def two_images(gateway_url, photo_jpegs) -> list[dict]:
    parts = [
        ("files", (f"schema-{n}-{uuid.uuid4().hex[:6]}.jpg", fresh_jpeg(photo_jpegs[n])))
        for n in ("chelsea", "rocket")
    ]
    reply = requests.post(f"{gateway_url}/api/images", files=parts, timeout=120)
    body = check("post", "/api/images", reply)
    assert reply.status_code == 201
    return [r["image"] for r in body["results"]]


def test_reads_match_their_schemas(gateway_url, two_images):
    url = gateway_url
    image = two_images[0]
    iid = image["id"]

    check("get", "/api/health", requests.get(f"{url}/api/health", timeout=30))
    check("get", "/api/status", requests.get(f"{url}/api/status", timeout=60))
    check("get", "/api/images", requests.get(f"{url}/api/images?page_size=3", timeout=30))
    check("get", "/api/images/{image_id}", requests.get(f"{url}/api/images/{iid}", timeout=30))
    by_name = requests.get(f"{url}/api/images/by-filename/{image['filename']}", timeout=30)
    assert check("get", "/api/images/by-filename/{filename}", by_name)["images"]
    check("get", "/api/search", requests.get(f"{url}/api/search?q=cat", timeout=30))
    check("get", "/api/suggest", requests.get(f"{url}/api/suggest?q=ca", timeout=30))
    similar = requests.get(f"{url}/api/images/{iid}/similar?k=3", timeout=30)
    check("get", "/api/images/{image_id}/similar", similar)
    check("get", "/api/duplicates", requests.get(f"{url}/api/duplicates", timeout=60))
    check("get", "/api/feedback.csv", requests.get(f"{url}/api/feedback.csv", timeout=30))


def test_binary_answers_have_the_documented_types(gateway_url, two_images):
    url = gateway_url
    iid = two_images[0]["id"]
    template = "/api/images/{image_id}/thumbnail"

    for size in ("small", "preview"):
        thumb = requests.get(f"{url}/api/images/{iid}/thumbnail?size={size}", timeout=30)
        check("get", template, thumb)
        if size == "small":
            assert thumb.headers["Content-Type"] == "image/webp"  # documented so, served so
        again = requests.get(
            thumb.url, headers={"If-None-Match": thumb.headers["ETag"]}, timeout=30
        )
        check("get", template, again)
        assert again.status_code == 304

    original = requests.get(f"{url}/api/images/{iid}/original", timeout=30)
    check("get", "/api/images/{image_id}/original", original)
    part = requests.get(
        f"{url}/api/images/{iid}/original", headers={"Range": "bytes=0-9"}, timeout=30
    )
    check("get", "/api/images/{image_id}/original", part)
    assert part.status_code == 206 and len(part.content) == 10

    ids = ",".join(i["id"] for i in two_images)
    archive = requests.get(f"{url}/api/images/zip?ids={ids}", timeout=60)
    check("get", "/api/images/zip", archive)
    assert len(zipfile.ZipFile(io.BytesIO(archive.content)).namelist()) == 2


def test_writes_match_their_schemas(gateway_url, photo_jpegs):
    url = gateway_url
    first, second = (
        check(
            "post",
            "/api/images",
            requests.post(
                f"{url}/api/images",
                files={"file": (f"w-{n}.jpg", fresh_jpeg(photo_jpegs[n]))},
                timeout=120,
            ),
        )["results"][0]["image"]
        for n in ("china", "flower")
    )

    tags = requests.post(
        f"{url}/api/images/{first['id']}/tags", json={"add": ["schema"]}, timeout=60
    )
    check("post", "/api/images/{image_id}/tags", tags)
    feedback = requests.post(
        f"{url}/api/images/{first['id']}/feedback",
        json={"label": first["labels"][0]["name"]},
        timeout=30,
    )
    check("post", "/api/images/{image_id}/feedback", feedback)
    bulk = requests.post(
        f"{url}/api/images/bulk-tags", json={"ids": [first["id"]], "add": ["b"]}, timeout=60
    )
    check("post", "/api/images/bulk-tags", bulk)
    exact = requests.post(f"{url}/api/duplicates/resolve-exact", json={}, timeout=60)
    check("post", "/api/duplicates/resolve-exact", exact)
    resolve = requests.post(
        f"{url}/api/duplicates/resolve",
        json={"keep": first["id"], "remove": [second["id"]]},
        timeout=60,
    )
    assert check("post", "/api/duplicates/resolve", resolve)["deleted"] == [second["id"]]
    gone = requests.post(
        f"{url}/api/images/bulk-delete", json={"ids": [first["id"], second["id"]]}, timeout=60
    )
    body = check("post", "/api/images/bulk-delete", gone)
    assert body == {"deleted": [first["id"]], "missing": [second["id"]]}


def test_predict_and_similar_to_an_upload_match_their_schemas(gateway_url, photo_jpegs):
    photo = {"file": ("query.jpg", photo_jpegs["coffee"])}
    check("post", "/api/predict", requests.post(f"{gateway_url}/api/predict", files=photo))
    check("post", "/api/similar", requests.post(f"{gateway_url}/api/similar", files=photo))


def test_errors_match_their_schemas(gateway_url):
    url = gateway_url
    missing = requests.get(f"{url}/api/images/{'0' * 32}", timeout=30)
    assert check("get", "/api/images/{image_id}", missing)["error"]["status"] == 404
    check("get", "/api/images", requests.get(f"{url}/api/images?page_size=0", timeout=30))
    check("get", "/api/search", requests.get(f"{url}/api/search", timeout=30))
    check("get", "/api/images/zip", requests.get(f"{url}/api/images/zip", timeout=30))
    refused = requests.post(
        f"{url}/api/images", files={"file": ("notes.jpg", b"plain text")}, timeout=30
    )
    body = check("post", "/api/images", refused)
    assert re.search("not an image", body["error"]["message"])


def test_the_checker_catches_drift():
    """A field the document does not know fails, as does a wrong type or content type."""

    class Fake(requests.Response):
        def __init__(self, status: int, body: Any, mimetype: str = "application/json") -> None:
            super().__init__()
            self.status_code = status
            self._content = json.dumps(body).encode()
            self.headers["Content-Type"] = mimetype

    good = {"status": "ok", "services": {"storage": "SERVING"}}
    check("get", "/api/health", Fake(200, good))
    with pytest.raises(AssertionError, match="Additional properties"):
        check("get", "/api/health", Fake(200, {**good, "surprise": 1}))
    with pytest.raises(AssertionError):
        check("get", "/api/health", Fake(200, {**good, "services": []}))
    with pytest.raises(AssertionError, match="text/html not in"):
        check("get", "/api/images/{image_id}/thumbnail", Fake(200, {}, "text/html"))
    with pytest.raises(AssertionError, match="answered 418"):
        check("get", "/api/health", Fake(418, good))
