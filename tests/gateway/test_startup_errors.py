"""The gateway started with a bad setting or on a port it cannot have says so in one line and
exits 2, as the services do: a real process, a port really held."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from gateway.config import GatewayConfig
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


@pytest.mark.parametrize("word", ["ture", "maybe", "2"])
def test_a_private_switch_that_is_no_switch_is_refused_not_read_as_public(word):
    keys = {"IMAGEREPO_API_KEYS": "alice:secret1234567890"}

    with pytest.raises(ValueError, match=f"^IMAGEREPO_PRIVATE must be 1 or 0 .*not '{word}'$"):
        GatewayConfig.from_env({**keys, "IMAGEREPO_PRIVATE": word})


def test_the_private_switch_still_reads_its_words_and_defaults_to_the_keys():
    keys = {"IMAGEREPO_API_KEYS": "alice:secret1234567890"}

    assert GatewayConfig.from_env(keys).private is None
    assert GatewayConfig.from_env({**keys, "IMAGEREPO_PRIVATE": "off"}).private is False
    assert GatewayConfig.from_env({**keys, "IMAGEREPO_PRIVATE": "Yes"}).private is True


def test_an_unknown_log_level_stops_the_gateway_naming_it(tmp_path):
    done = _start(tmp_path, LOG_LEVEL="LOUD")

    assert done.returncode == 2
    assert done.stderr.strip() == (
        "gateway: not started: LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, "
        "not 'LOUD'"
    )
