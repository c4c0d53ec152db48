"""Run a gRPC server until SIGTERM or SIGINT, then stop it gracefully."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

import grpc

from service_runtime.health import ServiceHealth

log = logging.getLogger(__name__)


def serve_until_signalled(
    server: grpc.Server,
    health: ServiceHealth,
    *,
    grace_s: float,
    on_stop: Callable[[], None] | None = None,
) -> None:
    """Block until SIGTERM/SIGINT; then refuse new work, drain in-flight calls, run on_stop."""
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("signal received, shutting down", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    stop.wait()
    health.shutdown()
    server.stop(grace_s).wait()
    if on_stop is not None:
        on_stop()
    log.info("stopped")
