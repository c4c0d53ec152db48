"""Vision service configuration, read once from the environment at start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from service_runtime.settings import env_bool, env_float, env_int, env_log_level


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
    # bf16 cascades (the manifest's "bf16" bands, models/bf16_cascade.py): "auto" runs them
    # where OpenVINO reports native bf16 arithmetic for this CPU (AVX-512 BF16, AMX) and
    # serves exactly as without them elsewhere; "1" runs them wherever OpenVINO is installed
    # (what OpenVINO does with a bf16 hint on a CPU without bf16 was not measured here); "0"
    # never, nor with VISION_QUANTIZED=0 (the float originals alone).
    bf16: str = "auto"
    # Where the bf16 cascades run: moderation's first stage is the OpenVINO int8 copy
    # (the manifest's "ov_int8", models/ov_int8.py) instead of the float graph in bf16.
    ov_int8: bool = True
    # Where the bf16 cascades run, VISION_BF16_CLASSIFIER=1 makes the classifier one too (the
    # manifest's "bf16" band on EfficientNet-Lite0's top-1 margin). Off by default: it keeps
    # the agreement rules but saved 0.8 ms per image on the bench photos and none on the
    # text-free set (benchmarks/vision_bench.py, classifier_bf16_service_rounds).
    bf16_classifier: bool = False
    # Let onnxruntime threads spin-wait between ops (faster alone, worse when sharing cores).
    ort_spin: bool = False
    # Micro-batching of concurrent Analyze calls.
    batch_max_size: int = 8
    batch_max_wait_ms: float = 10.0
    # Decompression-bomb guard: images above this many pixels are refused.
    max_image_pixels: int = 40_000_000

    def __post_init__(self) -> None:
        if self.max_workers < 1:
            raise ValueError(f"VISION_MAX_WORKERS must be at least 1, not {self.max_workers}")

    def use_bf16(self) -> bool:
        """Whether the bf16 cascades run (VISION_BF16 resolved on this machine)."""
        from vision_service.sessions import cpu_has_bf16, openvino_installed

        if self.bf16 == "0" or not self.quantized:
            return False
        if self.bf16 == "1":
            return openvino_installed()
        return cpu_has_bf16()

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> VisionConfig:
        return cls(
            host=env.get("VISION_HOST", cls.host),
            port=env_int(env, "VISION_PORT", cls.port),
            models_dir=Path(env.get("VISION_MODELS_DIR", str(cls.models_dir))),
            max_workers=env_int(env, "VISION_MAX_WORKERS", cls.max_workers),
            grace_s=env_float(env, "VISION_GRACE_S", cls.grace_s),
            log_level=env_log_level(env, cls.log_level),
            intra_op_threads=env_int(env, "VISION_INTRA_OP_THREADS", cls.intra_op_threads),
            inter_op_threads=env_int(env, "VISION_INTER_OP_THREADS", cls.inter_op_threads),
            batch_workers=env_int(env, "VISION_BATCH_WORKERS", cls.batch_workers),
            ocr_threads=env_int(env, "VISION_OCR_THREADS", cls.ocr_threads),
            ocr_engines=env_int(env, "VISION_OCR_ENGINES", cls.ocr_engines),
            quantized=env_bool(env, "VISION_QUANTIZED", cls.quantized),
            bf16=_bf16_mode(env.get("VISION_BF16", cls.bf16)),
            ov_int8=env_bool(env, "VISION_OV_INT8", cls.ov_int8),
            bf16_classifier=env_bool(env, "VISION_BF16_CLASSIFIER", cls.bf16_classifier),
            ort_spin=env_bool(env, "VISION_ORT_SPIN", cls.ort_spin),
            batch_max_size=env_int(env, "VISION_BATCH_MAX_SIZE", cls.batch_max_size),
            batch_max_wait_ms=env_float(env, "VISION_BATCH_MAX_WAIT_MS", cls.batch_max_wait_ms),
            max_image_pixels=env_int(env, "VISION_MAX_IMAGE_PIXELS", cls.max_image_pixels),
        )


BF16_MODES = ("auto", "0", "1")


def _bf16_mode(value: str) -> str:
    mode = {"true": "1", "yes": "1", "false": "0", "no": "0"}.get(value.lower(), value.lower())
    if mode not in BF16_MODES:
        raise ValueError(f"VISION_BF16={value!r}: expected one of {', '.join(BF16_MODES)}")
    return mode
