"""The runtime that runs a model: onnxruntime sessions on CPU with configured thread counts.

What a model computes lives in `vision_service.models`; this module only knows how to open an
ONNX file so that one process does not fight itself for the machine's cores.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
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


# OpenVINO runs a float ONNX graph in bfloat16 on CPUs with native bf16 arithmetic (AVX-512
# BF16, AMX): measured on this machine's AMD EPYC at batch 8, one thread, EfficientNet-Lite0
# 9.7 -> 5.3 ms per image and open_nsfw 20.1 -> 9.6 ms, with outputs a little off the float
# ones (benchmarks/bf16_trial.py). Its f32 mode is no faster than onnxruntime here (10.5 and
# 19.8 ms), so onnxruntime stays the float runtime.
BF16_CAPABILITY = "BF16"


@dataclass(frozen=True)
class _InputName:
    name: str


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def cpu_has_bf16() -> bool:
    """Whether OpenVINO is installed and reports native bf16 for this CPU."""
    if not openvino_installed():
        return False
    import openvino as ov

    capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return BF16_CAPABILITY in capabilities


class OpenVinoSession:
    """A float ONNX graph compiled by OpenVINO for the CPU, in `precision` ("bf16" or "f32"),
    with the `run`/`get_inputs` surface of an onnxruntime session the models call.

    One stream per concurrent caller (`streams`), each with `threads.intra_op` inference
    threads, and no core pinning: like onnxruntime's sessions here, each batch worker gets one
    thread. Each calling thread has its own infer request (a request serves one call at a
    time); outputs are copied out of it."""

    def __init__(
        self, path: Path, precision: str, threads: SessionThreads, streams: int = 1
    ) -> None:
        import openvino as ov

        core = ov.Core()
        self._compiled = core.compile_model(
            core.read_model(str(path)),
            "CPU",
            {
                "INFERENCE_PRECISION_HINT": precision,
                "NUM_STREAMS": streams,
                "INFERENCE_NUM_THREADS": streams * threads.intra_op,
                "ENABLE_CPU_PINNING": False,
                "ENABLE_HYPER_THREADING": False,
            },
        )
        self.precision = precision
        # An int8 graph (OpenVINO IR with FakeQuantize nodes, models/ov_int8.py).
        self.int8 = Path(path).suffix == ".xml"
        self._inputs = [_InputName(i.get_any_name()) for i in self._compiled.inputs]
        self._outputs = {o.get_any_name(): o for o in self._compiled.outputs}
        self._local = threading.local()

    def property(self, name: str) -> str:
        """A compiled-model property as OpenVINO reports it (NUM_STREAMS, INFERENCE_NUM_THREADS,
        INFERENCE_PRECISION_HINT, ...), as text."""
        return str(self._compiled.get_property(name))

    def get_inputs(self) -> list[_InputName]:
        return list(self._inputs)

    def run(self, output_names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        results = request.infer(feeds, share_inputs=False, share_outputs=False)
        names = output_names or list(self._outputs)
        return [np.array(results[self._outputs[name]]) for name in names]
