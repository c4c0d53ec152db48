"""A setting that cannot be used stops a service with one line naming it, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from search_service.config import SearchConfig
from service_runtime.settings import (
    SettingError,
    env_bool,
    env_float,
    env_int,
    env_log_level,
    env_port,
)
from storage_service.config import StorageConfig
from vision_service.config import VisionConfig


def test_numbers_are_read_by_name_with_the_default_when_unset_or_empty():
    env = {"A": " 12 ", "B": "", "C": "0.25"}

    assert env_int(env, "A", 5) == 12
    assert env_int(env, "B", 5) == 5
    assert env_int(env, "MISSING", 5) == 5
    assert env_float(env, "C", 1.0) == 0.25


@pytest.mark.parametrize(
    ("read", "value", "message"),
    [
        (env_int, "abc", "N must be a whole number, not 'abc'"),
        (env_int, "1.5", "N must be a whole number, not '1.5'"),
        (env_float, "ten", "N must be a number, not 'ten'"),
        (env_float, "nan", "N must be a finite number, not 'nan'"),
        (env_float, "inf", "N must be a finite number, not 'inf'"),
    ],
)
def test_a_bad_number_names_the_setting_and_the_value(read, value, message):
    with pytest.raises(SettingError) as caught:
        read({"N": value}, "N", 1)

    assert str(caught.value) == message


def test_switches_read_the_usual_words_with_the_default_when_unset_or_empty():
    on = ("1", "true", "Yes", "ON", " on ")
    off = ("0", "false", "No", "OFF")

    assert all(env_bool({"S": word}, "S", False) for word in on)
    assert not any(env_bool({"S": word}, "S", True) for word in off)
    assert env_bool({"S": ""}, "S", True) is True
    assert env_bool({}, "S", False) is False


def test_a_switch_that_is_neither_on_nor_off_names_the_setting_and_the_value():
    with pytest.raises(SettingError) as caught:
        env_bool({"S": "maybe"}, "S", True)

    assert str(caught.value) == "S must be 1 or 0 (true/false, yes/no, on/off), not 'maybe'"


def test_log_levels_are_checked_by_name():
    assert env_log_level({}) == "INFO"
    assert env_log_level({"LOG_LEVEL": " debug "}) == "DEBUG"
    with pytest.raises(SettingError) as caught:
        env_log_level({"LOG_LEVEL": "LOUD"})

    assert str(caught.value) == (
        "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, not 'LOUD'"
    )


@pytest.mark.parametrize(
    ("config", "name"),
    [
        (SearchConfig, "SEARCH_COMPACTION_MEMORY_CHECK"),
        (VisionConfig, "VISION_QUANTIZED"),
        (VisionConfig, "VISION_OV_INT8"),
        (VisionConfig, "VISION_BF16_CLASSIFIER"),
        (VisionConfig, "VISION_ORT_SPIN"),
    ],
)
def test_every_service_config_names_its_bad_switch(config, name):
    with pytest.raises(SettingError, match=f"^{name} must be 1 or 0 "):
        config.from_env({name: "maybe"})


@pytest.mark.parametrize(
    ("config", "name", "value", "least"),
    [
        (StorageConfig, "STORAGE_MAX_WORKERS", "1", 2),
        (SearchConfig, "SEARCH_MAX_WORKERS", "0", 1),
        (VisionConfig, "VISION_MAX_WORKERS", "-4", 1),
    ],
)
def test_too_few_server_threads_are_refused_by_name(config, name, value, least):
    with pytest.raises(ValueError, match=f"^{name} must be at least {least}, not {value}"):
        config.from_env({name: value})


@pytest.mark.parametrize("config", [StorageConfig, SearchConfig, VisionConfig])
def test_every_service_config_names_a_bad_log_level(config):
    with pytest.raises(SettingError, match="^LOG_LEVEL must be one of "):
        config.from_env({"LOG_LEVEL": "verbose"})


@pytest.mark.parametrize(
    ("config", "name"),
    [
        (StorageConfig, "STORAGE_MEMTABLE_BYTES"),
        (SearchConfig, "SEARCH_SNAPSHOT_EVERY"),
        (VisionConfig, "VISION_BATCH_MAX_SIZE"),
    ],
)
def test_every_service_config_names_its_bad_setting(config, name):
    with pytest.raises(SettingError, match=f"^{name} must be a whole number, not 'lots'$"):
        config.from_env({name: "lots"})


@pytest.mark.parametrize(
    ("module", "setting", "line"),
    [
        (
            "storage_service",
            {"STORAGE_FEED_RETENTION_SEQS": "many"},
            "storage: not started: STORAGE_FEED_RETENTION_SEQS must be a whole number, not 'many'",
        ),
        (
            "storage_service",
            {"STORAGE_ANALYSIS_MAX_ATTEMPTS": "0"},
            "storage: not started: STORAGE_ANALYSIS_MAX_ATTEMPTS must be at least 1, not 0",
        ),
        (
            "search_service",
            {"SEARCH_SNAPSHOT_INTERVAL_S": "soon"},
            "search: not started: SEARCH_SNAPSHOT_INTERVAL_S must be a number, not 'soon'",
        ),
        (
            "storage_service",
            {"STORAGE_MAX_WORKERS": "0"},
            "storage: not started: STORAGE_MAX_WORKERS must be at least 2, not 0 (one thread "
            "serves a change-feed follower, the others every other call)",
        ),
        (
            "storage_service",
            {"LOG_LEVEL": "LOUD"},
            "storage: not started: LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, "
            "CRITICAL, not 'LOUD'",
        ),
        (
            "search_service",
            {"SEARCH_COMPACTION_MEMORY_CHECK": "maybe"},
            "search: not started: SEARCH_COMPACTION_MEMORY_CHECK must be 1 or 0 (true/false, "
            "yes/no, on/off), not 'maybe'",
        ),
        (
            "vision_service",
            {"VISION_BATCH_MAX_WAIT_MS": "nan"},
            "vision: not started: VISION_BATCH_MAX_WAIT_MS must be a finite number, not 'nan'",
        ),
    ],
)
def test_a_service_started_with_a_bad_setting_exits_2_with_one_line(
    tmp_path, module, setting, line
):
    env = {**os.environ, **setting, "STORAGE_DATA_DIR": str(tmp_path / "storage")}
    env["SEARCH_DATA_DIR"] = str(tmp_path / "search")

    done = subprocess.run(
        [sys.executable, "-m", module], env=env, capture_output=True, text=True, timeout=120
    )

    assert done.returncode == 2
    assert done.stderr.strip() == line
    assert not (tmp_path / "storage").exists() and not (tmp_path / "search").exists()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("eighty", "P must be a port number, not 'eighty'"),
        ("0", "P must be between 1 and 65535, not 0"),
        ("70000", "P must be between 1 and 65535, not 70000"),
    ],
)
def test_a_port_setting_is_a_number_in_range(value, message):
    assert env_port({"P": " 8080 "}, "P") == 8080
    assert env_port({}, "P") is None

    with pytest.raises(SettingError) as refused:
        env_port({"P": value}, "P")

    assert str(refused.value) == message
