"""`make run`'s launcher brings up four processes that answer, and stops them on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import requests

from service_runtime.probe import is_serving
from tests.conftest import REPO_ROOT
from tests.support import free_ports


def test_stack_starts_four_serving_processes_and_stops_on_ctrl_c(tmp_path: Path, photo_jpegs):
    storage, vision, search, gateway = free_ports(4)
    env = dict(
        os.environ,
        IMAGEREPO_DATA_DIR=str(tmp_path / "data"),
        STORAGE_PORT=str(storage),
        VISION_PORT=str(vision),
        SEARCH_PORT=str(search),
        GATEWAY_PORT=str(gateway),
        SEARCH_VISION_ADDR=f"127.0.0.1:{vision}",
        GATEWAY_STORAGE_ADDR=f"127.0.0.1:{storage}",
        GATEWAY_VISION_ADDR=f"127.0.0.1:{vision}",
        GATEWAY_SEARCH_ADDR=f"127.0.0.1:{search}",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "stack"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        banner = ""
        while "imagerepo is up" not in banner and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, f"launcher exited early with {proc.returncode}"
            banner += line

        serving = [is_serving(f"127.0.0.1:{p}") for p in (storage, vision, search)]
        with urllib.request.urlopen(f"http://127.0.0.1:{gateway}/api/health", timeout=10) as r:
            health = json.load(r)

        # The launched gateway carries an upload through all three services.
        upload = requests.post(
            f"http://127.0.0.1:{gateway}/api/images",
            files={"file": ("coffee.jpg", photo_jpegs["coffee"])},
            timeout=120,
        )
        found = requests.get(
            f"http://127.0.0.1:{gateway}/api/search", params={"q": "espresso"}, timeout=30
        )

        assert upload.status_code == 201
        assert upload.json()["results"][0]["image"]["status"] == "ready"
        assert [h["image"]["filename"] for h in found.json()["hits"]] == ["coffee.jpg"]
        assert f"http://127.0.0.1:{gateway}/" in banner
        assert serving == [True, True, True]
        assert health["services"] == {
            "storage": "SERVING",
            "vision": "SERVING",
            "search": "SERVING",
        }
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)

    assert code == 0
    assert not any(is_serving(f"127.0.0.1:{p}", timeout_s=1) for p in (storage, vision, search))
