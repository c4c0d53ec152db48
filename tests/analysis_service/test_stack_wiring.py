"""`make run` starts the analysis worker with the ports and addresses derived like the others'."""

from __future__ import annotations

from pathlib import Path

from stack.__main__ import MODULES, listen_ports, stack_env


def test_the_stack_runs_the_worker_on_base_plus_four_with_its_metrics_on_plus_fourteen():
    envs = stack_env(Path("/d"), {"IMAGEREPO_BASE_PORT": "19000"})

    assert MODULES["analysis"] == "analysis_service"
    assert envs["analysis"]["ANALYSIS_PORT"] == "19004"
    assert envs["analysis"]["IMAGEREPO_METRICS_PORT"] == "19014"
    assert envs["analysis"]["ANALYSIS_STORAGE_ADDR"] == "127.0.0.1:19001"
    assert envs["analysis"]["ANALYSIS_VISION_ADDR"] == "127.0.0.1:19002"


def test_the_workers_ports_are_checked_before_the_stack_starts():
    found = {what: port for what, _host, port in listen_ports(stack_env(Path("/d"), {}))}

    assert found["analysis"] == 50054
    assert found["analysis metrics"] == 50064


def test_explicit_settings_win():
    envs = stack_env(
        Path("/d"),
        {"ANALYSIS_PORT": "7004", "ANALYSIS_VISION_ADDR": "a:1,b:1", "VISION_PORT": "7002"},
    )

    assert envs["analysis"]["ANALYSIS_PORT"] == "7004"
    assert envs["analysis"]["IMAGEREPO_METRICS_PORT"] == "7014"
    assert envs["analysis"]["ANALYSIS_VISION_ADDR"] == "a:1,b:1"
