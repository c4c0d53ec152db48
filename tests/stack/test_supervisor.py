"""The supervisor's settings and output: one base port moves every address consistently, a
port in use stops it before anything starts, and its lines suit a person or a program."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.config import GatewayConfig
from service_runtime.ports import Ports
from stack.__main__ import listen_ports, running_pid, stack_env, write_pid_file
from stack.output import Output
from stack.supervisor import MAX_FAILED_STARTS, Child, GaveUpError, Supervisor
from tests.conftest import REPO_ROOT


def test_base_port_moves_every_port_and_address():
    envs = stack_env(Path("/d"), {"IMAGEREPO_BASE_PORT": "19000"})

    assert [envs["gateway"][f"{r}_PORT"] for r in ("GATEWAY", "STORAGE", "VISION", "SEARCH")] == [
        "19000",
        "19001",
        "19002",
        "19003",
    ]
    assert envs["gateway"]["GATEWAY_STORAGE_ADDR"] == "127.0.0.1:19001"
    assert envs["gateway"]["GATEWAY_VISION_ADDR"] == "127.0.0.1:19002"
    assert envs["gateway"]["GATEWAY_SEARCH_ADDR"] == "127.0.0.1:19003"
    assert envs["search"]["SEARCH_VISION_ADDR"] == "127.0.0.1:19002"
    assert [envs[r]["IMAGEREPO_METRICS_PORT"] for r in ("storage", "vision", "search")] == [
        "19011",
        "19012",
        "19013",
    ]
    assert "IMAGEREPO_METRICS_PORT" not in envs["gateway"]


def test_a_service_port_set_alone_moves_what_the_gateway_dials():
    envs = stack_env(Path("/d"), {"STORAGE_PORT": "6001"})

    assert envs["gateway"]["GATEWAY_STORAGE_ADDR"] == "127.0.0.1:6001"
    assert envs["gateway"]["GATEWAY_VISION_ADDR"] == "127.0.0.1:50052"
    assert envs["storage"]["IMAGEREPO_METRICS_PORT"] == "6011"


def test_explicit_settings_win_over_the_base_port():
    envs = stack_env(
        Path("/d"),
        {"IMAGEREPO_BASE_PORT": "19000", "VISION_PORT": "7000", "GATEWAY_SEARCH_ADDR": "h:1"},
    )

    assert envs["vision"]["VISION_PORT"] == "7000"
    assert envs["search"]["SEARCH_VISION_ADDR"] == "127.0.0.1:7000"
    assert envs["gateway"]["GATEWAY_SEARCH_ADDR"] == "h:1"
    assert envs["gateway"]["GATEWAY_PORT"] == "19000"


def test_the_gateway_alone_derives_the_same_addresses():
    config = GatewayConfig.from_env({"IMAGEREPO_BASE_PORT": "19000"})

    assert (config.port, config.storage_address, config.search_address) == (
        19000,
        "127.0.0.1:19001",
        "127.0.0.1:19003",
    )


def test_defaults_are_the_historical_ports():
    ports = Ports.from_env({})

    assert ports.ports == {"storage": 50051, "vision": 50052, "search": 50053, "gateway": 8080}
    assert ports.metrics == {"storage": 50061, "vision": 50062, "search": 50063}


def test_listen_ports_include_the_metrics_ports():
    found = {what: port for what, _host, port in listen_ports(stack_env(Path("/d"), {}))}

    assert found["storage"] == 50051 and found["search metrics"] == 50063


def test_a_port_in_use_is_named_and_nothing_starts(tmp_path: Path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        result = _stack(
            IMAGEREPO_DATA_DIR=str(tmp_path / "data"),
            IMAGEREPO_BASE_PORT=str(taken - 2),  # vision lands on the taken port
            IMAGEREPO_LOG_FORMAT="json",
        )

    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode != 0
    # (Another port of the block may be busy too on a shared machine: each is named.)
    assert (
        f"port {taken} (vision) on 127.0.0.1 is in use: stop what holds it, or move every port "
        "with IMAGEREPO_BASE_PORT"
    ) in [line["message"] for line in lines if line["level"] == "ERROR"]
    assert "imagerepo is up" not in result.stdout
    assert not any("started" in line["message"] for line in lines)
    assert not (tmp_path / "data" / "stack.pid").exists()


def test_stop_without_a_running_stack_says_so(tmp_path: Path):
    result = _stack("stop", IMAGEREPO_DATA_DIR=str(tmp_path), IMAGEREPO_LOG_FORMAT="text")

    assert result.returncode == 0
    assert "imagerepo is not running" in result.stdout


def test_stop_leaves_alone_another_process_that_now_has_the_pid_in_a_stale_pid_file(
    tmp_path: Path,
):
    # A launcher killed with -9 (or a reboot) leaves stack.pid behind; its pid is then reused.
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "stack.pid").write_text(f"{other.pid}\n")

        result = _stack("stop", IMAGEREPO_DATA_DIR=str(tmp_path), IMAGEREPO_LOG_FORMAT="text")

        assert other.poll() is None, "stop killed a process that is not imagerepo"
        assert result.returncode == 0
        assert "imagerepo is not running" in result.stdout
    finally:
        other.kill()
        other.wait()


def test_a_pid_file_names_the_launcher_by_pid_and_start_time(tmp_path: Path):
    pid_file = tmp_path / "stack.pid"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_pid_file(pid_file, other.pid)
        assert running_pid(pid_file) == other.pid

        # The same pid, but a process started at another time: not the one that wrote it.
        pid, start = pid_file.read_text().split()
        pid_file.write_text(f"{pid} {int(start) + 1}\n")
        assert running_pid(pid_file) is None
    finally:
        other.kill()
        other.wait()


SERVICE_LINE = json.dumps(
    {
        "time": "2026-11-30 04:16:34,123",
        "level": "WARNING",
        "name": "storage_service",
        "message": "slow flush",
        "service": "storage",
        "ms": 812,
        "request_id": "abc123",
    }
)


def test_text_output_is_one_short_prefixed_line_per_log_line():
    stream = io.StringIO()
    out = Output(stream, fmt="text")

    out.child_line("storage", SERVICE_LINE + "\n")
    out.child_line("vision", "Traceback (most recent call last):\n")
    out.event("storage exited with SIGKILL; restarting in 1s", level="WARNING")

    lines = stream.getvalue().splitlines()
    assert lines[0] == "storage | 04:16:34 WARNING slow flush ms=812 request_id=abc123"
    assert lines[1] == "vision  | Traceback (most recent call last):"
    assert lines[2].startswith("stack   | ")
    assert lines[2].endswith("WARNING storage exited with SIGKILL; restarting in 1s")


def test_json_output_keeps_service_lines_and_tags_everything_with_a_service():
    stream = io.StringIO()
    out = Output(stream, fmt="json")

    out.child_line("storage", SERVICE_LINE)
    out.child_line("vision", "a plain line")
    out.event("imagerepo is up", url="http://127.0.0.1:8080/")

    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert records[0] == json.loads(SERVICE_LINE)
    assert records[1] == {"service": "vision", "level": "INFO", "message": "a plain line"}
    assert records[2]["service"] == "stack" and records[2]["url"] == "http://127.0.0.1:8080/"


def test_output_is_json_when_not_a_terminal():
    assert Output(io.StringIO()).json


def test_a_bad_port_setting_is_named_and_nothing_starts(tmp_path: Path):
    result = _stack(
        IMAGEREPO_DATA_DIR=str(tmp_path), IMAGEREPO_BASE_PORT="eighty", IMAGEREPO_LOG_FORMAT="text"
    )

    assert result.returncode == 2
    assert "IMAGEREPO_BASE_PORT must be a port number, not 'eighty'" in result.stdout
    assert "started" not in result.stdout


def test_a_data_dir_that_cannot_be_made_is_named_and_nothing_starts(tmp_path: Path):
    (tmp_path / "a-file").write_text("not a directory")
    data_dir = tmp_path / "a-file" / "data"

    result = _stack(IMAGEREPO_DATA_DIR=str(data_dir), IMAGEREPO_LOG_FORMAT="text")

    assert result.returncode == 2
    assert f"cannot use the data dir {data_dir}: " in result.stdout
    assert "IMAGEREPO_DATA_DIR" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert "started" not in result.stdout


def test_a_service_that_keeps_failing_is_restarted_with_growing_delays_then_given_up(tmp_path):
    broken = Child(
        "broken",
        "imagerepo_no_such_module",  # python -m fails at once with status 1
        dict(os.environ),
        probe=lambda: False,
        backoff_s=0.05,
    )
    messages = _supervise_until_given_up(broken, timeout_s=30)

    exits = [m for m in messages if m.startswith("broken exited")]
    assert exits == [
        f"broken exited with code 1; restarting in {d:g}s" for d in (0.05, 0.1, 0.2, 0.4)
    ]
    assert messages.count("broken restarted") == MAX_FAILED_STARTS - 1
    assert messages[-1] == "broken failed to start 5 times in a row; giving up"


def test_a_service_that_refuses_a_setting_is_given_up_on_at_its_first_exit(tmp_path):
    refusing = Child(
        "search",
        "search_service",
        dict(
            os.environ,
            SEARCH_DATA_DIR=str(tmp_path / "search"),
            SEARCH_COMPACTION_MEMORY_CHECK="maybe",  # exits 2: "search: not started: ..."
        ),
        probe=lambda: False,
        backoff_s=0.05,
    )
    messages = _supervise_until_given_up(refusing, timeout_s=60)

    assert "search restarted" not in messages  # retrying cannot fix a setting
    assert messages[-1] == (
        "search did not start: a setting or its data directory cannot be used (its own line "
        "above says which); giving up"
    )
    assert any("SEARCH_COMPACTION_MEMORY_CHECK must be 1 or 0" in m for m in messages)


def _supervise_until_given_up(child: Child, timeout_s: float) -> list[str]:
    """Run a supervisor of `child` until it gives up (GaveUpError, else the test fails after
    `timeout_s`); the messages it printed, in order."""
    stream = io.StringIO()
    supervisor = Supervisor([child], Output(stream, fmt="json"))
    supervisor.start_all()
    deadline = time.monotonic() + timeout_s
    with pytest.raises(GaveUpError):
        while time.monotonic() < deadline:
            supervisor.tick()
            time.sleep(0.02)
    supervisor.stop_all()
    return [json.loads(line)["message"] for line in stream.getvalue().splitlines()]


def _stack(*args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """`python -m stack ARGS` run to its end with these settings added to the environment."""
    return subprocess.run(
        [sys.executable, "-m", "stack", *args],
        cwd=REPO_ROOT,
        env=dict(os.environ, **settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
