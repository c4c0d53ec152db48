"""`python -m vision_service`: run the vision service until SIGTERM."""

from __future__ import annotations

import logging

from service_runtime.logs import configure_logging
from service_runtime.serve import serve_until_signalled
from vision_service.config import VisionConfig
from vision_service.server import build_server

log = logging.getLogger("vision_service")


def main() -> None:
    config = VisionConfig.from_env()
    configure_logging("vision", config.log_level)
    server, port, health = build_server(f"{config.host}:{config.port}", config.max_workers)
    server.start()
    health.set_serving(True)
    log.info("serving", extra={"port": port, "models_dir": str(config.models_dir)})
    serve_until_signalled(server, health, grace_s=config.grace_s)


if __name__ == "__main__":
    main()
