"""The client library's change feed (`ImageRepoClient.watch`) and tags in the upload header,
against a real storage service on a free port over a data dir of its own (restarted under a
watching client in one test)."""

from __future__ import annotations

import io
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from imagerepo_client import (
    ChangeEvent,
    ChangeKind,
    CompactedError,
    ImageRepoClient,
    InvalidArgumentError,
    RetryPolicy,
    StorageClient,
)
from PIL import Image

from imagerepo.storage.v2 import storage_service_pb2 as storage_pb
from imagerepo.storage.v2 import storage_service_pb2_grpc as storage_grpc
from storage_service.columnstore.store import ColumnStore, StoreOptions
from storage_service.server import build_server
from tests.support import free_port


@dataclass
class Storage:
    """A running storage service and how to stop it."""

    address: str
    server: grpc.Server
    store: ColumnStore

    def stop(self) -> None:
        self.server.stop(grace=None).wait()
        self.store.close()


def start_storage(data_dir: Path, address: str, retention: int = 1_000_000) -> Storage:
    store = ColumnStore.open(
        data_dir,
        StoreOptions(
            compact_min_segments=1000, compact_dead_fraction=2.0, feed_retention_seqs=retention
        ),
    )
    server, port, health = build_server(store, address, heartbeat_s=0.3)
    server.start()
    health.set_serving(True)
    return Storage(f"127.0.0.1:{port}", server, store)


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    served = start_storage(tmp_path / "storage", "127.0.0.1:0")
    yield served
    served.stop()


@pytest.fixture
def repo(storage: Storage) -> Iterator[ImageRepoClient]:
    client = ImageRepoClient(storage_address=storage.address, owner="watcher")
    yield client
    client.close()


def photo(photo_jpegs: dict[str, bytes], name: str) -> bytes:
    """A real photo as new bytes (a unique JPEG comment), never a duplicate of another test's."""
    with Image.open(io.BytesIO(photo_jpegs[name])) as im:
        out = io.BytesIO()
        im.convert("RGB").save(out, "JPEG", quality=90, comment=uuid.uuid4().hex.encode())
    return out.getvalue()


def collect(
    events: Iterator[ChangeEvent], count: int, timeout_s: float = 30.0
) -> list[ChangeEvent]:
    """The first `count` events of a live watch, read in a thread (a hang fails, not blocks)."""
    got: list[ChangeEvent] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for event in events:
                got.append(event)
                if len(got) == count:
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if errors:
        raise errors[0]
    assert not thread.is_alive(), f"only {len(got)} of {count} events in {timeout_s} s: {got}"
    return got


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_upload_tags_travel_in_the_header(storage, photo_jpegs):
    with StorageClient(storage.address) as client:
        reply = client.put_image(
            photo(photo_jpegs, "rocket"), "rocket.jpg", tags=["space", "launch"]
        )

        stored = client.get_image(reply.image.id)

    assert sorted(reply.image.tags) == ["launch", "space"]
    assert sorted(stored.tags) == ["launch", "space"]


def test_upload_with_tags_makes_no_second_call(storage, photo_jpegs):
    calls: list[str] = []

    class Count(grpc.UnaryUnaryClientInterceptor, grpc.StreamUnaryClientInterceptor):
        def intercept_unary_unary(self, continuation, details, request):
            calls.append(details.method)
            return continuation(details, request)

        def intercept_stream_unary(self, continuation, details, requests):
            calls.append(details.method)
            return continuation(details, requests)

    channel = grpc.intercept_channel(grpc.insecure_channel(storage.address), Count())
    client = ImageRepoClient(storage_address=storage.address, owner="tags")
    client.storage = StorageClient(channel)

    result = client.upload(photo(photo_jpegs, "coffee"), "coffee.jpg", tags=["morning"])

    assert list(result.image.tags) == ["morning"]
    assert calls == ["/imagerepo.storage.v2.StorageService/PutImage"]
    channel.close()


def test_tags_are_added_to_the_copy_already_stored(repo, photo_jpegs):
    data = photo(photo_jpegs, "chelsea")
    first = repo.upload(data, "cat.jpg")

    again = repo.upload(data, "cat.jpg", tags=["pets"])

    assert again.already_stored and again.image.id == first.image.id
    assert list(again.image.tags) == ["pets"]
    assert list(repo.get(first.image.id).tags) == ["pets"]


def test_a_bad_tag_is_refused_before_anything_is_stored(repo, photo_jpegs):
    with pytest.raises(InvalidArgumentError) as info:
        repo.upload(photo(photo_jpegs, "camera"), "camera.jpg", tags=["x" * 10_000])

    assert info.value.reason == "POLICY_VIOLATION"
    assert list(repo.list()) == []


def test_watch_yields_typed_events_in_order(repo, photo_jpegs):
    up = repo.upload(photo(photo_jpegs, "rocket"), "rocket.jpg", tags=["space"])
    repo.storage.update_tags(up.image.id, remove=["space"])
    repo.storage.delete_image(up.image.id)

    events = list(repo.watch(follow=False))

    assert [e.kind for e in events] == [
        ChangeKind.PUT,
        ChangeKind.ANNOTATE,
        ChangeKind.ANNOTATE,
        ChangeKind.DELETE,
    ]
    assert {e.image_id for e in events} == {up.image.id}
    assert [e.seq for e in events] == sorted({e.seq for e in events})
    # Each event carries the image as it is now: deleted, so none.
    assert all(e.image is None for e in events)
    assert events[-1].head_seq == events[-1].seq


def test_watch_resumes_after_a_seq(repo, photo_jpegs):
    for name in ("rocket", "coffee", "chelsea"):
        repo.upload(photo(photo_jpegs, name), f"{name}.jpg")
    everything = list(repo.watch(follow=False))

    rest = list(repo.watch(after_seq=everything[0].seq, follow=False))

    assert [e.seq for e in rest] == [e.seq for e in everything[1:]]
    assert [e.image.filename for e in rest if e.image] == ["coffee.jpg", "chelsea.jpg"]


def test_watch_follows_new_changes_live(repo, photo_jpegs):
    before = repo.upload(photo(photo_jpegs, "rocket"), "rocket.jpg")
    head = list(repo.watch(follow=False))[-1].seq
    live = repo.watch(after_seq=head)

    later = threading.Timer(0.5, lambda: repo.upload(photo(photo_jpegs, "coffee"), "coffee.jpg"))
    later.start()
    events = collect(live, 1)
    later.join()
    live.close()

    assert events[0].kind is ChangeKind.PUT
    assert events[0].image_id != before.image.id
    assert events[0].image is not None and events[0].image.filename == "coffee.jpg"


def test_watch_reconnects_across_a_restarted_storage_and_loses_nothing(tmp_path, photo_jpegs):
    address = f"127.0.0.1:{free_port()}"
    served = start_storage(tmp_path / "storage", address)
    repo = ImageRepoClient(storage_address=address, owner="restart")
    first = repo.upload(photo(photo_jpegs, "rocket"), "rocket.jpg")
    live = repo.watch(reconnect=RetryPolicy(attempts=60, first_backoff_s=0.1, max_backoff_s=0.3))
    assert collect(live, 1)[0].image_id == first.image.id
    served.stop()
    restarted = start_storage(tmp_path / "storage", address)
    try:
        second = repo.upload(photo(photo_jpegs, "coffee"), "coffee.jpg")

        events = collect(live, 1)
    finally:
        live.close()
        repo.close()
        restarted.stop()

    assert [(e.kind, e.image_id) for e in events] == [(ChangeKind.PUT, second.image.id)]


def test_watch_gives_up_with_unavailable_when_storage_stays_down():
    from imagerepo_client import UnavailableError

    repo = ImageRepoClient(storage_address=f"127.0.0.1:{free_port()}")

    with pytest.raises(UnavailableError):
        list(repo.watch(reconnect=RetryPolicy(attempts=3, first_backoff_s=0.05, max_backoff_s=0.1)))
    repo.close()


def test_watch_below_the_retained_history_raises_compacted(tmp_path, photo_jpegs):
    served = start_storage(tmp_path / "storage", "127.0.0.1:0", retention=2)
    repo = ImageRepoClient(storage_address=served.address, owner="compact")
    try:
        ids = [
            repo.upload(photo(photo_jpegs, n), f"{n}.jpg").image.id for n in ("rocket", "coffee")
        ]
        for image_id in ids:
            repo.storage.update_tags(image_id, add=["x"])
        repo.storage.delete_image(ids[0])
        served.store.flush()
        repo.storage.stub.Compact(storage_pb.CompactRequest(), timeout=30)
        horizon = repo.storage.get_stats().horizon_seq
        assert horizon > 2

        with pytest.raises(CompactedError) as info:
            list(repo.watch(after_seq=1, follow=False))
    finally:
        repo.close()
        served.stop()

    assert info.value.horizon_seq == horizon
    assert info.value.code == grpc.StatusCode.OUT_OF_RANGE


def test_watch_is_served_by_the_raw_stub_too(storage):
    # The contract the client relies on: a replay of an empty store ends with one heartbeat.
    with grpc.insecure_channel(storage.address) as channel:
        replies = list(
            storage_grpc.StorageServiceStub(channel).WatchChanges(
                storage_pb.WatchChangesRequest(follow=False), timeout=10
            )
        )

    assert len(replies) == 1 and not replies[0].changes
