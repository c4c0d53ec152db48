"""Prometheus metrics of a process: the gRPC server interceptor's per-RPC counts, latencies and
status codes, and an HTTP endpoint for them (prometheus-client's server on its own port).

Each gRPC service serves `/metrics` on IMAGEREPO_METRICS_PORT (on IMAGEREPO_METRICS_HOST,
127.0.0.1 by default) when that is set; `python -m stack` sets it for every service from the
base port. The gateway serves `/metrics` on its own HTTP port.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from wsgiref.simple_server import WSGIServer

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from service_runtime.settings import env_int

log = logging.getLogger(__name__)

# Buckets from 1 ms (a cached lookup) to 60 s (OCR of a page on a busy CPU).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

GRPC_STARTED = Counter(
    "grpc_server_started_total",
    "RPCs started on the server.",
    ["grpc_service", "grpc_method"],
)
GRPC_HANDLED = Counter(
    "grpc_server_handled_total",
    "RPCs completed on the server, by status code.",
    ["grpc_service", "grpc_method", "grpc_code"],
)
GRPC_LATENCY = Histogram(
    "grpc_server_handling_seconds",
    "Time from the start of an RPC to its last response message.",
    ["grpc_service", "grpc_method"],
    buckets=LATENCY_BUCKETS,
)
HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests the gateway answered, by route and status.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time the gateway took to answer, by route (until the body started for streamed ones).",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
# Hooks for the services' own work (each observed where the work happens).
MODEL_BATCH_SIZE = Histogram(
    "vision_model_batch_size",
    "Inputs per model run of the vision micro-batcher, by model.",
    ["model"],
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32),
)
# Ready for the column store (log fsync, memtable flush); not observed yet.
STORAGE_FSYNC_SECONDS = Histogram(
    "storage_wal_fsync_seconds",
    "Time of one fsync of the storage write-ahead log.",
    buckets=LATENCY_BUCKETS,
)
STORAGE_FLUSH_SECONDS = Histogram(
    "storage_memtable_flush_seconds",
    "Time to write one frozen memtable to a segment.",
    buckets=LATENCY_BUCKETS,
)
PENDING_IMAGES = Gauge(
    "imagerepo_pending_images",
    "Images stored but not yet analysed and indexed (NaN when storage does not answer).",
)


class MetricsServer:
    """prometheus-client's HTTP server in a daemon thread; `port` is the one bound."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self.port = int(server.server_port)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def start_metrics_server(port: int, host: str = "127.0.0.1") -> MetricsServer:
    server, thread = start_http_server(port, addr=host)
    metrics = MetricsServer(server, thread)
    log.info("metrics served", extra={"url": f"http://{host}:{metrics.port}/metrics"})
    return metrics


def metrics_address_from_env(env: Mapping[str, str] = os.environ) -> tuple[str, int] | None:
    port = env_int(env, "IMAGEREPO_METRICS_PORT", -1)
    if port < 0:
        return None
    return env.get("IMAGEREPO_METRICS_HOST", "127.0.0.1"), port
