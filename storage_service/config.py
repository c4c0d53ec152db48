"""Storage service configuration, read once from the environment at start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from service_runtime.settings import env_float, env_int, env_log_level
from storage_service.columnstore import policy
from storage_service.columnstore.fs import FileSystem
from storage_service.columnstore.store import StoreOptions
from storage_service.servicer import DECODE_WAIT_S


@dataclass(frozen=True)
class StorageConfig:
    host: str = "127.0.0.1"
    port: int = 50051
    data_dir: Path = Path("data/storage")
    max_image_bytes: int = policy.DEFAULT_MAX_IMAGE_BYTES
    max_image_pixels: int = policy.DEFAULT_MAX_PIXELS
    # Memory all concurrent upload decodes may use together; sets the per-mode pixel limit.
    decode_memory_bytes: int = policy.DEFAULT_DECODE_MEMORY_BYTES
    # How long a decode waits for that memory before the call answers BUSY (UNAVAILABLE);
    # shorter than the gateway's deadline (see servicer.DECODE_WAIT_S).
    decode_wait_s: float = DECODE_WAIT_S
    memtable_bytes: int = StoreOptions.memtable_bytes
    compact_min_segments: int = StoreOptions.compact_min_segments
    # The change feed keeps at least this many recent seqs (WatchChanges from older ones is
    # COMPACTED).
    feed_retention_seqs: int = StoreOptions.feed_retention_seqs
    # Images stay in the trash this long (restorable), then are deleted for good.
    trash_retention_days: float = StoreOptions.trash_retention_ms / 86_400_000
    max_workers: int = 16
    grace_s: float = 5.0
    log_level: str = "INFO"
    # Sealed segments in an S3-compatible store (s3://bucket/prefix); empty: the local disk.
    segments_url: str = ""
    s3_endpoint: str = ""
    segment_cache_bytes: int = 1 << 30
    segment_cache_dir: Path | None = None
    # How new feature vectors are written: int8 (default), float16 or float32; all are read.
    vector_encoding: str = StoreOptions.vector_encoding
    # An image claimed for analysis this many times without a result is FAILED at its next
    # claim; claims a worker gave back as an outage (a service away) do not count.
    analysis_max_attempts: int = StoreOptions.analysis_max_attempts

    def __post_init__(self) -> None:
        # Half the threads at most serve change-feed followers (build_server): with one, a
        # follower would hold it and every other call would wait behind the stream forever.
        if self.max_workers < 2:
            raise ValueError(
                f"STORAGE_MAX_WORKERS must be at least 2, not {self.max_workers} (one thread "
                "serves a change-feed follower, the others every other call)"
            )
        if self.analysis_max_attempts < 1:
            raise ValueError(
                "STORAGE_ANALYSIS_MAX_ATTEMPTS must be at least 1, "
                f"not {self.analysis_max_attempts}"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> StorageConfig:
        return cls(
            host=env.get("STORAGE_HOST", cls.host),
            port=env_int(env, "STORAGE_PORT", cls.port),
            data_dir=Path(env.get("STORAGE_DATA_DIR", str(cls.data_dir))),
            max_image_bytes=env_int(env, "STORAGE_MAX_IMAGE_BYTES", cls.max_image_bytes),
            max_image_pixels=env_int(env, "STORAGE_MAX_IMAGE_PIXELS", cls.max_image_pixels),
            decode_memory_bytes=env_int(
                env, "STORAGE_DECODE_MEMORY_BYTES", cls.decode_memory_bytes
            ),
            decode_wait_s=env_float(env, "STORAGE_DECODE_WAIT_S", cls.decode_wait_s),
            memtable_bytes=env_int(env, "STORAGE_MEMTABLE_BYTES", cls.memtable_bytes),
            compact_min_segments=env_int(
                env, "STORAGE_COMPACT_MIN_SEGMENTS", cls.compact_min_segments
            ),
            feed_retention_seqs=env_int(
                env, "STORAGE_FEED_RETENTION_SEQS", cls.feed_retention_seqs
            ),
            trash_retention_days=env_float(
                env, "STORAGE_TRASH_RETENTION_DAYS", cls.trash_retention_days
            ),
            max_workers=env_int(env, "STORAGE_MAX_WORKERS", cls.max_workers),
            grace_s=env_float(env, "STORAGE_GRACE_S", cls.grace_s),
            log_level=env_log_level(env, cls.log_level),
            segments_url=env.get("STORAGE_SEGMENTS_URL", ""),
            s3_endpoint=env.get("STORAGE_S3_ENDPOINT", ""),
            segment_cache_bytes=env_int(
                env, "STORAGE_SEGMENT_CACHE_BYTES", cls.segment_cache_bytes
            ),
            segment_cache_dir=Path(env["STORAGE_SEGMENT_CACHE_DIR"])
            if env.get("STORAGE_SEGMENT_CACHE_DIR")
            else None,
            vector_encoding=env.get("STORAGE_VECTOR_ENCODING", cls.vector_encoding).strip().lower(),
            analysis_max_attempts=env_int(
                env, "STORAGE_ANALYSIS_MAX_ATTEMPTS", cls.analysis_max_attempts
            ),
        )

    def file_system(self, env: Mapping[str, str] = os.environ) -> FileSystem | None:
        """The store's file system: segments in the object store when STORAGE_SEGMENTS_URL
        is set (credentials: see object_store.s3_client), else None (the local disk)."""
        if not self.segments_url:
            return None
        from storage_service.columnstore.object_store import object_segment_fs

        return object_segment_fs(
            self.data_dir,
            self.segments_url,
            endpoint=self.s3_endpoint or None,
            cache_bytes=self.segment_cache_bytes,
            cache_dir=self.segment_cache_dir,
            env=env,
        )

    def store_options(self) -> StoreOptions:
        return StoreOptions(
            memtable_bytes=self.memtable_bytes,
            compact_min_segments=self.compact_min_segments,
            feed_retention_seqs=self.feed_retention_seqs,
            trash_retention_ms=int(self.trash_retention_days * 86_400_000),
            vector_encoding=self.vector_encoding,
            analysis_max_attempts=self.analysis_max_attempts,
        )
