"""`python -m search_service`: load the index, follow storage's change feed, link to vision,
warm up, serve until SIGTERM."""

from __future__ import annotations

import logging
import threading

from search_service import feed_metrics
from search_service.config import SearchConfig
from search_service.dir_lock import DataDirLockedError
from search_service.durable_index import DurableIndex
from search_service.feed_consumer import FeedConsumer
from search_service.semantic_link import connect_semantic, keep_trying
from search_service.server import build_server
from search_service.storage_feed import StorageFeed
from search_service.vision_client import VisionClient
from service_runtime.grpc_server import ListenError
from service_runtime.logs import configure_logging
from service_runtime.security import SecurityConfigError
from service_runtime.serve import serve_until_signalled
from service_runtime.settings import SettingError, load_or_exit, not_started

log = logging.getLogger("search_service")


def main() -> None:
    config = load_or_exit("search", SearchConfig.from_env)
    configure_logging("search", config.log_level)
    try:
        index = DurableIndex.open(
            config.data_dir,
            config.engine_params(),
            config.snapshot_every,
            config.snapshot_interval_s,
            config.compaction_backoff_s,
            compaction_memory_headroom_bytes=config.compaction_memory_headroom_bytes(),
        )
    except DataDirLockedError as exc:
        log.error("search not started: %s", exc)
        raise SystemExit(f"search not started: {exc}") from None
    except OSError as exc:
        # A directory that cannot be made or written (read-only, a file in the way, no
        # permission): one line naming it and the setting, not a traceback on every restart.
        not_started(
            "search",
            f"cannot open {config.data_dir}: {exc} (SEARCH_DATA_DIR chooses the directory)",
        )
    source = StorageFeed(
        config.storage_address,
        max_batch=config.feed_max_batch,
        max_backlog_batch=config.feed_max_backlog_batch,
    )
    feed = FeedConsumer(
        index,
        source,
        config.feed_retry_initial_s,
        config.feed_retry_max_s,
        max_gather=config.feed_gather_changes,
    )
    feed_metrics.register(feed)
    try:
        server, port, health = build_server(
            f"{config.host}:{config.port}", config.max_workers, index, feed
        )
        # Started NOT_SERVING: probes wait while semantic expansion links up and caches warm.
        server.start()
    except ListenError as exc:
        index.close()
        not_started("search", exc.naming("SEARCH_HOST, SEARCH_PORT"))
    except (SettingError, SecurityConfigError) as exc:  # IMAGEREPO_METRICS_PORT, TLS files
        index.close()
        not_started("search", str(exc))
    client = VisionClient(config.vision_address, config.vision_timeout_s)
    stop_retrying = threading.Event()
    if not connect_semantic(index, client, config.data_dir):
        keep_trying(index, client, config.data_dir, config.vision_retry_s, stop_retrying)
    index.warm()
    # Serving starts at once: queries are answered from the index while the feed catches up
    # (GetStats shows the lag and the replay's progress).
    feed.start()
    health.set_serving(True)
    log.info(
        "serving",
        extra={
            "port": port,
            "data_dir": str(config.data_dir),
            "documents": len(index),
            "applied_seq": index.applied_seq,
            "storage": config.storage_address,
        },
    )

    def on_stop() -> None:
        stop_retrying.set()
        feed.stop()
        source.close()
        index.close()
        client.close()

    serve_until_signalled(server, health, grace_s=config.grace_s, on_stop=on_stop)


if __name__ == "__main__":
    main()
