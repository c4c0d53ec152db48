"""Fixtures for the storage service: a bare column store, and the real gRPC service over one."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from PIL import Image

from imagerepo.storage.v1 import storage_service_pb2 as pb
from imagerepo.storage.v1 import storage_service_pb2_grpc as pb_grpc
from service_runtime.grpc_server import channel_options
from storage_service.columnstore.id_array import IdArray
from storage_service.columnstore.image_check import prepare_image
from storage_service.columnstore.model import AnalysisStatus, AnnotationUpdate, PreparedImage
from storage_service.columnstore.segment_reader import SegmentReader
from storage_service.columnstore.store import ColumnStore, StoreOptions
from storage_service.server import build_server

# Small enough that a handful of photos already makes the store flush to segments; no
# background compaction, so tests decide when it happens; no change-feed retention, so a
# compaction drops every superseded row (test_feed.py tests retention).
SMALL_MEMTABLE = StoreOptions(
    memtable_bytes=400_000,
    compact_min_segments=1000,
    compact_dead_fraction=2.0,
    feed_retention_seqs=0,
)

# The update the analysis worker stores once an image is analysed.
MARK_READY = AnnotationUpdate(fields=frozenset({"status"}), status=AnalysisStatus.READY)


@pytest.fixture
def bare_store(tmp_path: Path) -> Iterator[ColumnStore]:
    """A column store over a throwaway directory, flushing after a few photos."""
    store = ColumnStore.open(tmp_path / "store", SMALL_MEMTABLE)
    yield store
    store.close()


@dataclass
class StorageService:
    stub: pb_grpc.StorageServiceStub
    store: ColumnStore
    data_dir: Path


class ServiceRunner:
    """Starts the real storage service over a data dir; can restart it over the same dir."""

    def __init__(self, data_dir: Path, max_image_bytes: int = 50 * 1024 * 1024) -> None:
        self.data_dir = data_dir
        self.max_image_bytes = max_image_bytes
        self._server: grpc.Server | None = None
        self._channel: grpc.Channel | None = None
        self._store: ColumnStore | None = None

    def start(self) -> StorageService:
        self._store = ColumnStore.open(self.data_dir, SMALL_MEMTABLE)
        self._server, port, health = build_server(
            self._store,
            "127.0.0.1:0",
            max_image_bytes=self.max_image_bytes,
            max_image_pixels=4_000_000,
        )
        self._server.start()
        health.set_serving(True)
        self._channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=channel_options())
        return StorageService(pb_grpc.StorageServiceStub(self._channel), self._store, self.data_dir)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None)
        if self._channel is not None:
            self._channel.close()
        if self._store is not None:
            self._store.close()
        self._server = self._channel = self._store = None

    def restart(self) -> StorageService:
        self.stop()
        return self.start()


@pytest.fixture
def storage_runner(tmp_path: Path) -> Iterator[ServiceRunner]:
    """The storage service over tmp_path; `restart()` reopens the same data dir."""
    runner = ServiceRunner(tmp_path / "storage")
    yield runner
    runner.stop()


@pytest.fixture
def storage(storage_runner: ServiceRunner) -> StorageService:
    """A running storage service (real gRPC on port 0) over a throwaway data dir."""
    return storage_runner.start()


def upload_requests(
    data: bytes, filename: str, owner: str = "", chunk: int = 256 * 1024, expected_size: int = 0
) -> Iterator[pb.PutImageRequest]:
    header = pb.PutImageHeader(filename=filename, owner=owner, expected_size=expected_size)
    yield pb.PutImageRequest(header=header)
    for offset in range(0, len(data), chunk):
        yield pb.PutImageRequest(chunk=data[offset : offset + chunk])


def put(
    stub: pb_grpc.StorageServiceStub, data: bytes, filename: str, owner: str = ""
) -> pb.PutImageResponse:
    response: pb.PutImageResponse = stub.PutImage(
        upload_requests(data, filename, owner), timeout=30
    )
    return response


def read_all(stub: pb_grpc.StorageServiceStub, image_id: str) -> bytes:
    return b"".join(
        r.chunk for r in stub.ReadImageData(pb.ReadImageDataRequest(image_id=image_id), timeout=30)
    )


def jpeg_variant(data: bytes, seed: int) -> bytes:
    """A distinct JPEG made from a photo: cropped and re-encoded (a different sha256)."""
    with Image.open(io.BytesIO(data)) as im:
        w, h = im.size
        crop = im.convert("RGB").crop((seed % 7, seed % 5, w - seed % 3, h - seed % 11))
        buf = io.BytesIO()
        crop.save(buf, "JPEG", quality=80 + seed % 15)
        return buf.getvalue()


@pytest.fixture(scope="session")
def small_images(photo_jpegs: dict[str, bytes]) -> list[PreparedImage]:
    """Distinct small photos (a few KB each), so many writes fit in a short test."""
    out = []
    for i, data in enumerate(list(photo_jpegs.values()) * 2):
        with Image.open(io.BytesIO(jpeg_variant(data, i))) as im:
            im = im.convert("RGB")
            im.thumbnail((160, 160))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=70 + i)
            out.append(prepare_image(buf.getvalue()))
    return out


def damage_row_meta(data_dir: Path, image_id: str) -> str:
    """Flip a byte in the middle of the image's first row_meta frame on disk (its PUT row);
    returns the segment's file name."""
    for path in sorted((data_dir / "segments").glob("*.seg")):
        reader = SegmentReader(path)
        ids = reader.ids()
        if image_id in ids:
            offset, length = reader.blob_location("row_meta", ids.index(image_id))
            del reader
            raw = bytearray(path.read_bytes())
            raw[offset + length // 2] ^= 0xFF
            path.write_bytes(bytes(raw))
            return path.name
    raise AssertionError(f"{image_id} is in no segment")


def listed_ids(store: ColumnStore, page_size: int, **kw: Any) -> list[str]:
    """Every image id a listing gives, following its page tokens (`kw`: list_images' filters)."""
    out: list[str] = []
    token = ""
    while True:
        page = store.list_images(page_size, token, **kw)
        out += [m.id for m in page.images]
        token = page.next_page_token
        if not token:
            return out


def put_images(
    store: ColumnStore, images: Sequence[PreparedImage], owners: Sequence[str] = ("",)
) -> list[str]:
    """Puts each image as `<i>.jpg`, owned by `owners` in turn; their ids, in that order."""
    return [
        store.put(f"{i}.jpg", owners[i % len(owners)], image).image.id
        for i, image in enumerate(images)
    ]


def take_slot(ids: IdArray, free: list[int], image_id: str) -> int:
    """Gives `image_id` a slot as the store does (the slot freed last, else a new one at the
    end of `ids`) and returns it."""
    slot = free.pop() if free else len(ids)
    if slot == len(ids):
        ids.append(image_id)
    else:
        ids[slot] = image_id
    return slot
