"""The server-rendered gallery: gallery, upload, image, search, mosaic, duplicates, status."""

from __future__ import annotations

import io
import math
import re
import time
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import grpc
from flask import (
    Blueprint,
    Response,
    current_app,
    redirect,
    render_template,
    request,
    send_from_directory,
    session,
    url_for,
)
from PIL import Image

from gateway import library
from gateway import operations as ops
from gateway.api import THUMBNAIL_SIZES
from gateway.errors import BadRequestError, NotFoundError, ServiceError
from gateway.image_json import error_words, image_json, label_json, reasons_text
from gateway.ingest import PENDING
from gateway.integrity import integrity_summary
from gateway.mosaic import MAX_COLUMNS, render_mosaic
from gateway.mosaic_tiles import NoTilesError
from gateway.placeholders import thumbnail_unavailable
from gateway.sizes import size_text
from gateway.state import state

pages = Blueprint("pages", __name__)


def _threshold() -> float:
    return state().config.moderation_threshold


@pages.get("/")
def gallery() -> Any:
    """The timeline: the whole library by date taken (storage sorts it, so months run on
    across pages), newest first unless asked; a year jump starts at that year."""
    st = state()
    token = request.args.get("page", "")
    size = st.config.gallery_page_size
    order = library.list_order(request.args.get("order", ""), "taken_newest")
    year_arg = request.args.get("year", "").strip()
    year = int(year_arg) if year_arg.isdigit() and 1970 <= int(year_arg) <= 9998 else None
    if year_arg and year is None:
        raise BadRequestError("year must be a four-digit year from 1970")
    if year is not None and order == "uploaded":
        order = "taken_newest"  # a year is a date taken
    taken_from = taken_to = 0
    if year is not None:
        if order == "taken_newest":
            taken_to = library.year_start_ms(year + 1)
        else:
            taken_from = library.year_start_ms(year)
    reply = st.clients.list_images(
        page_size=size,
        page_token=token,
        order=library.ORDERS[order],
        taken_from_unix_ms=taken_from,
        taken_to_unix_ms=taken_to,
    )
    shown = [(i, image_json(i, _threshold())) for i in reply.images]
    # The year list on the first page only (infinite scroll fetches the later ones).
    years = library.taken_years() if not token and order != "uploaded" else []
    keep = {"order": order if order != "taken_newest" else None, "year": year}
    return render_template(
        "gallery.html",
        months=library.months(shown, order),
        images=[image for _, image in shown],
        total=reply.total_count,
        next_page=reply.next_page_token,
        first_page=not token and year is None,
        page_size=size,
        order=order,
        orders=ORDER_WORDS,
        keep=keep,
        year=year,
        years=years,
        notice=request.args.get("notice", ""),
    )


ORDER_WORDS = {
    "taken_newest": "Date taken, newest first",
    "taken_oldest": "Date taken, oldest first",
    "uploaded": "Upload time, newest first",
}


@pages.post("/bulk")
def bulk() -> Any:
    """The selection bar without JavaScript (and with it: the bar is a plain form): act on the
    checked images, then back to the page the bar was on with a notice."""
    state().access.require_form_writer()
    ids = library.selection(request.form.getlist("ids"))
    action = request.form.get("action", "")
    if action == "delete":
        done = library.delete_many(ids)
        notice = f"Moved {_photos(len(done['deleted']))} to the trash."
    elif action == "tag":
        tags = [t for t in request.form.get("tags", "").split(",") if t.strip()]
        tagged, gone = library.tag_many(ids, tags, [])
        notice = f"Tagged {_photos(len(tagged))}: {', '.join(tags)}." + _gone(len(gone))
    elif action == "unfavourite":
        unstarred, gone = library.unfavourite_many(ids)
        notice = f"Removed {_photos(len(unstarred))} from your favourites." + _gone(len(gone))
    elif action == "restore":
        restored = _in_trash(ids)
        for image_id in restored:
            ops.restore_image(image_id)
        notice = f"Restored {_photos(len(restored))} to the gallery."
        notice += _skipped(len(ids) - len(restored))
    elif action == "delete_forever":
        gone = _in_trash(ids)
        for image_id in gone:
            ops.delete_image(image_id, permanent=True)
        notice = f"Deleted {_photos(len(gone))} for good."
        notice += _skipped(len(ids) - len(gone))
    else:
        raise BadRequestError("action must be delete, tag, unfavourite, restore or delete_forever")
    back = request.form.get("back", "")
    album_path = urlsplit(back).path
    if re.fullmatch(r"/albums/[\w-]+", album_path):
        # From an album's page: back to that album (its page reads album_notice).
        return redirect(f"{album_path}?{urlencode({'album_notice': notice})}", 303)
    page = next(
        (endpoint for prefix, endpoint in _BULK_PAGES if back.startswith(prefix)),
        "pages.gallery",
    )
    return redirect(url_for(page, notice=notice), 303)


# Where the selection bar goes back to after acting, by the page it was on.
_BULK_PAGES = (
    ("/duplicates", "pages.duplicates"),
    ("/favourites", "pages.favourites"),
    ("/trash", "pages.trash"),
)


def _photos(n: int) -> str:
    return f"{n} image{'' if n == 1 else 's'}"


def _gone(n: int) -> str:
    return f" {_photos(n)} {'was' if n == 1 else 'were'} no longer there." if n else ""


def _skipped(n: int) -> str:
    return f" {_photos(n)} {'was' if n == 1 else 'were'} no longer in the trash." if n else ""


def _in_trash(ids: list[str]) -> list[str]:
    """The ids still in the trash (restore and delete-for-good act on those only; one
    restored or emptied meanwhile in another tab is counted, not an error)."""
    kept = []
    for image_id in ids:
        try:
            if state().clients.get_image(image_id).HasField("trash_time"):
                kept.append(image_id)
        except ServiceError as exc:
            if exc.code != grpc.StatusCode.NOT_FOUND:
                raise
    return kept


@pages.get("/favicon.ico")
def favicon() -> Any:
    """The site icon for clients that ask /favicon.ico whatever the page says (the pages link
    static/favicon.svg): the same SVG, so no request for it ends in a 404."""
    assert current_app.static_folder is not None
    response = send_from_directory(current_app.static_folder, "favicon.svg", max_age=86400)
    response.mimetype = "image/svg+xml"
    return response


@pages.route("/upload", methods=["GET", "POST"])
def upload() -> Any:
    results: list[dict[str, Any]] = []
    if request.method == "POST":
        owner = state().access.require_form_writer()
        keep = request.form.get("keep_duplicate") == "1"
        results = [ops.ingest_file(f, owner, keep) for f in ops.uploaded_files()]
    limit = size_text(state().config.max_upload_bytes)
    return render_template("upload.html", results=results, max_upload=limit)


@pages.get("/images/<image_id>")
def image_page(image_id: str) -> Any:
    st = state()
    stored = st.clients.get_image(image_id)
    image = image_json(stored, _threshold())
    where = library.location(image_id)
    similar: list[dict[str, Any]] = []
    duplicates: list[dict[str, Any]] = []
    related_error = ""
    # In the trash: search has dropped it (no similar images to ask for); the page offers
    # Restore instead of "Move to trash".
    trashed_days_left = _days_left(stored) if stored.HasField("trash_time") else None
    if image["status"] == "ready" and trashed_days_left is None:
        try:
            similar = ops.similar_results(
                image_id=image_id, k=8, min_similarity=st.config.similar_min_similarity
            )
            groups = library.readable_groups(ops.duplicate_groups(image_id=image_id))
            duplicates = [
                {**member, "kind": group["kind"]}
                for group in (*groups["exact_groups"], *groups["near_groups"])
                for member in group["images"]
                if member["id"] != image_id
            ]
            # A copy already listed under Duplicates is not shown again as "similar".
            copies = {member["id"] for member in duplicates}
            similar = [hit for hit in similar if hit["image"]["id"] not in copies]
        except ServiceError as exc:
            related_error = exc.message
    return render_template(
        "image.html",
        image=image,
        location=where,
        gps_served=st.config.keep_gps,
        similar=similar,
        duplicates=duplicates,
        related_error=related_error,
        analysis=analysis_view(stored),
        trashed_days_left=trashed_days_left,
    )


def _days_left(stored: Any) -> int:
    """Whole days until storage deletes a trashed image for good (0: today)."""
    retention_ms = state().config.trash_retention_days * 86_400_000
    left_ms = stored.trash_time.ToMilliseconds() + retention_ms - time.time() * 1000
    return max(0, math.ceil(left_ms / 86_400_000))


def analysis_view(image: Any) -> dict[str, Any]:
    """The image's place in the analysis queue (storage's AnalysisState) in plain words."""
    state_ = image.analysis
    now_ms = time.time() * 1000
    working = bool(state_.lease_owner) and state_.lease_expire_time.ToMilliseconds() > now_ms
    retry_in_s = max(0.0, (state_.next_attempt_time.ToMilliseconds() - now_ms) / 1000)
    return {
        "attempts": int(state_.attempts),
        "last_error": error_words(state_.last_error),
        "being_worked_on": working and image.status == PENDING,
        "retry_in_s": round(retry_in_s, 1) if image.status == PENDING else 0.0,
    }


@pages.post("/images/<image_id>/delete")
def delete_image(image_id: str) -> Any:
    state().access.require_form_writer()
    ops.delete_image(image_id)
    return redirect(url_for("pages.gallery", deleted=image_id), 303)


@pages.post("/images/<image_id>/restore")
def restore_image(image_id: str) -> Any:
    """Undo a delete, or restore from the trash page; then back where the click came from."""
    state().access.require_form_writer()
    ops.restore_image(image_id)
    back = request.form.get("back", "")
    if back.startswith("/") and not back.startswith("//"):
        return redirect(back, 303)
    return redirect(url_for("pages.image_page", image_id=image_id), 303)


@pages.get("/trash")
def trash() -> Any:
    st = state()
    token = request.args.get("page", "")
    reply = st.clients.list_images(
        page_size=st.config.gallery_page_size, page_token=token, trashed_only=True
    )
    images = []
    for stored in reply.images:
        image = image_json(stored, _threshold())
        image["days_left"] = _days_left(stored)
        images.append(image)
    return render_template(
        "trash.html",
        images=images,
        total=reply.total_count,
        next_page=reply.next_page_token,
        first_page=not token,
        retention_days=st.config.trash_retention_days,
        notice=request.args.get("notice", ""),
    )


@pages.post("/trash/empty")
def empty_trash() -> Any:
    st = state()
    who = st.access.require_form_writer()
    owner = who if st.access.keys_required and not st.access.is_admin(who) else ""
    count = len(ops.empty_trash(owner))
    notice = f"Deleted {count} image{'' if count == 1 else 's'} for good."
    return redirect(url_for("pages.trash", notice=notice), 303)


@pages.post("/images/<image_id>/favourite")
def toggle_favourite(image_id: str) -> Any:
    """The star without JavaScript: set the flag, then back to where the click came from."""
    state().access.require_form_writer()
    ops.set_favourite(image_id, request.form.get("favourite") == "1")
    back = request.form.get("back", "")
    if back.startswith("/") and not back.startswith("//"):
        return redirect(back, 303)
    return redirect(url_for("pages.image_page", image_id=image_id), 303)


@pages.get("/favourites")
def favourites() -> Any:
    st = state()
    token = request.args.get("page", "")
    reply = st.clients.list_images(
        page_size=st.config.gallery_page_size,
        page_token=token,
        favourite_only=True,
        order=library.ORDERS["taken_newest"],
    )
    images = [image_json(i, _threshold()) for i in reply.images]
    return render_template(
        "favourites.html",
        images=images,
        total=reply.total_count,
        next_page=reply.next_page_token,
        first_page=not token,
        notice=request.args.get("notice", ""),
    )


@pages.post("/images/<image_id>/retry")
def retry_analysis(image_id: str) -> Any:
    state().access.require_form_writer()
    ops.retry_analysis(image_id)
    return redirect(url_for("pages.image_page", image_id=image_id), 303)


@pages.post("/images/<image_id>/tags")
def change_tags(image_id: str) -> Any:
    state().access.require_form_writer()
    add = [t for t in request.form.get("add", "").split(",") if t.strip()]
    remove = request.form.getlist("remove")
    ops.set_tags(image_id, add, remove)
    return redirect(url_for("pages.image_page", image_id=image_id), 303)


@pages.post("/images/<image_id>/feedback")
def label_feedback(image_id: str) -> Any:
    state().access.require_form_writer()
    ops.add_feedback(image_id, request.form.get("label", ""), request.form.get("comment", ""))
    return redirect(url_for("pages.image_page", image_id=image_id, thanks=1), 303)


@pages.get("/search")
def search() -> Any:
    query = request.args.get("q", "").strip()
    results: dict[str, Any] | None = None
    by_filename: list[dict[str, Any]] = []
    search_error = ""
    if query:
        by_filename = [image_json(i, _threshold()) for i in _exact_filename(query)]
        sort = request.args.get("sort", "")
        period = request.args.get("taken_from", ""), request.args.get("taken_until", "")
        try:
            from gateway import albums  # imports this module: late

            if albums.album_search_wanted(query):
                page = request.args.get("page", "")
                results = albums.search_in_album(query, 40, page, sort or "relevance", *period)
            elif sort not in ("", "relevance") or any(period):
                results = library.search_by_date(
                    query, 40, request.args.get("page", ""), sort or "relevance", *period
                )
            else:
                results = ops.search_results(query, 40, request.args.get("page", ""))
        except ServiceError as exc:
            if exc.service != "search" or exc.status < 500:
                raise  # a request search refuses (a page link it did not issue) is a 400
            # Exact filenames come from storage: still worth showing while search is away.
            search_error = exc.message
    return render_template(
        "search.html",
        query=query,
        results=results,
        by_filename=by_filename,
        search_error=search_error,
    )


def _exact_filename(query: str) -> list[Any]:
    """Images named exactly `query`; none when it cannot be a filename (storage refuses a
    name over 255 bytes, yet a query that long is still searched)."""
    try:
        return list(state().clients.find_by_filename(query, 20))
    except ServiceError as exc:
        if exc.service != "storage" or exc.code != grpc.StatusCode.INVALID_ARGUMENT:
            raise
        return []


@pages.post("/search/similar")
def search_similar() -> Any:
    filename, analysis = ops.analyse_upload()
    similar = ops.similar_results(
        vector=list(analysis.feature_vector),
        k=24,
        min_similarity=state().config.similar_min_similarity,
    )
    return render_template(
        "search.html",
        query="",
        results=None,
        by_filename=[],
        similar_to=filename,
        similar=similar,
        labels=[label_json(label) for label in analysis.labels],
    )


@pages.get("/images/<image_id>/mosaic")
def mosaic_page(image_id: str) -> Any:
    image = image_json(state().clients.get_image(image_id), _threshold())
    columns = _columns()
    return render_template("mosaic.html", image=image, columns=columns, max_columns=MAX_COLUMNS)


@pages.get("/images/<image_id>/mosaic.jpg")
def mosaic_image(image_id: str) -> Any:
    st = state()
    columns = _columns()
    try:
        thumb = st.clients.get_thumbnail(image_id, THUMBNAIL_SIZES["preview"])
    except ServiceError as exc:
        # Nothing to rebuild (or not yet): the thumbnail URL's placeholder and 404 (the page
        # says why), or its 503 while storage is busy.
        answer = thumbnail_unavailable(image_id, exc)
        if answer is None:
            raise
        return answer
    try:
        tile_set = st.tiles.tile_set()
    except NoTilesError as exc:
        raise NotFoundError(str(exc)) from exc
    with Image.open(io.BytesIO(thumb.data)) as target:
        mosaic = render_mosaic(target, tile_set, columns=columns, variety=4)
    out = io.BytesIO()
    mosaic.save(out, "JPEG", quality=85)
    response = Response(out.getvalue(), mimetype="image/jpeg")
    response.headers["Cache-Control"] = "private, max-age=60"
    return response


def _columns() -> int:
    raw = request.args.get("columns", "48")
    if not raw.isdigit() or not 8 <= int(raw) <= MAX_COLUMNS:
        raise BadRequestError(f"columns must be a whole number from 8 to {MAX_COLUMNS}")
    return int(raw)


@pages.get("/duplicates")
def duplicates() -> Any:
    groups = library.readable_groups(ops.duplicate_groups())
    return render_template("duplicates.html", groups=groups, notice=request.args.get("notice", ""))


@pages.post("/duplicates/resolve")
def resolve_duplicates() -> Any:
    """Keep the chosen image of one group, delete the group's others."""
    state().access.require_form_writer()
    keep = request.form.get("keep", "")
    members = library.selection(request.form.getlist("members"))
    done = library.resolve_group(keep, [m for m in members if m != keep])
    count = len(done["deleted"])
    notice = f"Kept one, moved {count} cop{'y' if count == 1 else 'ies'} to the trash."
    return redirect(url_for("pages.duplicates", notice=notice), 303)


@pages.post("/duplicates/resolve-exact")
def resolve_exact_duplicates() -> Any:
    state().access.require_form_writer()
    done = library.resolve_exact_groups(request.form.get("keep", "oldest"))
    count = len(done["deleted"])
    notice = (
        f"Kept the {request.form.get('keep', 'oldest')} of each of {done['groups']} groups, "
        f"moved {count} exact cop{'y' if count == 1 else 'ies'} to the trash."
    )
    return redirect(url_for("pages.duplicates", notice=notice), 303)


@pages.get("/status")
def status() -> Any:
    return render_template("status.html", report=ops.status_report(), integrity=_integrity())


def _integrity() -> dict[str, Any]:
    """Unreadable images, a latched background error and the last verify, from storage."""
    try:
        return integrity_summary(state().clients.storage_stats())
    except ServiceError as exc:
        return {"error": exc.message}


@pages.route("/login", methods=["GET", "POST"])
def login() -> Any:
    st = state()
    error = ""
    if request.method == "POST":
        st.access.check_csrf()
        owner = st.access.check_key(request.form.get("key", "").strip())
        if owner is None:
            error = "that key is not valid"
        else:
            session["owner"] = owner
            return redirect(url_for("pages.gallery"), 303)
    return render_template("login.html", error=error), (401 if error else 200)


@pages.post("/logout")
def logout() -> Any:
    state().access.check_csrf()
    session.pop("owner", None)
    return redirect(url_for("pages.gallery"), 303)


# Names cameras and phones give by themselves (IMG_0042.jpg, DSC01234.JPG, PXL_20230105_…):
# they say nothing to a person, so a tile shows the date instead.
_CAMERA_NAME = re.compile(
    r"^(img|dsc[nf]?|dcim|pxl|mvimg|vid|photo|image|p\d|dji|gopr|sam|wp|screenshot)?"
    r"[_\- ]?[\d_\- ]{4,}(\.\w{2,5})?$|^[0-9a-f\-]{16,}(\.\w{2,5})?$",
    re.IGNORECASE,
)


def tile_caption(image: dict[str, Any]) -> str:
    """What a tile says under the photo: the label when the model is sure, else the filename,
    else (for a name the camera made up) the date it was taken."""
    if image.get("confident_label"):
        return str(image["confident_label"])
    name = str(image.get("filename") or "")
    if name and not _CAMERA_NAME.match(name):
        return name
    moment = datetime.fromisoformat(str(image["date"]))
    return f"{moment.day} {moment:%b %Y}"


@pages.app_context_processor
def _page_helpers() -> dict[str, Any]:
    return {"reasons_text": reasons_text, "tile_caption": tile_caption}
