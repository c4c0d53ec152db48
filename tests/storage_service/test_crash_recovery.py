"""kill -9 the storage service while writes stream in; every acknowledged write survives.

The service runs as a real subprocess (`python -m storage_service`) with a tiny memtable and an
eager compaction policy, so kills land during log appends, segment flushes, manifest swaps and
compactions alike. A few rounds run with `make test`; `make soak` runs many more.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from imagerepo.storage.v1 import storage_service_pb2 as pb
from imagerepo.storage.v1 import storage_service_pb2_grpc as pb_grpc
from service_runtime.probe import is_serving
from tests.conftest import REPO_ROOT
from tests.storage_service.conftest import jpeg_variant, put, read_all
from tests.support import free_port


@dataclass
class Acknowledged:
    """What the service confirmed; only confirmed writes are promised to survive."""

    images: dict[str, bytes] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    tags: dict[str, set[str]] = field(default_factory=dict)
    # Deletes cut off by the kill: durable or not, both outcomes are right.
    maybe_deleted: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


class StorageProcess:
    def __init__(self, data_dir: Path, log_path: Path) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.address = ""

    def start(self) -> pb_grpc.StorageServiceStub:
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        env = dict(
            os.environ,
            STORAGE_PORT=str(port),
            STORAGE_DATA_DIR=str(self.data_dir),
            STORAGE_MEMTABLE_BYTES="300000",
            STORAGE_COMPACT_MIN_SEGMENTS="3",
        )
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "storage_service"], cwd=REPO_ROOT, env=env, stderr=log
            )
        deadline = time.monotonic() + 60
        while not is_serving(self.address, timeout_s=1):
            assert self.proc.poll() is None, f"storage exited: {self.log_path.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "storage did not become SERVING"
            time.sleep(0.1)
        self.channel = grpc.insecure_channel(self.address)
        return pb_grpc.StorageServiceStub(self.channel)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.channel.close()

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        self.channel.close()
        return code


def _write_until_killed(
    stub: pb_grpc.StorageServiceStub,
    sources: list[bytes],
    acked: Acknowledged,
    rng: random.Random,
    stop: threading.Event,
) -> None:
    while not stop.is_set():
        try:
            action = rng.random()
            with acked.lock:
                live = [i for i in acked.images if i not in acked.deleted]
            if action < 0.75 or not live:
                data = rng.choice(sources)
                image_id = put(stub, data, f"crash-{rng.randrange(1000)}.jpg").image.id
                with acked.lock:
                    acked.images[image_id] = data
            elif action < 0.9:
                image_id, tag = rng.choice(live), f"t{rng.randrange(100)}"
                stub.UpdateAnnotations(
                    pb.UpdateAnnotationsRequest(image_id=image_id, add_tags=[tag]), timeout=10
                )
                with acked.lock:
                    acked.tags.setdefault(image_id, set()).add(tag)
            else:
                image_id = rng.choice(live)
                with acked.lock:
                    acked.maybe_deleted.add(image_id)
                stub.DeleteImage(pb.DeleteImageRequest(image_id=image_id), timeout=10)
                with acked.lock:
                    acked.deleted.add(image_id)
        except grpc.RpcError:
            # The process died under this call: it was never acknowledged, so no promise.
            return


def _verify(stub: pb_grpc.StorageServiceStub, acked: Acknowledged) -> None:
    for image_id, data in acked.images.items():
        if image_id in acked.deleted:
            with pytest.raises(grpc.RpcError) as info:
                stub.GetImage(pb.GetImageRequest(image_id=image_id), timeout=10)
            assert info.value.code() == grpc.StatusCode.NOT_FOUND, image_id
            continue
        if image_id in acked.maybe_deleted:
            try:
                data_now = read_all(stub, image_id)
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.NOT_FOUND, image_id
                continue
            assert data_now == data, image_id
            continue
        assert read_all(stub, image_id) == data, image_id
        meta = stub.GetImage(pb.GetImageRequest(image_id=image_id), timeout=10).image
        assert acked.tags.get(image_id, set()) <= set(meta.tags), image_id


def _crash_rounds(tmp_path: Path, photo_jpegs: dict[str, bytes], rounds: int, seed: int) -> None:
    rng = random.Random(seed)
    sources = [jpeg_variant(data, i) for i, data in enumerate(photo_jpegs.values())]
    service = StorageProcess(tmp_path / "storage", tmp_path / "storage.log")
    acked = Acknowledged()
    stub = service.start()
    for _ in range(rounds):
        stop = threading.Event()
        writers = [
            threading.Thread(
                target=_write_until_killed,
                args=(stub, sources, acked, random.Random(rng.random()), stop),
            )
            for _ in range(3)
        ]
        for w in writers:
            w.start()
        time.sleep(rng.uniform(0.2, 1.5))
        service.kill()
        stop.set()
        for w in writers:
            w.join(timeout=30)

        stub = service.start()

        _verify(stub, acked)
    assert service.terminate() == 0
    stub = service.start()
    _verify(stub, acked)
    assert len(acked.images) > rounds
    service.terminate()


def test_every_acknowledged_write_survives_kill_9(tmp_path, photo_jpegs):
    _crash_rounds(tmp_path, photo_jpegs, rounds=3, seed=1)


@pytest.mark.soak
@pytest.mark.parametrize("seed", range(5))
def test_every_acknowledged_write_survives_many_kill_9_rounds(tmp_path, photo_jpegs, seed):
    _crash_rounds(tmp_path, photo_jpegs, rounds=10, seed=100 + seed)
