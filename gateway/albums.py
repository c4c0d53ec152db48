"""Albums in the gateway: the REST routes under /api/albums, the album pages (/albums, an
album's own grid) with their forms, and search limited to an album (`album=<id>`, or a query
ending in "in album <name>").

Albums are kept by storage (CreateAlbum, ... over gRPC); this module only translates. Its
routes join the existing `api` and `pages` blueprints (endpoints `api.*_album*` and
`pages.*album*`), so login redirects, CSRF and error rendering work as for every other route.
Owner checks: an album is changed only by its owner (or an admin key, when keys are set);
storage itself refuses to add another owner's images to it.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import grpc
from flask import jsonify, redirect, render_template, request, url_for

from gateway import library
from gateway import operations as ops
from gateway.api import api
from gateway.clients import match_field_word
from gateway.errors import BadRequestError, ForbiddenError, NotFoundError, ServiceError
from gateway.image_json import image_json, iso_time
from gateway.pages import pages
from gateway.state import state
from imagerepo.search.v2 import search_service_pb2 as search_pb
from imagerepo.storage.v2 import storage_service_pb2 as storage_pb

# "cat in album Summer 2019", 'in album "Trip to Rome" cat' (quoted: anywhere in the query).
_QUOTED = re.compile(r"""\bin\s+album\s+(?:"([^"]+)"|'([^']+)')""", re.IGNORECASE)
_TRAILING = re.compile(r"\bin\s+album\s+(\S.*?)\s*$", re.IGNORECASE)
PAGE_SIZE = 60


# --- translation --------------------------------------------------------------------------------


def album_json(album: storage_pb.Album) -> dict[str, Any]:
    cover = album.cover_image_id
    return {
        "id": album.id,
        "name": album.name,
        "owner": album.owner,
        "created_at": iso_time(album.create_time.ToMilliseconds()),
        "updated_at": iso_time(album.update_time.ToMilliseconds()),
        "image_count": album.image_count,
        "cover_image_id": cover or None,
        "links": {
            "self": f"/api/albums/{album.id}",
            "images": f"/api/albums/{album.id}/images",
            "page": f"/albums/{album.id}",
            "cover": f"/api/images/{cover}/thumbnail" if cover else None,
        },
    }


def split_album_phrase(query: str) -> tuple[str, str]:
    """(the query without its "in album <name>" phrase, the album name); name "" if none."""
    match = _QUOTED.search(query) or _TRAILING.search(query)
    if match is None:
        return query, ""
    name = next(g for g in match.groups() if g)
    rest = (query[: match.start()] + " " + query[match.end() :]).strip()
    return " ".join(rest.split()), name.strip()


def _who() -> str:
    """The caller's owner name for listing "your" albums ("" when unknown: every album)."""
    access = state().access
    if not access.keys_required:
        return ""
    return access.identity() or ""


def _album(album_id: str) -> storage_pb.Album:
    return state().clients.get_album(album_id, page_size=1).album


def _writable_album(album_id: str, writer: str) -> storage_pb.Album:
    """The album, when `writer` may change it (its owner, or an admin, or nobody has keys)."""
    album = _album(album_id)
    access = state().access
    if access.keys_required and album.owner != writer and not access.is_admin(writer):
        raise ForbiddenError(f"album {album_id} belongs to another owner")
    return album


def _ids_from_json() -> list[str]:
    body = request.get_json(silent=True)
    raw: Any = body.get("ids", body.get("image_ids")) if isinstance(body, dict) else None
    if raw is None:
        raw = request.args.getlist("ids")
    if not isinstance(raw, list):
        raise BadRequestError("ids must be a list of image ids")
    return library.selection(raw)


def _name_from_json() -> str:
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        raise BadRequestError('send a JSON object with a "name" string')
    return str(body["name"])


def _owner_filter() -> str:
    owner = request.args.get("owner")
    return owner if owner is not None else _who()


# --- search in an album -------------------------------------------------------------------------


def album_search_wanted(query: str) -> bool:
    return bool(request.args.get("album")) or bool(split_album_phrase(query)[1])


def search_in_album(
    query: str,
    page_size: int,
    page_token: str = "",
    sort: str = "relevance",
    taken_from: str = "",
    taken_until: str = "",
    favourites: bool = False,
) -> dict[str, Any]:
    """Search limited to one album's photos (`album=<id>`, or "in album <name>" in the query);
    the shape of the other searches plus `album`, and a `note` when the name matches no
    album. With no other words, the album's photos in album order."""
    st = state()
    words, name = split_album_phrase(query)
    album_id = request.args.get("album", "")
    if not album_id:
        found = [
            a
            for a in st.clients.list_albums(owner=_who(), page_size=1000).albums
            if a.name.casefold() == name.casefold()
        ]
        if not found:
            return {
                "query": query,
                "hits": [],
                "total_hits": 0,
                "next_page_token": "",
                "fell_back_to_or": False,
                "album": None,
                "note": f"nothing to show: there is no album named “{name}”",
            }
        album_id = found[0].id
    threshold = st.config.moderation_threshold
    if not words:
        reply = st.clients.get_album(album_id, page_size, page_token, include_images=True)
        return {
            "query": query,
            "hits": [
                {"image": image_json(i, threshold), "score": 0.0, "reasons": []}
                for i in reply.images
            ],
            "total_hits": reply.album.image_count,
            "next_page_token": reply.next_page_token,
            "fell_back_to_or": False,
            "album": album_json(reply.album),
        }
    if sort not in library.SORTS:
        raise BadRequestError("sort must be relevance, taken_newest or taken_oldest")
    album = _album(album_id)
    members = st.clients.album_image_ids(album_id)
    search_request = search_pb.SearchRequest(
        query=words,
        page_size=page_size,
        page_token=page_token,
        sort=library.SORTS[sort],
        filters=library.search_filters(
            taken_from,
            taken_until,
            favourites_only=favourites,
            allowed_ids=search_pb.ImageIdAllowList(image_ids=members),
        ),
    )
    try:
        reply = st.clients.search.Search(search_request, timeout=st.clients.timeout_s)
    except grpc.RpcError as exc:
        raise ServiceError("search", "Search", exc.code(), exc.details() or "") from exc
    images = {i.id: i for i in st.clients.batch_get_images([h.image_id for h in reply.hits])}
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
        "album": album_json(album),
    }


# --- REST -----------------------------------------------------------------------------------------


@api.get("/albums")
def list_albums() -> Any:
    reply = state().clients.list_albums(
        owner=_owner_filter(),
        page_size=_page_size(100),
        page_token=request.args.get("page_token", ""),
        image_id=request.args.get("image_id", ""),
    )
    return jsonify(
        {
            "albums": [album_json(a) for a in reply.albums],
            "total_count": reply.total_count,
            "next_page_token": reply.next_page_token,
        }
    )


@api.post("/albums")
def create_album() -> Any:
    owner = state().access.require_api_writer()
    body = request.get_json(silent=True)
    raw_ids = body.get("image_ids", body.get("ids", [])) if isinstance(body, dict) else []
    ids = library.selection(raw_ids) if raw_ids else []
    album = state().clients.create_album(_name_from_json(), owner, ids)
    # Storage leaves out, without a word, the ids it cannot add (gone, or another owner's):
    # name them, as adding to an album does.
    known = ops.images_by_id(ids) if ids else {}
    missing = [i for i in ids if i not in known or known[i].owner != album.owner]
    response = jsonify({**album_json(album), "not_found": missing})
    response.status_code = 201
    response.headers["Location"] = f"/api/albums/{album.id}"
    return response


@api.get("/albums/<album_id>")
def get_album(album_id: str) -> Any:
    st = state()
    reply = st.clients.get_album(
        album_id, _page_size(PAGE_SIZE), request.args.get("page_token", ""), include_images=True
    )
    body = album_json(reply.album)
    body["images"] = [image_json(i, st.config.moderation_threshold) for i in reply.images]
    body["next_page_token"] = reply.next_page_token
    return jsonify(body)


@api.patch("/albums/<album_id>")
def rename_album(album_id: str) -> Any:
    writer = state().access.require_api_writer()
    _writable_album(album_id, writer)
    return jsonify(album_json(state().clients.rename_album(album_id, _name_from_json())))


@api.delete("/albums/<album_id>")
def delete_album(album_id: str) -> Any:
    writer = state().access.require_api_writer()
    _writable_album(album_id, writer)
    return jsonify(album_json(state().clients.delete_album(album_id)))


@api.post("/albums/<album_id>/images")
def add_album_images(album_id: str) -> Any:
    writer = state().access.require_api_writer()
    ids = _ids_from_json()
    _writable_album(album_id, writer)
    reply = state().clients.add_to_album(album_id, ids)
    return jsonify(
        {
            "album": album_json(reply.album),
            "added": list(reply.added_ids),
            "already_in_album": list(reply.already_ids),
            "not_found": list(reply.not_found_ids),
        }
    )


@api.delete("/albums/<album_id>/images")
def remove_album_images(album_id: str) -> Any:
    writer = state().access.require_api_writer()
    ids = _ids_from_json()
    _writable_album(album_id, writer)
    reply = state().clients.remove_from_album(album_id, ids)
    return jsonify(
        {
            "album": album_json(reply.album),
            "removed": list(reply.removed_ids),
            "not_in_album": list(reply.not_in_album_ids),
        }
    )


def _page_size(default: int) -> int:
    raw = request.args.get("page_size", "")
    if not raw:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise BadRequestError("page_size must be between 1 and 1000")
    return int(raw)


# --- pages ----------------------------------------------------------------------------------------


def _back(default: str) -> str:
    back = request.form.get("back", "")
    return back if back.startswith("/") and not back.startswith("//") else default


def _with_notice(url: str, notice: str) -> str:
    """`url` with `album_notice=notice` (replacing one it had)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "album_notice"]
    query.append(("album_notice", notice))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _plural(n: int, word: str = "photo") -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@pages.get("/albums")
def albums_page() -> Any:
    reply = state().clients.list_albums(owner=_who(), page_size=1000)
    return render_template(
        "albums.html",
        albums=[album_json(a) for a in reply.albums],
        total=reply.total_count,
        notice=request.args.get("album_notice", ""),
    )


@pages.post("/albums")
def create_album_form() -> Any:
    owner = state().access.require_form_writer()
    ids = [i for i in request.form.getlist("ids") if i]
    return _create_and_show(request.form.get("name", ""), owner, ids)


def _create_and_show(name: str, owner: str, ids: list[str]) -> Any:
    try:
        album = state().clients.create_album(name, owner, library.selection(ids) if ids else [])
    except ServiceError as exc:
        if exc.code not in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.ALREADY_EXISTS):
            raise
        return redirect(_with_notice(_back(url_for("pages.albums_page")), exc.details), 303)
    if ids:
        notice = f"Made the album “{album.name}” with {_plural(album.image_count)}."
        back = _back("")
        target = back if back.startswith("/images/") else f"/albums/{album.id}"
        return redirect(_with_notice(target, notice), 303)
    return redirect(url_for("pages.album_page", album_id=album.id), 303)


@pages.get("/albums/<album_id>")
def album_page(album_id: str) -> Any:
    st = state()
    token = request.args.get("page", "")
    try:
        reply = st.clients.get_album(album_id, PAGE_SIZE, token, include_images=True)
    except ServiceError as exc:
        if exc.code == grpc.StatusCode.NOT_FOUND:
            raise NotFoundError("there is no such album (it may have been deleted)") from exc
        raise
    return render_template(
        "album.html",
        album=album_json(reply.album),
        images=[image_json(i, st.config.moderation_threshold) for i in reply.images],
        next_page=reply.next_page_token,
        first_page=not token,
        notice=request.args.get("album_notice", ""),
    )


@pages.post("/albums/<album_id>/rename")
def rename_album_form(album_id: str) -> Any:
    writer = state().access.require_form_writer()
    _writable_album(album_id, writer)
    try:
        album = state().clients.rename_album(album_id, request.form.get("name", ""))
    except ServiceError as exc:
        if exc.code not in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.ALREADY_EXISTS):
            raise
        return redirect(_with_notice(f"/albums/{album_id}", exc.details), 303)
    return redirect(_with_notice(f"/albums/{album_id}", f"Renamed to “{album.name}”."), 303)


@pages.post("/albums/<album_id>/delete")
def delete_album_form(album_id: str) -> Any:
    writer = state().access.require_form_writer()
    _writable_album(album_id, writer)
    album = state().clients.delete_album(album_id)
    notice = f"Deleted the album “{album.name}”. Its photos are still in your library."
    return redirect(_with_notice(url_for("pages.albums_page"), notice), 303)


@pages.post("/albums/add")
def add_to_album_form() -> Any:
    """Add the selected photos (bulk bar) or one photo (image page) to the chosen album, or to
    a new album when a new name is given."""
    writer = state().access.require_form_writer()
    ids = library.selection(request.form.getlist("ids"))
    new_name = request.form.get("new_album", "").strip()
    album_id = request.form.get("album", "")
    if new_name:
        return _create_and_show(new_name, writer, ids)
    if not album_id:
        raise BadRequestError("choose an album, or give a name for a new one")
    _writable_album(album_id, writer)
    reply = state().clients.add_to_album(album_id, ids)
    added, already = len(reply.added_ids), len(reply.already_ids)
    notice = f"Added {_plural(added)} to “{reply.album.name}”."
    if already:
        notice += f" {_plural(already)} {'was' if already == 1 else 'were'} already in it."
    if reply.not_found_ids:
        notice += f" {_plural(len(reply.not_found_ids))} could not be added (not yours or gone)."
    # From a photo's page: back there (its album box shows the notice); from a selection:
    # to the album, to see them in it.
    back = _back("")
    target = back if back.startswith("/images/") else f"/albums/{album_id}"
    return redirect(_with_notice(target, notice), 303)


@pages.post("/albums/<album_id>/remove")
def remove_from_album_form(album_id: str) -> Any:
    writer = state().access.require_form_writer()
    _writable_album(album_id, writer)
    reply = state().clients.remove_from_album(
        album_id, library.selection(request.form.getlist("ids"))
    )
    notice = (
        f"Removed {_plural(len(reply.removed_ids))} from “{reply.album.name}”"
        " (still in your library)."
    )
    return redirect(_with_notice(_back(f"/albums/{album_id}"), notice), 303)


@pages.app_context_processor
def _album_helpers() -> dict[str, Any]:
    def my_albums() -> list[dict[str, Any]]:
        """The caller's albums by name, for the "add to album" choosers."""
        try:
            reply = state().clients.list_albums(owner=_who(), page_size=1000)
        except ServiceError:
            return []
        return [album_json(a) for a in reply.albums]

    def albums_holding(image_id: str) -> list[dict[str, Any]]:
        try:
            reply = state().clients.list_albums(owner=_who(), page_size=1000, image_id=image_id)
        except ServiceError:
            return []
        return [album_json(a) for a in reply.albums]

    return {
        "my_albums": my_albums,
        "albums_holding": albums_holding,
        "album_notice": request.args.get("album_notice", ""),
    }
