"""A photo stored while an analysis worker starts is claimed at once, not at the next poll.

The worker's lanes claim as soon as it starts; its feed thread first reads storage's newest
change number and then watches from there. A photo stored between the two is in neither: the
lanes found nothing and the feed starts after it. Under load that gap is real, so the feed
thread's first read of the head is held here for HOLD_S while the photo is stored. The worker
polls every 10 minutes in this test, so only a claim prompted by the feed's start finds it.

Real storage server on a free port, a real photo; vision is not reachable (the claim is what
is asserted, not the analysis)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from analysis_service.clients import StorageClient, VisionClient
from analysis_service.config import AnalysisConfig
from analysis_service.worker import Worker
from imagerepo.storage.v1 import storage_service_pb2_grpc as pbg
from service_runtime.channels import open_channel
from service_runtime.grpc_server import channel_options
from tests.analysis_service.conftest import put
from tests.integration.storage_factory import open_storage
from tests.support import real_photo_paths

HOLD_S = 1.5
CLAIMED_WITHIN_S = 30.0  # generous: the claim follows the feed's start at once


class HeldFirstHeadRead(StorageClient):
    """The feed thread's first stats() waits until the test has stored its photo."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.first_claims_done = threading.Event()
        self.stored = threading.Event()
        self.claimed: list[str] = []
        self._held = False

    def stats(self):
        if threading.current_thread().name == "analysis-feed" and not self._held:
            self._held = True
            self.stored.wait(HOLD_S * 10)
            time.sleep(0.2)  # the photo's change is well before the head read
        return super().stats()

    def claim(self, *args):
        claims = super().claim(*args)
        self.claimed += [c.image_id for c in claims]
        self.first_claims_done.set()
        return claims


def test_a_photo_stored_while_the_worker_starts_is_claimed_without_waiting_for_a_poll(
    tmp_path: Path,
) -> None:
    server, port, health, close = open_storage("127.0.0.1:0", tmp_path / "storage")
    server.start()
    health.set_serving(True)
    address = f"127.0.0.1:{port}"
    config = AnalysisConfig(
        storage_address=address, vision_address="127.0.0.1:1", poll_interval_s=600
    )
    storage = HeldFirstHeadRead(open_channel(address, channel_options()), config.rpc_timeout_s)
    vision = VisionClient(open_channel("127.0.0.1:1", channel_options()), 5.0, config.top_k)
    worker = Worker(config, storage, vision)
    channel = open_channel(address, channel_options())
    try:
        worker.start()
        assert storage.first_claims_done.wait(30), "the lanes never claimed"
        time.sleep(0.2)  # every lane's first claim came back empty
        assert storage.claimed == []
        data = real_photo_paths()["coffee"].read_bytes()
        image_id = put(pbg.StorageServiceStub(channel), data, "a.png")
        storage.stored.set()
        deadline = time.monotonic() + CLAIMED_WITHIN_S
        while image_id not in storage.claimed and time.monotonic() < deadline:
            time.sleep(0.05)
        assert image_id in storage.claimed, (
            "a photo stored before the feed's first head read waited for the next poll"
        )
    finally:
        worker.stop(0)
        channel.close()
        server.stop(None).wait()
        close()
