"""Memory on hostile images: the storage service, a real process, takes an 83 KB PNG that
inflates to 9400x9400 pixels (88 Mpx, under the pixel limits) with its resident memory staying
under 300 MB above idle, alone and four at once (before: +791 MB and +1.6 GB)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from imagerepo.storage.v1 import storage_service_pb2 as pb
from imagerepo.storage.v1 import storage_service_pb2_grpc as pb_grpc
from service_runtime.grpc_server import channel_options
from tests.storage_service.conftest import put
from tests.support import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
BOUND = 300 * 1000 * 1000  # 300 MB


def _zeros_png(marker: int) -> bytes:
    """9400x9400 greyscale pixels, all zero but one (so each file has its own sha256)."""
    image = Image.new("L", (9400, 9400))
    image.putpixel((marker, marker), 255)
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def _memory(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak) of a process, in bytes."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


class StorageProcess:
    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        stub: pb_grpc.StorageServiceStub,
        env: dict[str, str],
    ) -> None:
        self.proc, self.stub, self.env = proc, stub, env


@pytest.fixture
def storage_process(tmp_path: Path) -> Iterator[StorageProcess]:
    """`python -m storage_service` over a fresh data dir, SERVING."""
    port = free_port()
    env = {
        **os.environ,
        "STORAGE_PORT": str(port),
        "STORAGE_DATA_DIR": str(tmp_path / "storage"),
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(REPO_ROOT),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "storage_service"], cwd=REPO_ROOT, env=env, stderr=subprocess.PIPE
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=channel_options())
    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + 60
    while True:
        try:
            reply = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                break
        except grpc.RpcError:
            pass
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, "storage did not start"
        time.sleep(0.1)
    yield StorageProcess(proc, pb_grpc.StorageServiceStub(channel), env)
    channel.close()
    proc.terminate()
    proc.wait(timeout=30)


def _thumbnails_made(stub: pb_grpc.StorageServiceStub, ids: list[str]) -> None:
    deadline = time.monotonic() + 120
    for image_id in ids:
        while (
            stub.GetImage(pb.GetImageRequest(image_id=image_id)).image.thumbnail_state
            != pb.THUMBNAIL_STATE_READY
        ):
            assert time.monotonic() < deadline, "thumbnails not made in time"
            time.sleep(0.05)


def test_an_88_mpx_png_alone_and_four_at_once_stay_under_300_mb(storage_process, photo_jpegs):
    pngs = [_zeros_png(marker) for marker in range(5)]
    assert all(len(data) < 100_000 for data in pngs)
    # Idle: serving, every decoder imported once by an ordinary upload.
    put(storage_process.stub, photo_jpegs["coffee"], "warm-up.jpg")
    time.sleep(0.5)
    idle = _memory(storage_process.proc.pid)["VmRSS"]

    alone = put(storage_process.stub, pngs[0], "zeros.png").image
    _thumbnails_made(storage_process.stub, [alone.id])
    after_one = _memory(storage_process.proc.pid)["VmHWM"] - idle

    replies: list[pb.PutImageResponse] = []
    errors: list[BaseException] = []

    def upload(data: bytes, name: str) -> None:
        try:
            replies.append(put(storage_process.stub, data, name))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [
        threading.Thread(target=upload, args=(data, f"zeros-{i}.png"))
        for i, data in enumerate(pngs[1:])
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # The pixels are decoded after the acks (the thumbnails are made in the background): the
    # peak is read once they are all made.
    _thumbnails_made(storage_process.stub, [r.image.id for r in replies])
    after_four = _memory(storage_process.proc.pid)["VmHWM"] - idle

    print(f"peak above idle: one {after_one / MIB:.0f} MiB, four {after_four / MIB:.0f} MiB")
    assert (alone.width, alone.height, alone.format) == (9400, 9400, "PNG")
    assert errors == []
    assert len({r.image.id for r in replies}) == 4
    thumb = storage_process.stub.GetThumbnail(pb.GetThumbnailRequest(image_id=alone.id))
    assert (thumb.width, thumb.height) == (256, 256)
    assert after_one < BOUND
    assert after_four < BOUND
