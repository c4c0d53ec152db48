"""Search service configuration, read once from the environment at start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from search_service.engine import EngineParams
from search_service.vector_index import AnnParams
from service_runtime.ports import Ports
from service_runtime.settings import env_bool, env_float, env_int, env_log_level


@dataclass(frozen=True)
class SearchConfig:
    host: str = "127.0.0.1"
    port: int = 50053
    data_dir: Path = Path("data/search")
    vision_address: str = "127.0.0.1:50052"
    # Storage, whose change feed search follows (derived from STORAGE_PORT or
    # IMAGEREPO_BASE_PORT like every address, unless SEARCH_STORAGE_ADDR is set).
    storage_address: str = "127.0.0.1:50051"
    max_workers: int = 16
    grace_s: float = 5.0
    log_level: str = "INFO"
    # Past this many feature vectors similar-image search uses the approximate index.
    ann_threshold: int = 20_000
    # Images at or above this open_nsfw score are hidden unless a search asks for them.
    moderation_threshold: float = 0.8
    near_duplicate_threshold: float = 0.95
    semantic_min_similarity: float = 0.55
    # A snapshot of the whole index (with the feed seq it holds) after this many applied
    # changes, or this many seconds after the first unsaved one, whichever comes first.
    snapshot_every: int = 1000
    snapshot_interval_s: float = 60.0
    # After a background compaction of the index fails, the first wait before another may
    # start (doubled after each failure in a row up to an hour, reset by a success).
    compaction_backoff_s: float = 30.0
    # A compaction builds the fresh index beside the old one: it starts only if its estimated
    # memory and this much more fit in the memory available (MemAvailable, and the cgroup v2
    # limit when there is one), else it is postponed (GetStats compactions_postponed) and
    # tried again after the backoff above. compaction_memory_check False: no such check.
    compaction_memory_headroom_mb: int = 512
    compaction_memory_check: bool = True
    # Reconnect backoff while storage is unreachable: from the first to the largest pause.
    feed_retry_initial_s: float = 0.5
    feed_retry_max_s: float = 10.0
    # Changes per feed message; the most a message grows to while a backlog is replayed (full
    # messages double up to it, storage caps it at 4096; 0 = no growth, the default: larger
    # messages measured slower to take in); and how many changes of a backlog are gathered
    # into one index apply (a message that catches up is applied at once).
    feed_max_batch: int = 256
    feed_max_backlog_batch: int = 0
    feed_gather_changes: int = 4096
    # Deadline of each call to the vision service, and the pause between retries while it is
    # not reachable at start.
    vision_timeout_s: float = 10.0
    vision_retry_s: float = 5.0

    def __post_init__(self) -> None:
        if self.max_workers < 1:
            raise ValueError(f"SEARCH_MAX_WORKERS must be at least 1, not {self.max_workers}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> SearchConfig:
        return cls(
            host=env.get("SEARCH_HOST", cls.host),
            port=env_int(env, "SEARCH_PORT", cls.port),
            data_dir=Path(env.get("SEARCH_DATA_DIR", str(cls.data_dir))),
            vision_address=env.get("SEARCH_VISION_ADDR", cls.vision_address),
            storage_address=env.get("SEARCH_STORAGE_ADDR") or _storage_address(env),
            max_workers=env_int(env, "SEARCH_MAX_WORKERS", cls.max_workers),
            grace_s=env_float(env, "SEARCH_GRACE_S", cls.grace_s),
            log_level=env_log_level(env, cls.log_level),
            ann_threshold=env_int(env, "SEARCH_ANN_THRESHOLD", cls.ann_threshold),
            moderation_threshold=env_float(
                env, "SEARCH_MODERATION_THRESHOLD", cls.moderation_threshold
            ),
            near_duplicate_threshold=env_float(
                env, "SEARCH_NEAR_DUPLICATE_THRESHOLD", cls.near_duplicate_threshold
            ),
            semantic_min_similarity=env_float(
                env, "SEARCH_SEMANTIC_MIN_SIMILARITY", cls.semantic_min_similarity
            ),
            snapshot_every=env_int(env, "SEARCH_SNAPSHOT_EVERY", cls.snapshot_every),
            snapshot_interval_s=env_float(
                env, "SEARCH_SNAPSHOT_INTERVAL_S", cls.snapshot_interval_s
            ),
            compaction_backoff_s=env_float(
                env, "SEARCH_COMPACTION_BACKOFF_S", cls.compaction_backoff_s
            ),
            compaction_memory_headroom_mb=env_int(
                env, "SEARCH_COMPACTION_MEMORY_HEADROOM_MB", cls.compaction_memory_headroom_mb
            ),
            compaction_memory_check=env_bool(
                env, "SEARCH_COMPACTION_MEMORY_CHECK", cls.compaction_memory_check
            ),
            feed_retry_initial_s=env_float(
                env, "SEARCH_FEED_RETRY_INITIAL_S", cls.feed_retry_initial_s
            ),
            feed_retry_max_s=env_float(env, "SEARCH_FEED_RETRY_MAX_S", cls.feed_retry_max_s),
            feed_max_batch=env_int(env, "SEARCH_FEED_MAX_BATCH", cls.feed_max_batch),
            feed_max_backlog_batch=env_int(
                env, "SEARCH_FEED_MAX_BACKLOG_BATCH", cls.feed_max_backlog_batch
            ),
            feed_gather_changes=env_int(env, "SEARCH_FEED_GATHER_CHANGES", cls.feed_gather_changes),
            vision_timeout_s=env_float(env, "SEARCH_VISION_TIMEOUT_S", cls.vision_timeout_s),
            vision_retry_s=env_float(env, "SEARCH_VISION_RETRY_S", cls.vision_retry_s),
        )

    def compaction_memory_headroom_bytes(self) -> int | None:
        """The DurableIndex's compaction_memory_headroom_bytes: None when the check is off."""
        if not self.compaction_memory_check:
            return None
        return self.compaction_memory_headroom_mb * 2**20

    def engine_params(self) -> EngineParams:
        return EngineParams(
            ann=AnnParams(threshold=self.ann_threshold, build_in_background=True),
            moderation_threshold=self.moderation_threshold,
            near_duplicate_threshold=self.near_duplicate_threshold,
            semantic_min_similarity=self.semantic_min_similarity,
        )


def _storage_address(env: Mapping[str, str]) -> str:
    """Storage's address from the same ports `python -m stack` uses (only the settings that
    place storage are read: SEARCH_PORT=0, a free port for tests, is no concern here)."""
    names = ("IMAGEREPO_BASE_PORT", "STORAGE_PORT", "STORAGE_HOST")
    placing = {name: env[name] for name in names if name in env}
    return Ports.from_env(placing).dial("storage", placing)
