"""Verify (scrub) over real gRPC: progress then a report, damage named with the image ids it
affects, the last report in GetStats, the `imagerepo verify` command with its exit status, and
the gateway's status page showing the result."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from gateway.app import create_app, stop_app
from imagerepo.storage.v1 import storage_service_pb2 as pb
from storage_service.columnstore.store import ColumnStore
from storage_service.server import build_server
from tests.gateway.conftest import offline_config
from tests.storage_service.conftest import jpeg_variant, put

REPO_ROOT = Path(__file__).resolve().parents[2]


def _verify(stub) -> tuple[list[pb.VerifyProgress], pb.VerifyReport]:
    progress: list[pb.VerifyProgress] = []
    reports: list[pb.VerifyReport] = []
    for message in stub.Verify(pb.VerifyRequest(), timeout=60):
        assert not reports, "the report is the last message"
        if message.HasField("report"):
            reports.append(message.report)
        else:
            progress.append(message.progress)
    assert len(reports) == 1
    return progress, reports[0]


def _stored(storage, photo_jpegs, count: int = 6) -> list[str]:
    ids = [
        put(storage.stub, jpeg_variant(photo_jpegs["astronaut"], i), f"a{i}.jpg").image.id
        for i in range(count)
    ]
    storage.store.flush()
    return ids


def _damage_one_image(storage_runner, storage) -> tuple[str, str]:
    """Flip a byte inside the stored bytes of the second image put in the first segment; (its
    id, segment). Rows holding image bytes are the puts: the background thumbnailer's rows
    (which may sit between them) carry none."""
    segment = storage.store._segments[0]
    puts = [row for row in range(len(segment.ids())) if segment.blob_location("data", row)[1]]
    victim = segment.ids()[puts[1]]
    offset, length = segment.blob_location("data", puts[1])
    path = storage.data_dir / segment.name
    storage_runner.stop()
    raw = bytearray(path.read_bytes())
    raw[offset + length // 2] ^= 0x40
    path.write_bytes(bytes(raw))
    return victim, segment.name


@pytest.fixture
def address_of() -> Iterator:
    """Serve a store on a second real server (port 0) and give its address."""
    servers: list[grpc.Server] = []

    def serve(store: ColumnStore) -> str:
        server, port, _ = build_server(store, "127.0.0.1:0")
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield serve
    for server in servers:
        server.stop(grace=None)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "verify", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_verify_of_a_healthy_store_streams_progress_then_a_clean_report(storage, photo_jpegs):
    _stored(storage, photo_jpegs)
    before = storage.stub.GetStats(pb.GetStatsRequest())

    progress, report = _verify(storage.stub)
    after = storage.stub.GetStats(pb.GetStatsRequest())

    assert not before.HasField("last_verify")
    assert progress
    done = [p.bytes_checked for p in progress]
    assert done == sorted(done)
    assert report.ok
    assert list(report.damaged) == [] and list(report.damaged_image_ids) == []
    assert report.files_checked >= 2
    assert report.bytes_checked >= after.disk_bytes - after.wal_bytes
    assert after.last_verify == report
    assert after.unreadable_count == 0


def test_verify_names_the_damaged_image_and_the_others_still_read(
    storage_runner, storage, photo_jpegs
):
    ids = _stored(storage, photo_jpegs)
    victim, segment_name = _damage_one_image(storage_runner, storage)
    storage = storage_runner.start()

    _, report = _verify(storage.stub)
    stats = storage.stub.GetStats(pb.GetStatsRequest())

    assert not report.ok
    assert list(report.damaged_image_ids) == [victim]
    assert any(segment_name in d.path and victim in d.image_ids for d in report.damaged)
    assert stats.last_verify.damaged_image_ids == [victim]
    for image_id in ids:
        if image_id != victim:
            reply = storage.stub.GetImage(pb.GetImageRequest(image_id=image_id, include_data=True))
            assert reply.data


def test_imagerepo_verify_prints_the_result_and_exits_by_it(
    storage_runner, storage, photo_jpegs, address_of
):
    _stored(storage, photo_jpegs)
    clean = _cli("--storage", address_of(storage.store))
    victim, _ = _damage_one_image(storage_runner, storage)
    storage = storage_runner.start()
    damaged = _cli("--storage", address_of(storage.store))

    assert clean.returncode == 0, clean.stderr
    assert "no damage found" in clean.stdout
    assert "verify" in clean.stderr  # the progress bar
    assert damaged.returncode == 1
    assert "DAMAGE FOUND" in damaged.stdout
    assert victim in damaged.stdout


def test_imagerepo_verify_with_storage_down_says_so_and_exits_3():
    from tests.support import free_port

    result = _cli("--storage", f"127.0.0.1:{free_port()}", "--no-progress")

    assert result.returncode == 3
    assert "cannot be reached" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_status_page_shows_the_last_verify_and_the_damaged_images(
    storage_runner, storage, photo_jpegs, address_of
):
    _stored(storage, photo_jpegs)
    victim, _ = _damage_one_image(storage_runner, storage)
    storage = storage_runner.start()
    app = create_app(offline_config(storage_address=address_of(storage.store)))
    try:
        client = app.test_client()
        before = client.get("/status").get_data(as_text=True)
        _verify(storage.stub)
        after = client.get("/status").get_data(as_text=True)
    finally:
        stop_app(app)

    assert "imagerepo verify" in before
    assert 'id="last-verify"' in after
    assert "damage in 1 place" in after
    assert f'href="/images/{victim}"' in after


def test_unreadable_rows_are_counted_in_listings_stats_and_batches(
    storage_runner, storage, photo_jpegs
):
    """A damaged small-column block: its images are never hidden; the listing, the stats and
    a batch get say how many and which, and verify names them."""
    from storage_service.columnstore.segment_reader import SegmentReader

    first = _stored(storage, photo_jpegs, count=3)
    later = put(storage.stub, photo_jpegs["coffee"], "later.jpg").image.id
    segment = storage.store._segments[0]
    path = storage.data_dir / segment.name
    storage_runner.stop()
    offset, length = SegmentReader(path).block_location("filename")
    raw = bytearray(path.read_bytes())
    raw[offset + length // 2] ^= 0x10
    path.write_bytes(bytes(raw))
    storage = storage_runner.start()

    page = storage.stub.ListImages(pb.ListImagesRequest(page_size=100))
    stats = storage.stub.GetStats(pb.GetStatsRequest())
    batch = storage.stub.BatchGetImages(pb.BatchGetImagesRequest(image_ids=[*first, later]))
    _, report = _verify(storage.stub)

    assert [m.id for m in page.images] == [later]
    assert page.unreadable_count == 3
    assert stats.unreadable_count == 3
    assert [m.id for m in batch.images] == [later]
    assert sorted(batch.unreadable_ids) == sorted(first)
    assert not report.ok
    assert sorted(report.damaged_image_ids) == sorted(first)


def test_a_damaged_vector_does_not_break_a_listing_with_vectors(
    storage_runner, storage, photo_jpegs
):
    """The search rebuild lists every image with its vector: one damaged vector must leave
    that image without values, not fail the listing (GetImage answers DATA_LOSS for it)."""
    from google.protobuf.field_mask_pb2 import FieldMask

    ids = [
        put(storage.stub, jpeg_variant(photo_jpegs["rocket"], i), f"r{i}.jpg").image.id
        for i in range(3)
    ]
    # Thumbnails made now (on demand), so the background thumbnailer writes no row after the
    # vectors: the row damaged below must be the one the listing reads the vector from.
    for image_id in ids:
        storage.stub.GetThumbnail(pb.GetThumbnailRequest(image_id=image_id), timeout=30)
    for k, image_id in enumerate(ids):
        storage.stub.UpdateAnnotations(
            pb.UpdateAnnotationsRequest(
                image_id=image_id,
                annotations=pb.Annotations(feature_vector=[0.25 * (k + 1)] * 1280),
                update_mask=FieldMask(paths=["feature_vector"]),
            )
        )
    storage.store.flush()
    # The newest segment holding the image: the row its vector was written with.
    segment = [s for s in storage.store._segments if ids[1] in s.ids()][-1]
    rows = [r for r, i in enumerate(segment.ids()) if i == ids[1]]
    offset, length = segment.blob_location("feature_vector", rows[-1])
    assert length > 0
    path = storage.data_dir / segment.name
    storage_runner.stop()
    raw = bytearray(path.read_bytes())
    raw[offset + length // 2] ^= 0x40
    path.write_bytes(bytes(raw))
    storage = storage_runner.start()

    page = storage.stub.ListImages(pb.ListImagesRequest(include_feature_vectors=True))
    by_id = {m.id: m for m in page.images}

    assert set(by_id) == set(ids)
    assert list(by_id[ids[0]].feature_vector) == [0.25] * 1280
    assert list(by_id[ids[2]].feature_vector) == [0.75] * 1280
    assert by_id[ids[1]].has_feature_vector and list(by_id[ids[1]].feature_vector) == []
    with pytest.raises(grpc.RpcError) as info:
        storage.stub.GetImage(pb.GetImageRequest(image_id=ids[1], include_feature_vector=True))
    assert info.value.code() == grpc.StatusCode.DATA_LOSS
