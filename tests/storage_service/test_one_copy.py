"""One copy per photo over real gRPC: PutImage keep_duplicate/already_stored, FindBySha256 and
BatchGetImages, against the real storage service on real photos."""

from __future__ import annotations

import hashlib
import threading

import grpc
import pytest

from imagerepo.storage.v1 import storage_service_pb2 as pb
from imagerepo.storage.v1 import storage_service_pb2_grpc as pb_grpc
from tests.storage_service.conftest import jpeg_variant, put


def _put(stub, data: bytes, filename: str, owner: str = "", keep: bool = False):
    header = pb.PutImageHeader(filename=filename, owner=owner, keep_duplicate=keep)
    messages = [pb.PutImageRequest(header=header), pb.PutImageRequest(chunk=data)]
    return stub.PutImage(iter(messages), timeout=30)


def _count(storage) -> int:
    return storage.stub.ListImages(pb.ListImagesRequest()).total_count


def test_same_bytes_for_the_same_owner_are_stored_once(storage, photo_jpegs):
    first = _put(storage.stub, photo_jpegs["coffee"], "coffee.jpg", owner="alice")

    again = _put(storage.stub, photo_jpegs["coffee"], "coffee (copy).jpg", owner="alice")

    assert not first.already_stored
    assert again.already_stored
    assert again.image.id == first.image.id
    assert again.image.filename == "coffee.jpg"
    assert _count(storage) == 1


def test_another_owner_or_keep_duplicate_stores_a_second_copy(storage, photo_jpegs):
    first = _put(storage.stub, photo_jpegs["rocket"], "rocket.jpg", owner="alice")

    bobs = _put(storage.stub, photo_jpegs["rocket"], "rocket.jpg", owner="bob")
    kept = _put(storage.stub, photo_jpegs["rocket"], "rocket-2.jpg", owner="alice", keep=True)

    assert not bobs.already_stored and not kept.already_stored
    assert len({first.image.id, bobs.image.id, kept.image.id}) == 3
    assert list(kept.duplicate_of) == [bobs.image.id, first.image.id]
    assert _count(storage) == 3


def test_a_deleted_photo_uploaded_again_is_stored_again(storage, photo_jpegs):
    first = _put(storage.stub, photo_jpegs["china"], "china.jpg")
    storage.stub.DeleteImage(pb.DeleteImageRequest(image_id=first.image.id))

    again = _put(storage.stub, photo_jpegs["china"], "china.jpg")

    assert not again.already_stored
    assert again.image.id != first.image.id


def test_eight_identical_concurrent_uploads_keep_one_copy(storage, photo_jpegs):
    data = photo_jpegs["flower"]
    replies: list[pb.PutImageResponse] = []
    lock = threading.Lock()

    def upload() -> None:
        reply = _put(storage.stub, data, "flower.jpg", owner="alice")
        with lock:
            replies.append(reply)

    threads = [threading.Thread(target=upload) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len({r.image.id for r in replies}) == 1
    assert sum(not r.already_stored for r in replies) == 1
    assert _count(storage) == 1


def test_find_by_sha256_answers_each_digest_in_order(storage, photo_jpegs):
    alice = _put(storage.stub, photo_jpegs["astronaut"], "a.jpg", owner="alice").image
    bob = _put(storage.stub, photo_jpegs["astronaut"], "b.jpg", owner="bob").image
    storage.store.flush()
    stored = hashlib.sha256(photo_jpegs["astronaut"]).hexdigest()
    unknown = hashlib.sha256(b"never uploaded").hexdigest()

    everyone = storage.stub.FindBySha256(pb.FindBySha256Request(sha256=[unknown, stored.upper()]))
    alices = storage.stub.FindBySha256(pb.FindBySha256Request(sha256=[stored], owner="alice"))
    anonymous = storage.stub.FindBySha256(pb.FindBySha256Request(sha256=[stored], owner=""))

    assert [m.sha256 for m in everyone.matches] == [unknown, stored]
    assert list(everyone.matches[0].image_ids) == []
    assert list(everyone.matches[1].image_ids) == [bob.id, alice.id]
    assert [i.filename for i in everyone.matches[1].images] == ["b.jpg", "a.jpg"]
    assert list(alices.matches[0].image_ids) == [alice.id]
    assert list(anonymous.matches[0].image_ids) == []
    assert not everyone.truncated


@pytest.mark.parametrize(
    "digests",
    [["not-a-sha"], ["ab" * 33], ["x" * 16384], ["0" * 64] * 1001],
    ids=["word", "too long", "16k", "1001 digests"],
)
def test_find_by_sha256_refuses_malformed_digests_briefly(storage, digests):
    with pytest.raises(grpc.RpcError) as info:
        storage.stub.FindBySha256(pb.FindBySha256Request(sha256=digests))

    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(info.value.details()) < 300


def test_batch_get_images_lists_found_and_missing_ids(storage, photo_jpegs):
    ids = [
        put(storage.stub, jpeg_variant(photo_jpegs["camera"], i), f"c{i}.jpg").image.id
        for i in range(3)
    ]
    storage.store.flush()
    missing = "0" * 32

    reply = storage.stub.BatchGetImages(
        pb.BatchGetImagesRequest(image_ids=[ids[2], missing, ids[0], ids[2]])
    )

    assert [m.id for m in reply.images] == [ids[2], ids[0]]
    assert list(reply.not_found_ids) == [missing]
    assert list(reply.unreadable_ids) == []
    assert [m.filename for m in reply.images] == ["c2.jpg", "c0.jpg"]


def test_batch_get_images_refuses_oversized_batches_and_ids(storage):
    for ids in (["x"] * 1001, ["y" * 20000], [""]):
        with pytest.raises(grpc.RpcError) as info:
            storage.stub.BatchGetImages(pb.BatchGetImagesRequest(image_ids=ids))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert len(info.value.details()) < 300


def test_an_already_stored_photo_is_not_decoded_again(storage, photo_jpegs):
    """The second server over the same store has a decode budget too small for this photo: it
    can still answer the re-upload, because it recognises the bytes before decoding them."""
    from service_runtime.grpc_server import channel_options
    from storage_service.server import build_server

    data = photo_jpegs["astronaut"]
    first = _put(storage.stub, data, "astronaut.jpg", owner="alice").image
    server, port, _ = build_server(storage.store, "127.0.0.1:0", decode_memory_bytes=1024)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=channel_options()) as channel:
            stub = pb_grpc.StorageServiceStub(channel)
            again = _put(stub, data, "astronaut.jpg", owner="alice")
            with pytest.raises(grpc.RpcError) as info:
                _put(stub, data, "astronaut.jpg", owner="bob")
    finally:
        server.stop(grace=None)

    assert again.already_stored and again.image.id == first.id
    assert "decode budget" in info.value.details()
