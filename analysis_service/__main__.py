"""`python -m analysis_service`: analyse pending images until SIGTERM.

Connects to storage and vision, serves health on ANALYSIS_PORT (SERVING while the worker
runs) and metrics on the metrics port, claims and analyses batches, and on SIGTERM finishes
or gives back the batches in flight within ANALYSIS_GRACE_S.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys
import threading

from analysis_service.clients import StorageClient, VisionClient
from analysis_service.config import AnalysisConfig, AnalysisConfigError
from analysis_service.server import build_server
from analysis_service.worker import Worker
from service_runtime.channels import open_channel
from service_runtime.logs import configure_logging
from service_runtime.security import SecurityConfigError, TransportSecurity

log = logging.getLogger("analysis_service")
# After SIGTERM: the grace period for the batches in flight, then this long for the rest.
EXIT_MARGIN_S = 15.0


def main() -> None:
    try:
        config = AnalysisConfig.from_env()
        security = TransportSecurity.from_env()
    except (AnalysisConfigError, SecurityConfigError, ValueError) as exc:
        print(f"analysis: not started: {exc}", file=sys.stderr)
        sys.exit(2)
    configure_logging("analysis", config.log_level)
    # Handlers first: a SIGTERM that comes as soon as health says SERVING is a graceful stop.
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("signal received, shutting down", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    storage_channel = open_channel(config.storage_address, security=security)
    vision_channel = open_channel(config.vision_address, security=security)
    metrics_address = (
        (config.metrics_host, config.metrics_port) if config.metrics_port is not None else None
    )
    server, port, health = build_server(f"{config.host}:{config.port}", metrics_address)
    server.start()
    worker = Worker(
        config,
        StorageClient(storage_channel, config.rpc_timeout_s),
        VisionClient(vision_channel, config.call_timeout_s, config.top_k),
    )
    worker.start()
    health.set_serving(True)
    log.info(
        "serving",
        extra={
            "port": port,
            "worker_id": config.worker_id,
            "storage": config.storage_address,
            "vision": config.vision_address,
        },
    )

    stop.wait()
    # A hard bound on shutdown, whatever hangs: say where, then go.
    bound_s = config.grace_s + EXIT_MARGIN_S
    watchdog = threading.Timer(bound_s, _exit_late, args=(bound_s,))
    watchdog.daemon = True
    watchdog.start()
    # Claim nothing more at once; finish (or give back) the batches in flight; then go.
    health.shutdown()
    worker.stop()
    server.stop(1.0).wait()
    storage_channel.close()
    vision_channel.close()
    log.info("stopped")


def _exit_late(bound_s: float) -> None:  # pragma: no cover - only when shutdown hangs
    log.error("shutdown took longer than %.0f s; exiting now (threads dumped to stderr)", bound_s)
    faulthandler.dump_traceback(all_threads=True)
    os._exit(1)


if __name__ == "__main__":
    main()
