"""StorageService: translates gRPC requests to column-store calls and errors to status codes."""

from __future__ import annotations

import grpc

from imagerepo.storage.v1 import storage_service_pb2 as pb
from imagerepo.storage.v1 import storage_service_pb2_grpc as pb_grpc

_UNTIL_STORE = "the column store lands with the storage issue"


def _require_id(image_id: str, context: grpc.ServicerContext) -> None:
    if not image_id:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "image_id is required")


class StorageServicer(pb_grpc.StorageServiceServicer):
    def GetImage(self, request: pb.GetImageRequest, context: grpc.ServicerContext):
        _require_id(request.image_id, context)
        context.abort(grpc.StatusCode.UNIMPLEMENTED, _UNTIL_STORE)

    def DeleteImage(self, request: pb.DeleteImageRequest, context: grpc.ServicerContext):
        _require_id(request.image_id, context)
        context.abort(grpc.StatusCode.UNIMPLEMENTED, _UNTIL_STORE)

    def FindByFilename(self, request: pb.FindByFilenameRequest, context: grpc.ServicerContext):
        if not request.filename:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "filename is required")
        context.abort(grpc.StatusCode.UNIMPLEMENTED, _UNTIL_STORE)
