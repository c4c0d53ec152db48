"""What can go wrong in the column store, one class per cause (the servicer maps each to a code)."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every column-store error."""


class ImageNotFoundError(StoreError):
    def __init__(self, image_id: str) -> None:
        super().__init__(f"no image with id {image_id!r}")
        self.image_id = image_id


class InvalidImageError(StoreError):
    """The bytes are not an image we accept (empty, not an image, truncated, too large, bomb)."""


class InvalidRequestError(StoreError):
    """An argument the store cannot act on (a bad page token, an unknown field name)."""


class DataLossError(StoreError):
    """Stored bytes failed their checksum: they are never returned."""

    def __init__(self, segment: str, detail: str) -> None:
        super().__init__(f"checksum failure in {segment}: {detail}")
        self.segment = segment


class StoreClosedError(StoreError):
    """The store was closed, or a log write failed and it refuses further writes."""


class StorageFullError(StoreError):
    """The disk is full (ENOSPC): writes are refused until space is freed; reads go on."""


class BackgroundError(StoreError):
    """A background flush, compaction or log rotation failed; the first such error is latched
    and every later write fails fast with it until the store has recovered by itself."""


class DataDirLockedError(StoreError):
    """Another process holds the data directory's LOCK file."""


class LeaseLostError(StoreError):
    """A completion for a generation that is no longer the image's (its lease ran out and it
    was claimed again, or its status was changed by hand): nothing was changed."""

    reason = "LEASE_LOST"


class HistoryCompactedError(StoreError):
    """Changes older than the retention horizon were asked for: resynchronise from a listing."""

    reason = "COMPACTED"

    def __init__(self, after_seq: int, horizon_seq: int, head_seq: int | None = None) -> None:
        if head_seq is not None:
            what = (
                f"seq {after_seq} is ahead of this store's newest change ({head_seq}): it is "
                "not the store that was followed (restored or replaced)"
            )
        else:
            what = (
                f"changes after seq {after_seq} are compacted away (the oldest retained is "
                f"{horizon_seq})"
            )
        super().__init__(f"{what}: list images, then watch from the listing's snapshot_seq")
        self.horizon_seq = horizon_seq


class ThumbnailsPendingError(StoreError):
    """An image's thumbnails are not made yet (the thumbnailer makes them after the put)."""

    def __init__(self, image_id: str) -> None:
        super().__init__(f"the thumbnails of {image_id!r} are not made yet")
        self.image_id = image_id


class ThumbnailsFailedError(InvalidImageError):
    """The image's deferred decode failed (corrupt past its header): it has no thumbnails; its
    bytes are kept as uploaded."""
