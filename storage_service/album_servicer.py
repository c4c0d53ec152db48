"""The album RPCs of StorageService, as a mixin StorageServicer inherits: proto in, a call to
the album table (columnstore/albums.py), proto out; domain errors become status codes.

The table is opened on the first album call, in the image store's data dir (under its LOCK),
so a storage process that never sees an album call never touches it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import grpc

from imagerepo.storage.v1 import storage_service_pb2 as pb
from storage_service.columnstore import albums as albums_mod
from storage_service.columnstore import policy
from storage_service.columnstore.albums import (
    Album,
    AlbumExistsError,
    AlbumNotFoundError,
    AlbumsCheck,
    AlbumStore,
)
from storage_service.columnstore.errors import StoreClosedError, StoreError
from storage_service.columnstore.model import DamagedItem, VerifyReport
from storage_service.errors import abort, store_errors, with_status_codes

if TYPE_CHECKING:
    from storage_service.columnstore.store import ColumnStore

log = logging.getLogger(__name__)


def album_to_proto(album: Album) -> pb.Album:
    return pb.Album(
        id=album.id,
        name=album.name,
        owner=album.owner,
        created_at_unix_ms=album.created_ms,
        updated_at_unix_ms=album.updated_ms,
        image_count=album.image_count,
        cover_image_id=album.cover_image_id,
    )


def _require(value: str, what: str, context: grpc.ServicerContext) -> None:
    if not value:
        abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"{what} is required")


def _check_ids(ids: list[str], context: grpc.ServicerContext) -> None:
    if len(ids) > policy.MAX_BATCH:
        abort(
            context,
            grpc.StatusCode.INVALID_ARGUMENT,
            f"{len(ids)} image ids in one call, over the limit of {policy.MAX_BATCH}",
            policy.POLICY_VIOLATION,
            limit="batch_size",
        )
    for image_id in ids:
        if not image_id or len(image_id) > policy.MAX_ID_CHARS:
            abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"image id {policy.short_id(image_id)!r} is empty or over "
                f"{policy.MAX_ID_CHARS} characters",
                policy.POLICY_VIOLATION,
                limit="image_id",
            )


@contextmanager
def _album_errors(context: grpc.ServicerContext) -> Iterator[None]:
    """Album errors first (with their reasons), then everything the store can raise."""
    with store_errors(context):
        try:
            yield
        except AlbumNotFoundError as e:
            abort(context, grpc.StatusCode.NOT_FOUND, str(e), e.reason, album_id=e.album_id[:64])
        except AlbumExistsError as e:
            abort(context, grpc.StatusCode.ALREADY_EXISTS, str(e), e.reason)


@with_status_codes
class AlbumServicer:
    """Album RPCs; needs `self._store` (the open ColumnStore) from the class it is mixed into."""

    _store: ColumnStore
    _albums_table: AlbumStore | None = None
    _albums_closed = False
    _albums_open_lock = threading.Lock()

    def albums(self) -> AlbumStore:
        """The album table, opened on first use (never again once closed)."""
        table = self._albums_table
        if table is None:
            with self._albums_open_lock:
                table = self._albums_table
                if table is None:
                    if self._albums_closed:
                        raise StoreClosedError("the album table is closed")
                    table = AlbumStore.open(
                        self._store.data_dir, self._store, getattr(self._store, "_fs", None)
                    )
                    self._albums_table = table
        return table

    def close_albums(self) -> None:
        """Close the album table (its log fsynced and released); later album writes fail
        with UNAVAILABLE and it is not opened again. Called by the servicer's stop()."""
        with self._albums_open_lock:
            self._albums_closed = True
            table = self._albums_table
        if table is not None:
            table.close()

    def album_count(self) -> int:
        """Albums in the table, for GetStats: 0 without opening it when it was never created."""
        if self._albums_table is None and not self._albums_dir_exists():
            return 0
        try:
            return self.albums().count
        except (StoreError, OSError) as e:  # closed, or cannot be opened: stats still answer
            log.warning("album count unavailable", extra={"error": str(e)})
            return 0

    def _albums_dir_exists(self) -> bool:
        return (self._store.data_dir / albums_mod.DIR_NAME).exists()

    def check_albums(self) -> AlbumsCheck:
        """Read and check the album table's files (without opening it when it is not open)."""
        with self._albums_open_lock:  # no open (and its checkpoint) while the files are read
            table = self._albums_table
            if table is None:
                return albums_mod.verify_logs(
                    self._store.data_dir, getattr(self._store, "_fs", None)
                )
        return table.verify()

    def verify_albums(self, report: VerifyReport) -> VerifyReport:
        """The image store's verify `report` with the album table's files checked and added
        (files, bytes, damage); recorded as the store's last verify (kept in LAST_VERIFY),
        so GetStats' last_verify shows it, after a restart too."""
        started = time.monotonic()
        try:
            check = self.check_albums()
        except OSError as e:
            check = AlbumsCheck(
                damaged=(DamagedItem(f"{albums_mod.DIR_NAME}/", f"unreadable: {e}"),)
            )
        merged = dataclasses.replace(
            report,
            files_checked=report.files_checked + check.files_checked,
            blocks_checked=report.blocks_checked + check.files_checked,
            bytes_checked=report.bytes_checked + check.bytes_checked,
            damaged=(*report.damaged, *check.damaged),
            finished_at_ms=int(time.time() * 1000),
            duration_ms=report.duration_ms + int((time.monotonic() - started) * 1000),
        )
        if check.damaged:
            log.error(
                "verify: album table damage",
                extra={"damaged": [f"{d.path}: {d.detail}" for d in check.damaged]},
            )
        self._store.record_verify(merged)
        return merged

    def CreateAlbum(
        self, request: pb.CreateAlbumRequest, context: grpc.ServicerContext
    ) -> pb.CreateAlbumResponse:
        _check_ids(list(request.image_ids), context)
        with _album_errors(context):
            policy.check_owner(request.owner)
            album = self.albums().create(request.name, request.owner, list(request.image_ids))
        return pb.CreateAlbumResponse(album=album_to_proto(album))

    def RenameAlbum(
        self, request: pb.RenameAlbumRequest, context: grpc.ServicerContext
    ) -> pb.RenameAlbumResponse:
        _require(request.album_id, "album_id", context)
        with _album_errors(context):
            album = self.albums().rename(request.album_id, request.name)
        return pb.RenameAlbumResponse(album=album_to_proto(album))

    def DeleteAlbum(
        self, request: pb.DeleteAlbumRequest, context: grpc.ServicerContext
    ) -> pb.DeleteAlbumResponse:
        _require(request.album_id, "album_id", context)
        with _album_errors(context):
            album = self.albums().delete(request.album_id)
        return pb.DeleteAlbumResponse(album=album_to_proto(album))

    def ListAlbums(
        self, request: pb.ListAlbumsRequest, context: grpc.ServicerContext
    ) -> pb.ListAlbumsResponse:
        with _album_errors(context):
            albums, token, total = self.albums().list(
                request.owner, request.page_size, request.page_token, request.image_id
            )
        return pb.ListAlbumsResponse(
            albums=[album_to_proto(a) for a in albums], next_page_token=token, total_count=total
        )

    def GetAlbum(
        self, request: pb.GetAlbumRequest, context: grpc.ServicerContext
    ) -> pb.GetAlbumResponse:
        from storage_service.servicer import to_proto  # the servicer module imports this one

        _require(request.album_id, "album_id", context)
        with _album_errors(context):
            page = self.albums().page(request.album_id, request.page_size, request.page_token)
        reply = pb.GetAlbumResponse(
            album=album_to_proto(page.album),
            image_ids=page.image_ids,
            next_page_token=page.next_page_token,
        )
        if request.include_images:
            used = reply.ByteSize()
            for index, meta in enumerate(page.images):
                proto = to_proto(meta)
                used += proto.ByteSize() + 8
                if used > policy.MAX_REPLY_BYTES:
                    # Cut the page here (ids too), so the client asks again from this one.
                    del reply.image_ids[index:]
                    reply.next_page_token = _token_at(self, request.album_id, page.image_ids[index])
                    break
                reply.images.append(proto)
        return reply

    def AddToAlbum(
        self, request: pb.AddToAlbumRequest, context: grpc.ServicerContext
    ) -> pb.AddToAlbumResponse:
        _require(request.album_id, "album_id", context)
        _check_ids(list(request.image_ids), context)
        with _album_errors(context):
            got = self.albums().add(request.album_id, list(request.image_ids))
        return pb.AddToAlbumResponse(
            album=album_to_proto(got.album),
            added_ids=got.added,
            already_ids=got.already,
            not_found_ids=got.not_found,
        )

    def RemoveFromAlbum(
        self, request: pb.RemoveFromAlbumRequest, context: grpc.ServicerContext
    ) -> pb.RemoveFromAlbumResponse:
        _require(request.album_id, "album_id", context)
        _check_ids(list(request.image_ids), context)
        with _album_errors(context):
            got = self.albums().remove(request.album_id, list(request.image_ids))
        return pb.RemoveFromAlbumResponse(
            album=album_to_proto(got.album),
            removed_ids=got.removed,
            not_in_album_ids=got.not_in_album,
        )


def _token_at(servicer: AlbumServicer, album_id: str, image_id: str) -> str:
    return servicer.albums().token_at(album_id, image_id)
