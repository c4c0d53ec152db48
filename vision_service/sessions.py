"""The runtime that runs a model: onnxruntime sessions on CPU with configured thread counts.

What a model computes lives in `vision_service.models`; this module only knows how to open an
ONNX file so that one process does not fight itself for the machine's cores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

_PROVIDER = "CPUExecutionProvider"
# onnxruntime's WeightBiasQuantization transformer quantizes (per tensor, int8) the float
# weights of any Conv/Gemm found between a DequantizeLinear and a QuantizeLinear: exactly the
# nodes models/quantize.py keeps in float inside an int8 graph (`nodes_to_exclude`). With it,
# EfficientNet-Lite0 with its depthwise convs "in float" agreed with the float model on 55.6%
# of top-1 labels instead of 87.1%. No graph served today has such a node (their outputs are
# the same either way); this keeps "kept in float" true for the ones quantize.py may make.
_DISABLED_OPTIMIZERS = ["WeightBiasQuantization"]


@dataclass(frozen=True)
class SessionThreads:
    intra_op: int = 2
    inter_op: int = 1
    # onnxruntime's workers spin between ops by default: fastest for a lone model, but the
    # spinning burns the cores that request threads need for decoding images.
    spin: bool = False


def open_session(
    path: Path,
    threads: SessionThreads,
    optimization: ort.GraphOptimizationLevel = ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
) -> ort.InferenceSession:
    """An InferenceSession on the CPU provider (the only one installed here), with every graph
    optimisation on and a fixed thread budget.

    ORT_ENABLE_ALL includes the NCHWc layout transform, which `make bench PART=vision`
    measured at 2.6x less CPU than ORT_ENABLE_EXTENDED for EfficientNet-Lite0, 1.6x for the
    OCR detector and 1.2x for int8 open_nsfw; flushing denormals to zero changed nothing."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads.intra_op
    options.inter_op_num_threads = threads.inter_op
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = optimization
    options.log_severity_level = 3
    spin = "1" if threads.spin else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    options.add_session_config_entry("session.inter_op.allow_spinning", spin)
    return ort.InferenceSession(
        str(path),
        sess_options=options,
        providers=[_PROVIDER],
        disabled_optimizers=_DISABLED_OPTIMIZERS,
    )
