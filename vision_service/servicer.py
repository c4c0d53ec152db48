"""VisionService: translates gRPC requests to model calls and errors to status codes."""

from __future__ import annotations

import grpc

from imagerepo.vision.v1 import vision_service_pb2 as pb
from imagerepo.vision.v1 import vision_service_pb2_grpc as pb_grpc

_UNTIL_MODELS = "the models land with the vision issue"


class VisionServicer(pb_grpc.VisionServiceServicer):
    def Analyze(self, request: pb.AnalyzeRequest, context: grpc.ServicerContext):
        if not request.image_data:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "image_data is empty")
        context.abort(grpc.StatusCode.UNIMPLEMENTED, _UNTIL_MODELS)

    def EmbedText(self, request: pb.EmbedTextRequest, context: grpc.ServicerContext):
        if not request.texts:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "texts is empty")
        context.abort(grpc.StatusCode.UNIMPLEMENTED, _UNTIL_MODELS)
