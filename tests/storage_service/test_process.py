"""`python -m storage_service` as an operator starts it: a second process on a data directory
already served refuses to start with one clear line, no traceback, and the first keeps serving."""

from __future__ import annotations

import subprocess
import sys

from imagerepo.storage.v1 import storage_service_pb2 as pb
from tests.storage_service.conftest import put
from tests.storage_service.test_hostile_memory import REPO_ROOT, storage_process
from tests.support import free_port

__all__ = ["storage_process"]


def test_a_second_process_on_the_same_data_dir_refuses_in_one_line(storage_process, photo_jpegs):
    stored = put(storage_process.stub, photo_jpegs["coffee"], "coffee.jpg").image
    env = {**storage_process.env, "STORAGE_PORT": str(free_port())}

    second = subprocess.run(
        [sys.executable, "-m", "storage_service"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert second.returncode == 2
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    assert lines[0].startswith("storage: not started:")
    assert "in use by another process" in lines[0]
    assert "Traceback" not in second.stderr
    got = storage_process.stub.GetImage(pb.GetImageRequest(image_id=stored.id, include_data=True))
    assert got.data == photo_jpegs["coffee"]
