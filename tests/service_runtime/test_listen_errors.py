"""A service that cannot listen where it is told to says so in one line naming the address,
why, and the settings that chose it, and exits 2: real processes, a port really held."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from service_runtime.grpc_server import why_not_listening
from tests.conftest import REPO_ROOT


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port held by a listening socket for the test's length."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def _start(module: str, tmp_path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "IMAGEREPO_METRICS_PORT": "",
        "STORAGE_DATA_DIR": str(tmp_path / "storage"),
        "SEARCH_DATA_DIR": str(tmp_path / "search"),
        "SEARCH_STORAGE_ADDR": "127.0.0.1:9",
        "SEARCH_VISION_ADDR": "127.0.0.1:9",
        "VISION_MODELS_DIR": str(tmp_path / "no-models"),
        **settings,
    }
    return subprocess.run(
        [sys.executable, "-m", module],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("module", "service"),
    [("storage_service", "storage"), ("search_service", "search"), ("vision_service", "vision")],
)
def test_a_service_port_in_use_is_named_in_one_line(tmp_path, taken_port, module, service):
    prefix = service.upper()

    done = _start(module, tmp_path, **{f"{prefix}_PORT": str(taken_port)})

    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"{service}: not started: cannot listen on 127.0.0.1:{taken_port}: the port is in use "
        f"({prefix}_HOST, {prefix}_PORT choose it)"
    )
    assert "Traceback" not in done.stderr


def test_a_metrics_port_in_use_is_named_in_one_line(tmp_path, taken_port):
    done = _start(
        "storage_service", tmp_path, STORAGE_PORT="0", IMAGEREPO_METRICS_PORT=str(taken_port)
    )

    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"storage: not started: cannot serve metrics on 127.0.0.1:{taken_port}: the port is in "
        "use (IMAGEREPO_METRICS_HOST, IMAGEREPO_METRICS_PORT choose it)"
    )
    assert "Traceback" not in done.stderr


def test_a_host_that_is_not_this_machines_is_named(tmp_path):
    # 192.0.2.0/24 is TEST-NET-1: never an address of this machine.
    done = _start("storage_service", tmp_path, STORAGE_HOST="192.0.2.7", STORAGE_PORT="0")

    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "storage: not started: cannot listen on 192.0.2.7:0: 192.0.2.7 is not an address of "
        "this machine (STORAGE_HOST, STORAGE_PORT choose it)"
    )


def test_a_metrics_port_that_is_not_a_number_is_named(tmp_path):
    done = _start("vision_service", tmp_path, VISION_PORT="0", IMAGEREPO_METRICS_PORT="metrics")

    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "vision: not started: IMAGEREPO_METRICS_PORT must be a whole number, not 'metrics'"
    )


def test_why_not_listening_tells_an_unknown_host_from_a_taken_port(taken_port):
    assert why_not_listening("127.0.0.1", taken_port) == "the port is in use"
    assert why_not_listening("no-such-host.invalid", 80) == "unknown host 'no-such-host.invalid'"
