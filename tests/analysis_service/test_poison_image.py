"""An image whose analysis kills vision (a segfault in a native library, the supervisor
restarts it) costs one attempt per crash, so storage's cap ends it: it is FAILED after CAP
crashes instead of taking vision down after every restart forever. The worker sends no image
to a vision it knows is away, only a probe; so every call that went out went to a vision
thought present, and one that vision takes down with it counts (once), while the claims made
during the restarts are given back. A good photo put beside it is analysed.

Real parts: a storage server on a free port in this process (cap of CAP claims, backoff
50-100 ms), the worker's real loop and clients; vision is a stand-in process
(tests/analysis_service/poison_vision.py) that answers at once but dies on an image holding
b"POISON", restarted by the test on the same port each time it dies. The vision channel
reconnects every 0.1-0.2 s (gRPC's default backoff grows to minutes) to keep the test short."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable

from analysis_service.worker import Worker
from imagerepo.common.v1 import common_pb2
from tests.analysis_service.conftest import RunningStorage, image, put, worker_config
from tests.analysis_service.poison_vision import POISON
from tests.conftest import REPO_ROOT
from tests.support import free_port, real_photo_paths

CAP = 3
# A real vision takes seconds to load its models. Restarted at once, the stand-in could be back
# within the channel's own retry of the failed call (Analyze is retried on UNAVAILABLE, up to 3
# tries 50-150 ms apart) and die twice for one claim.
RESTART_DELAY_S = 0.5
# Generous: each crash costs a restart (~0.5 s) and the lane's pause after it.
WAIT_S = 60.0
FAST_RECONNECT = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 200),
]


class RestartedVision:
    """The stand-in vision on `port` (serving once this returns), started again
    RESTART_DELAY_S after each time it dies; `deaths` counts."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.deaths = 0
        self._stop = threading.Event()
        self._proc = self._start()
        assert self._proc.stdout is not None and self._proc.stdout.readline() == b"serving\n"
        self._thread = threading.Thread(target=self._supervise, daemon=True)
        self._thread.start()

    def _start(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.analysis_service.poison_vision", str(self.port)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
        )

    def _supervise(self) -> None:
        while not self._stop.wait(0.02):
            if self._proc.poll() is not None:
                self.deaths += 1
                if not self._stop.wait(RESTART_DELAY_S):
                    self._proc = self._start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._proc.kill()
        self._proc.wait(10)


def test_an_image_that_kills_vision_is_failed_at_storages_cap_and_a_good_one_is_analysed(
    start_storage: Callable[[int], RunningStorage], start_worker: Callable[..., Worker]
) -> None:
    storage = start_storage(CAP)
    stub = storage.stub
    vision = RestartedVision(free_port())
    try:
        photo = real_photo_paths()["rocket"].read_bytes()
        poison_id = put(stub, photo + POISON, "poison.jpg")
        good_id = put(stub, photo, "good.jpg")
        # One image per claim, one lane: the good photo never shares a call with the poison.
        config = worker_config(
            storage.address,
            f"127.0.0.1:{vision.port}",
            batches_in_flight=1,
            lease_ms=3000,
            outage_hold_s=600.0,
        )
        start_worker(config, vision_options=FAST_RECONNECT)
        deadline = time.monotonic() + WAIT_S
        while (poison := image(stub, poison_id)).status == common_pb2.ANALYSIS_STATUS_PENDING:
            assert time.monotonic() < deadline, (vision.deaths, poison.analysis)
            time.sleep(0.05)
        while (good := image(stub, good_id)).status == common_pb2.ANALYSIS_STATUS_PENDING:
            assert time.monotonic() < deadline, good.analysis
            time.sleep(0.05)

        assert poison.status == common_pb2.ANALYSIS_STATUS_FAILED
        assert poison.status_detail.startswith(f"gave up after {CAP} attempts"), poison
        assert vision.deaths == CAP  # one attempt per crash, none given back
        assert "(counted: vision went away while it had this image)" in poison.status_detail
        assert good.status == common_pb2.ANALYSIS_STATUS_READY, good.status_detail
        assert good.analysis.attempts == 1
    finally:
        vision.stop()
