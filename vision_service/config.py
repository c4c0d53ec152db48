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
    # onnxruntime threads per model run (classifier, moderation, text). Measured on the 2-core
    # machine: two batches at once on one thread each beat one batch on two threads (which
    # leaves a core idle between ops), so the default is 1 intra-op thread x 2 batch workers.
    # Inter-op 1 stops graph-level parallelism from oversubscribing the cores.
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    batch_workers: int = 2
    # The OCR models run in the request thread, one intra-op thread each.
    ocr_threads: int = 1
    # RapidOCR engines in the reader's pool: this many requests read text at once.
    ocr_engines: int = 2
    # Run the int8 CNNs where the manifest has one (adopted by models/quantize.py after an
    # agreement check); 0 runs the float originals (its "reference" files).
    quantized: bool = True
    # Let onnxruntime threads spin-wait between ops (faster alone, worse when sharing cores).
    ort_spin: bool = False
    # Micro-batching of concurrent Analyze calls.
    batch_max_size: int = 8
    batch_max_wait_ms: float = 10.0
    # Decompression-bomb guard: images above this many pixels are refused.
    max_image_pixels: int = 40_000_000

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> VisionConfig:
        return cls(
            host=env.get("VISION_HOST", cls.host),
            port=int(env.get("VISION_PORT", cls.port)),
            models_dir=Path(env.get("VISION_MODELS_DIR", str(cls.models_dir))),
            max_workers=int(env.get("VISION_MAX_WORKERS", cls.max_workers)),
            grace_s=float(env.get("VISION_GRACE_S", cls.grace_s)),
            log_level=env.get("LOG_LEVEL", cls.log_level),
            intra_op_threads=int(env.get("VISION_INTRA_OP_THREADS", cls.intra_op_threads)),
            inter_op_threads=int(env.get("VISION_INTER_OP_THREADS", cls.inter_op_threads)),
            batch_workers=int(env.get("VISION_BATCH_WORKERS", cls.batch_workers)),
            ocr_threads=int(env.get("VISION_OCR_THREADS", cls.ocr_threads)),
            ocr_engines=int(env.get("VISION_OCR_ENGINES", cls.ocr_engines)),
            quantized=env.get("VISION_QUANTIZED", "1").lower() in ("1", "true", "yes"),
            ort_spin=env.get("VISION_ORT_SPIN", "0").lower() in ("1", "true", "yes"),
            batch_max_size=int(env.get("VISION_BATCH_MAX_SIZE", cls.batch_max_size)),
            batch_max_wait_ms=float(env.get("VISION_BATCH_MAX_WAIT_MS", cls.batch_max_wait_ms)),
            max_image_pixels=int(env.get("VISION_MAX_IMAGE_PIXELS", cls.max_image_pixels)),
        )
