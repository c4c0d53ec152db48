"""VisionService: translates gRPC requests to engine calls and domain errors to status codes."""

from __future__ import annotations

import threading
from typing import NoReturn

import grpc

from imagerepo.common.v1 import common_pb2
from imagerepo.vision.v1 import vision_service_pb2 as pb
from imagerepo.vision.v1 import vision_service_pb2_grpc as pb_grpc
from storage_service.columnstore import policy
from vision_service.engine import (
    DEFAULT_TASKS,
    DEFAULT_TOP_K,
    Analysis,
    AnalysisRequest,
    OcrMode,
    Task,
    VisionEngine,
)
from vision_service.errors import InvalidImageError, InvalidTextError, ModelsNotLoadedError

_TASKS = {
    pb.ANALYSIS_TASK_LABELS: Task.LABELS,
    pb.ANALYSIS_TASK_FEATURES: Task.FEATURES,
    pb.ANALYSIS_TASK_MODERATION: Task.MODERATION,
    pb.ANALYSIS_TASK_OCR: Task.OCR,
    pb.ANALYSIS_TASK_COLOURS: Task.COLOURS,
}
_OCR_MODES = {
    pb.OCR_MODE_AUTO: OcrMode.AUTO,
    pb.OCR_MODE_ALWAYS: OcrMode.ALWAYS,
    pb.OCR_MODE_NEVER: OcrMode.NEVER,
}
MAX_TOP_K = 1000


class EngineSlot:
    """Holds the engine once it is loaded: the server can start (NOT_SERVING) before."""

    def __init__(self, engine: VisionEngine | None = None) -> None:
        self._engine = engine
        self._lock = threading.Lock()

    def set(self, engine: VisionEngine) -> None:
        with self._lock:
            self._engine = engine

    def get(self) -> VisionEngine:
        engine = self._engine
        if engine is None:
            raise ModelsNotLoadedError("the vision models are still loading; retry shortly")
        return engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()


class VisionServicer(pb_grpc.VisionServiceServicer):
    def __init__(self, slot: EngineSlot) -> None:
        self._slot = slot

    def Analyze(self, request: pb.AnalyzeRequest, context: grpc.ServicerContext):
        if not request.image_data:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "image_data is empty")
        analysis_request = _analysis_request(request, context)
        engine = self._engine(context)
        try:
            analysis = engine.analyze(analysis_request)
        except InvalidImageError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return _analysis_to_proto(analysis)

    def EmbedText(self, request: pb.EmbedTextRequest, context: grpc.ServicerContext):
        if not request.texts:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "texts is empty")
        engine = self._engine(context)
        try:
            vectors = engine.embed_texts(list(request.texts))
        except InvalidTextError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return pb.EmbedTextResponse(
            embeddings=[pb.Embedding(values=v.tolist()) for v in vectors],
            dimension=engine.embedding_dim,
            model=engine.text_model_name,
        )

    def ListModels(self, request: pb.ListModelsRequest, context: grpc.ServicerContext):
        engine = self._engine(context)
        return pb.ListModelsResponse(
            models=[
                pb.ModelInfo(
                    name=m.name,
                    version=m.version,
                    sha256=m.sha256,
                    license=m.license,
                    input_spec=m.input_spec,
                    task=m.task,
                    loaded=True,
                )
                for m in engine.models
            ]
        )

    def ListLabels(self, request: pb.ListLabelsRequest, context: grpc.ServicerContext):
        engine = self._engine(context)
        return pb.ListLabelsResponse(
            labels=[
                common_pb2.Label(name=c.name, synonyms=c.synonyms, class_index=c.index)
                for c in engine.classes
            ],
            model=engine.classifier_name,
        )

    def _engine(self, context: grpc.ServicerContext) -> VisionEngine:
        try:
            return self._slot.get()
        except ModelsNotLoadedError as exc:
            _abort(context, grpc.StatusCode.UNAVAILABLE, str(exc))


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    context.abort(code, message)
    raise AssertionError("context.abort returned")  # it raises; this line is for type checkers


def _analysis_request(request: pb.AnalyzeRequest, context: grpc.ServicerContext) -> AnalysisRequest:
    unknown = [t for t in request.tasks if t not in _TASKS]
    if unknown:
        _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"unknown analysis task(s) {unknown}")
    if request.ocr_mode not in _OCR_MODES:
        _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"unknown ocr_mode {request.ocr_mode}")
    if request.top_k < 0:
        _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "top_k must not be negative")
    tasks = frozenset(_TASKS[t] for t in request.tasks) or DEFAULT_TASKS
    return AnalysisRequest(
        image_data=request.image_data,
        tasks=tasks,
        top_k=min(request.top_k or DEFAULT_TOP_K, MAX_TOP_K),
        ocr_mode=_OCR_MODES[request.ocr_mode],
    )


def _analysis_to_proto(analysis: Analysis) -> pb.AnalyzeResponse:
    response = pb.AnalyzeResponse(
        labels=[
            common_pb2.Label(
                name=label.name,
                probability=label.probability,
                synonyms=label.synonyms,
                class_index=label.class_index,
            )
            for label in analysis.labels
        ],
        width=analysis.width,
        height=analysis.height,
        format=analysis.format,
        model_versions=analysis.model_versions,
        colours=[common_pb2.ColourShare(name=c.name, share=c.share) for c in analysis.colours],
    )
    if analysis.features is not None:
        response.feature_vector.extend(analysis.features.tolist())
    if analysis.moderation_score is not None:
        response.moderation_score = analysis.moderation_score
    if analysis.ocr is not None:
        response.ocr_ran = True
        # Cut to what storage accepts (the shared policy), so a dense page never fails ingest.
        response.ocr_text = policy.clip_ocr_text(analysis.ocr.text)
        response.text_boxes.extend(
            common_pb2.TextBox(
                text=line.text,
                confidence=line.confidence,
                box=[common_pb2.Point(x=x, y=y) for x, y in line.box],
            )
            for line in analysis.ocr.lines
        )
    return response
