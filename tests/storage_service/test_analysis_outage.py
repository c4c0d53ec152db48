"""A failed analysis marked as an outage (a service the analysis needs was away) gives its
claim back: storage's cap (analysis_max_attempts, STORAGE_ANALYSIS_MAX_ATTEMPTS) counts only
the claims that said something about the image, so a run of outages never fails a good photo.
The give-back is the completion's own row, so it survives a restart; v2's
AnalysisFailure.outage reaches the store over real gRPC, and v1 (which cannot say it) counts
as before."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from imagerepo.common.v2 import common_pb2 as common
from imagerepo.storage.v1 import storage_service_pb2 as v1
from imagerepo.storage.v1 import storage_service_pb2_grpc as v1_grpc
from imagerepo.storage.v2 import storage_service_pb2 as pb
from imagerepo.storage.v2 import storage_service_pb2_grpc as pb_grpc
from service_runtime.grpc_server import channel_options
from storage_service.columnstore.model import AnalysisFailure, AnalysisStatus
from storage_service.columnstore.store import ColumnStore, StoreOptions
from storage_service.config import StorageConfig
from storage_service.server import build_server

OPTS = StoreOptions(
    memtable_bytes=1 << 30,
    analysis_backoff_initial_ms=2_000,
    analysis_backoff_max_ms=300_000,
    analysis_max_attempts=10,
)
T0 = 1_900_000_000_000
OUTAGE = AnalysisFailure("vision unavailable (UNAVAILABLE): connection refused", outage=True)
MODEL_ERROR = AnalysisFailure("vision failed (INTERNAL): model error")


def fail_once(store: ColumnStore, image_id: str, failure: AnalysisFailure, now: int) -> int:
    """Claim `image_id` once its backoff has passed and complete it with `failure`; the time
    of the next claim."""
    (claim,) = store.claim_analysis("w", 1, 60_000, now)
    assert claim.image.id == image_id
    meta = store.complete_analysis(image_id, claim.generation, failure, now + 10)
    return meta.analysis.next_attempt_ms


def test_an_outage_failure_gives_its_claim_back(tmp_path, small_images):
    store = ColumnStore.open(tmp_path / "s", OPTS)
    image_id = store.put("a.jpg", "", small_images[0]).image.id
    (claim,) = store.claim_analysis("w", 1, 60_000, T0)
    assert claim.image.analysis.attempts == 1

    meta = store.complete_analysis(image_id, claim.generation, OUTAGE, T0 + 10)

    assert meta.status is AnalysisStatus.PENDING
    assert meta.analysis.attempts == 0
    assert meta.analysis.last_error == OUTAGE.reason
    assert meta.analysis.lease_owner == ""
    assert meta.analysis.next_attempt_ms == T0 + 10 + 2_000  # backed off as before
    assert store.get(image_id) == meta
    store.close()


def test_outage_claims_never_fail_the_image_and_counted_ones_still_do(tmp_path, small_images):
    store = ColumnStore.open(tmp_path / "s", OPTS)
    # The oldest is claimed first: `bad` runs into the cap, then waits out its 300 s backoff
    # while `good` goes through 25 outages (2 s apart).
    bad, good = (store.put(f"{i}.jpg", "", im).image.id for i, im in enumerate(small_images[:2]))
    now = T0
    for _ in range(OPTS.analysis_max_attempts):
        now = fail_once(store, bad, MODEL_ERROR, now)
    assert store.get(bad).analysis.attempts == OPTS.analysis_max_attempts
    for _ in range(25):
        now = fail_once(store, good, OUTAGE, now)
    assert store.get(good).analysis.attempts == 0

    claimed = store.claim_analysis("w", 5, 60_000, now + 300_000)

    assert [c.image.id for c in claimed] == [good]
    assert claimed[0].image.analysis.attempts == 1
    failed = store.get(bad)
    assert failed.status is AnalysisStatus.FAILED
    assert failed.status_detail == f"gave up after 10 attempts: {MODEL_ERROR.reason}"
    store.close()


def test_the_outage_backoff_stays_at_the_images_own_level(tmp_path, small_images):
    # Derived from attempts, which outages no longer raise: it neither grows through an
    # outage nor forgets what the image's own failures earned.
    store = ColumnStore.open(tmp_path / "s", OPTS)
    image_id = store.put("a.jpg", "", small_images[0]).image.id
    now = T0
    for _ in range(2):
        now = fail_once(store, image_id, MODEL_ERROR, now)  # attempts 2: next backoff 8 s
    waits = []
    for _ in range(5):
        claimed_at = now
        now = fail_once(store, image_id, OUTAGE, now)
        waits.append(now - claimed_at - 10)

    assert waits == [8_000] * 5
    assert store.get(image_id).analysis.attempts == 2
    store.close()


def test_a_permanent_failure_marked_outage_is_still_permanent(tmp_path, small_images):
    store = ColumnStore.open(tmp_path / "s", OPTS)
    image_id = store.put("a.jpg", "", small_images[0]).image.id
    (claim,) = store.claim_analysis("w", 1, 60_000, T0)

    meta = store.complete_analysis(
        image_id, claim.generation, AnalysisFailure("not an image", True, True), T0
    )

    assert meta.status is AnalysisStatus.FAILED
    assert meta.analysis.attempts == 1
    store.close()


def test_the_given_back_claim_stays_given_back_after_a_restart_and_compaction(
    tmp_path, small_images
):
    options = replace(OPTS, memtable_bytes=30_000, feed_retention_seqs=0)
    store = ColumnStore.open(tmp_path / "s", options)
    image_id = store.put("a.jpg", "", small_images[0]).image.id
    now = T0
    for _ in range(3):
        now = fail_once(store, image_id, OUTAGE, now)
    expected = store.get(image_id)
    store.close()

    for _ in range(2):
        reopened = ColumnStore.open(tmp_path / "s", options)
        assert reopened.get(image_id) == expected
        assert reopened.get(image_id).analysis.attempts == 0
        reopened.compact()
        assert reopened.get(image_id) == expected
        reopened.close()
    reopened = ColumnStore.open(tmp_path / "s", options)
    (claim,) = reopened.claim_analysis("w", 1, 60_000, now)
    assert claim.image.analysis.attempts == 1
    assert claim.generation == 4
    reopened.close()


# --- the setting ---------------------------------------------------------------------------


def test_the_cap_is_read_from_the_environment_into_the_store_options():
    config = StorageConfig.from_env({"STORAGE_ANALYSIS_MAX_ATTEMPTS": "25"})

    assert config.store_options().analysis_max_attempts == 25
    assert StorageConfig.from_env({}).store_options().analysis_max_attempts == 10


@pytest.mark.parametrize(
    ("value", "message"),
    [("0", "at least 1, not 0"), ("-3", "at least 1, not -3"), ("ten", "whole number")],
)
def test_a_cap_below_one_or_not_a_number_is_refused_with_the_variable_named(value, message):
    with pytest.raises(ValueError, match="STORAGE_ANALYSIS_MAX_ATTEMPTS") as info:
        StorageConfig.from_env({"STORAGE_ANALYSIS_MAX_ATTEMPTS": value})

    assert message in str(info.value)


# --- over real gRPC ---------------------------------------------------------------------------


@pytest.fixture
def channel(tmp_path: Path) -> Iterator[grpc.Channel]:
    """A real storage server (port 0) over a throwaway store: a cap of 2 claims, a 1 ms
    backoff so an image can be claimed again at once."""
    options = replace(
        OPTS, analysis_max_attempts=2, analysis_backoff_initial_ms=1, analysis_backoff_max_ms=1
    )
    store = ColumnStore.open(tmp_path / "storage", options)
    server, port, health = build_server(store, "127.0.0.1:0")
    server.start()
    health.set_serving(True)
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=channel_options()) as chan:
        yield chan
    server.stop(grace=None).wait()
    store.close()


def put(stub: pb_grpc.StorageServiceStub, data: bytes) -> str:
    header = pb.PutImageHeader(filename="a.jpg", owner="ann", expected_size=len(data))
    messages = [pb.PutImageRequest(header=header), pb.PutImageRequest(chunk=data)]
    return str(stub.PutImage(iter(messages), timeout=30).image.id)


def claim_v2(stub: pb_grpc.StorageServiceStub, wait_s: float = 5.0) -> list[pb.ClaimedImage]:
    """A claim of one image, tried again for `wait_s` while nothing is claimable (past the
    1 ms backoff; an image is skipped while a row of it, such as its thumbnails, is being
    written)."""
    request = pb.ClaimAnalysisRequest(worker_id="w", max_images=1, lease=Duration(seconds=30))
    deadline = time.monotonic() + wait_s
    while True:
        time.sleep(0.005)
        claimed = list(stub.ClaimAnalysis(request, timeout=10).images)
        if claimed or time.monotonic() > deadline:
            return claimed


def fail_v2(stub: pb_grpc.StorageServiceStub, image_id: str, outage: bool) -> pb.ImageMetadata:
    (claimed,) = claim_v2(stub)
    failure = pb.AnalysisFailure(reason="vision unavailable", outage=outage)
    request = pb.CompleteAnalysisRequest(
        image_id=image_id, generation=claimed.generation, failure=failure
    )
    return stub.CompleteAnalysis(request, timeout=10).image


def test_v2_outage_failures_are_given_back_and_others_count_to_the_cap(channel, small_images):
    stub = pb_grpc.StorageServiceStub(channel)
    image_id = put(stub, small_images[0].data)

    after_outages = [fail_v2(stub, image_id, outage=True).analysis.attempts for _ in range(5)]
    counted = [fail_v2(stub, image_id, outage=False).analysis.attempts for _ in range(2)]

    assert after_outages == [0] * 5
    assert counted == [1, 2]
    assert claim_v2(stub, wait_s=0.5) == []
    image = stub.GetImage(pb.GetImageRequest(image_id=image_id), timeout=10).image
    assert image.status == common.ANALYSIS_STATUS_FAILED
    assert image.status_detail == "gave up after 2 attempts: vision unavailable"


def test_a_v1_failure_cannot_say_outage_and_counts_as_before(channel, small_images):
    stub = v1_grpc.StorageServiceStub(channel)
    image_id = put(pb_grpc.StorageServiceStub(channel), small_images[0].data)
    request = v1.ClaimAnalysisRequest(worker_id="w", max_images=1, lease_ms=30_000)
    attempts = []
    for _ in range(2):
        claimed = None
        deadline = time.monotonic() + 5.0
        while claimed is None and time.monotonic() < deadline:
            time.sleep(0.005)  # past the backoff, and any row of the image being written
            claimed = next(iter(stub.ClaimAnalysis(request, timeout=10).images), None)
        assert claimed is not None
        failure = v1.AnalysisFailure(reason="vision unavailable")
        done = stub.CompleteAnalysis(
            v1.CompleteAnalysisRequest(
                image_id=image_id, generation=claimed.generation, failure=failure
            ),
            timeout=10,
        )
        attempts.append(done.image.analysis.attempts)

    assert attempts == [1, 2]
