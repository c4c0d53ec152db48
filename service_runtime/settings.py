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
