"""Reading this process's memory figures for the tests that hold memory maps to their word."""

from __future__ import annotations

import ctypes
import ctypes.util


def status_kb(field: str) -> int:
    """A field of /proc/self/status in kB (RssAnon, RssFile, ...)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(field)


def anon_kb() -> int:
    """RssAnon after glibc has given back the free pages of its heap: memory that earlier tests
    in this process freed but malloc kept resident would otherwise be reused without raising
    RssAnon, so a copy measured against it could look free."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc_trim(0)
    return status_kb("RssAnon")
