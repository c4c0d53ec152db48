"""`python -m storage_service`: open the store, replay its log, serve until SIGTERM."""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import logging
import sys
from typing import NoReturn

from service_runtime.grpc_server import ListenError
from service_runtime.logs import configure_logging
from service_runtime.metrics import STORAGE_FLUSH_SECONDS, STORAGE_FSYNC_SECONDS
from service_runtime.security import SecurityConfigError
from service_runtime.serve import serve_until_signalled
from service_runtime.settings import SettingError, load_or_exit, not_started
from storage_service.columnstore.errors import DataDirLockedError, StoreError
from storage_service.columnstore.store import ColumnStore
from storage_service.config import StorageConfig
from storage_service.server import build_server

log = logging.getLogger("storage_service")


# glibc's mallopt parameter: allocations at least this large are mmapped, and unmapped on free.
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1024 * 1024


def return_large_buffers_to_the_os() -> None:
    """Make glibc map every buffer of 1 MiB or more on its own and unmap it when freed.

    By default glibc raises that threshold to the size of the largest buffer freed so far (up
    to 32 MiB), after which a decoded image's 16 MiB blocks come from the heap and stay
    resident once freed: four large uploads in a row then cost as much memory as four at
    once. Setting the threshold explicitly turns that adjustment off. No-op elsewhere.
    """
    name = ctypes.util.find_library("c")
    if not name or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):
        return


def _refuse_to_start(message: str) -> NoReturn:
    not_started("storage", message)


def main() -> None:
    config = load_or_exit("storage", StorageConfig.from_env)
    configure_logging("storage", config.log_level)
    return_large_buffers_to_the_os()
    try:
        options = dataclasses.replace(
            config.store_options(),
            on_fsync=STORAGE_FSYNC_SECONDS.observe,
            on_flush=STORAGE_FLUSH_SECONDS.observe,
        )
        store = ColumnStore.open(config.data_dir, options, fs=config.file_system())
    except DataDirLockedError as e:
        # Another storage process serves this directory: two would destroy each other's data.
        _refuse_to_start(f"{e} (STORAGE_DATA_DIR chooses the directory)")
    except (StoreError, OSError, ValueError) as e:  # ValueError: a bad setting
        # A store that cannot be opened safely (a damaged manifest, an unreadable directory)
        # says what is wrong in one line; nothing is served and nothing is changed.
        _refuse_to_start(f"cannot open {config.data_dir}: {e}")
    try:
        server, port, health = build_server(
            store,
            f"{config.host}:{config.port}",
            max_workers=config.max_workers,
            max_image_bytes=config.max_image_bytes,
            max_image_pixels=config.max_image_pixels,
            decode_memory_bytes=config.decode_memory_bytes,
            decode_wait_s=config.decode_wait_s,
        )
        server.start()
    except ListenError as e:
        store.close()
        _refuse_to_start(e.naming("STORAGE_HOST, STORAGE_PORT"))
    except (SettingError, SecurityConfigError) as e:  # IMAGEREPO_METRICS_PORT, TLS files
        store.close()
        _refuse_to_start(str(e))
    # SERVING only now: the log has been replayed and every acknowledged write is readable.
    health.set_serving(True)
    log.info("serving", extra={"port": port, "data_dir": str(config.data_dir)})
    serve_until_signalled(server, health, grace_s=config.grace_s, on_stop=store.close)


if __name__ == "__main__":
    main()
