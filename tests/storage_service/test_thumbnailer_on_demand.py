"""A thumbnail asked for while the background thumbnailer holds that photo in a batch, with the
decode memory taken: the caller hears BUSY (or gets the thumbnail) within about one decode
wait (STORAGE_DECODE_WAIT_S), not after the batch's eight waits; a batch stops at its first
busy decode and the thumbnailer makes the rest once the memory is free; a BUSY answer is not
asked again by the client channel's retry policy.

Real parts: the storage service on port 0 over the `bare_store` fixture's store, reached
through a channel from service_runtime.channels.open_channel (the gateway's, with its retry
policy), real photos, and the servicer's own DecodeBudget reserved whole as a long decode of a
large image would hold it. The batch is the servicer's thumbnailer's own `_make_many` (what a
worker runs on what it took from the queue), run on a thread: the workers take their batches
from a queue the feeder fills, so how many photos one batch holds is not up to a test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import grpc
import pytest

from imagerepo.storage.v2 import storage_service_pb2 as v2
from imagerepo.storage.v2 import storage_service_pb2_grpc as v2_grpc
from service_runtime.channels import open_channel
from service_runtime.grpc_server import new_server
from storage_service.columnstore.image_check import DecodeBudget, DecodeBusyError, check_image
from storage_service.columnstore.model import ThumbState
from storage_service.columnstore.store import ColumnStore
from storage_service.columnstore.thumbnailer import Thumbnailer
from storage_service.errors import BUSY
from storage_service.servicer import StorageServicer
from storage_service.servicer_v2 import StorageServicerV2

from .conftest import jpeg_variant
from .test_decode_budget_busy import _busy_answer, memory_taken

# The storage's decode wait in these tests; an answer is due within three of them (a batch of
# 8 held its photos 8 waits, 9 before the caller's own).
WAIT_S = 1.0


@dataclass
class Serving:
    servicer: StorageServicer
    stub: v2_grpc.StorageServiceStub


@contextmanager
def serving(store: ColumnStore) -> Iterator[Serving]:
    servicer = StorageServicer(store, decode_wait_s=WAIT_S)
    servicer.thumbnailer.stop()  # the test runs its batch itself (photos put after stay PENDING)
    server = new_server(16)
    v2_grpc.add_StorageServiceServicer_to_server(StorageServicerV2(servicer), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = open_channel(f"127.0.0.1:{port}")
    try:
        yield Serving(servicer, v2_grpc.StorageServiceStub(channel))
    finally:
        channel.close()
        server.stop(grace=None)
        servicer.stop()


def _pending(store: ColumnStore, photo_jpegs: dict[str, bytes], count: int) -> list[str]:
    photos = [jpeg_variant(data, i) for i, data in enumerate(photo_jpegs.values())]
    ids = []
    for i in range(count):
        data = jpeg_variant(photos[i % len(photos)], 100 + i)
        ids.append(store.put(f"batch {i}.jpg", "", check_image(data)).image.id)
    assert all(store.get(i).thumb_state is ThumbState.PENDING for i in ids)
    return ids


def test_a_thumbnail_of_a_photo_in_a_busy_batch_answers_within_about_one_decode_wait(
    bare_store, photo_jpegs
):
    with serving(bare_store) as svc:
        ids = _pending(bare_store, photo_jpegs, 8)
        asked = [ids[0], ids[3], ids[7]]  # the first decode of the batch, a middle one, the last
        answers: dict[str, tuple[float, grpc.StatusCode, str]] = {}

        def ask(image_id: str) -> None:
            started = time.monotonic()
            code, reason = grpc.StatusCode.OK, ""
            try:
                svc.stub.GetThumbnail(v2.GetThumbnailRequest(image_id=image_id), timeout=30)
            except grpc.RpcError as e:
                code, reason, _delay = _busy_answer(e)
            answers[image_id] = (time.monotonic() - started, code, reason)

        with memory_taken(svc.servicer):
            batch = threading.Thread(target=svc.servicer.thumbnailer._make_many, args=(ids,))
            batch.start()
            time.sleep(0.2)  # the batch has claimed its first photo and waits for memory
            asks = [threading.Thread(target=ask, args=(i,)) for i in asked]
            for thread in asks:
                thread.start()
            for thread in asks:
                thread.join(60)
            batch.join(60)
        after = svc.stub.GetThumbnail(v2.GetThumbnailRequest(image_id=ids[7]), timeout=30)

    assert set(answers) == set(asked)
    for image_id, (waited_s, code, reason) in answers.items():
        # BUSY (the memory stayed taken all along), after about one wait: not the batch's 8.
        assert (code, reason) == (grpc.StatusCode.UNAVAILABLE, BUSY), answers
        assert waited_s < 3 * WAIT_S, (ids.index(image_id), answers)
    # Nothing was marked: with the memory free the same ask makes the thumbnail.
    assert after.data


def test_a_busy_thumbnail_is_not_asked_again_by_the_channels_retry_policy(bare_store, photo_jpegs):
    """GetThumbnail is a read the channel retries on UNAVAILABLE (a replica going away); a
    BUSY answer carries a negative retry pushback, so the caller hears it after one decode
    wait, not three (each attempt would wait again: 12 s with the 4 s wait, past the gateway's
    10 s deadline). Counted: the on-demand decodes the servicer's thumbnailer started."""
    with serving(bare_store) as svc:
        (image_id,) = _pending(bare_store, photo_jpegs, 1)
        with memory_taken(svc.servicer), pytest.raises(grpc.RpcError) as refused:
            svc.stub.GetThumbnail(v2.GetThumbnailRequest(image_id=image_id), timeout=30)
        on_demand = svc.servicer.thumbnailer.stats().on_demand
    assert _busy_answer(refused.value)[:2] == (grpc.StatusCode.UNAVAILABLE, BUSY)
    assert on_demand == 1


def test_a_batch_stops_at_its_first_busy_decode_and_its_photos_are_made_once_memory_frees(
    bare_store, photo_jpegs
):
    ids = _pending(bare_store, photo_jpegs, 8)
    budget = DecodeBudget(64 * 1024 * 1024, wait_s=0.3)
    thumbnailer = Thumbnailer(bare_store, budget=budget, workers=1, nice=0)
    with budget.reserve(budget.memory_bytes):
        results, errors = thumbnailer._make_many(ids)
    # One decode waited (0.3 s) for nothing; the other seven were not tried, nor claimed.
    assert results == {}
    assert set(errors) == set(ids)
    assert all(isinstance(e, DecodeBusyError) for e in errors.values())
    assert thumbnailer._making == {}
    # The running thumbnailer, its memory taken a while, makes every one once it is free.
    thumbnailer.start()
    try:
        with budget.reserve(budget.memory_bytes):
            time.sleep(1.0)
        assert thumbnailer.wait_idle(60)
    finally:
        thumbnailer.stop()
    assert all(bare_store.get(i).thumb_state is ThumbState.MADE for i in ids)


def test_a_batch_out_of_time_leaves_the_rest_to_the_next(bare_store, photo_jpegs):
    ids = _pending(bare_store, photo_jpegs, 4)
    thumbnailer = Thumbnailer(bare_store, workers=1, nice=0, batch_max_s=0.0)
    results, errors = thumbnailer._make_many(ids)
    # The first photo is always made; the others wait for the worker's next batch.
    assert list(results) == [ids[0]] and set(errors) == set(ids[1:])
    thumbnailer.start()
    try:
        assert thumbnailer.wait_idle(60)
    finally:
        thumbnailer.stop()
    assert all(bare_store.get(i).thumb_state is ThumbState.MADE for i in ids)
