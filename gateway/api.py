"""The JSON REST API under /api (documented in gateway/openapi.json)."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
from flask import Blueprint, Response, jsonify, request
from werkzeug.datastructures import FileStorage

from gateway.errors import ApiError, BadRequestError, ServiceError, error_body
from gateway.image_json import STATUS_NAMES, image_json, iso_time, label_json
from gateway.ingest import PENDING, READY, bytes_for_analysis
from gateway.state import state
from gateway.upload_checks import check_upload, clean_filename
from imagerepo.common.v1 import common_pb2
from imagerepo.storage.v1 import storage_service_pb2 as storage_pb
from imagerepo.vision.v1 import vision_service_pb2 as vision_pb

api = Blueprint("api", __name__, url_prefix="/api")

OPENAPI_PATH = Path(__file__).with_name("openapi.json")
IMMUTABLE = "public, max-age=31536000, immutable"
THUMBNAIL_SIZES = {
    "small": storage_pb.THUMBNAIL_SIZE_SMALL,
    "preview": storage_pb.THUMBNAIL_SIZE_PREVIEW,
}
MAX_TAG_CHARS = 64
MAX_TAGS_PER_REQUEST = 50
MAX_COMMENT_CHARS = 1000
# Spreadsheet programs run a cell starting with these as a formula.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


# --- helpers shared with the HTML pages ------------------------------------------------------


def uploaded_files() -> list[FileStorage]:
    files = [f for _name, f in request.files.items(multi=True)]
    if not files:
        raise BadRequestError("send one or more image files as multipart/form-data")
    return files


def ingest_file(upload: FileStorage, owner: str) -> dict[str, Any]:
    """Store and process one uploaded file; a result entry, never an exception."""
    st = state()
    raw_name = upload.filename or ""
    try:
        filename = clean_filename(raw_name)
        data = upload.read()
        content_type = check_upload(filename, data, st.config.max_upload_bytes)
        outcome = st.pipeline.ingest(filename, data, owner, content_type)
    except (ApiError, ServiceError) as exc:
        return {
            "filename": raw_name,
            "result": "rejected",
            "http_status": exc.status,
            "error": exc.message,
        }
    image = image_json(outcome.image, st.config.moderation_threshold)
    return {
        "filename": filename,
        "result": "duplicate" if outcome.duplicate_of else "stored",
        "http_status": 201,
        "image": image,
        "duplicate_of": outcome.duplicate_of,
        "pending_reason": outcome.pending_reason,
        "timings_ms": {k: round(v, 2) for k, v in outcome.timings_ms.items()},
    }


def upload_status(results: list[dict[str, Any]]) -> int:
    statuses = {r["http_status"] for r in results}
    if statuses == {201}:
        return 201
    if 201 in statuses:
        return 207
    return statuses.pop() if len(statuses) == 1 else 400


def server_timing(results: list[dict[str, Any]]) -> str:
    totals: dict[str, float] = {}
    for result in results:
        for stage, ms in result.get("timings_ms", {}).items():
            totals[stage] = totals.get(stage, 0.0) + ms
    return ", ".join(f"{stage};dur={ms:.1f}" for stage, ms in totals.items())


def images_by_id(ids: list[str]) -> dict[str, storage_pb.ImageMetadata]:
    """Metadata of the ids that still exist (an index may briefly lag a delete)."""
    found: dict[str, storage_pb.ImageMetadata] = {}
    for image_id in ids:
        try:
            found[image_id] = state().clients.get_image(image_id)
        except ServiceError as exc:
            if exc.code != grpc.StatusCode.NOT_FOUND:
                raise
    return found


def search_results(query: str, page_size: int, page_token: str) -> dict[str, Any]:
    st = state()
    reply = st.clients.search_images(query, page_size=page_size, page_token=page_token)
    images = images_by_id([hit.image_id for hit in reply.hits])
    hits = [
        {
            "image": image_json(images[hit.image_id], st.config.moderation_threshold),
            "score": round(hit.score, 4),
            "reasons": [
                {"field": r.field, "term": r.term, "score": round(r.score, 4)} for r in hit.reasons
            ],
        }
        for hit in reply.hits
        if hit.image_id in images
    ]
    return {
        "query": query,
        "hits": hits,
        "total_hits": reply.total_hits,
        "next_page_token": reply.next_page_token,
        "fell_back_to_or": reply.fell_back_to_or,
    }


def similar_results(image_id: str = "", vector: list[float] | None = None, k: int = 10) -> list:
    st = state()
    hits = st.clients.similar_images(image_id=image_id, vector=vector or [], k=k)
    images = images_by_id([hit.image_id for hit in hits])
    return [
        {
            "image": image_json(images[hit.image_id], st.config.moderation_threshold),
            "similarity": round(float(hit.similarity), 4),
        }
        for hit in hits
        if hit.image_id in images
    ]


def analyse_upload(tasks: tuple[int, ...] = ()) -> tuple[str, vision_pb.AnalyzeResponse]:
    """Analyse one uploaded image without storing it."""
    st = state()
    upload = uploaded_files()[0]
    filename = clean_filename(upload.filename)
    data = upload.read()
    check_upload(filename, data, st.config.max_upload_bytes)
    return filename, st.clients.analyze(bytes_for_analysis(data), tasks=tasks)


def duplicate_groups(image_id: str = "", near_threshold: float = 0.0) -> dict[str, Any]:
    st = state()
    reply = st.clients.find_duplicates(image_id=image_id, near_threshold=near_threshold)
    ids = {i for g in (*reply.exact_groups, *reply.near_groups) for i in g.image_ids}
    images = images_by_id(sorted(ids))

    def group(g: Any, kind: str) -> dict[str, Any]:
        members = [
            image_json(images[i], st.config.moderation_threshold)
            for i in g.image_ids
            if i in images
        ]
        return {
            "kind": kind,
            "sha256": g.sha256,
            "min_similarity": round(float(g.min_similarity), 4),
            "images": members,
        }

    exact = [group(g, "exact") for g in reply.exact_groups]
    near = [group(g, "near") for g in reply.near_groups]
    return {
        "exact_groups": [g for g in exact if len(g["images"]) > 1],
        "near_groups": [g for g in near if len(g["images"]) > 1],
    }


def set_tags(image_id: str, add: list[str], remove: list[str]) -> storage_pb.ImageMetadata:
    """Change an image's tags in storage, then re-index it (or leave it to the reconciler)."""
    st = state()
    add, remove = clean_tags(add), clean_tags(remove)
    if not add and not remove:
        raise BadRequestError("give tags to add or remove")
    image = st.clients.update_annotations(image_id, add_tags=add, remove_tags=remove)
    reindex(image)
    return image


def reindex(image: storage_pb.ImageMetadata) -> None:
    """Send a READY image's new tags to search; if search is away the reconciler does it."""
    st = state()
    if image.status != READY:
        return
    pending = storage_pb.Annotations(status=PENDING, status_detail="re-indexing")
    image = st.clients.update_annotations(image.id, pending, ("status", "status_detail"))
    st.pipeline.finish(image)


def clean_tags(tags: list[Any]) -> list[str]:
    if len(tags) > MAX_TAGS_PER_REQUEST:
        raise BadRequestError(f"at most {MAX_TAGS_PER_REQUEST} tags per request")
    cleaned: list[str] = []
    for tag in tags:
        if not isinstance(tag, str):
            raise BadRequestError("tags must be strings")
        text = " ".join(tag.split()).lower()
        if len(text) > MAX_TAG_CHARS:
            raise BadRequestError(f"a tag is at most {MAX_TAG_CHARS} characters")
        if text and text not in cleaned:
            cleaned.append(text)
    return cleaned


def add_feedback(image_id: str, label: str, comment: str) -> storage_pb.ImageMetadata:
    st = state()
    label, comment = label.strip(), comment.strip()
    if not label:
        raise BadRequestError("name the label that is wrong")
    if len(comment) > MAX_COMMENT_CHARS:
        raise BadRequestError(f"a comment is at most {MAX_COMMENT_CHARS} characters")
    image = st.clients.get_image(image_id)
    if label not in {lab.name for lab in image.labels}:
        raise BadRequestError(f"the image has no label {label!r}")
    feedback = common_pb2.LabelFeedback(
        label=label,
        comment=comment,
        reported_by=st.access.viewer(),
        created_at_unix_ms=_now_ms(),
    )
    return st.clients.update_annotations(image_id, add_feedback=[feedback])


def delete_image(image_id: str) -> storage_pb.ImageMetadata:
    """Delete from storage, then from search (retried by the reconciler if search is away)."""
    st = state()
    deleted = st.clients.delete_image(image_id)
    st.pipeline.remove_from_index(image_id)
    st.tiles.forget(image_id)
    return deleted


def _now_ms() -> int:
    return int(time.time() * 1000)


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
    results = [ingest_file(f, owner) for f in uploaded_files()]
    body = {
        "results": results,
        "stored": sum(r["result"] == "stored" for r in results),
        "duplicates": sum(r["result"] == "duplicate" for r in results),
        "rejected": sum(r["result"] == "rejected" for r in results),
    }
    status = upload_status(results)
    if status >= 400:
        # Every file was refused: also answer in the API's usual error shape.
        body.update(error_body(status, "; ".join(r["error"] for r in results)))
    response = jsonify(body)
    response.status_code = status
    timing = server_timing(results)
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
    reply = st.clients.list_images(
        page_size=page_size,
        page_token=request.args.get("page_token", ""),
        owner=request.args.get("owner", ""),
        status=statuses.get(status_name, 0),
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


@api.get("/images/by-filename/<path:filename>")
def images_by_filename(filename: str) -> Any:
    st = state()
    images = st.clients.find_by_filename(filename, limit=_int_arg("limit", 0, 0, 1000))
    return jsonify(images=[image_json(i, st.config.moderation_threshold) for i in images])


@api.get("/images/<image_id>/original")
def original(image_id: str) -> Any:
    st = state()
    etag = f"orig-{image_id}"
    if request.if_none_match.contains(etag):
        return _not_modified(etag)
    image = st.clients.get_image(image_id)
    chunks = st.clients.read_image_chunks(image_id)
    first = next(chunks, None)  # errors (not found, unavailable) surface before headers go out

    def body() -> Iterator[bytes]:
        if first is not None:
            yield first.chunk
        for chunk in chunks:
            yield chunk.chunk

    response = Response(body(), mimetype=image.content_type or "application/octet-stream")
    response.headers["Content-Length"] = str(image.byte_size)
    disposition = "attachment" if request.args.get("download") else "inline"
    response.headers.set("Content-Disposition", disposition, filename=image.filename)
    response.headers["Cache-Control"] = IMMUTABLE
    response.set_etag(etag)
    return response


@api.get("/images/<image_id>/thumbnail")
def thumbnail(image_id: str) -> Any:
    size_name = request.args.get("size", "small")
    if size_name not in THUMBNAIL_SIZES:
        raise BadRequestError("size must be small or preview")
    etag = f"thumb-{size_name}-{image_id}"
    if request.if_none_match.contains(etag):
        return _not_modified(etag)
    thumb = state().clients.get_thumbnail(image_id, THUMBNAIL_SIZES[size_name])
    response = Response(thumb.data, mimetype=thumb.content_type or "image/jpeg")
    response.headers["Cache-Control"] = IMMUTABLE
    response.set_etag(etag)
    return response


def _not_modified(etag: str) -> Response:
    response = Response(status=304)
    response.set_etag(etag)
    response.headers["Cache-Control"] = IMMUTABLE
    return response


@api.delete("/images/<image_id>")
def delete(image_id: str) -> Any:
    st = state()
    st.access.require_api_writer()
    deleted = delete_image(image_id)
    return jsonify(deleted=image_json(deleted, st.config.moderation_threshold))


@api.get("/search")
def search() -> Any:
    query = request.args.get("q", "").strip()
    if not query:
        raise BadRequestError("give words to search for with ?q=")
    page_size = _int_arg("page_size", 20, 1, 200)
    return jsonify(search_results(query, page_size, request.args.get("page_token", "")))


@api.get("/suggest")
def suggest() -> Any:
    prefix = request.args.get("q", "").strip()
    if not prefix:
        return jsonify(suggestions=[])
    found = state().clients.suggest(prefix, limit=_int_arg("limit", 8, 1, 50))
    return jsonify(
        suggestions=[
            {"text": s.text, "field": s.field, "document_count": s.document_count} for s in found
        ]
    )


@api.get("/images/<image_id>/similar")
def similar(image_id: str) -> Any:
    k = _int_arg("k", 10, 1, 100)
    return jsonify(image_id=image_id, similar=similar_results(image_id=image_id, k=k))


@api.post("/similar")
def similar_to_upload() -> Any:
    k = _int_arg("k", 10, 1, 100)
    _name, analysis = analyse_upload((vision_pb.ANALYSIS_TASK_FEATURES,))
    return jsonify(similar=similar_results(vector=list(analysis.feature_vector), k=k))


@api.post("/predict")
def predict() -> Any:
    filename, analysis = analyse_upload()
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
    image = set_tags(image_id, add, remove)
    return jsonify(image_json(image, st.config.moderation_threshold))


@api.post("/images/<image_id>/feedback")
def feedback(image_id: str) -> Any:
    st = state()
    st.access.require_api_writer()
    body = _json_body()
    label, comment = body.get("label", ""), body.get("comment", "")
    if not isinstance(label, str) or not isinstance(comment, str):
        raise BadRequestError("'label' and 'comment' must be strings")
    image = add_feedback(image_id, label, comment)
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
                        iso_time(fb.created_at_unix_ms),
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
    return jsonify(duplicate_groups(request.args.get("image_id", ""), threshold))


@api.get("/status")
def status() -> Any:
    return jsonify(status_report())


def status_report() -> dict[str, Any]:
    """Counts, sizes and versions from every service; a service that is away shows its error."""
    st = state()
    report: dict[str, Any] = {"health": st.clients.health()}

    def attempt(name: str, build: Any) -> None:
        try:
            report[name] = build()
        except ServiceError as exc:
            report[name] = {"error": exc.message}

    def storage() -> dict[str, Any]:
        stats = st.clients.storage_stats()
        counts = {
            name: st.clients.list_images(page_size=1, status=code).total_count
            for code, name in STATUS_NAMES.items()
            if code
        }
        disk = stats.disk_bytes
        column_raw = sum(c.raw_bytes for c in stats.columns)
        column_stored = sum(c.stored_bytes for c in stats.columns)
        return {
            "image_count": stats.image_count,
            "deleted_count": stats.deleted_count,
            "segment_count": stats.segment_count,
            "disk_bytes": disk,
            "raw_image_bytes": stats.raw_image_bytes,
            "wal_bytes": stats.wal_bytes,
            # Originals over everything on disk (log included), and what the segments'
            # column encoding alone achieves.
            "compression_ratio": round(stats.raw_image_bytes / disk, 3) if disk else None,
            "segment_compression_ratio": (
                round(column_raw / column_stored, 3) if column_stored else None
            ),
            "by_status": counts,
            "pending_removals": len(st.pipeline.pending_removals),
            "columns": [
                {
                    "name": c.name,
                    "raw_bytes": c.raw_bytes,
                    "stored_bytes": c.stored_bytes,
                    "ratio": round(c.raw_bytes / c.stored_bytes, 3) if c.stored_bytes else None,
                }
                for c in stats.columns
            ],
        }

    def search_stats() -> dict[str, Any]:
        stats = st.clients.search_stats()
        return {
            "document_count": stats.document_count,
            "term_count": stats.term_count,
            "posting_bytes": stats.posting_bytes,
            "index_disk_bytes": stats.index_disk_bytes,
            "vector_count": stats.vector_count,
            "vector_backend": stats.vector_backend,
            "approximate_index": stats.approximate_index,
        }

    def models() -> list[dict[str, Any]]:
        return [
            {
                "name": m.name,
                "version": m.version,
                "task": m.task,
                "license": m.license,
                "sha256": m.sha256,
                "loaded": m.loaded,
            }
            for m in st.clients.list_models()
        ]

    attempt("storage", storage)
    attempt("search", search_stats)
    attempt("models", models)
    return report
