"""`python -m gateway`: serve the gallery and REST API with waitress until SIGTERM."""

from __future__ import annotations

import logging
import signal
import sys

from waitress.server import create_server

from gateway.app import create_app
from gateway.config import GatewayConfig
from service_runtime.grpc_server import why_not_listening
from service_runtime.logs import configure_logging
from service_runtime.settings import load_or_exit, not_started

log = logging.getLogger("gateway")


def main() -> None:
    config = load_or_exit("gateway", GatewayConfig.from_env)
    configure_logging("gateway", config.log_level)
    app = create_app(config)
    # SystemExit unwinds waitress's loop, closing its sockets, on SIGTERM as on Ctrl-C.
    signal.signal(signal.SIGTERM, lambda _s, _f: sys.exit(0))
    try:
        server = create_server(app, host=config.host, port=config.port, threads=config.threads)
    except OSError:  # the port is taken, the host is not this machine's, ...
        not_started(
            "gateway",
            f"cannot listen on {config.host}:{config.port}: "
            f"{why_not_listening(config.host, config.port)} (GATEWAY_HOST, GATEWAY_PORT choose it)",
        )
    log.info("serving", extra={"url": f"http://{config.host}:{config.port}/"})
    server.run()


if __name__ == "__main__":
    main()
