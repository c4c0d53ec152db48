"""How an image (storage's ImageMetadata) is shown to API clients and templates."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from gateway.exif_display import describe, taken_at
from imagerepo.common.v2 import common_pb2
from imagerepo.storage.v2 import storage_service_pb2 as storage_pb
from service_runtime.contracts_v2 import colour_name

STATUS_NAMES = {
    common_pb2.ANALYSIS_STATUS_UNSPECIFIED: "pending",
    common_pb2.ANALYSIS_STATUS_PENDING: "pending",
    common_pb2.ANALYSIS_STATUS_READY: "ready",
    common_pb2.ANALYSIS_STATUS_FAILED: "failed",
}


# A caption names what the model sees only when it is this sure; otherwise the filename.
CONFIDENT_LABEL = 0.6
# Labels this likely go into an image's alt text.
ALT_LABEL = 0.25
_WAITING = re.compile(r"waiting for (\w+): (\w+)")
_FAILED = re.compile(r"(\w+) could not process this image \((\w+):")
# What the analysis workers write (analysis_service.failures): a refusal, a failure that kept
# coming back, and the last error of an image still waiting.
_REFUSED = re.compile(r"(\w+) cannot analyse this image: (.*)", re.DOTALL)
_KEPT_FAILING = re.compile(r"(\w+) failed on this image (\d+) times")
_AWAY = re.compile(r"(\w+) unavailable \((\w+)\)")
_RETRYING = re.compile(r"(\w+) failed \((\w+)\)")
_TOO_LARGE_WORDS = ("pixels", "too large", "larger than")
# Storage's thumbnail state (made after the upload is acknowledged) by name.
THUMBNAIL_STATE_NAMES = {
    storage_pb.THUMBNAIL_STATE_UNSPECIFIED: "pending",
    storage_pb.THUMBNAIL_STATE_PENDING: "pending",
    storage_pb.THUMBNAIL_STATE_READY: "ready",
    storage_pb.THUMBNAIL_STATE_FAILED: "failed",
}
THUMBNAIL_FAILED_TEXT = "no preview: the file is damaged and its picture could not be read"
_SERVICE_WORDS = {"vision": "the analyser", "search": "the search index", "storage": "storage"}
_REASON_WORDS = {
    "labels": "looks like",
    "concepts": "looks like",
    "semantic": "close in meaning to",
    "tags": "tagged",
    "ocr_text": "text in the picture:",
    "filename": "file name:",
    "owner": "uploaded by",
    "taken": "taken",
    "camera": "camera:",
}


def status_text(status: str, detail: str) -> str:
    """The state of an image's analysis in plain words (never a gRPC code)."""
    if status == "ready":
        return "analysed"
    if status == "failed":
        refused = _REFUSED.search(detail)
        if refused:
            if any(word in refused.group(2).lower() for word in _TOO_LARGE_WORDS):
                return "could not analyse: the picture is too large for the analyser"
            return "could not analyse: the file is damaged or not readable by the analyser"
        kept_failing = _KEPT_FAILING.search(detail)
        if kept_failing:
            return f"could not analyse: it failed {kept_failing.group(2)} times; you can retry"
        failed = _FAILED.search(detail)
        code = failed.group(2) if failed else ""
        if code in ("INVALID_ARGUMENT", "FAILED_PRECONDITION"):
            return "could not analyse: the file is damaged or not readable by the analyser"
        if code == "RESOURCE_EXHAUSTED":
            return "could not analyse: the picture is too large for the analyser"
        return "could not analyse: it failed several times; you can retry"
    waiting = _WAITING.search(detail) or _AWAY.search(detail) or _RETRYING.search(detail)
    if waiting:
        who = _SERVICE_WORDS.get(waiting.group(1), waiting.group(1))
        if waiting.group(2) in ("UNAVAILABLE", "CANCELLED") or waiting.re is _AWAY:
            return f"analysing: waiting for {who} to come back"
        return f"analysing: {who} is busy, it will be tried again"
    return "analysing"


def error_words(last_error: str) -> str:
    """An analysis try's error (storage's AnalysisState.last_error) in plain words."""
    if not last_error:
        return ""
    waiting = status_text("pending", last_error)
    if waiting != "analysing":
        return waiting.removeprefix("analysing: ")
    if (
        _REFUSED.search(last_error)
        or _KEPT_FAILING.search(last_error)
        or _FAILED.search(last_error)
    ):
        return status_text("failed", last_error).removeprefix("could not analyse: ")
    return "the last try did not work"


def reason_text(field: str, term: str) -> str:
    """Why a search hit matched, in words: "looks like espresso", "tagged morning"."""
    return f"{_REASON_WORDS.get(field, field + ':')} {term}"


def reasons_text(reasons: list[dict[str, Any]], limit: int = 4) -> str:
    """A search hit's reasons as one line, each term once: "looks like cat, tiger cat · tagged
    pets"."""
    phrases: dict[str, list[str]] = {}
    seen: set[str] = set()
    for reason in reasons:
        term = str(reason["term"])
        if term.lower() in seen or len(seen) >= limit:
            continue
        seen.add(term.lower())
        phrase = _REASON_WORDS.get(reason["field"], f"{reason['field']}:")
        phrases.setdefault(phrase, []).append(term)
    return " · ".join(f"{phrase} {', '.join(terms)}" for phrase, terms in phrases.items())


def iso_time(unix_ms: int) -> str:
    return datetime.fromtimestamp(unix_ms / 1000, tz=UTC).isoformat(timespec="seconds")


def label_json(label: common_pb2.Label) -> dict[str, Any]:
    return {
        "name": label.name,
        "probability": round(float(label.probability), 4),
        "synonyms": list(label.synonyms),
    }


def _alt(filename: str, labels: list[common_pb2.Label]) -> str:
    seen = [label.name for label in labels if label.probability >= ALT_LABEL][:3]
    return f"photo: {', '.join(seen)}" if seen else filename


def image_json(image: storage_pb.ImageMetadata, moderation_threshold: float) -> dict[str, Any]:
    labels = sorted(image.labels, key=lambda label: label.probability, reverse=True)
    exif = dict(image.exif)
    taken = taken_at(exif.get("taken_at"))
    status = STATUS_NAMES.get(image.status, "pending")
    confident = labels[0].name if labels and labels[0].probability >= CONFIDENT_LABEL else None
    created_ms = image.create_time.ToMilliseconds()
    thumb_state = THUMBNAIL_STATE_NAMES.get(image.thumbnail_state, "pending")
    return {
        "id": image.id,
        "filename": image.filename,
        "owner": image.owner,
        "content_type": image.content_type,
        "format": image.format,
        "created_at": iso_time(created_ms),
        "created_at_unix_ms": created_ms,
        "sha256": image.sha256,
        "byte_size": image.byte_size,
        "width": image.width,
        "height": image.height,
        "exif": dict(sorted(exif.items())),
        "exif_readable": dict(describe(exif).rows()),
        # When the camera says it was taken (its own clock, no zone), else None.
        "taken_at": taken.isoformat(timespec="seconds") if taken else None,
        # What the timeline orders and groups by: date taken, else upload time.
        "date": taken.isoformat(timespec="seconds") if taken else iso_time(created_ms),
        "labels": [label_json(label) for label in labels],
        "best_label": labels[0].name if labels else None,
        # The gallery caption: the label only when the model is sure, else the filename.
        "caption": confident or image.filename,
        "confident_label": confident,
        "alt": _alt(image.filename, labels),
        "moderation_score": round(float(image.moderation_score), 4),
        "moderated": float(image.moderation_score) > moderation_threshold,
        "ocr_text": image.ocr_text,
        # Dominant named colours, largest first: [{"name": "red", "share": 0.23}, ...].
        "colours": [
            {"name": colour_name(c.colour), "share": round(float(c.share), 3)}
            for c in image.colours
        ],
        "tags": list(image.tags),
        "favourite": image.favourite,
        # In the trash since then (restorable until the retention ends), else None.
        "trashed_at": iso_time(image.trash_time.ToMilliseconds())
        if image.HasField("trash_time")
        else None,
        "status": status,
        "status_detail": image.status_detail,
        # A pending image's last failed try is in its analysis state (the workers' last error).
        "status_text": status_text(status, image.status_detail or image.analysis.last_error),
        # Whether its previews are made (storage makes them after the upload is acknowledged):
        # "failed" when the file is damaged past its header (the original is kept as uploaded;
        # thumbnail_detail says why, thumbnail_text in plain words) and the thumbnail links
        # answer 404 with a placeholder picture (gateway/placeholders.py). A pending image's
        # thumbnail is made when first asked for: its links answer 200 like a ready one's.
        "thumbnail_state": thumb_state,
        "thumbnail_detail": image.thumbnail_detail if thumb_state == "failed" else "",
        "thumbnail_text": THUMBNAIL_FAILED_TEXT if thumb_state == "failed" else "",
        "feedback": [
            {
                "label": fb.label,
                "comment": fb.comment,
                "reported_by": fb.reported_by,
                "created_at": iso_time(fb.create_time.ToMilliseconds()),
            }
            for fb in image.feedback
        ],
        "links": {
            "self": f"/api/images/{image.id}",
            "original": f"/api/images/{image.id}/original",
            "download": f"/api/images/{image.id}/original?download=1",
            "thumbnail": f"/api/images/{image.id}/thumbnail",
            "preview": f"/api/images/{image.id}/thumbnail?size=preview",
            "page": f"/images/{image.id}",
        },
    }
