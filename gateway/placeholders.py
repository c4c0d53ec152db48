"""What a thumbnail URL answers when there is no thumbnail to send.

Storage makes an image's thumbnails after its upload is acknowledged; a thumbnail asked for
before the background thumbnailer got to it is made there and then, so a PENDING image's
thumbnail URL answers 200 with the thumbnail like a READY one. A file damaged past its header
gets thumbnail state FAILED: it never has a thumbnail (the original is kept as uploaded).

Its thumbnail URL then answers **404** (there is no current representation of that resource)
with a placeholder picture, because the URL is mostly read by <img> tags: browsers draw an
image body whatever the status, so a tile, a cover or the viewer shows "Preview could not be
made" instead of the broken-image sign, while a program sees the 404 and the headers
`X-Thumbnail-State: failed` and `X-Thumbnail-Detail` (storage's reason, ASCII). A client that
asks for JSON (Accept: application/json) gets the usual error object plus the image's
thumbnail_state / thumbnail_detail / thumbnail_text instead of the picture. The answer may be
kept 60 s (`Cache-Control: public, max-age=60`, `Vary: Accept`) and has no ETag, so a
thumbnail made later (the photo re-uploaded whole, or the thumbnails remade) shows within a
minute, unlike a real thumbnail, which is immutable.

A PENDING image's thumbnail that storage cannot make right now (its decode memory is taken by
other large images: GetThumbnail answers UNAVAILABLE with reason BUSY, or the call runs out of
the gateway's deadline while it waits) answers **503** with `Retry-After` (what storage's
BUSY answer asks for in its `google.rpc.RetryInfo` detail, rounded up to whole seconds; without
one, the gateway's `thumbnail_retry_after_s`, 2 s by default), `X-Thumbnail-State: pending`,
`Cache-Control: no-store` and a placeholder picture saying the preview is being made (or the
JSON error with thumbnail_state "pending" for a client that asks for JSON). The pages ask again
after the Retry-After and swap the real thumbnail in (static/app.js).

The pictures are SVGs drawn once here (about 1.3 KB), light or dark with the reader's colour
scheme (the SVG's own media query), square with their sign and words in the middle so a tile
that crops them to the photo's shape keeps them.
"""

from __future__ import annotations

import math
import re
from typing import Any

import grpc
from flask import Response, jsonify, request
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from gateway.errors import ServiceError, error_body
from gateway.image_json import THUMBNAIL_FAILED_TEXT
from gateway.state import state
from imagerepo.storage.v2 import storage_service_pb2 as storage_pb

# How long a placeholder may be kept by browsers and proxies (a real thumbnail: a year).
PLACEHOLDER_MAX_AGE_S = 60
STATE_HEADER = "X-Thumbnail-State"
DETAIL_HEADER = "X-Thumbnail-Detail"
_MAX_DETAIL_CHARS = 200
_NOT_HEADER_SAFE = re.compile(r"[^\x20-\x7e]+")
# The ErrorInfo reason storage gives when its decode memory stayed taken (storage_service/errors).
BUSY_REASON = "BUSY"

# The sign the pages draw (_no_preview.html): a picture with a slash through it.
_FAILED_ICON = (
    '<g transform="translate(126 102)" fill="none" stroke="currentColor" '
    'stroke-width="2.5" stroke-linecap="round" stroke-linejoin="round">'
    '<rect x="5" y="9" width="38" height="30" rx="3"/>'
    '<circle cx="16" cy="19" r="3.5" fill="currentColor" stroke="none"/>'
    '<path d="M8 35l10-10 6 6 5-5 11 9"/><path d="M7 5l34 38"/></g>'
)
# A preview being made: an hourglass.
_PENDING_ICON = (
    '<g transform="translate(126 102)" fill="none" stroke="currentColor" '
    'stroke-width="2.5" stroke-linecap="round" stroke-linejoin="round">'
    '<path d="M13 5h22M13 43h22"/>'
    '<path d="M15 5c0 11 18 13 18 19S15 32 15 43M33 5c0 11-18 13-18 19s18 8 18 19"/>'
    '<path d="M19 39c2-3 8-3 10 0z" fill="currentColor"/></g>'
)
# The sign's colour, light and dark: red for a failure, the pages' blue for work under way.
_FAILED_COLOURS = ("#b3261e", "#ff8a80")
_PENDING_COLOURS = ("#2f5fb3", "#8ab4f8")


def _svg(
    title: str,
    line: str,
    label: str,
    icon: str,
    colours: tuple[str, str] = _FAILED_COLOURS,
    font_px: tuple[int, int] = (18, 13),
) -> bytes:
    """A square picture whose sign and words sit in its middle 120 x 100: a tile crops an
    <img> to the photo's shape (object-fit: cover, 0.4 to 3 wide per high) and keeps them.
    `font_px`: the title's and the line's sizes (short words may be larger and still fit)."""
    light, dark = colours
    title_px, line_px = font_px
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="300" height="300" '
        f'viewBox="0 0 300 300" role="img" aria-label="{label}">'
        f"<title>{label}</title>"
        "<style>"
        f".bg{{fill:#f3f4f6}}.st{{fill:#e7e9ee}}.ic{{color:{light}}}"
        f".t{{fill:#1d2330;font:600 {title_px}px system-ui,-apple-system,'Segoe UI',sans-serif}}"
        f".s{{fill:#5d6575;font:{line_px}px system-ui,-apple-system,'Segoe UI',sans-serif}}"
        "@media (prefers-color-scheme:dark){.bg{fill:#1a1d24}.st{fill:#22262e}"
        f".ic{{color:{dark}}}.t{{fill:#e6e9ef}}.s{{fill:#a3abba}}}}"
        "</style>"
        '<defs><pattern id="p" width="28" height="28" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="14" height="28" class="st"/></pattern></defs>'
        '<rect width="300" height="300" class="bg"/><rect width="300" height="300" fill="url(#p)"/>'
        f'<g class="ic">{icon}</g>'
        f'<text x="150" y="178" text-anchor="middle" class="t">{title}</text>'
        f'<text x="150" y="196" text-anchor="middle" class="s">{line}</text>'
        "</svg>"
    ).encode()


FAILED_SVG = _svg(
    "No preview",
    "file is damaged",
    "Preview could not be made: the file is damaged; its original is kept",
    _FAILED_ICON,
)
PENDING_SVG = _svg(
    "Preview",
    "being made",
    "Preview being made: storage is busy; it is shown when it is ready",
    _PENDING_ICON,
    _PENDING_COLOURS,
    # Seen for seconds in a tile scaled down to half size or less: larger words (both within
    # the middle 120 px, measured in Chromium: about 107 and 95 px wide).
    (24, 16),
)
PENDING_TEXT = "preview being made: storage is busy making others; try again shortly"


def header_safe(text: str) -> str:
    """Text fit for an HTTP header value: printable ASCII, at most 200 characters."""
    cleaned = _NOT_HEADER_SAFE.sub(" ", text).strip()
    return (
        cleaned if len(cleaned) <= _MAX_DETAIL_CHARS else cleaned[: _MAX_DETAIL_CHARS - 3] + "..."
    )


def wants_json() -> bool:
    """The client prefers JSON to a picture (an <img> asks for image/*, */* for anything)."""
    best = request.accept_mimetypes.best_match(["image/svg+xml", "application/json"])
    return best == "application/json"


def thumbnail_failed(detail: str) -> Any:
    """The answer of a thumbnail URL for a photo whose thumbnails failed."""
    status = 404
    if wants_json():
        message = f"no thumbnail: {THUMBNAIL_FAILED_TEXT.removeprefix('no preview: ')}"
        if detail:
            message += f" ({detail})"
        body = error_body(status, message)
        body.update(
            thumbnail_state="failed", thumbnail_detail=detail, thumbnail_text=THUMBNAIL_FAILED_TEXT
        )
        response = jsonify(body)
        response.status_code = status
    else:
        response = Response(FAILED_SVG, status=status, mimetype="image/svg+xml")
    response.headers[STATE_HEADER] = "failed"
    if detail:
        response.headers[DETAIL_HEADER] = header_safe(detail)
    response.headers["Cache-Control"] = f"public, max-age={PLACEHOLDER_MAX_AGE_S}"
    response.vary.add("Accept")
    return response


def thumbnail_pending(retry_after_s: int) -> Any:
    """The answer of a thumbnail URL whose thumbnail storage cannot make right now."""
    status = 503
    if wants_json():
        body = error_body(status, f"no thumbnail yet: {PENDING_TEXT}")
        body.update(thumbnail_state="pending", thumbnail_detail="", thumbnail_text=PENDING_TEXT)
        response = jsonify(body)
        response.status_code = status
    else:
        response = Response(PENDING_SVG, status=status, mimetype="image/svg+xml")
    response.headers[STATE_HEADER] = "pending"
    response.headers["Retry-After"] = str(retry_after_s)
    response.headers["Cache-Control"] = "no-store"
    response.vary.add("Accept")
    return response


def thumbnail_unavailable(image_id: str, exc: ServiceError) -> Any | None:
    """What a thumbnail URL answers when GetThumbnail failed with `exc`: the failed
    placeholder (404), the pending one (503, storage busy), or None (the error as it is)."""
    failed = failed_thumbnail_detail(image_id, exc)
    if failed is not None:
        return thumbnail_failed(failed)
    if storage_busy(image_id, exc):
        return thumbnail_pending(retry_after_s(exc) or state().config.thumbnail_retry_after_s)
    return None


def retry_after_s(exc: ServiceError) -> int:
    """The wait, in whole seconds (rounded up, at least 1), that a failed call's
    google.rpc.RetryInfo detail asks for; 0 when it carries none."""
    call = exc.__cause__
    if not isinstance(call, grpc.Call):
        return 0
    try:
        status = rpc_status.from_call(call)
    except (ValueError, TypeError):
        return 0
    for detail in status.details if status is not None else ():
        info = error_details_pb2.RetryInfo()
        if detail.Is(info.DESCRIPTOR) and detail.Unpack(info):
            return max(1, math.ceil(info.retry_delay.ToMilliseconds() / 1000))
    return 0


def storage_busy(image_id: str, exc: ServiceError) -> bool:
    """Storage could not make the thumbnail for want of decode memory: it says BUSY after
    waiting for it (STORAGE_DECODE_WAIT_S, 4 s), or the gateway's own deadline ends first and
    the image's thumbnails are still pending (asked again: a storage that does not answer at
    all is not busy but away, and keeps its 504)."""
    if exc.service != "storage":
        return False
    if exc.code == grpc.StatusCode.UNAVAILABLE:
        return exc.reason == BUSY_REASON
    if exc.code != grpc.StatusCode.DEADLINE_EXCEEDED:
        return False
    try:
        image = state().clients.get_image(image_id)
    except ServiceError:
        return False
    return bool(image.thumbnail_state == storage_pb.THUMBNAIL_STATE_PENDING)


def failed_thumbnail_detail(image_id: str, exc: ServiceError) -> str | None:
    """Why the image's thumbnails failed, when that is what GetThumbnail's error means (storage
    answers INVALID_ARGUMENT for it, as for other bad requests: the image's state says which);
    None for any other failure."""
    if exc.service != "storage" or exc.code != grpc.StatusCode.INVALID_ARGUMENT:
        return None
    image = state().clients.get_image(image_id)
    if image.thumbnail_state != storage_pb.THUMBNAIL_STATE_FAILED:
        return None
    return str(image.thumbnail_detail)
