"""Thumbnails made after the put is acknowledged (issue 13, cheaper puts): the cheap checks on
the acknowledged path, the background thumbnailer, its durability across a crash, thumbnails
on demand, a file corrupt in the middle, and thumbnails kept through annotation and compaction.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from PIL import Image

from imagerepo.storage.v1 import storage_service_pb2 as pb
from imagerepo.storage.v1 import storage_service_pb2_grpc as pb_grpc
from service_runtime.grpc_server import channel_options
from service_runtime.probe import is_serving
from storage_service.columnstore.errors import ThumbnailsFailedError, ThumbnailsPendingError
from storage_service.columnstore.image_check import (
    check_image,
    prepare_image,
    structure_problem,
)
from storage_service.columnstore.model import (
    AnalysisResult,
    AnnotationUpdate,
    Label,
    ThumbnailSize,
    ThumbState,
)
from storage_service.columnstore.store import ColumnStore
from storage_service.columnstore.thumbnailer import Thumbnailer
from storage_service.servicer import StorageServicer
from tests.storage_service.conftest import SMALL_MEMTABLE, jpeg_variant, put, read_all
from tests.support import free_port, png_damaged_in_pixels

REPO_ROOT = Path(__file__).resolve().parents[2]
READY = pb.THUMBNAIL_STATE_READY
PENDING = pb.THUMBNAIL_STATE_PENDING


def _encoded(data: bytes, fmt: str) -> bytes:
    with Image.open(io.BytesIO(data)) as im:
        buf = io.BytesIO()
        im.convert("RGB").save(buf, fmt)
        return buf.getvalue()


def _state(stub: pb_grpc.StorageServiceStub, image_id: str) -> pb.ImageMetadata:
    reply = stub.GetImage(pb.GetImageRequest(image_id=image_id), timeout=30)
    return reply.image


def _wait_states(
    stub: pb_grpc.StorageServiceStub, ids: list[str], state: int, timeout_s: float = 60
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        states = {i: _state(stub, i).thumbnail_state for i in ids}
        if all(s == state for s in states.values()):
            return
        assert time.monotonic() < deadline, f"thumbnails not {state} in time: {states}"
        time.sleep(0.05)


# --- the acknowledged path's checks ------------------------------------------------------------


def test_whole_files_pass_the_structural_check_and_cut_ones_fail(photo_jpegs, photo_paths):
    files = {
        "JPEG": photo_jpegs["astronaut"],
        "PNG": photo_paths["coffee"].read_bytes(),
        "WEBP": _encoded(photo_jpegs["chelsea"], "WEBP"),
        "GIF": _encoded(photo_jpegs["rocket"], "GIF"),
    }
    for fmt, data in files.items():
        assert structure_problem(data, fmt) == "", fmt
        for cut in (len(data) // 2, len(data) - 3):
            assert structure_problem(data[:cut], fmt), (fmt, cut)
    assert structure_problem(png_damaged_in_pixels(files["PNG"]), "PNG") == ""
    flipped = bytearray(files["PNG"])
    flipped[len(flipped) // 2] ^= 0x40
    assert "CRC" in str(structure_problem(bytes(flipped), "PNG"))
    assert structure_problem(b"II*\x00", "TIFF") is None
    # A phone's multi-picture JPEG (MPO) is checked as a JPEG.
    with Image.open(io.BytesIO(files["JPEG"])) as im:
        buf = io.BytesIO()
        im.save(buf, "MPO", save_all=True, append_images=[im.resize((64, 64))])
    mpo = buf.getvalue()
    assert structure_problem(mpo, "MPO") == ""
    assert structure_problem(mpo[: len(mpo) // 3], "MPO")
    assert check_image(mpo).thumbs_pending


def test_the_ack_path_checks_without_thumbnails_and_agrees_with_the_full_path(photo_jpegs):
    rotated = _rotated(photo_jpegs["china"])
    for data in (photo_jpegs["astronaut"], rotated):
        quick, full = check_image(data), prepare_image(data)

        assert quick.thumbs_pending and not quick.thumb_small
        assert (quick.width, quick.height) == (full.width, full.height)
        assert (quick.sha256, quick.content_type, quick.exif) == (
            full.sha256,
            full.content_type,
            full.exif,
        )
    data = photo_jpegs["coffee"]
    # A truncated file is decoded in full before the ack (and refused), as before.
    with pytest.raises(Exception, match="truncated"):
        check_image(data[: len(data) * 2 // 3])


def _rotated(photo: bytes) -> bytes:
    with Image.open(io.BytesIO(photo)) as im:
        exif = Image.Exif()
        exif[0x0112] = 6
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=90, exif=exif)
        return buf.getvalue()


# --- over gRPC: background, on demand, corrupt ------------------------------------------------


def test_put_is_acknowledged_first_and_the_thumbnailer_makes_the_same_thumbnails(
    storage, photo_jpegs
):
    data = _rotated(photo_jpegs["china"])

    reply = put(storage.stub, data, "china.jpg")

    assert reply.image.thumbnail_state == PENDING
    assert (reply.image.width, reply.image.height) == (427, 640)
    _wait_states(storage.stub, [reply.image.id], READY)
    # The background path made exactly what the synchronous path makes, without being asked.
    expected = prepare_image(data)
    thumb = storage.stub.GetThumbnail(pb.GetThumbnailRequest(image_id=reply.image.id), timeout=30)
    assert thumb.data == expected.thumb_small
    assert (thumb.width, thumb.height) == expected.thumb_small_size
    assert thumb.content_type == "image/webp"


@pytest.fixture
def idle_thumbnailer(
    tmp_path: Path,
) -> Iterator[tuple[pb_grpc.StorageServiceStub, StorageServicer]]:
    """A real gRPC storage server whose background thumbnailer is stopped: thumbnails are made
    only when asked for."""
    from service_runtime.grpc_server import new_server

    store = ColumnStore.open(tmp_path / "store", SMALL_MEMTABLE)
    servicer = StorageServicer(store)
    servicer.thumbnailer.stop()
    server = new_server(4)
    pb_grpc.add_StorageServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=channel_options())
    yield pb_grpc.StorageServiceStub(channel), servicer
    channel.close()
    server.stop(grace=None)
    store.close()


def test_get_thumbnail_of_an_image_not_done_makes_and_stores_it(idle_thumbnailer, photo_jpegs):
    stub, servicer = idle_thumbnailer
    data = photo_jpegs["astronaut"]
    image_id = put(stub, data, "astronaut.jpg").image.id
    time.sleep(0.3)
    assert _state(stub, image_id).thumbnail_state == PENDING

    thumb = stub.GetThumbnail(pb.GetThumbnailRequest(image_id=image_id), timeout=30)

    assert thumb.data == prepare_image(data).thumb_small
    assert _state(stub, image_id).thumbnail_state == READY
    assert servicer.thumbnailer.stats().on_demand == 1
    # Stored, not made again: a second ask reads it.
    stub.GetThumbnail(pb.GetThumbnailRequest(image_id=image_id, size=pb.THUMBNAIL_SIZE_PREVIEW))
    assert servicer.thumbnailer.stats().on_demand == 1
    assert servicer.thumbnailer.stats().made == 1


def test_a_file_corrupt_in_the_middle_is_kept_and_marked_with_the_reason(storage, photo_paths):
    data = png_damaged_in_pixels(photo_paths["coffee"].read_bytes())

    reply = put(storage.stub, data, "coffee.png")

    image_id = reply.image.id
    _wait_states(storage.stub, [image_id], pb.THUMBNAIL_STATE_FAILED)
    meta = _state(storage.stub, image_id)
    assert "corrupt" in meta.thumbnail_detail
    assert read_all(storage.stub, image_id) == data
    with pytest.raises(grpc.RpcError) as caught:
        storage.stub.GetThumbnail(pb.GetThumbnailRequest(image_id=image_id), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "corrupt" in (caught.value.details() or "")


# --- durability: a crash before the thumbnails are made -----------------------------------------

# The storage service with its background thumbnailer never started (the puts are acknowledged,
# no thumbnail is made), as a process to kill.
_NO_THUMBNAILER = (
    "from storage_service.columnstore.thumbnailer import Thumbnailer\n"
    "Thumbnailer.start = lambda self: self\n"
    "from storage_service.__main__ import main\n"
    "main()\n"
)


def _serve(data_dir: Path, port: int, code: str | None) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-c", code] if code else [sys.executable, "-m", "storage_service"]
    proc = subprocess.Popen(
        argv,
        cwd=REPO_ROOT,
        env={
            **os.environ,
            "STORAGE_PORT": str(port),
            "STORAGE_DATA_DIR": str(data_dir),
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(REPO_ROOT),
        },
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not is_serving(f"127.0.0.1:{port}", timeout_s=1.0):
        assert proc.poll() is None, "storage exited"
        assert time.monotonic() < deadline, "storage did not start"
        time.sleep(0.1)
    return proc


def test_thumbnails_not_made_before_a_kill_are_made_after_the_restart(tmp_path, photo_jpegs):
    photos = [jpeg_variant(data, i) for i, data in enumerate(photo_jpegs.values())]
    port = free_port()
    proc = _serve(tmp_path / "storage", port, _NO_THUMBNAILER)
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=channel_options())
        stub = pb_grpc.StorageServiceStub(channel)
        ids = [put(stub, data, f"p{i}.jpg").image.id for i, data in enumerate(photos)]
        _wait_states(stub, ids, PENDING, timeout_s=1)
        channel.close()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    proc = _serve(tmp_path / "storage", port, None)
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=channel_options())
        stub = pb_grpc.StorageServiceStub(channel)
        # Nothing asks for a thumbnail: the restarted thumbnailer finds them all by itself.
        _wait_states(stub, ids, READY)
        for image_id, data in zip(ids, photos, strict=True):
            thumb = stub.GetThumbnail(pb.GetThumbnailRequest(image_id=image_id), timeout=30)
            assert thumb.data == prepare_image(data).thumb_small
        channel.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# --- the store: thumbnails kept through annotations, analysis, restart and compaction ----------


def test_deferred_thumbnails_survive_annotations_claims_restart_and_compaction(
    tmp_path, photo_jpegs
):
    store = ColumnStore.open(tmp_path / "store", SMALL_MEMTABLE)
    photos = [jpeg_variant(data, i) for i, data in enumerate(photo_jpegs.values())]
    ids = [store.put(f"p{i}.jpg", "", check_image(d)).image.id for i, d in enumerate(photos)]
    with pytest.raises(ThumbnailsPendingError):
        store.thumbnail(ids[0], ThumbnailSize.SMALL)
    thumbnailer = Thumbnailer(store)
    for image_id in ids:
        thumbnailer.make(store.get(image_id))
    # Rows written after the thumbnails carry them: a tag, a claim, an analysis result.
    store.update_annotations(ids[0], AnnotationUpdate(add_tags=("kept",)))
    claimed = store.claim_analysis("worker", 100, 60_000)
    for claim in claimed:
        store.complete_analysis(
            claim.image.id,
            claim.generation,
            AnalysisResult(labels=(Label("cat", 0.9),), feature_vector=(0.5,) * 1280),
        )
    expected = {i: prepare_image(d).thumb_small for i, d in zip(ids, photos, strict=True)}

    def check(s: ColumnStore) -> None:
        for image_id in ids:
            assert s.get(image_id).thumb_state is ThumbState.MADE
            assert s.thumbnail(image_id, ThumbnailSize.SMALL).data == expected[image_id]

    check(store)
    store.close()
    store = ColumnStore.open(tmp_path / "store", SMALL_MEMTABLE)
    check(store)
    store.flush()
    store.compact()
    check(store)
    assert "kept" in store.get(ids[0]).tags
    store.close()
    store = ColumnStore.open(tmp_path / "store", SMALL_MEMTABLE)
    check(store)
    store.close()


def test_a_failed_decode_is_stored_as_such(tmp_path, photo_paths):
    store = ColumnStore.open(tmp_path / "store", SMALL_MEMTABLE)
    data = png_damaged_in_pixels(photo_paths["coffee"].read_bytes())
    image_id = store.put("x.png", "", check_image(data)).image.id
    meta = Thumbnailer(store).make(store.get(image_id))

    assert meta.thumb_state is ThumbState.FAILED and "corrupt" in meta.thumb_detail
    with pytest.raises(ThumbnailsFailedError, match="corrupt"):
        store.thumbnail(image_id, ThumbnailSize.SMALL)
    store.close()


def test_a_checkpoint_older_than_the_feed_keeps_falls_back_to_a_listing(tmp_path, photo_jpegs):
    store = ColumnStore.open(tmp_path / "store", SMALL_MEMTABLE)  # no feed retention
    photos = [jpeg_variant(data, i) for i, data in enumerate(photo_jpegs.values())]
    ids = [store.put(f"p{i}.jpg", "", check_image(d)).image.id for i, d in enumerate(photos)]
    for image_id in ids:
        store.update_annotations(image_id, AnnotationUpdate(add_tags=("t",)))
    store.flush()
    store.compact()
    assert store.horizon_seq > 3
    (tmp_path / "store" / "thumbnailer.json").write_text('{"seq": 1}')

    thumbnailer = Thumbnailer(store).start()
    try:
        assert thumbnailer.wait_idle(60)
        assert all(store.get(i).thumb_state is ThumbState.MADE for i in ids)
        assert thumbnailer.stats().on_demand == 0
    finally:
        thumbnailer.stop()
        store.close()


def test_the_backlog_is_served_as_metrics(idle_thumbnailer, photo_jpegs):
    from prometheus_client import REGISTRY

    stub, servicer = idle_thumbnailer
    for i, data in enumerate(list(photo_jpegs.values())[:3]):
        put(stub, data, f"{i}.jpg")

    # The background thumbnailer is stopped: three puts wait, unread in the feed.
    assert REGISTRY.get_sample_value("storage_thumbnails_feed_lag") == 3
    assert REGISTRY.get_sample_value("storage_thumbnails_done", {"outcome": "made"}) == 0
    image_id = stub.ListImages(pb.ListImagesRequest(page_size=1), timeout=30).images[0].id
    stub.GetThumbnail(pb.GetThumbnailRequest(image_id=image_id), timeout=30)
    assert REGISTRY.get_sample_value("storage_thumbnails_done", {"outcome": "on_demand"}) == 1


def test_a_restart_resumes_from_the_checkpoint_without_redoing_work(tmp_path, photo_jpegs):
    photos = [jpeg_variant(data, i) for i, data in enumerate(photo_jpegs.values())]
    first, second = photos[:5], photos[5:]
    store = ColumnStore.open(tmp_path / "store", SMALL_MEMTABLE)
    ids = [store.put(f"a{i}.jpg", "", check_image(d)).image.id for i, d in enumerate(first)]
    thumbnailer = Thumbnailer(store, checkpoint_every_s=0.0).start()
    assert thumbnailer.wait_idle(60)
    thumbnailer.stop()
    saved = int(json.loads((tmp_path / "store" / "thumbnailer.json").read_text())["seq"])
    assert saved == store.head_seq
    # Acknowledged while no thumbnailer runs, then the process stops.
    ids += [store.put(f"b{i}.jpg", "", check_image(d)).image.id for i, d in enumerate(second)]
    store.close()

    store = ColumnStore.open(tmp_path / "store", SMALL_MEMTABLE)
    thumbnailer = Thumbnailer(store)
    # It follows the feed from the checkpoint, not from the start.
    assert thumbnailer.stats().checkpoint_seq == saved
    thumbnailer.start()
    try:
        assert thumbnailer.wait_idle(60)
        assert all(store.get(i).thumb_state is ThumbState.MADE for i in ids)
        # The puts after the checkpoint were made; none before it was made again.
        assert thumbnailer.stats().made == len(second)
    finally:
        thumbnailer.stop()
        store.close()
