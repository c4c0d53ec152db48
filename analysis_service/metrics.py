"""The worker's Prometheus metrics, served on its metrics port (/metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

IMAGES = Counter(
    "imagerepo_analysis_images_total",
    "Images the worker finished, by outcome: ready, failed (for good), retry (left pending), "
    "lease_lost (another worker had it), deleted, abandoned (given back on shutdown).",
    ["outcome"],
)
FAILURES = Counter(
    "imagerepo_analysis_failures_total",
    "Failed calls while analysing, by service, kind (permanent, transient, gone) and code.",
    ["service", "kind", "code"],
)
BATCH_SIZE = Histogram(
    "imagerepo_analysis_batch_size",
    "Images per claimed batch.",
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32, 64),
)
BATCH_SECONDS = Histogram(
    "imagerepo_analysis_batch_seconds",
    "Time from claim to the last CompleteAnalysis of a batch.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
LAG_SEQS = Gauge(
    "imagerepo_consumer_lag_seqs",
    "Sequence numbers of storage's change feed the consumer has not seen yet.",
    ["consumer"],
)
PENDING = Gauge(
    "imagerepo_analysis_pending_images",
    "Images PENDING in storage's analysis queue (from GetStats).",
)
OLDEST_PENDING_S = Gauge(
    "imagerepo_analysis_oldest_pending_age_seconds",
    "How long the oldest PENDING image has waited (from GetStats).",
)
CLAIMS_HELD = Gauge(
    "imagerepo_analysis_claims_held",
    "1 while the worker claims nothing because vision has answered nothing for "
    "ANALYSIS_OUTAGE_HOLD_S (it probes vision instead), else 0.",
)
