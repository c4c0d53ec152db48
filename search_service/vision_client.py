"""The search service's calls to the vision service: label names and text embeddings.

This is the only module besides the servicer that speaks gRPC; the index sees plain callables.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from imagerepo.vision.v2 import vision_service_pb2 as vision_pb
from imagerepo.vision.v2 import vision_service_pb2_grpc as vision_grpc
from service_runtime.channels import open_channel
from service_runtime.grpc_server import channel_options
from service_runtime.security import TransportSecurity


class VisionClient:
    def __init__(self, address: str, timeout_s: float = 10.0) -> None:
        self.address = address
        self.timeout_s = timeout_s
        # TLS and the service token as configured for every service (service_runtime.security).
        self._channel = open_channel(address, channel_options(), TransportSecurity.from_env())
        self._stub = vision_grpc.VisionServiceStub(self._channel)

    def list_labels(self) -> tuple[list[str], str]:
        """Class names in class-index order, and the label model's name."""
        reply = self._stub.ListLabels(vision_pb.ListLabelsRequest(), timeout=self.timeout_s)
        return [label.name for label in reply.labels], reply.model

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """One L2-normalised embedding per text (rows)."""
        reply = self._stub.EmbedText(
            vision_pb.EmbedTextRequest(texts=texts), timeout=self.timeout_s
        )
        return np.asarray([e.values for e in reply.embeddings], dtype=np.float32)

    def close(self) -> None:
        self._channel.close()
