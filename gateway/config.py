"""Gateway configuration, read once from the environment at start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    storage_address: str = "127.0.0.1:50051"
    vision_address: str = "127.0.0.1:50052"
    search_address: str = "127.0.0.1:50053"
    # Writes need one of these as a Bearer token when any is set.
    api_keys: frozenset[str] = field(default_factory=frozenset)
    rpc_timeout_s: float = 10.0
    max_upload_bytes: int = 50 * 1024 * 1024
    threads: int = 8
    log_level: str = "INFO"
    # Vision runs models: its calls get their own, longer deadline.
    analyze_timeout_s: float = 30.0
    # Signs sessions and CSRF tokens; empty means a random key per process.
    secret_key: str = ""
    # How often the reconciler looks for images still pending; 0 turns it off.
    reconcile_interval_s: float = 5.0
    # Failed analysis attempts (other than "service unavailable") before an image is FAILED.
    max_analysis_attempts: int = 5
    # Images whose moderation score is above this are blurred until the viewer reveals them.
    moderation_threshold: float = 0.8
    gallery_page_size: int = 24
    # The mosaic draws its tiles from at most this many of the newest images.
    mosaic_max_images: int = 500
    # The image and "find similar" pages leave out hits less similar than this (cosine): unrelated
    # photos score about 0.1-0.3 on the classifier's features, copies and crops above 0.8.
    similar_min_similarity: float = 0.35
    # Served originals keep their GPS position only when this is set (GATEWAY_KEEP_GPS=1).
    keep_gps: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> GatewayConfig:
        keys = frozenset(
            k.strip() for k in env.get("IMAGEREPO_API_KEYS", "").split(",") if k.strip()
        )
        return cls(
            host=env.get("GATEWAY_HOST", cls.host),
            port=int(env.get("GATEWAY_PORT", cls.port)),
            storage_address=env.get("GATEWAY_STORAGE_ADDR", cls.storage_address),
            vision_address=env.get("GATEWAY_VISION_ADDR", cls.vision_address),
            search_address=env.get("GATEWAY_SEARCH_ADDR", cls.search_address),
            api_keys=keys,
            rpc_timeout_s=float(env.get("GATEWAY_RPC_TIMEOUT_S", cls.rpc_timeout_s)),
            max_upload_bytes=int(env.get("GATEWAY_MAX_UPLOAD_BYTES", cls.max_upload_bytes)),
            threads=int(env.get("GATEWAY_THREADS", cls.threads)),
            log_level=env.get("LOG_LEVEL", cls.log_level),
            analyze_timeout_s=float(env.get("GATEWAY_ANALYZE_TIMEOUT_S", cls.analyze_timeout_s)),
            secret_key=env.get("GATEWAY_SECRET_KEY", cls.secret_key),
            reconcile_interval_s=float(
                env.get("GATEWAY_RECONCILE_INTERVAL_S", cls.reconcile_interval_s)
            ),
            max_analysis_attempts=int(
                env.get("GATEWAY_MAX_ANALYSIS_ATTEMPTS", cls.max_analysis_attempts)
            ),
            moderation_threshold=float(
                env.get("GATEWAY_MODERATION_THRESHOLD", cls.moderation_threshold)
            ),
            gallery_page_size=int(env.get("GATEWAY_PAGE_SIZE", cls.gallery_page_size)),
            mosaic_max_images=int(env.get("GATEWAY_MOSAIC_MAX_IMAGES", cls.mosaic_max_images)),
            similar_min_similarity=float(
                env.get("GATEWAY_SIMILAR_MIN_SIMILARITY", cls.similar_min_similarity)
            ),
            keep_gps=env.get("GATEWAY_KEEP_GPS", "").lower() in ("1", "true", "yes"),
        )
