"""`python -m storage_service`: open the store, replay its log, serve until SIGTERM."""

from __future__ import annotations

import logging

from service_runtime.logs import configure_logging
from service_runtime.serve import serve_until_signalled
from storage_service.columnstore.store import ColumnStore
from storage_service.config import StorageConfig
from storage_service.server import build_server

log = logging.getLogger("storage_service")


def main() -> None:
    config = StorageConfig.from_env()
    configure_logging("storage", config.log_level)
    store = ColumnStore.open(config.data_dir, config.store_options())
    server, port, health = build_server(
        store,
        f"{config.host}:{config.port}",
        max_workers=config.max_workers,
        max_image_bytes=config.max_image_bytes,
        max_image_pixels=config.max_image_pixels,
    )
    server.start()
    # SERVING only now: the log has been replayed and every acknowledged write is readable.
    health.set_serving(True)
    log.info("serving", extra={"port": port, "data_dir": str(config.data_dir)})
    serve_until_signalled(server, health, grace_s=config.grace_s, on_stop=store.close)


if __name__ == "__main__":
    main()
