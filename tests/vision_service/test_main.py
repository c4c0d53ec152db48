"""`python -m vision_service` as a real process: it becomes SERVING once the models are
verified and loaded, stops cleanly on SIGTERM, and refuses to start on a tampered model."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from service_runtime.probe import is_serving
from tests.conftest import REPO_ROOT
from tests.support import free_port

START_TIMEOUT_S = 60.0


def _start(models_dir: Path, port: int) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "VISION_PORT": str(port),
        "VISION_MODELS_DIR": str(models_dir),
        "PYTHONPATH": str(REPO_ROOT),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "vision_service"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_service_process_serves_after_loading_and_stops_on_sigterm(models_dir):
    port = free_port()
    process = _start(models_dir, port)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not is_serving(f"127.0.0.1:{port}", timeout_s=1.0):
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "vision service never became SERVING"
            time.sleep(0.2)

        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 0, output
    assert "serving" in output


def test_service_process_refuses_to_start_on_a_tampered_model(models_dir, tmp_path):
    tampered = tmp_path / "models"
    shutil.copytree(models_dir, tampered)
    rec = tampered / "PP-OCRv6_rec_tiny.onnx"
    data = rec.read_bytes()
    rec.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))

    process = _start(tampered, free_port())
    output, _ = process.communicate(timeout=60)

    assert process.returncode == 2
    assert "checksum mismatch" in output and "PP-OCRv6_rec_tiny.onnx" in output
    assert output.strip().splitlines()[-1].startswith("vision: not started: ")
    assert output.strip().endswith(f"(VISION_MODELS_DIR is {tampered})")
