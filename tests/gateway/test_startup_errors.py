"""The gateway started with a bad setting or on a port it cannot have says so in one line and
exits 2, as the services do: a real process, a port really held."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


def _start(tmp_path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IMAGEREPO_DATA_DIR": str(tmp_path), **settings}
    return subprocess.run(
        [sys.executable, "-m", "gateway"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_gateway_port_in_use_is_named_in_one_line(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]

        done = _start(tmp_path, GATEWAY_PORT=str(port))

    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"gateway: not started: cannot listen on 127.0.0.1:{port}: the port is in use "
        "(GATEWAY_HOST, GATEWAY_PORT choose it)"
    )


@pytest.mark.parametrize(
    ("setting", "line"),
    [
        ({"GATEWAY_THREADS": "many"}, "GATEWAY_THREADS must be a whole number, not 'many'"),
        (
            {"GATEWAY_ANALYSIS_WAIT_S": "inf"},
            "GATEWAY_ANALYSIS_WAIT_S must be a finite number, not 'inf'",
        ),
    ],
)
def test_a_bad_number_stops_the_gateway_naming_it(tmp_path, setting, line):
    done = _start(tmp_path, **setting)

    assert done.returncode == 2
    assert done.stderr.strip() == f"gateway: not started: {line}"
