"""Search as a consumer of storage's change feed, with the real storage service and a real
search server (both gRPC on local ports) and real photos: no gateway anywhere."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from imagerepo.search.v1 import search_service_pb2 as search_pb
from imagerepo.search.v1 import search_service_pb2_grpc as search_grpc
from imagerepo.search.v2 import search_service_pb2 as search_v2_pb
from imagerepo.search.v2 import search_service_pb2_grpc as search_v2_grpc
from imagerepo.storage.v1 import storage_service_pb2 as storage_pb
from search_service.durable_index import DurableIndex
from search_service.feed_consumer import FeedConsumer
from search_service.server import build_server as build_search_server
from search_service.storage_feed import StorageFeed
from storage_service.columnstore.store import ColumnStore, StoreOptions
from tests.search_service.storage_support import (
    PENDING,
    READY,
    Storage,
    eventually,
    label,
)
from tests.storage_service.conftest import damage_row_meta, jpeg_variant, put


class Search:
    """A real search server following `storage_address`'s feed, over a data dir."""

    def __init__(
        self,
        data_dir: Path,
        storage_address: str,
        snapshot_every: int = 1000,
        replay_lag: int = 1000,
    ) -> None:
        self.data_dir = data_dir
        self.replay_lag = replay_lag
        self.storage_address = storage_address
        self.snapshot_every = snapshot_every
        self.index: DurableIndex
        self.feed: FeedConsumer
        self._source: StorageFeed
        self._server: grpc.Server | None = None
        self._channel: grpc.Channel | None = None
        self.stub: search_grpc.SearchServiceStub
        self.v2: search_v2_grpc.SearchServiceStub

    def start(self) -> Search:
        self.index = DurableIndex.open(self.data_dir, snapshot_every=self.snapshot_every)
        self._source = StorageFeed(self.storage_address)
        self.feed = FeedConsumer(
            self.index,
            self._source,
            retry_initial_s=0.05,
            retry_max_s=0.3,
            replay_lag=self.replay_lag,
        )
        self._server, port, health = build_search_server("127.0.0.1:0", 4, self.index, self.feed)
        self._server.start()
        health.set_serving(True)
        self.feed.start()
        self._channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = search_grpc.SearchServiceStub(self._channel)
        self.v2 = search_v2_grpc.SearchServiceStub(self._channel)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None)
            self.feed.stop()
            self._source.close()
            self.index.close()
        if self._channel is not None:
            self._channel.close()
        self._server = self._channel = None

    def ids(self, query: str) -> list[str]:
        reply = self.stub.Search(
            search_pb.SearchRequest(query=query, page_size=200, disable_semantic=True), timeout=10
        )
        return sorted(h.image_id for h in reply.hits)

    def stats(self) -> search_pb.GetStatsResponse:
        return self.stub.GetStats(search_pb.GetStatsRequest(), timeout=10)

    def caught_up_with(
        self, storage: Storage, timeout_s: float = 30.0
    ) -> search_pb.GetStatsResponse:
        head = storage.head_seq()
        eventually(lambda: self.stats().applied_seq >= head, timeout_s, f"applied seq {head}")
        return self.stats()


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    running = Storage(tmp_path / "storage").start()
    yield running
    running.stop()


@pytest.fixture
def search(tmp_path: Path, storage: Storage) -> Iterator[Search]:
    running = Search(tmp_path / "search", storage.address).start()
    yield running
    running.stop()


def test_an_image_made_ready_in_storage_becomes_searchable_and_a_delete_removes_it(
    storage, search, photo_jpegs, analysed_photos
):
    chelsea = analysed_photos["chelsea"]
    cat = put(storage.stub, photo_jpegs["chelsea"], "IMG_0001.jpg").image.id
    coffee = storage.put_ready(photo_jpegs["coffee"], "breakfast.jpg", [label("espresso")])
    # Pending: stored but not analysed, so not searchable by content (nor by filename).
    eventually(lambda: search.ids("espresso") == [coffee], what="coffee indexed")
    assert search.ids("IMG_0001") == []

    storage.annotate(
        cat,
        labels=list(chelsea.labels),
        feature_vector=list(chelsea.feature_vector),
        ocr_text="",
        status=READY,
    )
    eventually(lambda: search.ids("cat") == [cat], what="the cat indexed once READY")
    similar = search.stub.SimilarImages(search_pb.SimilarImagesRequest(image_id=cat), timeout=10)
    assert similar.hits == []  # the only image with a vector: it has no neighbour but exists

    storage.delete(cat)
    eventually(lambda: search.ids("cat") == [], what="the deleted cat removed")
    stats = search.caught_up_with(storage)
    assert stats.document_count == 1 and stats.lag_seqs == 0 and stats.following
    assert stats.head_seq == storage.head_seq() == stats.applied_seq


def test_an_image_going_back_to_pending_leaves_the_index(storage, search, photo_jpegs):
    rocket = storage.put_ready(photo_jpegs["rocket"], "launch.jpg", [label("space shuttle")])
    eventually(lambda: search.ids("shuttle") == [rocket])

    storage.annotate(rocket, status=PENDING)

    eventually(lambda: search.ids("shuttle") == [], what="a pending image is not searchable")


def test_search_refuses_direct_writes_while_it_follows_the_feed(search):
    doc = search_pb.SearchDocument(image_id="x")
    calls = (
        lambda: search.stub.IndexImage(search_pb.IndexImageRequest(document=doc), timeout=10),
        lambda: search.stub.RemoveImage(search_pb.RemoveImageRequest(image_id="x"), timeout=10),
        lambda: search.stub.Rebuild(iter([search_pb.RebuildRequest(document=doc)]), timeout=10),
    )
    for call in calls:
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "change feed" in err.value.details()
    assert search.stats().document_count == 0


def test_a_restarted_search_resumes_from_its_snapshot_seq(tmp_path, storage, photo_jpegs):
    search = Search(tmp_path / "search", storage.address).start()
    kept = storage.put_ready(photo_jpegs["coffee"], "a.jpg", [label("espresso")])
    doomed = storage.put_ready(photo_jpegs["rocket"], "b.jpg", [label("space shuttle")])
    applied = search.caught_up_with(storage).applied_seq
    search.stop()

    # While search is down: a new image, a delete and a re-tag.
    added = storage.put_ready(photo_jpegs["camera"], "c.jpg", [label("reflex camera")])
    storage.delete(doomed)
    storage.annotate(kept, tags=["breakfast"])

    restarted = Search(tmp_path / "search", storage.address)
    restarted.start()
    try:
        # It loaded the snapshot at the seq it had applied, not from 0.
        assert restarted.feed.status().applied_seq >= applied > 0
        stats = restarted.caught_up_with(storage)
        assert restarted.ids("camera") == [added]
        assert restarted.ids("shuttle") == []
        assert restarted.ids("breakfast") == [kept]
        assert stats.document_count == 2  # nothing duplicated
    finally:
        restarted.stop()


def test_a_restart_replays_only_what_the_snapshot_lacks(tmp_path, storage, photo_jpegs):
    search = Search(tmp_path / "search", storage.address).start()
    storage.put_ready(photo_jpegs["coffee"], "a.jpg", [label("espresso")])
    applied = search.caught_up_with(storage).applied_seq
    search.stop()

    reopened = DurableIndex.open(tmp_path / "search")
    try:
        assert reopened.applied_seq == applied and len(reopened) == 1
    finally:
        reopened.close()


def test_a_deleted_index_directory_is_rebuilt_by_replay(tmp_path, storage, photo_jpegs):
    words = {"coffee": "mug", "rocket": "shuttle", "camera": "reflex", "astronaut": "helmet"}
    ids = {
        name: storage.put_ready(photo_jpegs[name], f"{name}.jpg", [label(word)])
        for name, word in words.items()
    }
    storage.delete(ids.pop("camera"))
    search = Search(tmp_path / "search", storage.address).start()
    search.caught_up_with(storage)
    search.stop()

    shutil.rmtree(tmp_path / "search")
    search = Search(tmp_path / "search", storage.address).start()
    try:
        stats = search.caught_up_with(storage)
        assert stats.document_count == 3
        for name, word in words.items():
            assert search.ids(word) == ([ids[name]] if name in ids else [])
    finally:
        search.stop()


def test_a_replay_from_zero_reports_progress_and_saves_its_end(
    tmp_path, storage, photo_jpegs, caplog
):
    for i in range(4):
        storage.put_ready(jpeg_variant(photo_jpegs["rocket"], i), f"r{i}.jpg", [label("shuttle")])
    head = storage.head_seq()
    caplog.set_level("INFO", logger="search_service")

    # Any backlog counts as a replay here (the service's default is 1000 seqs behind).
    search = Search(tmp_path / "search", storage.address, replay_lag=1).start()
    try:
        stats = search.caught_up_with(storage)
        eventually(lambda: not search.stats().replaying, what="the replay ends")
        assert search.stats().replay_progress == 1.0 and stats.document_count == 4
        replaying = [
            r for r in caplog.records if r.getMessage() == "replaying storage's change feed"
        ]
        assert [(r.from_seq, r.to_seq) for r in replaying][:1] == [(0, head)]
        assert any(r.getMessage() == "replay done" for r in caplog.records)
        # The replay's end is saved at once (no need to wait for N changes or a shutdown).
        from search_service.snapshot import read_snapshot

        assert int(read_snapshot(tmp_path / "search" / "index.snap")["seq"]) == head
    finally:
        search.stop()


def test_a_store_replaced_by_an_older_one_is_resynchronised(tmp_path, photo_jpegs):
    first = Storage(tmp_path / "first").start()
    for i in range(3):
        first.put_ready(jpeg_variant(photo_jpegs["rocket"], i), f"r{i}.jpg", [label("shuttle")])
    search = Search(tmp_path / "search", first.address).start()
    search.caught_up_with(first)
    search.stop()
    first.stop()

    # Another store (a restore of an older backup) at the same address, with fewer seqs.
    second = Storage(tmp_path / "second")
    second.address = first.address
    second.start()
    search = Search(tmp_path / "search", second.address).start()
    try:
        mug = second.put_ready(photo_jpegs["coffee"], "c.jpg", [label("mug")])
        eventually(lambda: search.ids("mug") == [mug], what="the new store's image")
        assert search.ids("shuttle") == []  # nothing the index knew of the old store
        assert search.feed.status().resyncs == 1
    finally:
        search.stop()
        second.stop()


def test_the_consumer_reconnects_when_storage_comes_back(tmp_path, photo_jpegs):
    storage = Storage(tmp_path / "storage").start()
    search = Search(tmp_path / "search", storage.address).start()
    try:
        coffee = storage.put_ready(photo_jpegs["coffee"], "a.jpg", [label("espresso")])
        search.caught_up_with(storage)

        storage.stop()
        eventually(lambda: not search.stats().following, what="search notices storage is down")
        assert search.stats().feed_error
        assert search.ids("espresso") == [coffee]  # still answering from its index

        storage.start()
        rocket = storage.put_ready(photo_jpegs["rocket"], "b.jpg", [label("space shuttle")])
        eventually(lambda: search.ids("shuttle") == [rocket], what="reconnected and applied")
        assert search.stats().following and not search.stats().feed_error
    finally:
        search.stop()
        storage.stop()


def test_a_compacted_feed_is_resynchronised_from_the_listing(tmp_path, photo_jpegs):
    # Small memtables (every few photos flush to a segment) and a short feed history.
    options = StoreOptions(memtable_bytes=200_000, feed_retention_seqs=2, compact_min_segments=1000)
    storage = Storage(tmp_path / "storage", options).start()
    try:
        ids = [
            storage.put_ready(jpeg_variant(photo_jpegs["coffee"], i), f"c{i}.jpg", [label("mug")])
            for i in range(6)
        ]
        storage.delete(ids[0])
        storage.annotate(ids[1], status=PENDING)
        storage.stub.Compact(storage_pb.CompactRequest(), timeout=60)
        horizon = storage.stub.GetStats(storage_pb.GetStatsRequest(), timeout=10).horizon_seq
        assert horizon > 1  # the feed no longer starts at the beginning

        search = Search(tmp_path / "search", storage.address).start()
        try:
            stats = search.caught_up_with(storage)
            assert search.feed.status().resyncs == 1
            assert search.ids("mug") == sorted(ids[2:])
            assert stats.document_count == 4

            # And it follows live changes from the listing's seq on.
            storage.delete(ids[2])
            eventually(lambda: search.ids("mug") == sorted(ids[3:]))
        finally:
            search.stop()
    finally:
        storage.stop()


def test_the_storage_address_comes_from_the_ports_every_service_uses():
    from search_service.config import SearchConfig

    assert SearchConfig.from_env({"SEARCH_PORT": "0"}).storage_address == "127.0.0.1:50051"
    assert SearchConfig.from_env({"IMAGEREPO_BASE_PORT": "9000"}).storage_address.endswith(":9001")
    assert SearchConfig.from_env({"STORAGE_PORT": "7001"}).storage_address.endswith(":7001")
    explicit = {"SEARCH_STORAGE_ADDR": "dns:///storage:50051", "STORAGE_PORT": "7001"}
    assert SearchConfig.from_env(explicit).storage_address == "dns:///storage:50051"


def test_the_feed_reads_storages_v2_image_as_the_document_v1_made():
    """The feed speaks storage v2: an unset class index is the index's -1 (0 is "tench", a
    real class), colour enums are the colour words, create_time is milliseconds."""
    from google.protobuf.timestamp_pb2 import Timestamp

    from imagerepo.common.v2 import common_pb2 as common_v2
    from imagerepo.storage.v2 import storage_service_pb2 as storage_v2
    from search_service.storage_feed import document_from_image

    image = storage_v2.ImageMetadata(
        id="v2",
        filename="tench.jpg",
        labels=[
            common_v2.Label(name="tench", probability=0.8, class_index=0),
            common_v2.Label(name="reel", probability=0.1),
        ],
        colours=[
            common_v2.ColourShare(colour=common_v2.COLOUR_GREEN, share=0.6),
            common_v2.ColourShare(colour=common_v2.COLOUR_UNSPECIFIED, share=0.1),
        ],
        moderation_score=0.0,
        status=common_v2.ANALYSIS_STATUS_READY,
        create_time=Timestamp(seconds=1_700_000_000, nanos=5_000_000),
    )

    document = document_from_image(image)

    assert [(lb.name, lb.class_index) for lb in document.labels] == [("tench", 0), ("reel", -1)]
    assert [(word, round(share, 3)) for word, share in document.colours] == [("green", 0.6)]
    assert document.created_at_unix_ms == 1_700_000_000_005
    assert document.moderation_score == 0.0


def test_a_damaged_row_in_storage_is_recorded_and_the_feed_goes_past_it(tmp_path, photo_jpegs):
    storage = Storage(tmp_path / "storage").start()
    victim = storage.put_ready(photo_jpegs["coffee"], "a.jpg", [label("espresso")])
    rocket = storage.put_ready(photo_jpegs["rocket"], "b.jpg", [label("space shuttle")])
    storage.stop()
    # Into a segment, then one byte of the first image's metadata row flipped on disk.
    store = ColumnStore.open(tmp_path / "storage", storage.options)
    store.flush()
    store.close()
    damage_row_meta(tmp_path / "storage", victim)
    storage.start()
    search = Search(tmp_path / "search", storage.address).start()
    try:
        camera = storage.put_ready(photo_jpegs["camera"], "c.jpg", [label("reflex camera")])
        # From seq 0 the replay reaches the damaged put (and its annotate), records both and
        # goes on: what came before and after it is indexed.
        search.caught_up_with(storage, timeout_s=20)
        assert search.ids("shuttle") == [rocket]
        assert search.ids("camera") == [camera]
        assert search.ids("espresso") == []  # storage cannot serve it (DATA_LOSS) either
        status = search.feed.status()
        assert status.damaged_changes == 2 and victim in status.last_damaged
        assert "checksum" in status.last_damaged
        assert status.connected and not status.last_error
        # Operators see it in GetStats too (v1, and v2 through its translation).
        stats = search.stats()
        assert stats.feed_damaged_changes == 2 and victim in stats.last_damaged_change
        v2 = search.v2.GetStats(search_v2_pb.GetStatsRequest(), timeout=10)
        assert v2.feed_damaged_changes == 2 and v2.last_damaged_change == stats.last_damaged_change
    finally:
        search.stop()
        storage.stop()


class _SizedIndex(DurableIndex):
    """The real index, noting how many changes each apply got."""

    applied_sizes: list[int]

    def apply(self, changes):
        changes = list(changes)
        self.applied_sizes.append(len(changes))
        return super().apply(changes)


def test_a_backlog_is_applied_in_gathered_batches_and_live_changes_at_once(
    tmp_path, storage, photo_jpegs
):
    ids = [
        storage.put_ready(jpeg_variant(photo_jpegs["rocket"], i), f"r{i}.jpg", [label("shuttle")])
        for i in range(12)
    ]  # 24 changes of backlog
    index = _SizedIndex.open(tmp_path / "search")
    index.applied_sizes = []
    source = StorageFeed(storage.address, max_batch=2, max_backlog_batch=8)
    feed = FeedConsumer(index, source, retry_initial_s=0.05, max_gather=10)
    feed.start()
    try:
        head = storage.head_seq()
        eventually(lambda: index.applied_seq >= head, what="the backlog applied")
        # Messages of 2, 4, 8, 8, 2 changes: gathered while storage says more follow, applied
        # once about 10 are in hand (never one message at a time, never all at once).
        assert index.applied_sizes == [2 + 4 + 8, 8 + 2]
        assert len(index) == 12
        assert sorted(
            h.image_id for h in index.search("shuttle", limit=50, semantic=False).hits
        ) == sorted(ids)
        # Caught up: a live change is applied by itself, at once.
        before = len(index.applied_sizes)
        storage.put_ready(photo_jpegs["coffee"], "c.jpg", [label("espresso")])
        eventually(lambda: len(index) == 13, timeout_s=5, what="the live image applied")
        assert all(n <= 2 for n in index.applied_sizes[before:])
    finally:
        feed.stop()
        source.close()
        index.close()
