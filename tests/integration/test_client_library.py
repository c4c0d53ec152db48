"""The Python client library (clients/python, `imagerepo_client`) against real services.

The shared stack's analysis worker analyses what the client stores and search follows
storage's change feed, so search and similar images see client uploads with no gateway
involved; a storage service of its own is restarted under the client.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import threading
import time
import uuid

import grpc
import pytest
from imagerepo_client import (
    Credentials,
    ImageRepoClient,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
    RetryPolicy,
    StorageClient,
    StorageFullError,
    UnauthenticatedError,
    UnavailableError,
)
from imagerepo_client.services import CHUNK_BYTES
from PIL import Image

from storage_service.columnstore.fs import Fault, FaultInjectingFileSystem
from storage_service.columnstore.store import ColumnStore
from storage_service.server import build_server as build_storage_server
from tests.service_runtime.certs import issue, make_ca
from tests.support import free_port

from .conftest import fresh_jpeg
from .storage_factory import open_storage


@pytest.fixture
def repo(stack):
    """A client of the shared stack under an owner of its own (so listings are this test's)."""
    client = ImageRepoClient(
        storage_address=f"127.0.0.1:{stack.ports['storage']}",
        search_address=f"127.0.0.1:{stack.ports['search']}",
        vision_address=f"127.0.0.1:{stack.ports['vision']}",
        owner=f"client-{uuid.uuid4().hex[:8]}",
    )
    yield client
    client.close()


def _large_png(path) -> bytes:
    """A real photo scaled to 3000x2400 and saved uncompressed: about 21 MB, more than one
    gRPC message may carry, so only a chunked upload gets it there."""
    with Image.open(path) as im:
        big = im.convert("RGB").resize((3000, 2400), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    big.save(out, "PNG", compress_level=0)
    return out.getvalue()


def test_upload_of_a_large_photo_is_streamed_in_chunks_and_downloads_identical(
    repo, photo_paths, tmp_path
):
    data = _large_png(photo_paths["astronaut"])
    assert len(data) > 16 * 1024 * 1024 > CHUNK_BYTES

    result = repo.upload(data, filename="astronaut-large.png")

    assert not result.already_stored
    assert result.image.byte_size == len(data)
    assert result.image.sha256 == hashlib.sha256(data).hexdigest()
    assert (result.image.width, result.image.height) == (3000, 2400)
    saved = tmp_path / "copy.png"
    assert repo.download(result.image.id, saved) == data
    assert saved.read_bytes() == data


def test_a_large_photo_already_stored_is_not_sent_again(repo, photo_paths):
    data = _large_png(photo_paths["chelsea"])
    first = repo.upload(data, filename="chelsea-large.png")
    real_put, puts = repo.storage.stub.PutImage, []

    def counting_put(messages, **kwargs):
        puts.append(1)
        return real_put(messages, **kwargs)

    repo.storage.stub.PutImage = counting_put

    again = repo.upload(data, filename="chelsea-large-again.png", tags=["again"])

    assert again.already_stored and again.image.id == first.image.id
    assert puts == []  # asked by sha256 first: no bytes went over the wire
    assert "again" in repo.get(first.image.id).tags


def test_upload_from_a_path_keeps_its_name_and_adds_tags(repo, photo_paths):
    result = repo.upload(photo_paths["rocket"], tags=["launch", "client-test"])

    image = repo.get(result.image.id)
    assert image.filename == "rocket.jpg"
    assert image.owner == repo.owner
    assert set(image.tags) == {"launch", "client-test"}


def test_same_bytes_twice_are_stored_once_unless_asked(repo, photo_jpegs):
    data = fresh_jpeg(photo_jpegs["coffee"])

    first = repo.upload(data, filename="coffee.jpg")
    again = repo.upload(data, filename="coffee-again.jpg")
    kept = repo.upload(data, filename="coffee-kept.jpg", keep_duplicate=True)

    assert not first.already_stored
    assert again.already_stored and again.image.id == first.image.id
    assert not kept.already_stored and kept.image.id != first.image.id
    assert first.image.id in kept.duplicate_of
    assert sorted(i.id for i in repo.list()) == sorted([first.image.id, kept.image.id])


def test_find_by_sha256_names_stored_bytes_and_only_those(repo, photo_jpegs):
    stored = fresh_jpeg(photo_jpegs["china"])
    never_sent = fresh_jpeg(photo_jpegs["china"])
    image = repo.upload(stored, filename="china.jpg").image
    digests = [hashlib.sha256(d).hexdigest() for d in (stored, never_sent)]

    found = repo.find_by_sha256(digests)
    other_owner = repo.find_by_sha256(digests, owner="somebody-else")

    assert list(found) == [digests[0]]
    assert found[digests[0]].id == image.id
    assert other_owner == {}


def test_list_iterates_over_every_page(repo, photo_jpegs):
    ids = [repo.upload(fresh_jpeg(photo_jpegs["flower"]), f"f{i}.jpg").image.id for i in range(5)]

    pages = list(repo.pages(page_size=2))
    listed = [image.id for image in repo.list(page_size=2)]

    assert [len(p.images) for p in pages] == [2, 2, 1]
    assert all(p.total_count == 5 for p in pages)
    assert listed == list(reversed(ids))  # newest first


def test_search_and_similar_find_an_uploaded_photo_once_analysed(repo, photo_jpegs):
    tag = "zq" + "".join(chr(ord("a") + int(c, 16)) for c in uuid.uuid4().hex[:10])
    cat = repo.upload(fresh_jpeg(photo_jpegs["chelsea"]), "chelsea.jpg", tags=[tag]).image
    near = repo.upload(fresh_jpeg(photo_jpegs["chelsea"]), "chelsea-2.jpg").image

    analysed = repo.wait_until_analysed(cat.id)
    repo.wait_until_analysed(near.id)
    hits = repo.search(tag)
    by_id = repo.similar(cat.id, k=3)
    by_picture = repo.similar(photo_jpegs["chelsea"], k=3)

    assert analysed.labels, "the analysis worker analysed the client's upload"
    assert [h.image.id for h in hits] == [cat.id]
    assert ("tags", tag) in hits[0].reasons
    assert by_id[0].image.id == near.id and by_id[0].similarity > 0.9
    assert {r.image.id for r in by_picture} == {cat.id, near.id}


def test_delete_removes_the_image_from_storage_and_search(repo, photo_jpegs):
    tag = "zq" + "".join(chr(ord("a") + int(c, 16)) for c in uuid.uuid4().hex[:10])
    image = repo.upload(fresh_jpeg(photo_jpegs["camera"]), "camera.jpg", tags=[tag]).image
    repo.wait_until_analysed(image.id)
    assert repo.search_service.search(tag, owner=repo.owner).total_hits == 1

    repo.delete(image.id)

    with pytest.raises(NotFoundError) as caught:
        repo.get(image.id)
    assert caught.value.code == grpc.StatusCode.NOT_FOUND
    assert caught.value.reason == "NOT_FOUND"  # from the status's google.rpc.ErrorInfo
    assert image.id in str(caught.value)
    assert repo.search_service.search(tag, owner=repo.owner).total_hits == 0


def test_tags_added_after_analysis_are_searchable_at_once(repo, photo_jpegs):
    tag = "zq" + "".join(chr(ord("a") + int(c, 16)) for c in uuid.uuid4().hex[:10])
    image = repo.upload(fresh_jpeg(photo_jpegs["coffee"]), "coffee.jpg").image
    repo.wait_until_analysed(image.id)

    repo.add_tags(image.id, [tag])

    assert [hit.image.id for hit in repo.search(tag)] == [image.id]


def test_bytes_that_are_no_image_raise_invalid_argument(repo):
    with pytest.raises(InvalidArgumentError) as caught:
        repo.upload(b"this is a text file, not a photo", filename="notes.jpg")

    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.reason in ("UNSUPPORTED_FORMAT", "INVALID_IMAGE")
    assert caught.value.method == "PutImage"


def test_a_service_that_stays_down_raises_unavailable_after_retries():
    port = free_port()
    retry = RetryPolicy(attempts=3, first_backoff_s=0.05, max_backoff_s=0.1)
    with StorageClient(f"127.0.0.1:{port}", timeout_s=2.0, retry=retry) as storage:
        started = time.monotonic()
        with pytest.raises(UnavailableError) as caught:
            storage.get_image("anything")

    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - started < 10


def test_calls_are_retried_across_a_restarted_storage_service(tmp_path, photo_jpegs):
    port = free_port()
    address = f"127.0.0.1:{port}"
    server, _port, health, close = open_storage(address, tmp_path / "storage")
    server.start()
    health.set_serving(True)
    retry = RetryPolicy(attempts=30, first_backoff_s=0.1, max_backoff_s=0.3)
    repo = ImageRepoClient(storage_address=address, owner="restart", retry=retry)
    first = repo.upload(fresh_jpeg(photo_jpegs["rocket"]), "rocket.jpg").image
    server.stop(grace=None).wait()
    close()

    restarted: list = []

    def restart_later() -> None:
        time.sleep(1.5)
        again, _p, again_health, again_close = open_storage(address, tmp_path / "storage")
        again.start()
        again_health.set_serving(True)
        restarted.extend([again, again_close])

    thread = threading.Thread(target=restart_later)
    thread.start()
    try:
        # Both calls are made while the service is down; they succeed once it is back.
        image = repo.get(first.id)
        uploaded = repo.upload(fresh_jpeg(photo_jpegs["china"]), "china.jpg")
    finally:
        thread.join()
        repo.close()
        restarted[0].stop(grace=None).wait()
        restarted[1]()

    assert image.id == first.id
    assert not uploaded.already_stored


def test_a_full_disk_raises_storage_full_and_reads_go_on(tmp_path, photo_jpegs):
    fs = FaultInjectingFileSystem()
    store = ColumnStore.open(tmp_path / "storage", fs=fs)
    server, port, health = build_storage_server(store, "127.0.0.1:0")
    server.start()
    health.set_serving(True)
    retry = RetryPolicy(attempts=2, first_backoff_s=0.05, max_backoff_s=0.1)
    repo = ImageRepoClient(storage_address=f"127.0.0.1:{port}", retry=retry)
    try:
        kept = repo.upload(fresh_jpeg(photo_jpegs["rocket"]), "rocket.jpg").image
        fs.faults.append(Fault("write", errno.ENOSPC, path_part="wal"))

        with pytest.raises(StorageFullError) as caught:
            repo.upload(fresh_jpeg(photo_jpegs["china"]), "china.jpg")
        still_there = repo.get(kept.id)
    finally:
        repo.close()
        server.stop(grace=None).wait()
        store.close()

    assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert caught.value.reason == "STORAGE_FULL"
    assert isinstance(caught.value, ResourceExhaustedError)
    assert still_there.id == kept.id


def test_a_service_behind_mutual_tls_and_a_token_needs_the_credentials(
    tmp_path, monkeypatch, photo_jpegs
):
    ca, ca_key = make_ca()
    server_pem, client_pem = issue(ca, ca_key), issue(ca, ca_key, "client")
    files = {
        "IMAGEREPO_TLS_CA": ca.cert,
        "IMAGEREPO_TLS_CERT": server_pem.cert,
        "IMAGEREPO_TLS_KEY": server_pem.key,
        "IMAGEREPO_SERVICE_TOKEN_FILE": b"s3cret\n",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        monkeypatch.setenv(name, str(tmp_path / name))
    monkeypatch.setenv("IMAGEREPO_TLS_CLIENT_AUTH", "1")
    store = ColumnStore.open(tmp_path / "storage")
    server, port, health = build_storage_server(store, "127.0.0.1:0")  # TLS, from the env
    server.start()
    health.set_serving(True)
    (tmp_path / "client.pem").write_bytes(client_pem.cert)
    (tmp_path / "client.key").write_bytes(client_pem.key)
    client_env = {
        "IMAGEREPO_TLS_CA": str(tmp_path / "IMAGEREPO_TLS_CA"),
        "IMAGEREPO_TLS_CERT": str(tmp_path / "client.pem"),
        "IMAGEREPO_TLS_KEY": str(tmp_path / "client.key"),
        "IMAGEREPO_SERVICE_TOKEN_FILE": str(tmp_path / "IMAGEREPO_SERVICE_TOKEN_FILE"),
    }
    address = f"127.0.0.1:{port}"
    no_retry = RetryPolicy(attempts=1)
    try:
        with ImageRepoClient(
            storage_address=address, credentials=Credentials.from_env(client_env)
        ) as repo:
            stored = repo.upload(fresh_jpeg(photo_jpegs["rocket"]), "rocket.jpg").image
            fetched = repo.get(stored.id)
        without_token = dataclasses.replace(Credentials.from_env(client_env), service_token="")
        tokenless = ImageRepoClient(storage_address=address, credentials=without_token)
        plain = ImageRepoClient(storage_address=address, retry=no_retry, timeout_s=3)
        with tokenless, pytest.raises(UnauthenticatedError):
            tokenless.get(stored.id)
        with plain, pytest.raises(UnavailableError):  # plain text to a TLS port
            plain.get(stored.id)
    finally:
        server.stop(grace=None).wait()
        store.close()

    assert fetched.id == stored.id


def test_a_list_of_replicas_is_spread_round_robin_by_the_client():
    """The client's channel to "a,b,c": three real gRPC servers (the health service) each
    answer a share of the calls (pick_first, gRPC's default, would send them all to one)."""
    from concurrent import futures

    from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    from imagerepo_client.calls import channel_target, open_channel

    counts = [0, 0, 0]

    class Counting(health.HealthServicer):
        def __init__(self, slot: int) -> None:
            super().__init__()
            self.slot = slot

        def Check(self, request, context):
            counts[self.slot] += 1
            return super().Check(request, context)

    servers, addresses = [], []
    for slot in range(3):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        health_pb2_grpc.add_HealthServicer_to_server(Counting(slot), server)
        addresses.append(f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}")
        server.start()
        servers.append(server)
    try:
        assert channel_target(",".join(addresses)) == "ipv4:" + ",".join(addresses)
        with open_channel(",".join(addresses)) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            for _ in range(60):
                stub.Check(health_pb2.HealthCheckRequest(), timeout=5, wait_for_ready=True)
    finally:
        for server in servers:
            server.stop(None)

    assert sum(counts) == 60
    assert all(10 <= count <= 30 for count in counts), counts
