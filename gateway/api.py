"""The JSON REST API under /api (documented in gateway/openapi.json)."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, jsonify, request, stream_with_context

from gateway import library
from gateway import operations as ops
from gateway.clients import match_field_word
from gateway.errors import BadRequestError, NotFoundError, ServiceError, error_body
from gateway.image_json import STATUS_NAMES, image_json, iso_time, label_json
from gateway.placeholders import STATE_HEADER, thumbnail_unavailable
from gateway.state import state
from imagerepo.storage.v2 import storage_service_pb2 as storage_pb
from imagerepo.vision.v2 import vision_service_pb2 as vision_pb

api = Blueprint("api", __name__, url_prefix="/api")

OPENAPI_PATH = Path(__file__).with_name("openapi.json")
IMMUTABLE = "public, max-age=31536000, immutable"
THUMBNAIL_SIZES = {
    "small": storage_pb.THUMBNAIL_SIZE_SMALL,
    "preview": storage_pb.THUMBNAIL_SIZE_PREVIEW,
}
MAX_SHA256_LOOKUP = 1000
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# Spreadsheet programs run a cell starting with these as a formula.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


# --- request parsing ------------------------------------------------------------------------


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequestError(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise BadRequestError(f"{name} must be between {low} and {high}")
    return value


# The values the OpenAPI document lists (any case); "" is absent.
_YES = ("1", "true")
_NO = ("", "0", "false")


def _flag_arg(name: str) -> bool:
    """A yes/no query parameter; another word is a 400 rather than a silent "no" (which made
    `?favourite=yes` list every photo, and `?permanent=yes` only move to the trash)."""
    raw = request.args.get(name, "").strip().lower()
    if raw in _YES:
        return True
    if raw in _NO:
        return False
    raise BadRequestError(f"{name} must be 1 or 0 (or true/false)")


def _float_arg(name: str, default: float, low: float, high: float) -> float:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadRequestError(f"{name} must be a number") from None
    if not low <= value <= high:
        raise BadRequestError(f"{name} must be between {low} and {high}")
    return value


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequestError("send a JSON object with Content-Type: application/json")
    return body


# --- routes -----------------------------------------------------------------------------------


@api.get("/health")
def health() -> Any:
    statuses = state().clients.health()
    healthy = all(s == "SERVING" for s in statuses.values())
    body = {"status": "ok" if healthy else "degraded", "services": statuses}
    return jsonify(body), (200 if healthy else 503)


@api.get("/openapi.json")
def openapi() -> Any:
    return Response(OPENAPI_PATH.read_text(encoding="utf-8"), mimetype="application/json")


@api.post("/images")
def upload_images() -> Any:
    owner = state().access.require_api_writer()
    # One copy per photo unless asked: bytes already in the owner's library are answered
    # with that image (200, already_stored) instead of being stored again.
    keep = request.values.get("keep_duplicate", "").lower() in ("1", "true", "yes", "on")
    # By default the answer waits a moment (GATEWAY_ANALYSIS_WAIT_S) for the analysis, so it
    # can carry labels; wait=0 answers once the image is stored (bulk imports).
    wait = request.values.get("wait", "1").lower() not in ("0", "false", "no", "off")
    results = [ops.ingest_file(f, owner, keep, wait) for f in ops.uploaded_files()]
    body = {
        "results": results,
        "stored": sum(r["result"] == "stored" for r in results),
        "already_stored": sum(r["result"] == "already_stored" for r in results),
        "duplicates": sum(r["result"] == "duplicate" for r in results),
        "rejected": sum(r["result"] == "rejected" for r in results),
    }
    status = ops.upload_status(results)
    if status >= 400:
        # Every file was refused: also answer in the API's usual error shape.
        body.update(error_body(status, "; ".join(r["error"] for r in results)))
    response = jsonify(body)
    response.status_code = status
    timing = ops.server_timing(results)
    if timing:
        response.headers["Server-Timing"] = timing
    if len(results) == 1 and status == 201:
        response.headers["Location"] = results[0]["image"]["links"]["self"]
    return response


@api.get("/images")
def list_images() -> Any:
    st = state()
    page_size = _int_arg("page_size", 50, 1, 1000)
    status_name = request.args.get("status", "")
    statuses = {v: k for k, v in STATUS_NAMES.items() if k}
    if status_name and status_name not in statuses:
        raise BadRequestError("status must be pending, ready or failed")
    taken_from, taken_to = library.taken_range_ms(
        request.args.get("taken_from", ""), request.args.get("taken_to", "")
    )
    # Newest upload first unless asked (what clients had); a date range means by date taken.
    order = library.list_order(
        request.args.get("order", ""), "taken_newest" if taken_from or taken_to else "uploaded"
    )
    if (taken_from or taken_to) and order == "uploaded":
        raise BadRequestError("taken_from and taken_to need order=taken_newest or taken_oldest")
    reply = st.clients.list_images(
        page_size=page_size,
        page_token=request.args.get("page_token", ""),
        owner=request.args.get("owner", ""),
        status=statuses.get(status_name, 0),
        favourite_only=_flag_arg("favourite"),
        trashed_only=_flag_arg("trashed"),
        order=library.ORDERS[order],
        taken_from_unix_ms=taken_from,
        taken_to_unix_ms=taken_to,
    )
    return jsonify(
        images=[image_json(i, st.config.moderation_threshold) for i in reply.images],
        next_page_token=reply.next_page_token,
        total_count=reply.total_count,
    )


@api.get("/images/<image_id>")
def get_image(image_id: str) -> Any:
    st = state()
    return jsonify(image_json(st.clients.get_image(image_id), st.config.moderation_threshold))


def _sha256_matches(digests: list[str]) -> list[dict[str, Any]]:
    """Per digest, in order: the caller's images holding those bytes, newest first."""
    if len(digests) > MAX_SHA256_LOOKUP:
        raise BadRequestError(f"ask for at most {MAX_SHA256_LOOKUP} sha256 digests at a time")
    wanted = [d.strip().lower() if isinstance(d, str) else "" for d in digests]
    for raw, digest in zip(digests, wanted, strict=True):
        if not _SHA256_HEX.fullmatch(digest):
            raise BadRequestError(f"{str(raw)[:80]!r} is not a sha256 (64 hex digits)")
    if not wanted:
        return []
    st = state()
    found = st.clients.find_by_sha256(wanted, owner=st.access.viewer())
    return [
        {"sha256": sha, "images": [image_json(i, st.config.moderation_threshold) for i in images]}
        for sha, images in found
    ]


@api.get("/images/by-sha256/<digest>")
def images_by_sha256(digest: str) -> Any:
    return jsonify(_sha256_matches([digest])[0])


@api.post("/images/lookup")
def lookup_images() -> Any:
    digests = _json_body().get("sha256")
    if not isinstance(digests, list):
        raise BadRequestError('send {"sha256": ["<64 hex digits>", ...]}')
    return jsonify(matches=_sha256_matches(digests))


@api.get("/images/by-filename/<path:filename>")
def images_by_filename(filename: str) -> Any:
    st = state()
    images = st.clients.find_by_filename(filename, limit=_int_arg("limit", 0, 0, 1000))
    return jsonify(images=[image_json(i, st.config.moderation_threshold) for i in images])


@api.get("/images/<image_id>/original")
def original(image_id: str) -> Any:
    etag = library.original_etag(image_id)
    if request.if_none_match.contains(etag):
        return _not_modified(etag)
    image = state().clients.get_image(image_id)
    return library.serve_original(image, as_attachment=_download_arg())


def _download_arg() -> bool:
    """?download=1 (or any value but 0/false, as the OpenAPI document always said): an
    attachment; absent, empty, 0 or false: inline (shown in the browser), with its filename."""
    return request.args.get("download", "").strip().lower() not in _NO


@api.get("/images/zip")
def zip_download() -> Any:
    ids = library.selection(request.args.getlist("ids"))
    # Looked up before the 200 goes out: storage away is a 503 (not a truncated archive), a
    # selection of which nothing exists a 404 (not an empty one).
    images = ops.images_by_id(ids)
    found = [images[i] for i in ids if i in images]
    if not found:
        raise NotFoundError("none of the selected photos exists (any more)")
    response = Response(stream_with_context(library.zip_stream(found)), mimetype="application/zip")
    name = f"imagerepo-{len(found)}-photos.zip"
    response.headers.set("Content-Disposition", "attachment", filename=name)
    response.headers["Cache-Control"] = "no-store"
    return response


@api.post("/images/bulk-delete")
def bulk_delete() -> Any:
    state().access.require_api_writer()
    return jsonify(library.delete_many(library.selection(_json_body().get("ids", []))))


@api.post("/images/bulk-tags")
def bulk_tags() -> Any:
    st = state()
    st.access.require_api_writer()
    body = _json_body()
    add, remove = body.get("add", []), body.get("remove", [])
    if not isinstance(add, list) or not isinstance(remove, list):
        raise BadRequestError("'add' and 'remove' must be lists of strings")
    images, missing = library.tag_many(library.selection(body.get("ids", [])), add, remove)
    threshold = st.config.moderation_threshold
    return jsonify(images=[image_json(image, threshold) for image in images], missing=missing)


@api.get("/images/<image_id>/thumbnail")
def thumbnail(image_id: str) -> Any:
    size_name = request.args.get("size", "small")
    if size_name not in THUMBNAIL_SIZES:
        raise BadRequestError("size must be small or preview")
    etag = f"thumb-{size_name}-{image_id}"
    if request.if_none_match.contains(etag):
        return _not_modified(etag)
    try:
        thumb = state().clients.get_thumbnail(image_id, THUMBNAIL_SIZES[size_name])
    except ServiceError as exc:
        # No thumbnail will come of it (404), or storage is too busy to make it now (503 with
        # Retry-After): a placeholder picture either way (gateway/placeholders).
        answer = thumbnail_unavailable(image_id, exc)
        if answer is None:
            raise
        return answer
    # A PENDING image's thumbnail is made by storage when first asked for: this is it too.
    response = Response(thumb.data, mimetype=thumb.content_type or "image/webp")
    response.headers["Cache-Control"] = IMMUTABLE
    response.headers[STATE_HEADER] = "ready"
    response.set_etag(etag)
    return response


def _not_modified(etag: str) -> Response:
    response = Response(status=304)
    response.set_etag(etag)
    response.headers["Cache-Control"] = IMMUTABLE
    if etag.startswith("thumb-"):
        response.headers[STATE_HEADER] = "ready"
    return response


@api.delete("/images/<image_id>")
def delete(image_id: str) -> Any:
    st = state()
    st.access.require_api_writer()
    permanent = _flag_arg("permanent")
    deleted = ops.delete_image(image_id, permanent=permanent)
    return jsonify(
        deleted=image_json(deleted, st.config.moderation_threshold),
        # False: moved to the trash (POST .../restore brings it back); True: gone for good.
        permanent=permanent,
    )


@api.post("/images/<image_id>/restore")
def restore(image_id: str) -> Any:
    st = state()
    st.access.require_api_writer()
    image = ops.restore_image(image_id)
    return jsonify(image_json(image, st.config.moderation_threshold))


@api.post("/trash/empty")
def empty_trash() -> Any:
    st = state()
    who = st.access.require_api_writer()
    owner = who if st.access.keys_required and not st.access.is_admin(who) else ""
    return jsonify(deleted=ops.empty_trash(owner))


@api.post("/images/<image_id>/retry")
def retry(image_id: str) -> Any:
    st = state()
    st.access.require_api_writer()
    image = ops.retry_analysis(image_id)
    return jsonify(image_json(image, st.config.moderation_threshold))


@api.get("/search")
def search() -> Any:
    query = request.args.get("q", "").strip()
    if not query:
        raise BadRequestError("give words to search for with ?q=")
    page_size = _int_arg("page_size", 20, 1, 200)
    token = request.args.get("page_token", "")
    sort = request.args.get("sort", "")
    period = request.args.get("taken_from", ""), request.args.get("taken_until", "")
    favourites = _flag_arg("favourites")
    from gateway import albums  # imports this module: late

    if albums.album_search_wanted(query):
        args = (query, page_size, token, sort or "relevance", *period)
        return jsonify(albums.search_in_album(*args, favourites=favourites))
    if sort or any(period) or favourites:
        return jsonify(
            library.search_by_date(
                query, page_size, token, sort or "relevance", *period, favourites=favourites
            )
        )
    return jsonify(ops.search_results(query, page_size, token))


@api.get("/suggest")
def suggest() -> Any:
    prefix = request.args.get("q", "").strip()
    if not prefix:
        return jsonify(suggestions=[])
    found = state().clients.suggest(prefix, limit=_int_arg("limit", 8, 1, 50))
    return jsonify(
        suggestions=[
            {
                "text": s.text,
                "field": match_field_word(s.field),
                "document_count": s.document_count,
            }
            for s in found
        ]
    )


@api.get("/images/<image_id>/similar")
def similar(image_id: str) -> Any:
    k = _int_arg("k", 10, 1, 100)
    cutoff = _float_arg("min_similarity", 0.0, 0.0, 1.0)
    found = ops.similar_results(image_id=image_id, k=k, min_similarity=cutoff)
    return jsonify(image_id=image_id, similar=found)


@api.post("/similar")
def similar_to_upload() -> Any:
    k = _int_arg("k", 10, 1, 100)
    cutoff = _float_arg("min_similarity", 0.0, 0.0, 1.0)
    _name, analysis = ops.analyse_upload((vision_pb.ANALYSIS_TASK_FEATURES,))
    vector = list(analysis.feature_vector)
    return jsonify(similar=ops.similar_results(vector=vector, k=k, min_similarity=cutoff))


@api.post("/predict")
def predict() -> Any:
    filename, analysis = ops.analyse_upload()
    st = state()
    return jsonify(
        filename=filename,
        labels=[label_json(label) for label in analysis.labels],
        moderation_score=round(float(analysis.moderation_score), 4),
        moderated=float(analysis.moderation_score) > st.config.moderation_threshold,
        ocr_text=analysis.ocr_text,
        width=analysis.width,
        height=analysis.height,
        format=analysis.format,
        model_versions=dict(analysis.model_versions),
    )


@api.post("/images/<image_id>/tags")
def tags(image_id: str) -> Any:
    st = state()
    st.access.require_api_writer()
    body = _json_body()
    add, remove = body.get("add", []), body.get("remove", [])
    if not isinstance(add, list) or not isinstance(remove, list):
        raise BadRequestError("'add' and 'remove' must be lists of strings")
    image = ops.set_tags(image_id, add, remove)
    return jsonify(image_json(image, st.config.moderation_threshold))


@api.post("/images/<image_id>/favourite")
def favourite(image_id: str) -> Any:
    st = state()
    st.access.require_api_writer()
    image = ops.set_favourite(image_id, _json_body().get("favourite"))
    return jsonify(image_json(image, st.config.moderation_threshold))


@api.post("/images/<image_id>/feedback")
def feedback(image_id: str) -> Any:
    st = state()
    st.access.require_api_writer()
    body = _json_body()
    label, comment = body.get("label", ""), body.get("comment", "")
    if not isinstance(label, str) or not isinstance(comment, str):
        raise BadRequestError("'label' and 'comment' must be strings")
    image = ops.add_feedback(image_id, label, comment)
    return jsonify(image_json(image, st.config.moderation_threshold)), 201


@api.get("/feedback.csv")
def feedback_csv() -> Any:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "image_id",
            "filename",
            "label",
            "label_probability",
            "comment",
            "reported_by",
            "reported_at",
            "current_labels",
        ]
    )
    for image in state().clients.iter_images():
        probabilities = {label.name: label.probability for label in image.labels}
        for fb in image.feedback:
            writer.writerow(
                _csv_safe(
                    [
                        image.id,
                        image.filename,
                        fb.label,
                        f"{probabilities.get(fb.label, 0.0):.4f}",
                        fb.comment,
                        fb.reported_by,
                        iso_time(fb.create_time.ToMilliseconds()),
                        "; ".join(label.name for label in image.labels),
                    ]
                )
            )
    response = Response(out.getvalue(), mimetype="text/csv")
    response.headers.set("Content-Disposition", "attachment", filename="feedback.csv")
    return response


def _csv_safe(row: list[str]) -> list[str]:
    return ["'" + cell if cell.startswith(_FORMULA_PREFIXES) else cell for cell in row]


@api.get("/duplicates")
def duplicates() -> Any:
    threshold = _float_arg("near_threshold", 0.0, 0.0, 1.0)
    groups = ops.duplicate_groups(request.args.get("image_id", ""), threshold)
    return jsonify(library.readable_groups(groups))


@api.post("/duplicates/resolve")
def resolve_duplicates() -> Any:
    state().access.require_api_writer()
    body = _json_body()
    keep, remove = body.get("keep", ""), body.get("remove", [])
    if not isinstance(keep, str) or not isinstance(remove, list):
        raise BadRequestError("'keep' must be an image id and 'remove' a list of ids")
    return jsonify(library.resolve_group(keep, library.selection(remove)))


@api.post("/duplicates/resolve-exact")
def resolve_exact_duplicates() -> Any:
    state().access.require_api_writer()
    body = request.get_json(silent=True) or {}
    keep = body.get("keep", "oldest") if isinstance(body, dict) else "oldest"
    return jsonify(library.resolve_exact_groups(str(keep)))


@api.get("/status")
def status() -> Any:
    return jsonify(ops.status_report())
