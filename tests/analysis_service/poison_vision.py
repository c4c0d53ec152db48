"""A stand-in vision process for the poison-image test: it answers every Analyze call at once,
except one whose image contains POISON, on which the process dies on the spot (os._exit, as a
segfault in a native library would), taking every call in flight with it.

    python -m tests.analysis_service.poison_vision PORT
"""

from __future__ import annotations

import os
import sys
from concurrent import futures

import grpc

from imagerepo.vision.v2 import vision_service_pb2 as pb
from imagerepo.vision.v2 import vision_service_pb2_grpc as pb_grpc

POISON = b"POISON"


class DiesOnPoison(pb_grpc.VisionServiceServicer):
    def Analyze(self, request: pb.AnalyzeRequest, context: grpc.ServicerContext):
        if POISON in request.image_data:
            os._exit(3)
        return pb.AnalyzeResponse(width=1, height=1)


def main(port: int) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    pb_grpc.add_VisionServiceServicer_to_server(DiesOnPoison(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("serving", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main(int(sys.argv[1]))
