"""The feed consumer's figures on the service's /metrics (registered by `__main__` only, so a
test process that imports other consumers' metrics never sees the same name twice)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.registry import Collector

from search_service.feed_consumer import FeedConsumer


class FeedCollector(Collector):
    def __init__(self, feed: FeedConsumer) -> None:
        self._feed = feed

    def collect(self) -> Iterator[GaugeMetricFamily]:
        status = self._feed.status()
        lag = GaugeMetricFamily(
            "imagerepo_consumer_lag_seqs",
            "Sequence numbers of storage's change feed the consumer has not applied yet.",
            labels=["consumer"],
        )
        lag.add_metric(["search"], status.lag_seqs)
        yield lag
        yield GaugeMetricFamily(
            "imagerepo_search_applied_seq",
            "The last change-feed seq applied to the search index.",
            value=status.applied_seq,
        )
        yield GaugeMetricFamily(
            "imagerepo_search_replay_progress",
            "Fraction of the current replay or resync done (1 when following live).",
            value=status.replay_progress,
        )
        yield GaugeMetricFamily(
            "imagerepo_search_feed_damaged_changes",
            "Changes storage delivered marked damaged (unreadable rows), applied as removals "
            "since the start.",
            value=status.damaged_changes,
        )
        yield GaugeMetricFamily(
            "imagerepo_search_following",
            "1 while connected to storage's change feed.",
            value=1.0 if status.connected else 0.0,
        )


def register(feed: FeedConsumer) -> None:
    REGISTRY.register(FeedCollector(feed))
