"""One search process per data directory: an exclusive flock on `SEARCH_DATA_DIR/LOCK`.

Two processes sharing a directory would each replay and rewrite the other's snapshot and
journal. The second one to start finds the lock held and refuses with a message naming the
holder's pid. The kernel drops the lock when its holder dies (kill -9 included), so a crash never
leaves a stale lock behind. Within one process the lock is shared (reference counted): reopening
an index in the same process is how tests simulate a restart.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from search_service.errors import SearchError

LOCK_NAME = "LOCK"

_held: dict[Path, list[int]] = {}  # directory -> [fd, users]
_guard = threading.Lock()


class DataDirLockedError(SearchError):
    """Another process serves this data directory."""


def acquire(data_dir: Path) -> Path:
    """Lock `data_dir` for this process; DataDirLockedError when another process holds it."""
    key = data_dir.resolve()
    with _guard:
        entry = _held.get(key)
        if entry is not None:
            entry[1] += 1
            return key
        path = key / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise DataDirLockedError(
                f"{key} is in use by another search process (pid {holder}); stop it, or give "
                "this one its own SEARCH_DATA_DIR"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _held[key] = [fd, 1]
        return key


def release(key: Path) -> None:
    with _guard:
        entry = _held.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            del _held[key]
            os.close(entry[0])  # closing the descriptor drops the flock
