"""Gateway configuration, read once from the environment at start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from service_runtime.ports import Ports
from service_runtime.security import TransportSecurity
from service_runtime.settings import env_bool, env_float, env_int, env_log_level


@dataclass(frozen=True)
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    # Each address may list replicas ("a:1,b:2") or be a dns:/// name: calls spread over them
    # with round_robin (service_runtime.channels).
    storage_address: str = "127.0.0.1:50051"
    vision_address: str = "127.0.0.1:50052"
    search_address: str = "127.0.0.1:50053"
    # Writes need one of these as a Bearer token when any is set ("owner:secret" ties the
    # images a key uploads to that owner; only the owner or an admin key changes them).
    api_keys: frozenset[str] = field(default_factory=frozenset)
    # Keys that may change every owner's images (and clear every duplicate group); valid keys too.
    admin_keys: frozenset[str] = field(default_factory=frozenset)
    # Reads need a key or a login too. None: on exactly when keys are configured.
    private: bool | None = None
    # Failed logins (and wrong API keys) one client may try per minute before a 429.
    login_attempts_per_minute: int = 5
    rpc_timeout_s: float = 10.0
    max_upload_bytes: int = 50 * 1024 * 1024
    threads: int = 8
    log_level: str = "INFO"
    # Vision runs models: its calls get their own, longer deadline.
    analyze_timeout_s: float = 30.0
    # Signs sessions and CSRF tokens. Empty: read from secret_key_file, else created once in
    # data_dir (so logins survive a restart), else (neither set, as in tests) random.
    secret_key: str = ""
    secret_key_file: Path | None = None
    data_dir: Path | None = None
    # TLS and the service token for the calls to the services (service_runtime.security).
    security: TransportSecurity = field(default_factory=TransportSecurity)
    # How long an upload waits for its analysis (done by the analysis workers) before
    # answering "being analysed"; 0 answers as soon as the image is stored.
    analysis_wait_s: float = 3.0
    # Images whose moderation score is above this are blurred until the viewer reveals them.
    moderation_threshold: float = 0.8
    gallery_page_size: int = 24
    # Shown on the trash page; storage enforces it (the same STORAGE_TRASH_RETENTION_DAYS).
    trash_retention_days: float = 30.0
    # The mosaic draws its tiles from at most this many of the newest images.
    mosaic_max_images: int = 500
    # The image and "find similar" pages leave out hits less similar than this (cosine): unrelated
    # photos score about 0.1-0.3 on the classifier's features, copies and crops above 0.8.
    similar_min_similarity: float = 0.35
    # Served originals keep their GPS position only when this is set (GATEWAY_KEEP_GPS=1).
    keep_gps: bool = False
    # A thumbnail storage could not make yet (its decode memory busy with other large images)
    # answers 503 with this Retry-After, in seconds; the pages ask again after it.
    thumbnail_retry_after_s: int = 2

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> GatewayConfig:
        admin_keys = _keys(env, "IMAGEREPO_ADMIN_KEYS")
        keys = _keys(env, "IMAGEREPO_API_KEYS") | admin_keys
        # Unset: private when keys are set; a word that is no switch ("ture") is refused, never
        # read as off: a typo must not make the gallery public.
        private = (
            env_bool(env, "IMAGEREPO_PRIVATE", False)
            if env.get("IMAGEREPO_PRIVATE", "").strip()
            else None
        )
        # Every address from the same ports `python -m stack` starts the services on.
        ports = Ports.from_env(env)
        addresses = ports.addresses(env)
        secret_file = env.get("GATEWAY_SECRET_KEY_FILE", "").strip()
        data_dir = env.get("GATEWAY_DATA_DIR", "").strip() or str(
            Path(env.get("IMAGEREPO_DATA_DIR", "data")) / "gateway"
        )
        return cls(
            host=env.get("GATEWAY_HOST", cls.host),
            port=ports.ports["gateway"],
            storage_address=addresses["GATEWAY_STORAGE_ADDR"],
            vision_address=addresses["GATEWAY_VISION_ADDR"],
            search_address=addresses["GATEWAY_SEARCH_ADDR"],
            api_keys=keys,
            admin_keys=admin_keys,
            private=private,
            login_attempts_per_minute=env_int(
                env, "GATEWAY_LOGIN_ATTEMPTS_PER_MINUTE", cls.login_attempts_per_minute
            ),
            secret_key_file=Path(secret_file) if secret_file else None,
            data_dir=Path(data_dir),
            security=TransportSecurity.from_env(env),
            rpc_timeout_s=env_float(env, "GATEWAY_RPC_TIMEOUT_S", cls.rpc_timeout_s),
            max_upload_bytes=env_int(env, "GATEWAY_MAX_UPLOAD_BYTES", cls.max_upload_bytes),
            threads=env_int(env, "GATEWAY_THREADS", cls.threads),
            log_level=env_log_level(env, cls.log_level),
            analyze_timeout_s=env_float(env, "GATEWAY_ANALYZE_TIMEOUT_S", cls.analyze_timeout_s),
            secret_key=env.get("GATEWAY_SECRET_KEY", cls.secret_key),
            analysis_wait_s=env_float(env, "GATEWAY_ANALYSIS_WAIT_S", cls.analysis_wait_s),
            moderation_threshold=env_float(
                env, "GATEWAY_MODERATION_THRESHOLD", cls.moderation_threshold
            ),
            gallery_page_size=env_int(env, "GATEWAY_PAGE_SIZE", cls.gallery_page_size),
            trash_retention_days=env_float(
                env, "STORAGE_TRASH_RETENTION_DAYS", cls.trash_retention_days
            ),
            mosaic_max_images=env_int(env, "GATEWAY_MOSAIC_MAX_IMAGES", cls.mosaic_max_images),
            similar_min_similarity=env_float(
                env, "GATEWAY_SIMILAR_MIN_SIMILARITY", cls.similar_min_similarity
            ),
            keep_gps=env_bool(env, "GATEWAY_KEEP_GPS", False),
            thumbnail_retry_after_s=env_int(
                env, "GATEWAY_THUMBNAIL_RETRY_AFTER_S", cls.thumbnail_retry_after_s
            ),
        )


def _keys(env: Mapping[str, str], name: str) -> frozenset[str]:
    """Keys from NAME (comma-separated) and from the file NAME_FILE (one per line, # comments)."""
    keys = {k.strip() for k in env.get(name, "").split(",") if k.strip()}
    path = env.get(f"{name}_FILE", "").strip()
    if path:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                keys.add(line)
    return frozenset(keys)
