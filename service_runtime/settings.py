"""Numbers read from the environment by name, so a bad one says which setting it is.

`int(env.get("SEARCH_SNAPSHOT_EVERY", 1000))` on "abc" raises "invalid literal for int() with
base 10: 'abc'" from a traceback, and the operator has to guess which of twenty variables it
was. These raise `SettingError` naming the variable and the value; each service's `__main__`
turns it into one line, "<service>: not started: ...", and exit status 2.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping
from typing import NoReturn, TypeVar

T = TypeVar("T")


class SettingError(ValueError):
    """A setting from the environment that cannot be used; the message names it."""


def env_int(env: Mapping[str, str], name: str, default: int) -> int:
    """`name` as a whole number; `default` when unset or empty."""
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise SettingError(f"{name} must be a whole number, not {text!r}") from None


def env_port(env: Mapping[str, str], name: str) -> int | None:
    """`name` as a TCP port (1-65535); None when unset or empty."""
    text = env.get(name, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise SettingError(f"{name} must be a port number, not {text!r}") from None
    if not 0 < value < 65536:
        raise SettingError(f"{name} must be between 1 and 65535, not {value}")
    return value


def env_float(env: Mapping[str, str], name: str, default: float) -> float:
    """`name` as a finite number; `default` when unset or empty."""
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise SettingError(f"{name} must be a number, not {text!r}") from None
    if not math.isfinite(value):
        raise SettingError(f"{name} must be a finite number, not {text!r}")
    return value


_ON = ("1", "true", "yes", "on")
_OFF = ("0", "false", "no", "off")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    """`name` as a switch (1/0, true/false, yes/no, on/off); `default` when unset or empty.

    Anything else is refused: "maybe" or a typo ("ture") would otherwise quietly mean off (or
    on), and the operator would never learn the setting did nothing."""
    text = env.get(name, "").strip().lower()
    if not text:
        return default
    if text in _ON:
        return True
    if text in _OFF:
        return False
    raise SettingError(
        f"{name} must be 1 or 0 (true/false, yes/no, on/off), not {env.get(name, '').strip()!r}"
    )


def env_log_level(env: Mapping[str, str], default: str = "INFO") -> str:
    """LOG_LEVEL, upper-cased, one of LOG_LEVELS (logging raised "Unknown level" from a
    traceback, after the service had read the rest of its settings)."""
    text = env.get("LOG_LEVEL", "").strip()
    if not text:
        return default
    if text.upper() not in LOG_LEVELS:
        raise SettingError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {text!r}")
    return text.upper()


def load_or_exit(service: str, load: Callable[[], T]) -> T:
    """`load()` (a config's `from_env`); on a setting that cannot be used, one line on stderr,
    "<service>: not started: <what is wrong>", and exit status 2 (no traceback)."""
    try:
        return load()
    except ValueError as exc:  # SettingError, and the configs' own range checks
        not_started(service, str(exc))


def not_started(service: str, why: str) -> NoReturn:
    """One line on stderr, "<service>: not started: <why>", and exit status 2."""
    print(f"{service}: not started: {why}", file=sys.stderr)
    raise SystemExit(2)
