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
from collections.abc import Callable

from analysis_service.worker import Worker
from imagerepo.common.v1 import common_pb2
from tests.analysis_service.conftest import (
    RunningStorage,
    between_claims,
    image,
    put,
    worker_config,
)
from tests.support import free_port, real_photo_paths

CAP = 3
CLAIMS = 3 * CAP
# Generous: the lanes claim every 0.5-10 s (their pause after an outage); four lanes.
WAIT_S = 60.0


def test_claims_ended_by_an_unreachable_vision_never_use_up_storages_cap(
    start_storage: Callable[[int], RunningStorage], start_worker: Callable[..., Worker]
) -> None:
    storage = start_storage(CAP)
    stub = storage.stub
    vision = f"127.0.0.1:{free_port()}"
    image_id = put(stub, real_photo_paths()["rocket"].read_bytes(), "rocket.jpg")

    start_worker(worker_config(storage.address, vision, batches_in_flight=4, outage_hold_s=600.0))
    seen_attempts = set()
    deadline = time.monotonic() + WAIT_S
    while (meta := image(stub, image_id)).analysis.generation < CLAIMS:
        assert meta.status == common_pb2.ANALYSIS_STATUS_PENDING, meta.status_detail
        assert time.monotonic() < deadline, f"only {meta.analysis.generation} claims"
        seen_attempts.add(meta.analysis.attempts)
        time.sleep(0.05)
    meta = between_claims(stub, image_id, deadline)

    assert meta.status == common_pb2.ANALYSIS_STATUS_PENDING, meta.status_detail
    assert meta.analysis.attempts == 1
    assert seen_attempts <= {0, 1, 2}
    assert meta.analysis.last_error.startswith("vision unavailable (UNAVAILABLE)")
    assert "counted" not in meta.analysis.last_error
