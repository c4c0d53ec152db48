"""A decode that cannot get its memory: storage waits STORAGE_DECODE_WAIT_S for the decodes
that hold it, then answers UNAVAILABLE with reason BUSY and a RetryInfo saying when to ask
again; memory freed within the wait is used, and the default wait ends before the gateway's
deadline.

Real storage servers on port 0 over the `bare_store` fixture's store (v1 and v2, the servicer
the server factory builds, with its thumbnailer stopped so a photo stays PENDING until its
thumbnail is asked for). The decode memory is taken through the servicer's own DecodeBudget,
reserved whole as a long decode of a large image would hold it (a real decode is over in
milliseconds, too soon to be waited on reliably).
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from PIL import Image

from gateway.config import GatewayConfig
from imagerepo.storage.v1 import storage_service_pb2 as v1
from imagerepo.storage.v1 import storage_service_pb2_grpc as v1_grpc
from imagerepo.storage.v2 import storage_service_pb2 as v2
from imagerepo.storage.v2 import storage_service_pb2_grpc as v2_grpc
from service_runtime.grpc_server import channel_options, new_server
from storage_service.columnstore.store import ColumnStore
from storage_service.config import StorageConfig
from storage_service.errors import BUSY, BUSY_RETRY_S
from storage_service.servicer import DECODE_WAIT_S, StorageServicer
from storage_service.servicer_v2 import StorageServicerV2

from .conftest import upload_requests


@dataclass
class Busy:
    servicer: StorageServicer
    v1: v1_grpc.StorageServiceStub
    v2: v2_grpc.StorageServiceStub


@contextmanager
def serving(store: ColumnStore, decode_wait_s: float) -> Iterator[Busy]:
    """The storage service over `store` on port 0, waiting `decode_wait_s` for decode memory."""
    servicer = StorageServicer(store, decode_wait_s=decode_wait_s)
    servicer.thumbnailer.stop()
    server = new_server(4)
    v1_grpc.add_StorageServiceServicer_to_server(servicer, server)
    v2_grpc.add_StorageServiceServicer_to_server(StorageServicerV2(servicer), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=channel_options())
    try:
        yield Busy(
            servicer, v1_grpc.StorageServiceStub(channel), v2_grpc.StorageServiceStub(channel)
        )
    finally:
        channel.close()
        server.stop(grace=None)
        servicer.stop()


@contextmanager
def memory_taken(servicer: StorageServicer) -> Iterator[None]:
    """Every byte of the servicer's decode memory held, as by a long decode of a large image."""
    budget = servicer.decode_budget
    with budget.reserve(budget.memory_bytes):
        yield


def _pending_photo(stub: v1_grpc.StorageServiceStub, photo: bytes, name: str) -> str:
    reply = stub.PutImage(upload_requests(photo, name, "busy"), timeout=30)
    assert reply.image.thumbnail_state == v1.THUMBNAIL_STATE_PENDING
    return str(reply.image.id)


def _busy_answer(error: grpc.RpcError) -> tuple[grpc.StatusCode, str, float]:
    """(code, ErrorInfo reason, RetryInfo delay in seconds) of a failed call."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    reason, delay_s = "", -1.0
    for detail in status.details if status is not None else ():
        info = error_details_pb2.ErrorInfo()
        retry = error_details_pb2.RetryInfo()
        if detail.Is(info.DESCRIPTOR) and detail.Unpack(info):
            reason = info.reason
        elif detail.Is(retry.DESCRIPTOR) and detail.Unpack(retry):
            delay_s = retry.retry_delay.ToMilliseconds() / 1000
    return error.code(), reason, delay_s


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_a_thumbnail_whose_decode_memory_stays_taken_is_busy_after_the_wait_with_a_retry_hint(
    bare_store, photo_jpegs, version
):
    """Waiting 0.5 s, storage answers BUSY after it: within a 3 s deadline, which a wait
    left at its default (4 s) or at the old minute would run out of."""
    with serving(bare_store, decode_wait_s=0.5) as busy:
        image_id = _pending_photo(busy.v1, photo_jpegs["chelsea"], f"busy {version}.jpg")
        ask = (
            (lambda: busy.v1.GetThumbnail(v1.GetThumbnailRequest(image_id=image_id), timeout=3))
            if version == "v1"
            else lambda: busy.v2.GetThumbnail(v2.GetThumbnailRequest(image_id=image_id), timeout=3)
        )

        with memory_taken(busy.servicer):
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as refused:
                ask()
            waited_s = time.monotonic() - started
        made = ask()

    assert _busy_answer(refused.value) == (grpc.StatusCode.UNAVAILABLE, BUSY, BUSY_RETRY_S)
    assert "busy" in (refused.value.details() or "")
    # It waited for the memory before saying so (a lower bound: load only lengthens it).
    assert waited_s >= 0.45
    # Nothing was marked: once the memory is free the same ask makes the thumbnail.
    assert made.data and made.width > 0


def test_a_thumbnail_whose_decode_memory_is_freed_within_the_wait_is_made(bare_store, photo_jpegs):
    """A decode holding the memory for 0.3 s of storage's 5 s wait: the thumbnail is made
    when it ends, not refused at once."""
    with serving(bare_store, decode_wait_s=5.0) as busy:
        image_id = _pending_photo(busy.v1, photo_jpegs["rocket"], "freed soon.jpg")
        held = threading.Event()

        def long_decode() -> None:
            with memory_taken(busy.servicer):
                held.set()
                time.sleep(0.3)

        holder = threading.Thread(target=long_decode)
        holder.start()
        held.wait(10)
        try:
            reply = busy.v2.GetThumbnail(v2.GetThumbnailRequest(image_id=image_id), timeout=10)
        finally:
            holder.join()

    assert reply.data and reply.content_type.startswith("image/")


def test_an_upload_decoded_before_its_ack_is_busy_with_the_retry_hint(bare_store, photo_paths):
    """A TIFF is decoded (its thumbnails made) before the put is acknowledged: with the memory
    taken past the wait, the put answers BUSY with the hint and stores nothing."""
    with Image.open(photo_paths["coffee"]) as im:
        buf = io.BytesIO()
        im.convert("RGB").save(buf, "TIFF")
    with serving(bare_store, decode_wait_s=0.3) as busy:
        with memory_taken(busy.servicer), pytest.raises(grpc.RpcError) as refused:
            busy.v1.PutImage(upload_requests(buf.getvalue(), "coffee.tif", "busy"), timeout=3)
        stored = busy.v1.ListImages(v1.ListImagesRequest(owner="busy"), timeout=10)

    assert _busy_answer(refused.value) == (grpc.StatusCode.UNAVAILABLE, BUSY, BUSY_RETRY_S)
    assert list(stored.images) == []


def test_the_decode_wait_is_read_from_the_environment():
    assert StorageConfig.from_env({}).decode_wait_s == DECODE_WAIT_S
    assert StorageConfig.from_env({"STORAGE_DECODE_WAIT_S": "1.5"}).decode_wait_s == 1.5


def test_the_default_decode_wait_answers_busy_before_the_gateways_deadline():
    """A thumbnail asked for while the background thumbnailer waits to make that image alone
    waits for that thumbnailer, then for the memory itself: twice the wait, still inside the
    gateway's default deadline, so the gateway hears BUSY rather than running out of time."""
    assert 2 * StorageConfig().decode_wait_s < GatewayConfig().rpc_timeout_s
