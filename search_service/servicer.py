"""SearchService: translates gRPC requests to index calls and errors to status codes."""

from __future__ import annotations

import grpc

from imagerepo.search.v1 import search_service_pb2 as pb
from imagerepo.search.v1 import search_service_pb2_grpc as pb_grpc

_UNTIL_INDEX = "the index lands with the search issue"


class SearchServicer(pb_grpc.SearchServiceServicer):
    def Search(self, request: pb.SearchRequest, context: grpc.ServicerContext):
        if not request.query.strip():
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "query is empty")
        context.abort(grpc.StatusCode.UNIMPLEMENTED, _UNTIL_INDEX)

    def RemoveImage(self, request: pb.RemoveImageRequest, context: grpc.ServicerContext):
        if not request.image_id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "image_id is required")
        context.abort(grpc.StatusCode.UNIMPLEMENTED, _UNTIL_INDEX)
