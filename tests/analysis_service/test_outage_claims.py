"""Claims that end in a known outage are given back: with vision unreachable the worker's real
loop claims a good photo again and again, far past storage's own cap, and the photo stays
PENDING. Its first claim went to vision before the worker knew it was away and counts (1
attempt: a vision that goes away with an image may have been taken down by it); every later
one finds vision known away, probes it instead of sending the photo, and writes its failure
back with `outage`, so storage does not count it: attempts stay at 1 (2 while a claim is in
flight).

Real parts: a storage server on a free port in this process (cap of 3 claims, backoff
50-100 ms so the claims come quickly), the worker's real loop and clients; vision is a port
nothing listens on (UNAVAILABLE at once). The hold is off (600 s), so the worker keeps
claiming: this is about what storage counts, not about the worker's pause."""

from __future__ import annotations

import time
from pathlib import Path

from analysis_service.clients import StorageClient, VisionClient
from analysis_service.config import AnalysisConfig
from analysis_service.worker import Worker
from imagerepo.common.v1 import common_pb2
from imagerepo.storage.v1 import storage_service_pb2 as pb
from imagerepo.storage.v1 import storage_service_pb2_grpc as pbg
from service_runtime.channels import open_channel
from service_runtime.grpc_server import channel_options
from storage_service.columnstore.store import ColumnStore, StoreOptions
from storage_service.server import build_server
from tests.support import free_port, real_photo_paths

CAP = 3
CLAIMS = 3 * CAP
# Generous: the lanes claim every 0.5-10 s (their pause after an outage); four lanes.
WAIT_S = 60.0


def test_claims_ended_by_an_unreachable_vision_never_use_up_storages_cap(tmp_path: Path) -> None:
    store = ColumnStore.open(
        tmp_path / "storage",
        StoreOptions(
            analysis_backoff_initial_ms=50, analysis_backoff_max_ms=100, analysis_max_attempts=CAP
        ),
    )
    server, port, health = build_server(store, "127.0.0.1:0")
    server.start()
    health.set_serving(True)
    storage = f"127.0.0.1:{port}"
    vision = f"127.0.0.1:{free_port()}"
    config = AnalysisConfig(
        storage_address=storage,
        vision_address=vision,
        worker_id="w",
        batch_size=1,
        batches_in_flight=4,
        poll_interval_s=0.1,
        stats_interval_s=60.0,
        outage_hold_s=600.0,
    )
    worker = Worker(
        config,
        StorageClient(open_channel(storage, channel_options()), config.rpc_timeout_s),
        VisionClient(open_channel(vision, channel_options()), config.call_timeout_s, 5),
    )
    channel = open_channel(storage, channel_options())
    stub = pbg.StorageServiceStub(channel)
    try:
        image_id = put(stub, real_photo_paths()["rocket"].read_bytes())
        worker.start()
        seen_attempts = set()
        deadline = time.monotonic() + WAIT_S
        while (meta := image(stub, image_id)).analysis.generation < CLAIMS:
            assert meta.status == common_pb2.ANALYSIS_STATUS_PENDING, meta.status_detail
            assert time.monotonic() < deadline, f"only {meta.analysis.generation} claims"
            seen_attempts.add(meta.analysis.attempts)
            time.sleep(0.05)

        while (meta := image(stub, image_id)).analysis.lease_owner:
            assert time.monotonic() < deadline, "never seen between two claims"
            time.sleep(0.005)

        assert meta.status == common_pb2.ANALYSIS_STATUS_PENDING, meta.status_detail
        assert meta.analysis.attempts == 1
        assert seen_attempts <= {0, 1, 2}
        assert meta.analysis.last_error.startswith("vision unavailable (UNAVAILABLE)")
        assert "counted" not in meta.analysis.last_error
    finally:
        worker.stop(0)
        channel.close()
        server.stop(None).wait()
        store.close()


def image(stub: pbg.StorageServiceStub, image_id: str) -> pb.ImageMetadata:
    return stub.GetImage(pb.GetImageRequest(image_id=image_id), timeout=30).image


def put(stub: pbg.StorageServiceStub, data: bytes) -> str:
    reply = stub.PutImage(
        iter(
            [
                pb.PutImageRequest(header=pb.PutImageHeader(filename="rocket.jpg", owner="a")),
                pb.PutImageRequest(chunk=data),
            ]
        ),
        timeout=30,
    )
    return str(reply.image.id)
