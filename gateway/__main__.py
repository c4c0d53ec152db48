"""`python -m gateway`: serve the gallery and REST API with waitress until SIGTERM."""

from __future__ import annotations

import logging
import signal
import sys

from waitress import serve

from gateway.app import create_app
from gateway.config import GatewayConfig
from service_runtime.logs import configure_logging

log = logging.getLogger("gateway")


def main() -> None:
    config = GatewayConfig.from_env()
    configure_logging("gateway", config.log_level)
    app = create_app(config)
    log.info("serving", extra={"url": f"http://{config.host}:{config.port}/"})
    # SystemExit unwinds waitress's loop, closing its sockets, on SIGTERM as on Ctrl-C.
    signal.signal(signal.SIGTERM, lambda _s, _f: sys.exit(0))
    serve(app, host=config.host, port=config.port, threads=config.threads, _quiet=True)


if __name__ == "__main__":
    main()
