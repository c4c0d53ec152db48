"""`imagerepo import` rides through a gateway restart: the gateway process is killed (kill -9,
as a crash under `make run`'s supervisor) in the middle of an import and started again on its
port some seconds later; the import waits for it, goes on, and ends with every photo stored
exactly once and exit status 0. An upload that reached storage but whose answer was lost is
sent again and found: "already in the library", never a second copy."""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from gateway.cli import main
from tests.conftest import REPO_ROOT
from tests.support import free_port

from .conftest import Stack
from .test_bulk_import import fresh_photo

PHOTOS = 120
# Longer than the importer's old retry window (about 3 s), shorter than its default 60 s.
AWAY_S = 6.0


class GatewayProcess:
    """`python -m gateway` on a fixed port over the shared stack, to kill and start again."""

    def __init__(self, stack: Stack, data_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._env = {
            **os.environ,
            "GATEWAY_PORT": str(self.port),
            "GATEWAY_STORAGE_ADDR": f"127.0.0.1:{stack.ports['storage']}",
            "GATEWAY_VISION_ADDR": f"127.0.0.1:{stack.ports['vision']}",
            "GATEWAY_SEARCH_ADDR": f"127.0.0.1:{stack.ports['search']}",
            "GATEWAY_DATA_DIR": str(data_dir),
            "LOG_LEVEL": "WARNING",
        }
        for name in (
            "GATEWAY_SECRET_KEY",
            "GATEWAY_SECRET_KEY_FILE",
            "IMAGEREPO_BASE_PORT",
            "IMAGEREPO_API_KEYS",
        ):
            self._env.pop(name, None)
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway"],
            cwd=REPO_ROOT,
            env=self._env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"gateway exited with {self.process.returncode}"
            try:
                if requests.get(f"{self.url}/api/health", timeout=2).status_code < 500:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"gateway at {self.url} did not come up within 60 s")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def gateway_process(stack: Stack, tmp_path) -> Iterator[GatewayProcess]:
    """A real gateway process over the shared stack, on a port of its own."""
    gateway = GatewayProcess(stack, tmp_path / "gateway-data")
    gateway.start()
    yield gateway
    gateway.stop()


def _photos(root: Path, photo_jpegs, count: int = PHOTOS, tag: int = 700) -> list[Path]:
    root.mkdir(parents=True)
    names = sorted(photo_jpegs)
    paths = []
    for i in range(count):
        path = root / f"{names[i % len(names)]}-{i:03}.jpg"
        path.write_bytes(fresh_photo(photo_jpegs[names[i % len(names)]], tag + i, side=320))
        paths.append(path)
    return paths


def _copies_of_each(gateway_url: str, paths: list[Path]) -> list[int]:
    digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    reply = requests.post(f"{gateway_url}/api/images/lookup", json={"sha256": digests}, timeout=60)
    assert reply.status_code == 200, reply.text
    return [len(match["images"]) for match in reply.json()["matches"]]


def test_import_rides_through_a_gateway_killed_and_restarted(
    tmp_path, gateway_url, gateway_process, photo_jpegs
):
    photos = _photos(tmp_path / "photos", photo_jpegs)
    importer = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "import", str(tmp_path / "photos")]
        + ["--url", gateway_process.url, "--workers", "3", "--no-progress"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    # Kill the gateway once the import is under way, not before and not after.
    deadline = time.monotonic() + 60
    while sum(_copies_of_each(gateway_url, photos)) < 10:
        assert importer.poll() is None, importer.communicate()
        assert time.monotonic() < deadline, "the import did not start"
        time.sleep(0.05)

    gateway_process.kill()
    stored_while_up = sum(_copies_of_each(gateway_url, photos))
    time.sleep(AWAY_S)
    gateway_process.start()
    out, err = importer.communicate(timeout=240)

    print(out, err)
    assert stored_while_up < PHOTOS, "the import had finished before the gateway was killed"
    assert importer.returncode == 0, out + err
    assert _copies_of_each(gateway_url, photos) == [1] * PHOTOS
    assert "retrying for up to 60 s" in err
    assert err.count("gateway unreachable") == 1, err
    assert "gateway back after" in err
    assert "rejected 0, failed 0" in out
    stored = int(out.split("stored ")[-1].split(",")[0])
    already = int(out.split("already in the library ")[-1].split(",")[0])
    assert stored + already == PHOTOS, out


class _LosesEachFirstUploadAnswer(http.server.BaseHTTPRequestHandler):
    """In front of the real gateway: passes every request on, but the first time each file is
    uploaded it drops the connection once the gateway has answered (stored), as a gateway
    killed between storing a photo and answering would."""

    protocol_version = "HTTP/1.1"
    gateway_url = ""
    seen: set[bytes] = set()

    def log_message(self, *_args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type",)}
        reply = requests.post(self.gateway_url + self.path, data=body, headers=headers, timeout=60)
        named = re.search(rb'filename="([^"]+)"', body)
        if self.path.startswith("/api/images?") and named and named.group(1) not in self.seen:
            self.seen.add(named.group(1))
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(reply.status_code)
        self.send_header("Content-Type", reply.headers.get("Content-Type", "application/json"))
        self.send_header("Content-Length", str(len(reply.content)))
        self.end_headers()
        self.wfile.write(reply.content)


def test_an_upload_stored_but_not_answered_is_retried_and_found_already_stored(
    tmp_path, gateway_url, photo_jpegs, capsys
):
    photos = _photos(tmp_path / "photos", photo_jpegs, count=3, tag=950)
    handler = type("Handler", (_LosesEachFirstUploadAnswer,), {"gateway_url": gateway_url})
    handler.seen = set()
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()

    try:
        code = main(
            ["import", str(tmp_path / "photos"), "--url", f"127.0.0.1:{proxy.server_port}"]
            + ["--no-progress", "--workers", "2"]
        )
    finally:
        proxy.shutdown()
        proxy.server_close()

    out, err = capsys.readouterr()
    assert len(handler.seen) == 3, "each file's first answer was lost"
    assert code == 0, out + err
    assert "stored 0, already in the library 3, rejected 0, failed 0" in out
    assert _copies_of_each(gateway_url, photos) == [1, 1, 1]
    assert "retrying for up to 60 s" in err
