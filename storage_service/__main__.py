"""`python -m storage_service`: run the storage service until SIGTERM."""

from __future__ import annotations

import logging

from service_runtime.logs import configure_logging
from service_runtime.serve import serve_until_signalled
from storage_service.config import StorageConfig
from storage_service.server import build_server

log = logging.getLogger("storage_service")


def main() -> None:
    config = StorageConfig.from_env()
    configure_logging("storage", config.log_level)
    server, port, health = build_server(f"{config.host}:{config.port}", config.max_workers)
    server.start()
    health.set_serving(True)
    log.info("serving", extra={"port": port, "data_dir": str(config.data_dir)})
    serve_until_signalled(server, health, grace_s=config.grace_s)


if __name__ == "__main__":
    main()
