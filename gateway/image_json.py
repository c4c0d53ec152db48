"""How an image (storage's ImageMetadata) is shown to API clients and templates."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from imagerepo.common.v1 import common_pb2
from imagerepo.storage.v1 import storage_service_pb2 as storage_pb

STATUS_NAMES = {
    common_pb2.ANALYSIS_STATUS_UNSPECIFIED: "pending",
    common_pb2.ANALYSIS_STATUS_PENDING: "pending",
    common_pb2.ANALYSIS_STATUS_READY: "ready",
    common_pb2.ANALYSIS_STATUS_FAILED: "failed",
}


def iso_time(unix_ms: int) -> str:
    return datetime.fromtimestamp(unix_ms / 1000, tz=UTC).isoformat(timespec="seconds")


def label_json(label: common_pb2.Label) -> dict[str, Any]:
    return {
        "name": label.name,
        "probability": round(float(label.probability), 4),
        "synonyms": list(label.synonyms),
    }


def image_json(image: storage_pb.ImageMetadata, moderation_threshold: float) -> dict[str, Any]:
    labels = sorted(image.labels, key=lambda label: label.probability, reverse=True)
    return {
        "id": image.id,
        "filename": image.filename,
        "owner": image.owner,
        "content_type": image.content_type,
        "format": image.format,
        "created_at": iso_time(image.created_at_unix_ms),
        "created_at_unix_ms": image.created_at_unix_ms,
        "sha256": image.sha256,
        "byte_size": image.byte_size,
        "width": image.width,
        "height": image.height,
        "exif": dict(sorted(image.exif.items())),
        "labels": [label_json(label) for label in labels],
        "best_label": labels[0].name if labels else None,
        "moderation_score": round(float(image.moderation_score), 4),
        "moderated": float(image.moderation_score) > moderation_threshold,
        "ocr_text": image.ocr_text,
        "tags": list(image.tags),
        "status": STATUS_NAMES.get(image.status, "pending"),
        "status_detail": image.status_detail,
        "feedback": [
            {
                "label": fb.label,
                "comment": fb.comment,
                "reported_by": fb.reported_by,
                "created_at": iso_time(fb.created_at_unix_ms),
            }
            for fb in image.feedback
        ],
        "links": {
            "self": f"/api/images/{image.id}",
            "original": f"/api/images/{image.id}/original",
            "thumbnail": f"/api/images/{image.id}/thumbnail",
            "preview": f"/api/images/{image.id}/thumbnail?size=preview",
            "page": f"/images/{image.id}",
        },
    }
