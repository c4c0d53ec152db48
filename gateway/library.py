"""What the gallery does to many images at once, and how originals leave the gateway.

- Originals are served by werkzeug's `send_file`: RFC 6266/5987 filenames (any Unicode name,
  control characters replaced), Range requests and conditional GET; GPS blanked unless the
  owner keeps it (`GatewayConfig.keep_gps`).
- A selection downloads as a zip written to the response as it is built (ZIP_STORED: photos
  do not compress), one photo in memory at a time, never the whole archive.
- Bulk delete and tag, and duplicate clean-up (keep one, delete the rest), per group or for
  every exact group at once.
- Search ordered by date taken, or limited to a period of it.
- The timeline: the library listed by date taken (storage's ListImages order, across pages),
  limited to a period of it, grouped by month, and the years that hold photos.
"""

from __future__ import annotations

import io
import time
import unicodedata
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import grpc
from flask import Response, send_file

from gateway import operations as ops
from gateway.clients import match_field_word
from gateway.errors import BadRequestError, ConflictError, ServiceError
from gateway.exif_privacy import Coordinates, gps_coordinates, strip_gps
from gateway.image_json import image_json
from gateway.state import state
from imagerepo.search.v2 import search_service_pb2 as search_pb
from imagerepo.storage.v2 import storage_service_pb2 as storage_pb

MAX_SELECTION = 500
IMMUTABLE_MAX_AGE_S = 31536000
_EXTENSIONS = {
    "JPEG": ".jpg",
    "PNG": ".png",
    "GIF": ".gif",
    "WEBP": ".webp",
    "BMP": ".bmp",
    "TIFF": ".tif",
    "HEIF": ".heic",
    "AVIF": ".avif",
}


# --- names -------------------------------------------------------------------------------------


def download_name(filename: str, image_id: str, fmt: str = "") -> str:
    """A filename safe in a header and a zip: line breaks and tabs become spaces, other control
    characters go, path separators become "_"; never empty."""
    cleaned = "".join(
        " "
        if ch in "\t\n\r\v\f" or unicodedata.category(ch) in ("Zl", "Zp")
        else ""
        if unicodedata.category(ch) in ("Cc", "Cf")
        else ch
        for ch in filename
    )
    cleaned = " ".join(cleaned.replace("/", "_").replace("\\", "_").split()).strip(". ")
    if not cleaned:
        cleaned = f"image-{image_id[:12]}{_EXTENSIONS.get(fmt, '')}"
    return cleaned


def content_disposition(kind: str, name: str, image_id: str) -> dict[str, str]:
    """Content-Disposition parameters: an ASCII `filename` every client reads, and the exact
    name as RFC 5987 `filename*` when it is not ASCII."""
    try:
        name.encode("ascii")
    except UnicodeEncodeError:
        simple = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
        stem, dot, ext = simple.rpartition(".")
        if not (stem if dot else simple).strip(" ._-"):
            simple = f"image-{image_id[:12]}{dot}{ext if dot else ''}"
        quoted = quote(name, safe="!#$&+-.^_`|~")
        return {"filename": simple, "filename*": f"UTF-8''{quoted}"}
    return {"filename": name}


# --- originals ---------------------------------------------------------------------------------


def original_etag(image_id: str) -> str:
    return f"orig-{image_id}" if state().config.keep_gps else f"orig-{image_id}-nogps"


def serve_original(image: storage_pb.ImageMetadata, as_attachment: bool) -> Response:
    st = state()
    data = st.clients.read_image_bytes(image.id)
    if not st.config.keep_gps:
        data = strip_gps(data)
    name = download_name(image.filename, image.id, image.format)
    response = send_file(
        io.BytesIO(data),
        mimetype=image.content_type or "application/octet-stream",
        as_attachment=as_attachment,
        download_name=name,
        conditional=True,
        etag=original_etag(image.id),
        max_age=IMMUTABLE_MAX_AGE_S,
    )
    kind = "attachment" if as_attachment else "inline"
    response.headers.set("Content-Disposition", kind, **content_disposition(kind, name, image.id))
    response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    return response


def location(image_id: str) -> Coordinates | None:
    """Where the photo was taken, from the EXIF at the start of the original (first chunk:
    storage's EXIF summary does not keep GPS)."""
    request = storage_pb.ReadImageDataRequest(image_id=image_id)
    st = state()
    try:
        call = st.clients.storage.ReadImageData(request, timeout=st.clients.timeout_s)
        try:
            first = next(call, None)
        finally:
            call.cancel()
    except grpc.RpcError:
        return None
    return gps_coordinates(first.chunk) if first is not None else None


# --- selections --------------------------------------------------------------------------------


def selection(raw: Any) -> list[str]:
    """Image ids from a request (a list, repeated fields or comma-separated), in order."""
    if isinstance(raw, str):  # one id (or "a,b"), never its characters one by one
        raw = [raw]
    if not isinstance(raw, list | tuple):
        raise BadRequestError("ids must be a list of image ids")
    ids: list[str] = []
    for item in raw:
        if not isinstance(item, str):
            raise BadRequestError("ids must be strings")
        for part in item.split(","):
            part = part.strip()
            if part and part not in ids:
                ids.append(part)
    if not ids:
        raise BadRequestError("select at least one image (ids)")
    if len(ids) > MAX_SELECTION:
        raise BadRequestError(f"select at most {MAX_SELECTION} images at once")
    return ids


def delete_many(ids: list[str]) -> dict[str, list[str]]:
    """Move each image to the trash; ids already gone (or already in the trash) are
    reported, not an error."""
    deleted: list[str] = []
    missing: list[str] = []
    for image_id in ids:
        try:
            if state().clients.get_image(image_id).HasField("trash_time"):
                missing.append(image_id)
                continue
            ops.delete_image(image_id)
            deleted.append(image_id)
        except ServiceError as exc:
            if exc.code != grpc.StatusCode.NOT_FOUND:
                raise
            missing.append(image_id)
    return {"deleted": deleted, "missing": missing}


def tag_many(
    ids: list[str], add: list[str], remove: list[str]
) -> tuple[list[storage_pb.ImageMetadata], list[str]]:
    """Tag each image: (the images as they are now, the ids gone meanwhile)."""
    return _each_present(ids, lambda image_id: ops.set_tags(image_id, add, remove))


def unfavourite_many(ids: list[str]) -> tuple[list[storage_pb.ImageMetadata], list[str]]:
    """Take each image out of the favourites: (the images, the ids gone meanwhile)."""
    return _each_present(ids, lambda image_id: ops.set_favourite(image_id, False))


def _each_present(
    ids: list[str], act: Callable[[str], storage_pb.ImageMetadata]
) -> tuple[list[storage_pb.ImageMetadata], list[str]]:
    """`act` on each id; one deleted meanwhile (in another tab) is reported, not a 404 for
    the whole selection after the ones before it were changed."""
    done: list[storage_pb.ImageMetadata] = []
    missing: list[str] = []
    for image_id in ids:
        try:
            done.append(act(image_id))
        except ServiceError as exc:
            if exc.code != grpc.StatusCode.NOT_FOUND:
                raise
            missing.append(image_id)
    return done, missing


class _Pipe(io.RawIOBase):
    """A write-only stream whose bytes the zip generator hands to the response."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        out = b"".join(self._chunks)
        self._chunks.clear()
        return out


def zip_stream(images: list[storage_pb.ImageMetadata]) -> Iterator[bytes]:
    """A zip of these images' originals, produced as it is written."""
    st = state()
    pipe = _Pipe()
    names: set[str] = set()
    with zipfile.ZipFile(pipe, "w", zipfile.ZIP_STORED) as archive:  # type: ignore[arg-type]
        for image in images:
            name = _unique(download_name(image.filename, image.id, image.format), names)
            moment = time.gmtime(image.create_time.ToMilliseconds() / 1000)[:6]
            info = zipfile.ZipInfo(name, date_time=moment)  # type: ignore[arg-type]
            with archive.open(info, "w", force_zip64=image.byte_size > 2**31 - 1) as entry:
                if st.config.keep_gps:
                    for chunk in st.clients.read_image_chunks(image.id):
                        entry.write(chunk.chunk)
                        yield pipe.drain()
                else:
                    entry.write(strip_gps(st.clients.read_image_bytes(image.id)))
            yield pipe.drain()
    yield pipe.drain()


def _unique(name: str, taken: set[str]) -> str:
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    candidate, n = name, 2
    while candidate.lower() in taken:
        candidate = f"{stem} ({n}){dot}{ext}"
        n += 1
    taken.add(candidate.lower())
    return candidate


# --- duplicates --------------------------------------------------------------------------------


def readable_groups(groups: dict[str, Any]) -> dict[str, Any]:
    """Duplicate groups as shown: a near group whose images are all one exact copy is left
    out (it is already listed as an exact group)."""
    near = [g for g in groups["near_groups"] if len({image["sha256"] for image in g["images"]}) > 1]
    return {"exact_groups": groups["exact_groups"], "near_groups": near}


def resolve_group(keep: str, remove: list[str]) -> dict[str, list[str]]:
    """Keep one image of a duplicate group and delete the others."""
    if not keep:
        raise BadRequestError("say which image to keep (keep)")
    if keep in remove:
        raise BadRequestError("the image to keep cannot also be removed")
    # Before anything is deleted: 404 for a photo that is gone, 409 for one moved to the trash
    # meanwhile (else every copy would end in the trash, deleted for good once it expires).
    if state().clients.get_image(keep).HasField("trash_time"):
        raise ConflictError(
            "the copy to keep is in the trash: restore it, or choose another copy to keep"
        )
    return delete_many(remove)


def resolve_exact_groups(keep: str = "oldest") -> dict[str, Any]:
    """In every exact group keep the oldest (or newest) upload and delete the rest."""
    if keep not in ("oldest", "newest"):
        raise BadRequestError("keep must be oldest or newest")
    groups = ops.duplicate_groups()["exact_groups"]
    kept: list[str] = []
    deleted: list[str] = []
    for group in groups:
        members = sorted(group["images"], key=lambda image: image["created_at_unix_ms"])
        keeper = members[0] if keep == "oldest" else members[-1]
        kept.append(keeper["id"])
        rest = [image["id"] for image in members if image["id"] != keeper["id"]]
        deleted.extend(delete_many(rest)["deleted"])
    return {"groups": len(groups), "kept": kept, "deleted": deleted}


# --- search by date taken ----------------------------------------------------------------------

SORTS = {
    "relevance": search_pb.SORT_ORDER_RELEVANCE,
    "taken_newest": search_pb.SORT_ORDER_TAKEN_NEWEST,
    "taken_oldest": search_pb.SORT_ORDER_TAKEN_OLDEST,
}


def taken_bound(raw: str, end: bool) -> int:
    """Seconds since the epoch for a date taken bound: "2019", "2019-07" or "2019-07-14" (the
    camera's clock read as UTC, as search stores it); an end bound covers its whole period.
    0 for an empty value."""
    raw = raw.strip()
    if not raw:
        return 0
    for fmt, unit in (("%Y-%m-%d", "day"), ("%Y-%m", "month"), ("%Y", "year")):
        try:
            start = datetime.strptime(raw, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
        if not end:
            return int(start.timestamp())
        if unit == "day":
            after = start + timedelta(days=1)
        elif unit == "month":
            after = start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
        else:
            after = start.replace(year=start.year + 1)
        return int(after.timestamp()) - 1
    raise BadRequestError(f"{raw!r} is not a date: use YYYY, YYYY-MM or YYYY-MM-DD")


def search_filters(
    taken_from: str = "", taken_until: str = "", **fields: Any
) -> search_pb.SearchFilters:
    """Search's filters for a date-taken period ("YYYY[-MM[-DD]]" bounds, empty leaves that end
    open) and the other filter fields given; moderated images included (the gateway blurs
    them)."""
    filters = search_pb.SearchFilters(include_moderated=True, **fields)
    for name, raw, end in (("taken_from", taken_from, False), ("taken_until", taken_until, True)):
        seconds = taken_bound(raw, end=end)
        if seconds < 0:
            raise BadRequestError(f"{name} must not be before 1970")
        if seconds:
            getattr(filters, name).FromSeconds(seconds)
    return filters


def search_by_date(
    query: str,
    page_size: int,
    page_token: str = "",
    sort: str = "relevance",
    taken_from: str = "",
    taken_until: str = "",
    favourites: bool = False,
) -> dict[str, Any]:
    """Search ordered by date taken and/or limited to a period (and/or to favourites); the
    same shape as `operations.search_results`."""
    if sort not in SORTS:
        raise BadRequestError("sort must be relevance, taken_newest or taken_oldest")
    st = state()
    request = search_pb.SearchRequest(
        query=query,
        page_size=page_size,
        page_token=page_token,
        sort=SORTS[sort],
        filters=search_filters(taken_from, taken_until, favourites_only=favourites),
    )
    try:
        reply = st.clients.search.Search(request, timeout=st.clients.timeout_s)
    except grpc.RpcError as exc:
        raise ServiceError("search", "Search", exc.code(), exc.details() or "") from exc
    images = ops.images_by_id([hit.image_id for hit in reply.hits])
    threshold = st.config.moderation_threshold
    return {
        "query": query,
        "hits": [
            {
                "image": image_json(images[hit.image_id], threshold),
                "score": round(hit.score, 4),
                "reasons": [
                    {"field": match_field_word(r.field), "term": r.term, "score": round(r.score, 4)}
                    for r in hit.reasons
                ],
            }
            for hit in reply.hits
            if hit.image_id in images
        ],
        "total_hits": reply.total_hits,
        "next_page_token": reply.next_page_token,
        "fell_back_to_or": reply.fell_back_to_or,
    }


# --- the timeline: the library by date taken ---------------------------------------------------

ORDERS = {
    "taken_newest": storage_pb.LIST_ORDER_TAKEN_NEWEST,
    "taken_oldest": storage_pb.LIST_ORDER_TAKEN_OLDEST,
    "uploaded": storage_pb.LIST_ORDER_UPLOADED_NEWEST,
}
# How many years the year list walks back at most (one short listing call per year).
MAX_YEARS = 150


def list_order(raw: str, default: str) -> str:
    """A listing order by name (empty: `default`)."""
    name = raw.strip() or default
    if name not in ORDERS:
        raise BadRequestError("order must be taken_newest, taken_oldest or uploaded")
    return name


def year_start_ms(year: int) -> int:
    return int(datetime(year, 1, 1, tzinfo=UTC).timestamp() * 1000)


def taken_range_ms(taken_from: str, taken_to: str) -> tuple[int, int]:
    """A half-open [from, to) range in ms for storage from "YYYY[-MM[-DD]]" bounds; `taken_to`
    covers its whole period ("2019" includes 31 December). 0 leaves an end open."""
    start = max(0, taken_bound(taken_from, end=False) * 1000)
    end = 0
    if taken_to.strip():
        end = (taken_bound(taken_to, end=True) + 1) * 1000
        if end <= 0:
            raise BadRequestError("taken_to must be after 1970")
    if start and end and start >= end:
        raise BadRequestError("taken_from must not be after taken_to")
    return start, end


def month_key(image: storage_pb.ImageMetadata, order: str) -> str:
    """The "YYYY-MM" a photo is filed under: when taken (storage's date, the one it sorts by;
    the upload time when the camera gave none), or when uploaded for that order."""
    created_ms = image.create_time.ToMilliseconds()
    ms = created_ms if order == "uploaded" else image.taken_time.ToMilliseconds()
    ms = ms or created_ms
    return f"{datetime.fromtimestamp(ms / 1000, tz=UTC):%Y-%m}"


def months(
    shown: list[tuple[storage_pb.ImageMetadata, dict[str, Any]]], order: str
) -> list[dict[str, Any]]:
    """A page of images in the listing's order, one section per month with a title. Storage
    sorts the whole library, so consecutive photos of one month form one section."""
    grouped: list[dict[str, Any]] = []
    for image, shown_image in shown:
        key = month_key(image, order)
        if not grouped or grouped[-1]["key"] != key:
            moment = datetime.strptime(key, "%Y-%m")
            grouped.append({"key": key, "title": f"{moment:%B %Y}", "images": []})
        grouped[-1]["images"].append(shown_image)
    return grouped


def taken_years(owner: str = "") -> list[dict[str, int]]:
    """The years that hold photos (by date taken), newest first, with how many each holds.

    Two one-image listings per year: the newest photo taken before the last year found names
    the next year, and a listing of that year counts it."""
    st = state()
    years: list[dict[str, int]] = []
    before = 0
    for _ in range(MAX_YEARS):
        reply = st.clients.list_images(
            page_size=1,
            owner=owner,
            order=storage_pb.LIST_ORDER_TAKEN_NEWEST,
            taken_to_unix_ms=before,
        )
        if not reply.images:
            break
        image = reply.images[0]
        ms = image.taken_time.ToMilliseconds() or image.create_time.ToMilliseconds()
        year = datetime.fromtimestamp(ms / 1000, tz=UTC).year
        start = year_start_ms(year)
        counted = st.clients.list_images(
            page_size=1,
            owner=owner,
            order=storage_pb.LIST_ORDER_TAKEN_NEWEST,
            taken_from_unix_ms=max(0, start),
            taken_to_unix_ms=year_start_ms(year + 1),
        )
        years.append({"year": year, "count": int(counted.total_count)})
        if start <= 0:
            break
        before = start
    return years
