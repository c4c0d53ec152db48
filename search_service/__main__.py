"""`python -m search_service`: run the search service until SIGTERM."""

from __future__ import annotations

import logging

from search_service.config import SearchConfig
from search_service.server import build_server
from service_runtime.logs import configure_logging
from service_runtime.serve import serve_until_signalled

log = logging.getLogger("search_service")


def main() -> None:
    config = SearchConfig.from_env()
    configure_logging("search", config.log_level)
    server, port, health = build_server(f"{config.host}:{config.port}", config.max_workers)
    server.start()
    health.set_serving(True)
    log.info("serving", extra={"port": port, "data_dir": str(config.data_dir)})
    serve_until_signalled(server, health, grace_s=config.grace_s)


if __name__ == "__main__":
    main()
