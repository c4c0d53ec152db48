"""A vision that answers nothing (its process stopped with SIGSTOP: every call runs out of
time) is an outage: a good photo claimed again and again past storage's own cap (10, as
deployed) stays PENDING. Its first claim, sent before the worker knew vision was away (as a
batch in flight when vision stops), counts one attempt: any image of that batch may be what
stopped vision. Every later claim finds vision known away, sends it a probe instead of the
photo and is given back, so the attempts stay at 1. Once the outage has lasted
ANALYSIS_OUTAGE_HOLD_S the worker claims nothing more and probes vision instead; the photo is
analysed once vision runs again.

Real parts: storage server in this process, vision as a process (`python -m vision_service`,
the real models, shared by the tests here), the worker's real loop and clients in this
process. Storage backs a failed image off for 50-100 ms instead of seconds so the claims come
quickly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest
from prometheus_client import REGISTRY

from analysis_service.worker import Worker
from imagerepo.common.v1 import common_pb2
from imagerepo.storage.v1 import storage_service_pb2 as pb
from imagerepo.storage.v1 import storage_service_pb2_grpc as pbg
from service_runtime.probe import is_serving
from tests.analysis_service.conftest import (
    RunningStorage,
    between_claims,
    image,
    put,
    worker_config,
)
from tests.conftest import REPO_ROOT
from tests.support import free_port, real_photo_paths

PENDING = common_pb2.ANALYSIS_STATUS_PENDING
READY = common_pb2.ANALYSIS_STATUS_READY
# Generous: the claims come about one a second; the machine may be loaded.
WAIT_S = 90.0
# Without the hold, about five more claims would come in this time.
HELD_FOR_S = 6.0
# Storage's cap as deployed: without the give-back the photo is FAILED at the claim after.
STORAGE_CAP = 10


@pytest.fixture(scope="module")
def vision_process() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`python -m vision_service` on a free port, serving (its models loaded)."""
    address = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vision_service"],
        cwd=REPO_ROOT,
        env=dict(os.environ, VISION_PORT=address.rsplit(":", 1)[1], LOG_LEVEL="WARNING"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not is_serving(address, timeout_s=1.0):
            assert proc.poll() is None, "vision exited while starting"
            assert time.monotonic() < deadline, "vision never served"
            time.sleep(0.2)
        yield proc, address
    finally:
        proc.send_signal(signal.SIGCONT)  # a stopped process would not see the SIGTERM
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def stopped_vision(
    vision_process: tuple[subprocess.Popen[bytes], str], start_worker: Callable[..., Worker]
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """The vision process stopped (SIGSTOP: every call to it runs out of time), let go on
    (SIGCONT) after the test. It asks for start_worker so that it is torn down first: vision
    runs again before the worker stops, not holding the worker's calls to their deadline."""
    proc, _address = vision_process
    proc.send_signal(signal.SIGSTOP)
    yield vision_process
    proc.send_signal(signal.SIGCONT)


@pytest.fixture
def claim_rocket(
    start_storage: Callable[[int], RunningStorage],
    start_worker: Callable[..., Worker],
    stopped_vision: tuple[subprocess.Popen[bytes], str],
) -> Callable[..., tuple[pbg.StorageServiceStub, str]]:
    """`claim_rocket(outage_hold_s)`: a good photo stored (storage's cap as deployed) and a
    worker claiming it, its vision the stopped one; (the storage stub, the image id)."""

    def start(outage_hold_s: float) -> tuple[pbg.StorageServiceStub, str]:
        storage = start_storage(STORAGE_CAP)
        image_id = put(storage.stub, real_photo_paths()["rocket"].read_bytes(), "rocket.jpg")
        # Lease 1.7 s: each vision call may wait 1.0 s. One image per claim and four lanes, so
        # another lane claims the image again while the last one pauses after its outage.
        config = worker_config(
            storage.address,
            stopped_vision[1],
            batches_in_flight=4,
            lease_ms=1700,
            outage_hold_s=outage_hold_s,
        )
        assert config.call_timeout_s == pytest.approx(1.02)
        start_worker(config)
        return storage.stub, image_id

    return start


def test_a_stopped_vision_leaves_a_good_photo_pending_past_storages_cap_then_it_is_analysed(
    stopped_vision: tuple[subprocess.Popen[bytes], str],
    claim_rocket: Callable[..., tuple[pbg.StorageServiceStub, str]],
) -> None:
    # The worker never stops claiming: this is about the worker's rule for the timeouts and
    # storage giving the outage claims back, with storage's cap as deployed.
    proc, _address = stopped_vision

    stub, image_id = claim_rocket(outage_hold_s=600)
    deadline = time.monotonic() + WAIT_S
    # Every claim bumps the generation (given back or not); the 11th would fail the photo
    # if its claims counted. Attempts: 1 counted, plus 1 while a claim is in flight.
    while (meta := image(stub, image_id)).analysis.generation <= STORAGE_CAP:
        assert meta.status == PENDING, (meta.status_detail, meta.analysis.generation)
        assert meta.analysis.attempts <= 2, meta.analysis
        assert time.monotonic() < deadline, f"only {meta.analysis.generation} claims"
        time.sleep(0.1)
    meta = between_claims(stub, image_id, deadline)

    assert meta.status == PENDING, meta.status_detail
    assert meta.analysis.attempts == 1  # the first claim, sent before vision was known away
    assert meta.analysis.last_error.startswith(
        "vision unavailable (DEADLINE_EXCEEDED): it answered nothing for 1."
    ), meta.analysis.last_error
    assert "counted" not in meta.analysis.last_error  # a probe's: the photo was not sent

    proc.send_signal(signal.SIGCONT)
    meta = wait_analysed(stub, image_id)

    assert meta.status == READY, meta.status_detail
    assert meta.labels


def test_a_long_vision_outage_stops_the_claims_until_a_probe_answers(
    stopped_vision: tuple[subprocess.Popen[bytes], str],
    claim_rocket: Callable[..., tuple[pbg.StorageServiceStub, str]],
) -> None:
    # The claims (the generation) stop while the worker holds them.
    proc, _address = stopped_vision

    stub, image_id = claim_rocket(outage_hold_s=2.0)
    deadline = time.monotonic() + WAIT_S
    while REGISTRY.get_sample_value("imagerepo_analysis_claims_held") != 1:
        assert time.monotonic() < deadline, "the worker never held its claims"
        time.sleep(0.1)
    time.sleep(3.0)  # a claim decided just before the hold is written by now
    held_at = image(stub, image_id).analysis.generation
    time.sleep(HELD_FOR_S)

    meta = image(stub, image_id)
    assert meta.status == PENDING
    assert meta.analysis.generation == held_at
    assert meta.analysis.attempts == 1  # the first claim counted, every later one given back

    proc.send_signal(signal.SIGCONT)
    meta = wait_analysed(stub, image_id)

    assert meta.status == READY, meta.status_detail
    assert REGISTRY.get_sample_value("imagerepo_analysis_claims_held") == 0


def wait_analysed(stub: pbg.StorageServiceStub, image_id: str) -> pb.ImageMetadata:
    deadline = time.monotonic() + WAIT_S
    while (meta := image(stub, image_id)).status == PENDING:
        assert time.monotonic() < deadline, meta.analysis.last_error
        time.sleep(0.1)
    return meta
