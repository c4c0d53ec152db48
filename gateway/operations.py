"""What the API and the pages both do: ingest uploads, search, similar, duplicates, tags,
feedback, delete and the status report, over the service clients."""

from __future__ import annotations

import time
from typing import Any

import grpc
from flask import request
from werkzeug.datastructures import FileStorage

from gateway.clients import MODEL_TASK_WORDS, VECTOR_BACKEND_WORDS, match_field_word
from gateway.errors import ApiError, BadRequestError, ConflictError, ServiceError
from gateway.image_json import STATUS_NAMES, image_json
from gateway.ingest import FAILED, PENDING
from gateway.state import state
from gateway.upload_checks import check_upload, clean_filename, upload_filename
from imagerepo.common.v2 import common_pb2
from imagerepo.storage.v2 import storage_service_pb2 as storage_pb
from imagerepo.vision.v2 import vision_service_pb2 as vision_pb
from service_runtime.contracts_v2 import timestamp_of_ms
from vision_service.analysis_copy import bytes_for_analysis

MAX_TAG_CHARS = 64
MAX_TAGS_PER_REQUEST = 50
MAX_COMMENT_CHARS = 1000
# How long a tag change or delete waits for search to apply it (bulk actions wait per image,
# so briefly; a search that is away is not waited for at all).
SEARCH_CATCH_UP_S = 2.0


def uploaded_files() -> list[FileStorage]:
    files = [f for _name, f in request.files.items(multi=True)]
    if not files:
        raise BadRequestError("send one or more image files as multipart/form-data")
    return files


def ingest_file(
    upload: FileStorage, owner: str, keep_duplicate: bool = False, wait: bool = True
) -> dict[str, Any]:
    """Store one uploaded file and (with `wait`) wait briefly for its analysis; a result
    entry, never an exception. Bytes the owner has stored already are answered with that
    image ("already_stored", 200)."""
    st = state()
    raw_name = upload_filename(upload)
    try:
        filename = clean_filename(raw_name)
        data = upload.read()
        content_type = check_upload(filename, data, st.config.max_upload_bytes)
        outcome = st.pipeline.ingest(filename, data, owner, content_type, keep_duplicate, wait)
    except (ApiError, ServiceError) as exc:
        return {
            "filename": raw_name,
            "result": "rejected",
            "http_status": exc.status,
            "error": exc.message,
        }
    image = image_json(outcome.image, st.config.moderation_threshold)
    if outcome.already_stored:
        result = "already_stored"
    else:
        result = "duplicate" if outcome.duplicate_of else "stored"
    return {
        "filename": filename,
        "result": result,
        "http_status": 200 if outcome.already_stored else 201,
        "already_stored": outcome.already_stored,
        "image": image,
        "duplicate_of": outcome.duplicate_of,
        "pending_reason": outcome.pending_reason,
        "timings_ms": {k: round(v, 2) for k, v in outcome.timings_ms.items()},
    }


def upload_status(results: list[dict[str, Any]]) -> int:
    """201 when something new was stored, 200 when every file was in the library already,
    207 when some were refused and others not, else the refusals' status."""
    statuses = {r["http_status"] for r in results}
    if statuses == {200}:
        return 200
    if statuses <= {200, 201}:
        return 201
    if statuses & {200, 201}:
        return 207
    return statuses.pop() if len(statuses) == 1 else 400


def server_timing(results: list[dict[str, Any]]) -> str:
    totals: dict[str, float] = {}
    for result in results:
        for stage, ms in result.get("timings_ms", {}).items():
            totals[stage] = totals.get(stage, 0.0) + ms
    return ", ".join(f"{stage};dur={ms:.1f}" for stage, ms in totals.items())


def images_by_id(ids: list[str]) -> dict[str, storage_pb.ImageMetadata]:
    """Metadata of the ids that still exist (an index may briefly lag a delete), in one
    BatchGetImages call for a page of hits rather than one GetImage per hit."""
    return {image.id: image for image in state().clients.batch_get_images(ids)}


def search_results(query: str, page_size: int, page_token: str) -> dict[str, Any]:
    st = state()
    reply = st.clients.search_images(query, page_size=page_size, page_token=page_token)
    images = images_by_id([hit.image_id for hit in reply.hits])
    hits = [
        {
            "image": image_json(images[hit.image_id], st.config.moderation_threshold),
            "score": round(hit.score, 4),
            "reasons": [
                {"field": match_field_word(r.field), "term": r.term, "score": round(r.score, 4)}
                for r in hit.reasons
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
        # Search never leaves a page empty without a word: when nothing is labelled with
        # the query it shows the closest concepts, and a translated query says so.
        "closest": list(reply.closest),
        "note": reply.note,
    }


def similar_results(
    image_id: str = "",
    vector: list[float] | None = None,
    k: int = 10,
    min_similarity: float = 0.0,
) -> list:
    st = state()
    hits = st.clients.similar_images(image_id=image_id, vector=vector or [], k=k)
    hits = [hit for hit in hits if hit.similarity >= min_similarity]
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
    filename = clean_filename(upload_filename(upload))
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
            # v2 splits the groups: exact ones have no similarity, near ones no digest.
            "sha256": getattr(g, "sha256", ""),
            "min_similarity": round(float(getattr(g, "min_similarity", 0.0)), 4),
            "images": members,
        }

    exact = [group(g, "exact") for g in reply.exact_groups]
    near = [group(g, "near") for g in reply.near_groups]
    return {
        "exact_groups": [g for g in exact if len(g["images"]) > 1],
        "near_groups": [g for g in near if len(g["images"]) > 1],
    }


def set_tags(image_id: str, add: list[str], remove: list[str]) -> storage_pb.ImageMetadata:
    """Change an image's tags in storage; search follows storage's change feed (waited for
    briefly, so a search right after finds the new tags)."""
    st = state()
    add, remove = clean_tags(add), clean_tags(remove)
    if not add and not remove:
        raise BadRequestError("give tags to add or remove")
    image = st.clients.update_annotations(image_id, add_tags=add, remove_tags=remove)
    st.pipeline.wait_for_search(SEARCH_CATCH_UP_S)
    return image


def set_favourite(image_id: str, favourite: Any) -> storage_pb.ImageMetadata:
    """Star or unstar an image in storage (search follows the change feed, waited for
    briefly like a tag change)."""
    if not isinstance(favourite, bool):
        raise BadRequestError("'favourite' must be true or false")
    st = state()
    image = st.clients.set_favourite(image_id, favourite)
    st.pipeline.wait_for_search(SEARCH_CATCH_UP_S)
    return image


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
        create_time=timestamp_of_ms(_now_ms()),
    )
    return st.clients.update_annotations(image_id, add_feedback=[feedback])


def delete_image(image_id: str, permanent: bool = False) -> storage_pb.ImageMetadata:
    """Move to the trash (restorable until storage's retention ends), or with `permanent`
    delete from storage for good; search follows storage's change feed and drops it either
    way (waited for briefly, so a search right after no longer finds it)."""
    st = state()
    if permanent:
        deleted = st.clients.delete_image(image_id)
        st.tiles.forget(image_id)
    else:
        deleted = st.clients.set_trashed(image_id, True)
    st.pipeline.wait_for_search(SEARCH_CATCH_UP_S)
    return deleted


def restore_image(image_id: str) -> storage_pb.ImageMetadata:
    """Take an image out of the trash, back into the gallery and search."""
    st = state()
    image = st.clients.get_image(image_id)
    if not image.HasField("trash_time"):
        raise ConflictError("the image is not in the trash")
    image = st.clients.set_trashed(image_id, False)
    st.pipeline.wait_for_search(SEARCH_CATCH_UP_S)
    return image


def empty_trash(owner: str = "") -> list[str]:
    """Delete for good every image in the trash (only `owner`'s when set)."""
    st = state()
    gone: list[str] = []
    while True:
        reply = st.clients.list_images(page_size=500, owner=owner, trashed_only=True)
        for image in reply.images:
            try:
                st.clients.delete_image(image.id)
            except ServiceError as exc:
                if exc.code != grpc.StatusCode.NOT_FOUND:
                    raise
            st.tiles.forget(image.id)
            gone.append(image.id)
        if not reply.next_page_token or not reply.images:
            return gone


def retry_analysis(image_id: str) -> storage_pb.ImageMetadata:
    """Queue a FAILED image for analysis again (after vision was fixed or given more time);
    the image as it is after a short wait for the analysis workers."""
    st = state()
    image = st.clients.get_image(image_id)
    if image.status != FAILED:
        raise ConflictError("only an image whose analysis failed can be retried")
    pending = storage_pb.Annotations(status=PENDING, status_detail="retrying")
    image = st.clients.update_annotations(image_id, pending, ("status", "status_detail"))
    return st.pipeline.wait_for_analysis(image)


def _now_ms() -> int:
    return int(time.time() * 1000)


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
            # The change feed every consumer follows, and the analysis queue.
            "head_seq": stats.head_seq,
            "horizon_seq": stats.horizon_seq,
            "pending_count": stats.pending_count,
            "oldest_pending_age_ms": stats.oldest_pending_age.ToMilliseconds(),
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
            # Search follows storage's feed: the last change it applied, whether it is
            # connected to the feed, and how far a replay (new or lost index) has come.
            "applied_seq": stats.applied_seq,
            "following": stats.following,
            "feed_error": stats.feed_error,
            "replaying": stats.replaying,
            "replay_progress": round(stats.replay_progress, 4),
            "document_count": stats.document_count,
            "term_count": stats.term_count,
            "posting_bytes": stats.posting_bytes,
            "index_disk_bytes": stats.index_disk_bytes,
            "vector_count": stats.vector_count,
            "vector_backend": VECTOR_BACKEND_WORDS.get(stats.vector_backend, ""),
            "approximate_index": stats.approximate_index,
        }

    def models() -> list[dict[str, Any]]:
        return [
            {
                "name": m.name,
                "version": m.version,
                "task": MODEL_TASK_WORDS.get(m.task, ""),
                "license": m.license,
                "sha256": m.sha256,
                "loaded": m.loaded,
            }
            for m in st.clients.list_models()
        ]

    attempt("storage", storage)
    attempt("search", search_stats)
    report["consumers"] = consumer_lag(report)
    attempt("models", models)
    return report


def consumer_lag(report: dict[str, Any]) -> list[dict[str, Any]]:
    """How far each consumer of storage's change feed is behind (from the report's stats).

    search: changes it has not applied yet (storage's head_seq minus its applied_seq).
    analysis: images still PENDING and how long the oldest has waited (storage's queue).
    """
    storage, search = report.get("storage", {}), report.get("search", {})
    head = storage.get("head_seq")
    applied = search.get("applied_seq")
    consumers = [
        {
            "consumer": "search",
            "applied_seq": applied,
            "head_seq": head,
            "lag_seqs": max(0, head - applied)
            if head is not None and applied is not None
            else None,
            "following": search.get("following"),
            "replaying": search.get("replaying"),
            "replay_progress": search.get("replay_progress"),
            "error": search.get("error") or search.get("feed_error", ""),
        },
        {
            "consumer": "analysis",
            "pending_count": storage.get("pending_count"),
            "oldest_pending_age_ms": storage.get("oldest_pending_age_ms"),
            "error": storage.get("error", ""),
        },
    ]
    return consumers
