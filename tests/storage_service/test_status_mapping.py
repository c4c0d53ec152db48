"""Every storage failure reaches the client as a precise status with a short message (never
UNKNOWN), with a google.rpc ErrorInfo reason where a client must branch on it; the gateway turns
a full disk into HTTP 507.

The faults are injected at the store's boundary (a ColumnStore whose next write raises what a
full disk, a failing disk or a bug would raise) under the real gRPC server and gateway.
"""

from __future__ import annotations

import errno
import io
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from gateway.app import create_app, stop_app
from imagerepo.storage.v1 import storage_service_pb2 as pb
from imagerepo.storage.v1 import storage_service_pb2_grpc as pb_grpc
from service_runtime.grpc_server import channel_options
from storage_service.columnstore.errors import BackgroundError, StorageFullError
from storage_service.columnstore.fs import Fault, FaultInjectingFileSystem
from storage_service.columnstore.store import ColumnStore, StoreOptions
from storage_service.server import build_server
from tests.gateway.conftest import offline_config
from tests.storage_service.conftest import SMALL_MEMTABLE, jpeg_variant, put


class FaultyStore(ColumnStore):
    """The real store; `fault`, when set, is raised by the next writes instead."""

    fault: BaseException | None = None

    def put(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self.fault is not None:
            raise self.fault
        return super().put(*args, **kwargs)

    def update_annotations(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self.fault is not None:
            raise self.fault
        return super().update_annotations(*args, **kwargs)


class Faulty:
    def __init__(self, store: FaultyStore, stub: pb_grpc.StorageServiceStub, port: int) -> None:
        self.store, self.stub, self.port = store, stub, port


@pytest.fixture
def faulty(tmp_path: Path) -> Iterator[Faulty]:
    store = FaultyStore.open(tmp_path / "storage", SMALL_MEMTABLE)
    assert isinstance(store, FaultyStore)
    server, port, health = build_server(store, "127.0.0.1:0")
    server.start()
    health.set_serving(True)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=channel_options())
    yield Faulty(store, pb_grpc.StorageServiceStub(channel), port)
    server.stop(grace=None)
    channel.close()
    store.close()


def _failure(call) -> tuple[grpc.StatusCode, str, str, dict[str, str]]:
    """(code, message, ErrorInfo reason, ErrorInfo metadata) of a call that must fail."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    status = rpc_status.from_call(info.value)
    reason, metadata = "", {}
    if status is not None:
        for detail in status.details:
            error_info = error_details_pb2.ErrorInfo()
            if detail.Unpack(error_info):
                reason, metadata = error_info.reason, dict(error_info.metadata)
    return info.value.code(), info.value.details(), reason, metadata


@pytest.mark.parametrize(
    ("fault", "code", "message", "reason"),
    [
        (
            OSError(errno.ENOSPC, "No space left on device"),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "storage is full",
            "STORAGE_FULL",
        ),
        (
            StorageFullError("storage is full"),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "storage is full",
            "STORAGE_FULL",
        ),
        (
            OSError(errno.EIO, "Input/output error"),
            grpc.StatusCode.UNAVAILABLE,
            "storage I/O error: Input/output error",
            "IO_ERROR",
        ),
        (
            BackgroundError("a segment flush failed: disk quota exceeded"),
            grpc.StatusCode.UNAVAILABLE,
            "a segment flush failed",
            "BACKGROUND_ERROR",
        ),
        (
            RuntimeError("x" * 100_000),
            grpc.StatusCode.INTERNAL,
            "internal error in storage (RuntimeError)",
            "",
        ),
    ],
    ids=["ENOSPC", "StorageFullError", "EIO", "background error", "a bug"],
)
def test_write_failures_map_to_precise_statuses_and_reads_go_on(
    faulty, photo_jpegs, fault, code, message, reason
):
    stored = put(faulty.stub, photo_jpegs["coffee"], "before.jpg").image
    faulty.store.fault = fault

    put_failure = _failure(lambda: put(faulty.stub, photo_jpegs["rocket"], "during.jpg"))
    tag_failure = _failure(
        lambda: faulty.stub.UpdateAnnotations(
            pb.UpdateAnnotationsRequest(image_id=stored.id, add_tags=["x"])
        )
    )
    read = faulty.stub.GetImage(pb.GetImageRequest(image_id=stored.id, include_data=True))

    for got_code, details, got_reason, _ in (put_failure, tag_failure):
        assert got_code == code
        assert message in details
        assert len(details) <= 500
        assert got_reason == reason
    assert read.data == photo_jpegs["coffee"]
    faulty.store.fault = None
    assert not put(faulty.stub, photo_jpegs["rocket"], "after.jpg").already_stored


@pytest.mark.parametrize(
    "call",
    [
        lambda stub, i: stub.GetImage(pb.GetImageRequest(image_id=i)),
        lambda stub, i: stub.GetThumbnail(pb.GetThumbnailRequest(image_id=i)),
        lambda stub, i: list(stub.ReadImageData(pb.ReadImageDataRequest(image_id=i))),
        lambda stub, i: stub.DeleteImage(pb.DeleteImageRequest(image_id=i)),
        lambda stub, i: stub.UpdateAnnotations(
            pb.UpdateAnnotationsRequest(image_id=i, add_tags=["x"])
        ),
    ],
    ids=["GetImage", "GetThumbnail", "ReadImageData", "DeleteImage", "UpdateAnnotations"],
)
def test_not_found_for_a_16_kb_id_is_short_and_says_why(faulty, call):
    long_id = "0123456789abcdef" * 1024

    code, details, reason, metadata = _failure(lambda: call(faulty.stub, long_id))

    assert code == grpc.StatusCode.NOT_FOUND
    assert reason == "NOT_FOUND"
    assert long_id[:64] in details
    assert len(details) < 200
    assert len(metadata["image_id"]) <= 128


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda stub: stub.ListImages(pb.ListImagesRequest(page_token="%" * 16384)),
            "page_token",
        ),
        (lambda stub: stub.ListImages(pb.ListImagesRequest(status=42)), "status"),
        (lambda stub: stub.ListImages(pb.ListImagesRequest(page_size=-1)), "page_size"),
        (
            lambda stub: stub.FindByFilename(pb.FindByFilenameRequest(filename="a" * 70_000)),
            "filename",
        ),
        (lambda stub: stub.ListImages(pb.ListImagesRequest(owner="\x00" * 10)), "owner"),
    ],
    ids=["16 KB token", "unknown status", "negative page", "70 KB name", "control owner"],
)
def test_malformed_requests_are_invalid_argument_with_a_short_message(faulty, call, message):
    code, details, _, _ = _failure(lambda: call(faulty.stub))

    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message in details
    assert len(details) <= 500


def test_a_full_disk_is_http_507_at_the_gateway(faulty, photo_jpegs):
    faulty.store.fault = OSError(errno.ENOSPC, "No space left on device")
    app = create_app(offline_config(storage_address=f"127.0.0.1:{faulty.port}"))
    try:
        reply = app.test_client().post(
            "/api/images",
            data={"file": (io.BytesIO(photo_jpegs["china"]), "china.jpg")},
            content_type="multipart/form-data",
        )
    finally:
        stop_app(app)

    assert reply.status_code == 507
    assert reply.json["error"]["status"] == 507
    assert "storage is full" in reply.json["error"]["message"]
    assert reply.json["results"][0]["http_status"] == 507


def test_the_gateway_client_reads_the_reason_a_client_branches_on(faulty, photo_jpegs):
    from gateway.clients import ServiceClients
    from gateway.errors import ServiceError

    faulty.store.fault = StorageFullError("storage is full")
    clients = ServiceClients.connect(offline_config(storage_address=f"127.0.0.1:{faulty.port}"))
    try:
        with pytest.raises(ServiceError) as info:
            clients.put_image("x.jpg", photo_jpegs["coffee"], owner="")
        with pytest.raises(ServiceError) as missing:
            clients.get_image("f" * 5000)
    finally:
        clients.close()

    assert (info.value.reason, info.value.status) == ("STORAGE_FULL", 507)
    assert (missing.value.reason, missing.value.status) == ("NOT_FOUND", 404)
    assert len(missing.value.message) < 200


def test_a_real_full_disk_under_the_server_is_reported_and_clears(tmp_path, photo_jpegs):
    """ENOSPC from the file layer (fault-injecting, under the real store and server): puts
    answer RESOURCE_EXHAUSTED with STORAGE_FULL, GetStats says the disk is full, reads go on,
    and writes resume by themselves once space is back."""
    fs = FaultInjectingFileSystem()
    options = StoreOptions(
        memtable_bytes=60_000, compact_min_segments=1000, retry_initial_s=0.05, retry_max_s=0.2
    )
    store = ColumnStore.open(tmp_path / "storage", options, fs=fs)
    server, port, _ = build_server(store, "127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=channel_options())
    stub = pb_grpc.StorageServiceStub(channel)
    try:
        first = put(stub, photo_jpegs["coffee"], "first.jpg").image
        fs.faults.append(Fault("write", errno.ENOSPC, path_part="segments"))
        failure = None
        for i in range(40):  # until the memtable flush hits the full disk
            try:
                put(stub, jpeg_variant(photo_jpegs["astronaut"], i), f"{i}.jpg")
            except grpc.RpcError:
                failure = _failure(
                    lambda: put(stub, jpeg_variant(photo_jpegs["rocket"], 99), "x.jpg")
                )
                break
        full = stub.GetStats(pb.GetStatsRequest())
        read = stub.GetImage(pb.GetImageRequest(image_id=first.id, include_data=True))

        fs.faults.clear()
        deadline = time.monotonic() + 10
        while True:
            try:
                put(stub, jpeg_variant(photo_jpegs["rocket"], 100), "after.jpg")
                break
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert time.monotonic() < deadline, "writes did not resume"
                time.sleep(0.05)
        cleared = stub.GetStats(pb.GetStatsRequest())
    finally:
        server.stop(grace=None)
        channel.close()
        store.close()

    assert failure is not None
    code, details, reason, _ = failure
    assert (code, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "STORAGE_FULL")
    assert "storage is full" in details
    assert full.storage_full and full.background_error
    assert read.data == photo_jpegs["coffee"]
    assert not cleared.storage_full and cleared.background_error == ""
