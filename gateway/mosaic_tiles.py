"""The mosaic's tile set: tiles cut from the repository's own small thumbnails, cached by id.

Images are immutable, so a thumbnail's tiles never change: only new images are fetched, and
deleted ones are dropped. Images over the moderation threshold are left out, and so are those
whose thumbnails failed (damaged past their header).
"""

from __future__ import annotations

import io
import itertools
import threading

import numpy as np
from PIL import Image

from gateway.clients import ServiceClients
from gateway.errors import ServiceError
from gateway.mosaic import DEFAULT_TILE_PX, TileSet, build_tile_set, tiles_from_picture
from imagerepo.storage.v2 import storage_service_pb2 as storage_pb


class NoTilesError(Exception):
    """The repository has no image to make tiles from."""


class TileCache:
    def __init__(
        self,
        clients: ServiceClients,
        max_images: int,
        moderation_threshold: float,
        tile_px: int = DEFAULT_TILE_PX,
    ) -> None:
        self._clients = clients
        self._max_images = max_images
        self._threshold = moderation_threshold
        self._tile_px = tile_px
        self._tiles: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def tile_set(self) -> TileSet:
        with self._lock:
            images = [
                image
                for image in itertools.islice(self._clients.iter_images(), self._max_images)
                if image.moderation_score <= self._threshold
                # A file damaged past its header has no thumbnail to cut tiles from.
                and image.thumbnail_state != storage_pb.THUMBNAIL_STATE_FAILED
            ]
            wanted = {image.id for image in images}
            for image_id in list(self._tiles):
                if image_id not in wanted:
                    del self._tiles[image_id]
            for image in images:
                if image.id not in self._tiles:
                    tiles = self._fetch(image.id)
                    if tiles is not None:
                        self._tiles[image.id] = tiles
            if not self._tiles:
                raise NoTilesError("the repository has no images to make mosaic tiles from")
            return build_tile_set(self._tiles.values())

    def _fetch(self, image_id: str) -> np.ndarray | None:
        try:
            thumb = self._clients.get_thumbnail(image_id, storage_pb.THUMBNAIL_SIZE_SMALL)
        except ServiceError as exc:
            # Deleted since the listing, or found damaged by this very request (its thumbnails
            # are made on the first ask): no tiles from it.
            if exc.code.name in ("NOT_FOUND", "INVALID_ARGUMENT"):
                return None
            raise
        with Image.open(io.BytesIO(thumb.data)) as picture:
            return tiles_from_picture(picture, self._tile_px)

    def forget(self, image_id: str) -> None:
        with self._lock:
            self._tiles.pop(image_id, None)
