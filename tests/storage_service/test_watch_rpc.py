"""WatchChanges, ClaimAnalysis and CompleteAnalysis over real gRPC (port 0, real photos):
replay then live follow with heartbeats, COMPACTED and the resync from ListImages, leases
that two claimers never share, LEASE_LOST, and a shutdown an open stream does not hold up."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from imagerepo.common.v1 import common_pb2
from imagerepo.storage.v1 import storage_service_pb2 as pb
from imagerepo.storage.v1 import storage_service_pb2_grpc as pb_grpc
from service_runtime.grpc_server import channel_options
from service_runtime.health import ServiceHealth
from storage_service.columnstore.model import ThumbState
from storage_service.columnstore.policy import FEATURE_DIM
from storage_service.columnstore.store import ColumnStore, StoreOptions
from storage_service.server import build_server
from tests.storage_service.conftest import jpeg_variant, put

# Whole numbers up to 127: exact in every vector encoding storage writes (int8 included).
VECTOR = [127.0, 64.0] * (FEATURE_DIM // 2)
PUT, ANNOTATE, DELETE = pb.CHANGE_KIND_PUT, pb.CHANGE_KIND_ANNOTATE, pb.CHANGE_KIND_DELETE


@dataclass
class Served:
    stub: pb_grpc.StorageServiceStub
    store: ColumnStore
    server: grpc.Server
    health: ServiceHealth


def _serve(data_dir: Path, retention: int = 1_000_000, max_workers: int = 16) -> Served:
    store = ColumnStore.open(
        data_dir,
        StoreOptions(
            memtable_bytes=300_000,
            compact_min_segments=1000,
            compact_dead_fraction=2.0,
            feed_retention_seqs=retention,
        ),
    )
    server, port, health = build_server(
        store, "127.0.0.1:0", heartbeat_s=0.3, max_workers=max_workers
    )
    server.start()
    health.set_serving(True)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=channel_options())
    return Served(pb_grpc.StorageServiceStub(channel), store, server, health)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = _serve(tmp_path / "storage")
    yield s
    s.server.stop(None)
    s.store.close()


@pytest.fixture(scope="module")
def photos(photo_jpegs: dict[str, bytes]) -> list[bytes]:
    base = list(photo_jpegs.values())
    return [jpeg_variant(base[i % len(base)], i) for i in range(12)]


def _refusal(call) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    status = rpc_status.from_call(info.value)
    if status is None:
        return info.value.code(), "", {}
    for detail in status.details:
        error_info = error_details_pb2.ErrorInfo()
        if detail.Unpack(error_info):
            return info.value.code(), error_info.reason, dict(error_info.metadata)
    return info.value.code(), "", {}


def _replay(stub, after: int = 0, **kw) -> list[pb.Change]:
    request = pb.WatchChangesRequest(after_seq=after, follow=False, **kw)
    return [c for m in stub.WatchChanges(request, timeout=30) for c in m.changes]


def _tag(stub, image_id: str, tag: str) -> None:
    stub.UpdateAnnotations(pb.UpdateAnnotationsRequest(image_id=image_id, add_tags=[tag]))


class Follower:
    """A follow=True stream read by a thread into a queue."""

    def __init__(self, stub, after: int, **kw) -> None:
        self.call = stub.WatchChanges(
            pb.WatchChangesRequest(after_seq=after, follow=True, **kw), timeout=60
        )
        self.messages: queue.Queue[pb.WatchChangesResponse | BaseException | None] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for message in self.call:
                self.messages.put(message)
            self.messages.put(None)
        except grpc.RpcError as e:
            self.messages.put(e)

    def next(self, timeout: float = 10) -> pb.WatchChangesResponse:
        message = self.messages.get(timeout=timeout)
        assert isinstance(message, pb.WatchChangesResponse), message
        return message

    def changes(self, n: int) -> list[pb.Change]:
        out: list[pb.Change] = []
        while len(out) < n:
            out += self.next().changes
        return out


def test_watch_replays_in_order_then_follows_live_with_heartbeats(served, photos):
    stub = served.stub
    a = put(stub, photos[0], "a.jpg").image.id
    b = put(stub, photos[1], "b.jpg").image.id
    _tag(stub, a, "cat")
    stub.DeleteImage(pb.DeleteImageRequest(image_id=b))

    follower = Follower(stub, 0, max_batch=2)
    replayed = follower.changes(4)
    assert [(c.kind, c.image_id) for c in replayed] == [
        (PUT, a),
        (PUT, b),
        (ANNOTATE, a),
        (DELETE, b),
    ]
    assert [c.seq for c in replayed] == sorted(c.seq for c in replayed)
    assert replayed[2].image.tags == ["cat"] and replayed[0].image.filename == "a.jpg"
    assert not replayed[3].HasField("image")
    # Idle: heartbeats with the head.
    beat = follower.next()
    assert not beat.changes and beat.head_seq == replayed[-1].seq

    c = put(stub, photos[2], "c.jpg").image.id  # after the stream started
    (live,) = [ch for ch in follower.changes(1)]
    assert (live.kind, live.image_id, live.image.filename) == (PUT, c, "c.jpg")
    assert live.seq > replayed[-1].seq
    follower.call.cancel()
    follower.thread.join(5)
    assert not follower.thread.is_alive()

    # A replay from the middle ends once caught up, and carries vectors when asked.
    assert [ch.image_id for ch in _replay(stub, replayed[1].seq)] == [a, b, c]
    assert _replay(stub, live.seq) == []


def test_compacted_history_is_out_of_range_and_a_listing_resynchronises(tmp_path, photos):
    served = _serve(tmp_path / "storage", retention=4)
    try:
        stub = served.stub
        ids = [put(stub, p, f"{i}.jpg").image.id for i, p in enumerate(photos[:6])]
        # Thumbnails are written after the puts, as rows of their own (seqs the feed does not
        # report): made first, so the seqs below are the feed's.
        while any(served.store.get(i).thumb_state == ThumbState.PENDING for i in ids):
            time.sleep(0.02)
        for image_id in ids:
            _tag(stub, image_id, "x")
        for image_id in ids[:3]:
            stub.DeleteImage(pb.DeleteImageRequest(image_id=image_id))
        served.store.flush()
        assert stub.Compact(pb.CompactRequest()).rows_dropped > 0
        stats = stub.GetStats(pb.GetStatsRequest())
        assert stats.horizon_seq == stats.head_seq + 1 - 4

        code, reason, metadata = _refusal(lambda: _replay(stub, 1))
        assert code == grpc.StatusCode.OUT_OF_RANGE
        assert reason == "COMPACTED"
        assert metadata["horizon_seq"] == str(stats.horizon_seq)

        # Resync: the listing, then the feed after its snapshot_seq.
        listing = stub.ListImages(pb.ListImagesRequest(page_size=1000))
        state = {m.id: list(m.tags) for m in listing.images}
        assert listing.snapshot_seq == stats.head_seq
        follower = Follower(stub, listing.snapshot_seq)
        new = put(stub, photos[7], "new.jpg").image.id
        _tag(stub, ids[4], "y")
        stub.DeleteImage(pb.DeleteImageRequest(image_id=ids[5]))
        for change in follower.changes(3):
            if change.kind == DELETE:
                state.pop(change.image_id, None)
            else:
                state[change.image_id] = list(change.image.tags)
        follower.call.cancel()
        current = stub.ListImages(pb.ListImagesRequest(page_size=1000))
        assert state == {m.id: list(m.tags) for m in current.images}
        assert set(state) == {ids[3], ids[4], new}
    finally:
        served.server.stop(None)
        served.store.close()


def test_claims_over_grpc_are_exclusive_and_a_stale_completion_is_lease_lost(served, photos):
    stub = served.stub
    ids = [put(stub, p, f"{i}.jpg").image.id for i, p in enumerate(photos[:8])]
    stats = stub.GetStats(pb.GetStatsRequest())
    assert stats.pending_count == 8 and stats.oldest_pending_age_ms >= 0

    results: dict[str, list[pb.ClaimedImage]] = {"w1": [], "w2": []}

    def claim(worker: str) -> None:
        while True:
            reply = stub.ClaimAnalysis(
                pb.ClaimAnalysisRequest(worker_id=worker, max_images=3, lease_ms=60_000)
            )
            if not reply.images:
                return
            results[worker] += reply.images

    threads = [threading.Thread(target=claim, args=(w,)) for w in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    got1 = {c.image.id for c in results["w1"]}
    got2 = {c.image.id for c in results["w2"]}
    assert not got1 & got2 and got1 | got2 == set(ids)
    first = (results["w1"] or results["w2"])[0]
    assert first.image.analysis.lease_owner in ("w1", "w2")
    assert first.image.analysis.attempts == 1 and first.generation == 1

    image_id = first.image.id
    result = pb.AnalysisResult(
        labels=[common_pb2.Label(name="tabby", probability=0.5)],
        moderation_score=0.25,
        feature_vector=VECTOR,
    )
    code, reason, _ = _refusal(
        lambda: stub.CompleteAnalysis(
            pb.CompleteAnalysisRequest(image_id=image_id, generation=7, result=result)
        )
    )
    assert (code, reason) == (grpc.StatusCode.ABORTED, "LEASE_LOST")
    done = stub.CompleteAnalysis(
        pb.CompleteAnalysisRequest(image_id=image_id, generation=first.generation, result=result)
    ).image
    assert done.status == common_pb2.ANALYSIS_STATUS_READY
    assert [lb.name for lb in done.labels] == ["tabby"] and done.has_feature_vector
    got = stub.GetImage(pb.GetImageRequest(image_id=image_id, include_feature_vector=True)).image
    assert list(got.feature_vector) == VECTOR and got.analysis.lease_owner == ""

    other = next(c for c in results["w1"] + results["w2"] if c.image.id != image_id)
    failed = stub.CompleteAnalysis(
        pb.CompleteAnalysisRequest(
            image_id=other.image.id,
            generation=other.generation,
            failure=pb.AnalysisFailure(reason="cannot decode", permanent=True),
        )
    ).image
    assert failed.status == common_pb2.ANALYSIS_STATUS_FAILED
    assert failed.status_detail == "cannot decode"
    assert stub.GetStats(pb.GetStatsRequest()).pending_count == 6

    bad = _refusal(lambda: stub.ClaimAnalysis(pb.ClaimAnalysisRequest(max_images=1)))
    assert bad[0] == grpc.StatusCode.INVALID_ARGUMENT
    bad = _refusal(
        lambda: stub.CompleteAnalysis(pb.CompleteAnalysisRequest(image_id=image_id, generation=1))
    )
    assert bad[0] == grpc.StatusCode.INVALID_ARGUMENT


def test_an_open_stream_does_not_hold_up_shutdown(tmp_path, photos):
    served = _serve(tmp_path / "storage")
    put(served.stub, photos[0], "a.jpg")
    follower = Follower(served.stub, 0)
    follower.changes(1)

    served.health.shutdown()  # what the service does on SIGTERM, before server.stop(grace)
    stopped = served.server.stop(30)

    assert stopped.wait(10), "an open WatchChanges stream held the server's stop"
    follower.thread.join(5)
    assert not follower.thread.is_alive()
    served.store.close()


def test_followers_cannot_take_every_server_thread(tmp_path, photos):
    served = _serve(tmp_path / "storage", max_workers=4)  # at most 2 streams
    try:
        put(served.stub, photos[0], "a.jpg")
        first, second = Follower(served.stub, 0), Follower(served.stub, 0)
        first.changes(1), second.changes(1)

        third = Follower(served.stub, 0)
        refused = third.messages.get(timeout=10)
        assert isinstance(refused, grpc.RpcError)
        assert refused.code() == grpc.StatusCode.UNAVAILABLE
        # Other calls are still served, and a closed stream frees its place.
        assert served.stub.GetStats(pb.GetStatsRequest(), timeout=10).image_count == 1
        first.call.cancel()
        first.thread.join(5)
        deadline = threading.Event()
        for _ in range(50):
            again = Follower(served.stub, 0)
            message = again.messages.get(timeout=10)
            if isinstance(message, pb.WatchChangesResponse):
                break
            deadline.wait(0.1)  # the cancelled stream's thread is still finishing
        else:
            raise AssertionError("a place was not freed by the cancelled stream")
        again.call.cancel()
        second.call.cancel()
    finally:
        served.server.stop(None)
        served.store.close()
