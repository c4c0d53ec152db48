"""Analysis worker configuration, read once from the environment at start."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from service_runtime.settings import env_float, env_int, env_log_level

# Labels asked of vision per image: search indexes every one above its probability floor and
# adds their WordNet hypernyms (the gateway's ingest asked for the same 20).
ANALYSIS_TOP_K = 20


def default_worker_id() -> str:
    """host-pid: unique among the workers of a deployment, and says where a lease came from."""
    return f"{socket.gethostname()}-{os.getpid()}"


class AnalysisConfigError(ValueError):
    """A setting is out of range or inconsistent with another."""


@dataclass(frozen=True)
class AnalysisConfig:
    # The worker's own gRPC port serves only health (probes) and reflection.
    host: str = "127.0.0.1"
    port: int = 50054
    # Storage, and vision: one address, several comma-separated ones, or a dns:/// name
    # (calls are spread over the replicas).
    storage_address: str = "127.0.0.1:50051"
    vision_address: str = "127.0.0.1:50052"
    worker_id: str = field(default_factory=default_worker_id)
    # Images per claim (one vision batch), and batches in flight at once: two keep vision
    # busy while the other batch's bytes are read and its results written.
    batch_size: int = 8
    batches_in_flight: int = 2
    # How long a claim is ours: long enough for a batch, so leases are never renewed.
    lease_ms: int = 60_000
    # A claim every this many seconds even when the feed says nothing.
    poll_interval_s: float = 3.0
    # GetStats (pending count, head seq) for the lag metrics every this many seconds.
    stats_interval_s: float = 5.0
    rpc_timeout_s: float = 10.0
    # At a start, storage not answering yet is logged at INFO ("waiting for storage") for
    # this long; a WARNING only if it still has not answered after it (storage_reach.py).
    storage_wait_s: float = 10.0
    # Once vision has answered nothing for this long, claim nothing and probe it instead:
    # every claim through an outage ends the same way (given back: it does not count against
    # the image in a storage that knows AnalysisFailure.outage, but an older one counts it).
    outage_hold_s: float = 10.0
    analyze_timeout_s: float = 30.0
    top_k: int = ANALYSIS_TOP_K
    # On SIGTERM: finish the batches in flight for this long, then give their images back.
    grace_s: float = 10.0
    log_level: str = "INFO"
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.batches_in_flight < 1:
            raise AnalysisConfigError("ANALYSIS_BATCH and ANALYSIS_BATCHES_IN_FLIGHT must be >= 1")
        if self.lease_ms < 1000:
            raise AnalysisConfigError(f"ANALYSIS_LEASE_MS must be >= 1000, not {self.lease_ms}")
        if self.outage_hold_s < 0:
            raise AnalysisConfigError(
                f"ANALYSIS_OUTAGE_HOLD_S must be >= 0, not {self.outage_hold_s}"
            )
        if self.storage_wait_s < 0:
            raise AnalysisConfigError(
                f"ANALYSIS_STORAGE_WAIT_S must be >= 0, not {self.storage_wait_s}"
            )
        if not self.worker_id.strip():
            raise AnalysisConfigError("ANALYSIS_WORKER_ID must not be empty")

    @property
    def call_timeout_s(self) -> float:
        """Deadline of one vision call: within the lease, so a slow call cannot outlive it."""
        return max(1.0, min(self.analyze_timeout_s, self.lease_ms / 1000 * 0.6))

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> AnalysisConfig:
        # The worker's own port, else the one all services share; unset: no metrics endpoint.
        metrics_name = next(
            (
                n
                for n in ("ANALYSIS_METRICS_PORT", "IMAGEREPO_METRICS_PORT")
                if env.get(n, "").strip()
            ),
            "",
        )
        return cls(
            host=env.get("ANALYSIS_HOST", cls.host),
            port=env_int(env, "ANALYSIS_PORT", cls.port),
            storage_address=env.get("ANALYSIS_STORAGE_ADDR", cls.storage_address),
            vision_address=env.get("ANALYSIS_VISION_ADDR", cls.vision_address),
            worker_id=env.get("ANALYSIS_WORKER_ID", "").strip() or default_worker_id(),
            batch_size=env_int(env, "ANALYSIS_BATCH", cls.batch_size),
            batches_in_flight=env_int(env, "ANALYSIS_BATCHES_IN_FLIGHT", cls.batches_in_flight),
            lease_ms=env_int(env, "ANALYSIS_LEASE_MS", cls.lease_ms),
            poll_interval_s=env_float(env, "ANALYSIS_POLL_INTERVAL_S", cls.poll_interval_s),
            stats_interval_s=env_float(env, "ANALYSIS_STATS_INTERVAL_S", cls.stats_interval_s),
            rpc_timeout_s=env_float(env, "ANALYSIS_RPC_TIMEOUT_S", cls.rpc_timeout_s),
            storage_wait_s=env_float(env, "ANALYSIS_STORAGE_WAIT_S", cls.storage_wait_s),
            outage_hold_s=env_float(env, "ANALYSIS_OUTAGE_HOLD_S", cls.outage_hold_s),
            analyze_timeout_s=env_float(env, "ANALYSIS_ANALYZE_TIMEOUT_S", cls.analyze_timeout_s),
            top_k=env_int(env, "ANALYSIS_TOP_K", cls.top_k),
            grace_s=env_float(env, "ANALYSIS_GRACE_S", cls.grace_s),
            log_level=env_log_level(env, cls.log_level),
            metrics_host=env.get("IMAGEREPO_METRICS_HOST", cls.metrics_host),
            metrics_port=env_int(env, metrics_name, 0) if metrics_name else None,
        )
