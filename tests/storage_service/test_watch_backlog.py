"""WatchChanges v2 while a backlog is replayed, over real gRPC on a real store: with
max_backlog_batch, full messages double from max_batch up to it and say `more`; once caught up,
a live change comes alone at once (more false)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from imagerepo.storage.v2 import storage_service_pb2 as pb
from imagerepo.storage.v2 import storage_service_pb2_grpc as pb_grpc
from service_runtime.grpc_server import channel_options
from storage_service.columnstore.model import AnnotationUpdate
from storage_service.columnstore.policy import FEATURE_DIM
from storage_service.columnstore.store import ColumnStore, StoreOptions
from storage_service.server import build_server


@pytest.fixture
def served(tmp_path) -> Iterator[tuple[ColumnStore, pb_grpc.StorageServiceStub]]:
    store = ColumnStore.open(tmp_path / "s", StoreOptions(memtable_bytes=1 << 30))
    server, port, health = build_server(store, "127.0.0.1:0", heartbeat_s=0.3)
    server.start()
    health.set_serving(True)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=channel_options())
    yield store, pb_grpc.StorageServiceStub(channel)
    channel.close()
    server.stop(grace=None)
    store.close()


def _changes(store: ColumnStore, small_images, n: int) -> list[str]:
    """n puts, each tagged once: 2n changes."""
    ids = []
    for i in range(n):
        image_id = store.put(f"{i}.jpg", "", small_images[i % len(small_images)]).image.id
        store.update_annotations(image_id, AnnotationUpdate(add_tags=(f"t{i}",)))
        ids.append(image_id)
    return ids


def test_a_backlog_replays_in_growing_messages_that_say_more(served, small_images):
    store, stub = served
    _changes(store, small_images, 20)  # 40 changes
    request = pb.WatchChangesRequest(follow=False, max_batch=2, max_backlog_batch=16)
    replies = list(stub.WatchChanges(request, timeout=10))
    assert [len(r.changes) for r in replies] == [2, 4, 8, 16, 10]
    assert [r.more for r in replies] == [True, True, True, True, False]
    seqs = [c.seq for r in replies for c in r.changes]
    assert seqs == sorted(seqs) and len(seqs) == 40 and seqs[-1] == store.last_change_seq
    # Each change still carries its image's current metadata (a put and its tag, one image).
    first = replies[0].changes
    assert first[0].image_id == first[1].image_id and list(first[0].image.tags) == ["t0"]
    assert first[0].image == first[1].image

    # Without max_backlog_batch every message stays at max_batch (as before).
    plain = list(stub.WatchChanges(pb.WatchChangesRequest(follow=False, max_batch=2), timeout=10))
    assert {len(r.changes) for r in plain} == {2}
    assert [r.more for r in plain] == [True] * 19 + [False]


def test_once_caught_up_a_live_change_comes_alone_and_at_once(served, small_images):
    store, stub = served
    _changes(store, small_images, 10)  # 20 changes of backlog
    call = stub.WatchChanges(
        pb.WatchChangesRequest(follow=True, max_batch=2, max_backlog_batch=64), timeout=30
    )
    got: queue.Queue[pb.WatchChangesResponse] = queue.Queue()

    def read() -> None:
        try:
            for reply in call:
                if reply.changes:
                    got.put(reply)
        except grpc.RpcError:
            pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        sizes = []
        while sum(sizes) < 20:
            sizes.append(len(got.get(timeout=10).changes))
        assert sizes == [2, 4, 8, 6]
        # Live: one put is sent alone, at once, and says nothing more follows.
        image_id = store.put("live.jpg", "", small_images[11]).image.id
        live = got.get(timeout=5)
        assert [c.image_id for c in live.changes] == [image_id] and not live.more
    finally:
        call.cancel()
        reader.join(10)


def test_feature_vectors_arrive_exactly_as_stored_in_v2_replies(served, small_images):
    # Vectors are copied into replies as packed float32 bytes: the values must be exactly the
    # ones storage holds, in the feed (both changes of the image) and in GetImage.
    store, stub = served
    rng = np.random.default_rng(7)
    vector = rng.standard_normal(FEATURE_DIM).astype(np.float32)
    image_id = store.put("v.jpg", "", small_images[0]).image.id
    update = AnnotationUpdate(
        fields=frozenset({"feature_vector"}), feature_vector=tuple(vector.tolist())
    )
    store.update_annotations(image_id, update)
    stored = store.feature_vector(image_id)
    assert len(stored) == FEATURE_DIM

    replies = stub.WatchChanges(
        pb.WatchChangesRequest(follow=False, include_feature_vector=True), timeout=10
    )
    changes = [c for r in replies for c in r.changes]
    assert len(changes) == 2
    assert all(list(c.image.feature_vector) == stored for c in changes)
    got = stub.GetImage(pb.GetImageRequest(image_id=image_id, include_feature_vector=True))
    assert list(got.image.feature_vector) == stored
    assert got.image.has_feature_vector
    plain = stub.GetImage(pb.GetImageRequest(image_id=image_id))
    assert list(plain.image.feature_vector) == [] and plain.image.has_feature_vector
