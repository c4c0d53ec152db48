"""Search service configuration, read once from the environment at start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SearchConfig:
    host: str = "127.0.0.1"
    port: int = 50053
    data_dir: Path = Path("data/search")
    vision_address: str = "127.0.0.1:50052"
    max_workers: int = 16
    grace_s: float = 5.0
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> SearchConfig:
        return cls(
            host=env.get("SEARCH_HOST", cls.host),
            port=int(env.get("SEARCH_PORT", cls.port)),
            data_dir=Path(env.get("SEARCH_DATA_DIR", str(cls.data_dir))),
            vision_address=env.get("SEARCH_VISION_ADDR", cls.vision_address),
            max_workers=int(env.get("SEARCH_MAX_WORKERS", cls.max_workers)),
            grace_s=float(env.get("SEARCH_GRACE_S", cls.grace_s)),
            log_level=env.get("LOG_LEVEL", cls.log_level),
        )
