"""The worker's settings come from the environment once, with local defaults, and refuse
values that cannot work."""

from __future__ import annotations

import os
import socket

import pytest

from analysis_service.config import ANALYSIS_TOP_K, AnalysisConfig, AnalysisConfigError


def test_defaults_are_local_and_the_worker_id_is_host_pid():
    config = AnalysisConfig.from_env({})

    assert config.storage_address == "127.0.0.1:50051"
    assert config.vision_address == "127.0.0.1:50052"
    assert (config.batch_size, config.lease_ms, config.top_k) == (8, 60_000, ANALYSIS_TOP_K)
    assert config.worker_id == f"{socket.gethostname()}-{os.getpid()}"
    assert config.metrics_port is None


def test_settings_come_from_the_environment():
    config = AnalysisConfig.from_env(
        {
            "ANALYSIS_STORAGE_ADDR": "storage:50051",
            "ANALYSIS_VISION_ADDR": "dns:///vision:50052",
            "ANALYSIS_BATCH": "16",
            "ANALYSIS_LEASE_MS": "5000",
            "ANALYSIS_WORKER_ID": "w1",
            "ANALYSIS_OUTAGE_HOLD_S": "30",
            "ANALYSIS_STORAGE_WAIT_S": "2.5",
            "IMAGEREPO_METRICS_PORT": "9100",
        }
    )

    assert config.vision_address == "dns:///vision:50052"
    assert (config.batch_size, config.lease_ms, config.worker_id) == (16, 5000, "w1")
    assert config.metrics_port == 9100
    assert config.outage_hold_s == 30.0
    assert config.storage_wait_s == 2.5


def test_a_vision_call_never_outlives_the_lease():
    config = AnalysisConfig(lease_ms=5000, analyze_timeout_s=30.0)

    assert config.call_timeout_s == 3.0


@pytest.mark.parametrize(
    "env",
    [
        {"ANALYSIS_BATCH": "0"},
        {"ANALYSIS_LEASE_MS": "10"},
        {"ANALYSIS_OUTAGE_HOLD_S": "-1"},
        {"ANALYSIS_STORAGE_WAIT_S": "-1"},
    ],
)
def test_values_that_cannot_work_are_refused(env):
    with pytest.raises(AnalysisConfigError):
        AnalysisConfig.from_env(env)


def test_an_empty_worker_id_is_refused():
    with pytest.raises(AnalysisConfigError):
        AnalysisConfig(worker_id=" ")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ANALYSIS_LEASE_MS": "long"}, "ANALYSIS_LEASE_MS must be a whole number, not 'long'"),
        (
            {"ANALYSIS_OUTAGE_HOLD_S": "nan"},
            "ANALYSIS_OUTAGE_HOLD_S must be a finite number, not 'nan'",
        ),
        ({"IMAGEREPO_METRICS_PORT": "x"}, "IMAGEREPO_METRICS_PORT must be a whole number, not 'x'"),
    ],
)
def test_a_setting_that_is_no_number_is_named(env, message):
    with pytest.raises(ValueError) as refused:
        AnalysisConfig.from_env(env)

    assert str(refused.value) == message
