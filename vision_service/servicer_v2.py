"""VisionService v2 (imagerepo.vision.v2): the v2 contract over the same engine as v1.

It only translates. A v2 request becomes v1's (so both versions validate alike, through v1's
own helper) and then the engine's AnalysisRequest; the answer is built from the engine's
Analysis, so v2 can say what v1 cannot: a moderation score of 0 that was computed versus no
score, a class index of 0 ("tench") versus none.
"""

from __future__ import annotations

import grpc

from imagerepo.common.v2 import common_pb2 as common_v2
from imagerepo.vision.v1 import vision_service_pb2 as v1
from imagerepo.vision.v2 import vision_service_pb2 as pb
from imagerepo.vision.v2 import vision_service_pb2_grpc as pb_grpc
from service_runtime.contracts_v2 import colour_of_word, label_to_v2
from storage_service.columnstore import policy
from vision_service.engine import Analysis
from vision_service.errors import InvalidImageError
from vision_service.servicer import EngineSlot, VisionServicer, _abort, _analysis_request

_TASKS = {
    pb.ANALYSIS_TASK_LABELS: v1.ANALYSIS_TASK_LABELS,
    pb.ANALYSIS_TASK_FEATURES: v1.ANALYSIS_TASK_FEATURES,
    pb.ANALYSIS_TASK_MODERATION: v1.ANALYSIS_TASK_MODERATION,
    pb.ANALYSIS_TASK_OCR: v1.ANALYSIS_TASK_OCR,
    pb.ANALYSIS_TASK_COLOURS: v1.ANALYSIS_TASK_COLOURS,
}
_OCR_MODES = {
    pb.OCR_MODE_UNSPECIFIED: v1.OCR_MODE_AUTO,
    pb.OCR_MODE_AUTO: v1.OCR_MODE_AUTO,
    pb.OCR_MODE_ALWAYS: v1.OCR_MODE_ALWAYS,
    pb.OCR_MODE_NEVER: v1.OCR_MODE_NEVER,
}
MODEL_TASKS = {
    "labels+features": pb.MODEL_TASK_LABELS_AND_FEATURES,
    "moderation": pb.MODEL_TASK_MODERATION,
    "ocr-det": pb.MODEL_TASK_OCR_DETECTION,
    "ocr-rec": pb.MODEL_TASK_OCR_RECOGNITION,
    "text-embedding": pb.MODEL_TASK_TEXT_EMBEDDING,
}


class VisionServicerV2(pb_grpc.VisionServiceServicer):
    def __init__(self, slot: EngineSlot) -> None:
        self._slot = slot
        self._v1 = VisionServicer(slot)

    def Analyze(self, request: pb.AnalyzeRequest, context: grpc.ServicerContext):
        if not request.image_data:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "image_data is empty")
        unknown = [t for t in request.tasks if t not in _TASKS]
        if unknown:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"unknown analysis task(s) {unknown}")
        if request.ocr_mode not in _OCR_MODES:
            _abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, f"unknown ocr_mode {request.ocr_mode}"
            )
        old = v1.AnalyzeRequest(
            image_data=request.image_data,
            tasks=[_TASKS[t] for t in request.tasks],
            top_k=request.top_k,
            ocr_mode=_OCR_MODES[request.ocr_mode],
        )
        analysis_request = _analysis_request(old, context)
        engine = self._v1._engine(context)
        try:
            analysis = engine.analyze(analysis_request)
        except InvalidImageError as exc:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return analysis_to_v2(analysis)

    def EmbedText(self, request: pb.EmbedTextRequest, context: grpc.ServicerContext):
        reply = self._v1.EmbedText(v1.EmbedTextRequest(texts=request.texts), context)
        return pb.EmbedTextResponse(
            embeddings=[pb.Embedding(values=e.values) for e in reply.embeddings],
            dimension=reply.dimension,
            model=reply.model,
        )

    def ListModels(self, request: pb.ListModelsRequest, context: grpc.ServicerContext):
        reply = self._v1.ListModels(v1.ListModelsRequest(), context)
        return pb.ListModelsResponse(
            models=[
                pb.ModelInfo(
                    name=m.name,
                    version=m.version,
                    sha256=m.sha256,
                    license=m.license,
                    input_spec=m.input_spec,
                    task=MODEL_TASKS.get(m.task, pb.MODEL_TASK_UNSPECIFIED),
                    loaded=m.loaded,
                )
                for m in reply.models
            ]
        )

    def ListLabels(self, request: pb.ListLabelsRequest, context: grpc.ServicerContext):
        reply = self._v1.ListLabels(v1.ListLabelsRequest(), context)
        return pb.ListLabelsResponse(
            labels=[label_to_v2(label) for label in reply.labels], model=reply.model
        )


def analysis_to_v2(analysis: Analysis) -> pb.AnalyzeResponse:
    response = pb.AnalyzeResponse(
        labels=[
            common_v2.Label(
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
        colours=[
            common_v2.ColourShare(colour=colour_of_word(c.name), share=c.share)
            for c in analysis.colours
        ],
    )
    if analysis.features is not None:
        response.feature_vector.extend(analysis.features.tolist())
    if analysis.moderation_score is not None:
        response.moderation_score = analysis.moderation_score
    if analysis.ocr is not None:
        response.ocr_ran = True
        # Cut to what storage accepts, as v1 does, so a dense page never fails ingest.
        response.ocr_text = policy.clip_ocr_text(analysis.ocr.text)
        response.text_boxes.extend(
            common_v2.TextBox(
                text=line.text,
                confidence=line.confidence,
                box=[common_v2.Point(x=x, y=y) for x, y in line.box],
            )
            for line in analysis.ocr.lines
        )
    return response
