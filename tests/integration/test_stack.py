"""`make run`'s launcher: four processes that answer on ports derived from one base port, a
crashed service restarted, metrics that count the traffic, a request id in every service's
log lines, and `python -m stack stop` stopping it all. The run is the most locked-down one:
mutual TLS and a service token between the services, API keys at the gateway (private)."""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import requests

from service_runtime.probe import is_serving
from service_runtime.security import TransportSecurity
from tests.conftest import REPO_ROOT
from tests.service_runtime.certs import issue, make_ca

OFFSETS = (0, 1, 2, 3, 4, 11, 12, 13, 14)  # gateway, storage, vision, search, analysis, metrics


def _free_base() -> int:
    """A base port whose derived ports are all free right now."""
    for _ in range(200):
        base = random.randrange(20000, 60000, 20)
        socks = []
        try:
            for offset in OFFSETS:
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free block of ports")


class Lines:
    """The launcher's JSON output lines, read in a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.all: list[dict] = []
        self._queue: queue.Queue[dict] = queue.Queue()
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            try:
                record = json.loads(raw)
            except ValueError:
                record = {"service": "?", "message": raw.rstrip()}
            self.all.append(record)
            self._queue.put(record)

    def wait_for(self, predicate, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                record = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if predicate(record):
                return record
        raise AssertionError(f"not seen in {timeout_s}s; last lines: {self.all[-15:]}")


def _metric(url: str, name: str, headers: dict[str, str] | None = None, **labels: str) -> float:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as reply:
        text = reply.read().decode()
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_stack_heals_counts_traces_and_stops(tmp_path: Path, photo_jpegs):
    base = _free_base()
    gateway = f"http://127.0.0.1:{base}"
    data_dir = tmp_path / "data"
    env = dict(os.environ, IMAGEREPO_DATA_DIR=str(data_dir), IMAGEREPO_BASE_PORT=str(base))
    env["LOG_LEVEL"] = "DEBUG"  # the services log every RPC at debug level
    ca, ca_key = make_ca()
    cert = issue(ca, ca_key)
    for name, data in (("ca.pem", ca.cert), ("cert.pem", cert.cert), ("key.pem", cert.key)):
        (tmp_path / name).write_bytes(data)
    (tmp_path / "token").write_text("service-token-for-the-test\n")
    env.update(
        IMAGEREPO_TLS_CA=str(tmp_path / "ca.pem"),
        IMAGEREPO_TLS_CERT=str(tmp_path / "cert.pem"),
        IMAGEREPO_TLS_KEY=str(tmp_path / "key.pem"),
        IMAGEREPO_TLS_CLIENT_AUTH="1",
        IMAGEREPO_SERVICE_TOKEN_FILE=str(tmp_path / "token"),
        IMAGEREPO_API_KEYS="alice:s3cret",
    )
    security = TransportSecurity.from_env(env)
    key = {"Authorization": "Bearer alice:s3cret"}
    for name in [k for k in env if k.endswith(("_PORT", "_ADDR")) and k != "IMAGEREPO_BASE_PORT"]:
        del env[name]
    proc = subprocess.Popen(
        [sys.executable, "-m", "stack"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = Lines(proc)
    try:
        banner = lines.wait_for(lambda r: "imagerepo is up" in r.get("message", ""), 240)
        storage_pid = next(
            r["pid"] for r in lines.all if r.get("message") == "storage started" and "pid" in r
        )
        storage_metrics = f"http://127.0.0.1:{base + 11}/metrics"
        anonymous = requests.get(f"{gateway}/api/images", timeout=10)
        plain_text = is_serving(f"127.0.0.1:{base + 1}")
        before = _metric(storage_metrics, "grpc_server_handled_total", grpc_method="PutImage")

        # Traffic through every service, with a request id of our own.
        upload = requests.post(
            f"{gateway}/api/images",
            files={"file": ("coffee.jpg", photo_jpegs["coffee"])},
            headers={"X-Request-Id": "trace-me-42", **key},
            timeout=120,
        )
        # The upload waits up to 3 s for its labels; on a loaded machine analysis can take
        # longer, so the photo becomes findable a little later.
        deadline = time.monotonic() + 60
        found = requests.get(
            f"{gateway}/api/search", params={"q": "espresso"}, headers=key, timeout=30
        )
        while not found.json().get("hits") and time.monotonic() < deadline:
            time.sleep(0.5)
            found = requests.get(
                f"{gateway}/api/search", params={"q": "espresso"}, headers=key, timeout=30
            )
        after = _metric(storage_metrics, "grpc_server_handled_total", grpc_method="PutImage")
        gateway_count = _metric(
            f"{gateway}/metrics",
            "http_requests_total",
            route="/api/images",
            status="201",
            headers=key,
        )
        vision_calls = _metric(
            f"http://127.0.0.1:{base + 12}/metrics",
            "grpc_server_handled_total",
            grpc_method="Analyze",
            grpc_code="OK",
        )
        classifier_batches = _metric(
            f"http://127.0.0.1:{base + 12}/metrics",
            "vision_model_batch_size_count",
            model="classifier",
        )
        traced = lines.wait_for(
            lambda r: r.get("request_id") == "trace-me-42" and r.get("service") == "storage", 10
        )

        # A crashed service comes back by itself, on the same port.
        os.kill(storage_pid, signal.SIGKILL)
        crash = lines.wait_for(lambda r: "storage exited with SIGKILL" in r.get("message", ""), 30)
        back = lines.wait_for(lambda r: r.get("message") == "storage is back and serving", 60)
        image_url = f"{gateway}/api/images/{upload.json()['results'][0]['image']['id']}"
        deadline = time.monotonic() + 15  # the gateway's channel reconnects within 5 s
        again = requests.get(image_url, headers=key, timeout=10)
        while again.status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.5)
            again = requests.get(image_url, headers=key, timeout=10)

        assert upload.status_code == 201
        assert upload.headers["X-Request-Id"] == "trace-me-42"
        assert [h["image"]["filename"] for h in found.json()["hits"]] == ["coffee.jpg"]
        assert banner["url"] == f"{gateway}/"
        assert after == before + 1
        assert gateway_count >= 1
        assert vision_calls >= 1
        assert classifier_batches >= 1
        assert traced["request_id"] == "trace-me-42"
        assert crash["level"] == "WARNING"
        assert back["restarts"] == 1
        assert again.status_code == 200
        assert is_serving(f"127.0.0.1:{base + 1}", security=security)
        assert anonymous.status_code == 401
        # Every service reached the others (search calls vision) with the token, over TLS.
        assert not [r for r in lines.all if "service token" in r.get("message", "")]
        assert not plain_text  # storage speaks only TLS
    finally:
        stop = subprocess.run(
            [sys.executable, "-m", "stack", "stop"],
            cwd=REPO_ROOT,
            env=dict(env, IMAGEREPO_LOG_FORMAT="json"),
            capture_output=True,
            text=True,
            timeout=90,
        )
        code = proc.wait(timeout=60)

    assert stop.returncode == 0, stop.stdout
    assert code == 0
    assert not (data_dir / "stack.pid").exists()
    assert not any(
        is_serving(f"127.0.0.1:{base + i}", timeout_s=1, security=security) for i in (1, 2, 3)
    )
