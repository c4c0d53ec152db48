"""Vision service configuration, read once from the environment at start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class VisionConfig:
    host: str = "127.0.0.1"
    port: int = 50052
    models_dir: Path = Path("models")
    max_workers: int = 16
    grace_s: float = 5.0
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> VisionConfig:
        return cls(
            host=env.get("VISION_HOST", cls.host),
            port=int(env.get("VISION_PORT", cls.port)),
            models_dir=Path(env.get("VISION_MODELS_DIR", str(cls.models_dir))),
            max_workers=int(env.get("VISION_MAX_WORKERS", cls.max_workers)),
            grace_s=float(env.get("VISION_GRACE_S", cls.grace_s)),
            log_level=env.get("LOG_LEVEL", cls.log_level),
        )
