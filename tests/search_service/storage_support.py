"""A real storage service for the search tests (search follows its change feed)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import grpc

from imagerepo.common.v1 import common_pb2
from imagerepo.storage.v1 import storage_service_pb2 as storage_pb
from imagerepo.storage.v1 import storage_service_pb2_grpc as storage_grpc
from service_runtime.grpc_server import channel_options
from storage_service.columnstore.store import ColumnStore, StoreOptions
from storage_service.server import build_server as build_storage_server
from tests.storage_service.conftest import put
from tests.support import free_port

READY = common_pb2.ANALYSIS_STATUS_READY
PENDING = common_pb2.ANALYSIS_STATUS_PENDING


class Storage:
    """The real storage service over a data dir, on one fixed port across restarts."""

    def __init__(self, data_dir: Path, options: StoreOptions | None = None) -> None:
        self.data_dir = data_dir
        self.options = options or StoreOptions()
        self.address = f"127.0.0.1:{free_port()}"
        self._server: grpc.Server | None = None
        self._store: ColumnStore | None = None
        self._channel: grpc.Channel | None = None
        self.stub: storage_grpc.StorageServiceStub

    def start(self) -> Storage:
        self._store = ColumnStore.open(self.data_dir, self.options)
        self._server, _, health = build_storage_server(self._store, self.address)
        self._server.start()
        health.set_serving(True)
        self._channel = grpc.insecure_channel(self.address, options=channel_options())
        self.stub = storage_grpc.StorageServiceStub(self._channel)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None)
        if self._channel is not None:
            self._channel.close()
        if self._store is not None:
            self._store.close()
        self._server = self._store = self._channel = None

    def put_ready(self, data: bytes, name: str, labels: list[common_pb2.Label], **extra) -> str:
        image_id = put(self.stub, data, name).image.id
        self.annotate(image_id, labels=labels, status=READY, **extra)
        return image_id

    def annotate(self, image_id: str, **fields) -> None:
        self.stub.UpdateAnnotations(
            storage_pb.UpdateAnnotationsRequest(
                image_id=image_id,
                annotations=storage_pb.Annotations(**fields),
                update_mask={"paths": list(fields)},
            ),
            timeout=10,
        )

    def delete(self, image_id: str) -> None:
        self.stub.DeleteImage(storage_pb.DeleteImageRequest(image_id=image_id), timeout=10)

    def head_seq(self) -> int:
        return self.stub.GetStats(storage_pb.GetStatsRequest(), timeout=10).head_seq


def eventually(check: Callable[[], bool], timeout_s: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout_s} s: {what}")
        time.sleep(0.05)


def label(name: str, p: float = 0.9) -> common_pb2.Label:
    return common_pb2.Label(name=name, probability=p)
