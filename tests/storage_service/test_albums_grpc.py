"""Album RPCs on the real storage service (port 0), and on a real process killed with -9:
codes and reasons for bad input, pages with metadata, restarts keep every album."""

from __future__ import annotations

import random
import threading
import time

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from imagerepo.storage.v1 import storage_service_pb2 as pb
from tests.storage_service.conftest import jpeg_variant, put
from tests.storage_service.test_crash_recovery import StorageProcess


def _reason(error: grpc.RpcError) -> str:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    for detail in status.details if status else []:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    return ""


@pytest.fixture
def photos(storage, photo_jpegs):
    """Four of owner "o"'s photos and one of owner "p"'s, stored."""
    data = list(photo_jpegs.values())
    ids = [put(storage.stub, jpeg_variant(data[0], i), f"{i}.jpg", "o").image.id for i in range(4)]
    theirs = put(storage.stub, jpeg_variant(data[0], 9), "t.jpg", "p").image.id
    return ids, theirs


def test_album_lifecycle_over_grpc_survives_a_restart(storage_runner, storage, photos):
    ids, theirs = photos
    stub = storage.stub

    made = stub.CreateAlbum(pb.CreateAlbumRequest(name="Trip", owner="o", image_ids=ids[:2]))
    added = stub.AddToAlbum(
        pb.AddToAlbumRequest(album_id=made.album.id, image_ids=[ids[3], ids[0], theirs])
    )
    removed = stub.RemoveFromAlbum(
        pb.RemoveFromAlbumRequest(album_id=made.album.id, image_ids=[ids[1], ids[2]])
    )
    renamed = stub.RenameAlbum(pb.RenameAlbumRequest(album_id=made.album.id, name="Trip 2019"))
    stub = storage_runner.restart().stub
    got = stub.GetAlbum(pb.GetAlbumRequest(album_id=made.album.id, include_images=True))

    assert made.album.image_count == 2 and made.album.owner == "o"
    assert list(added.added_ids) == [ids[3]]
    assert list(added.already_ids) == [ids[0]]
    assert list(added.not_found_ids) == [theirs]
    assert list(removed.removed_ids) == [ids[1]] and list(removed.not_in_album_ids) == [ids[2]]
    assert renamed.album.name == "Trip 2019"
    assert got.album.name == "Trip 2019" and got.album.image_count == 2
    assert list(got.image_ids) == [ids[0], ids[3]]
    assert [m.id for m in got.images] == [ids[0], ids[3]]
    assert got.album.cover_image_id == ids[0]
    listed = stub.ListAlbums(pb.ListAlbumsRequest(owner="o"))
    assert [a.name for a in listed.albums] == ["Trip 2019"] and listed.total_count == 1
    assert stub.ListAlbums(pb.ListAlbumsRequest(owner="p")).total_count == 0
    holding = stub.ListAlbums(pb.ListAlbumsRequest(image_id=ids[3]))
    assert [a.id for a in holding.albums] == [made.album.id]
    assert stub.ListAlbums(pb.ListAlbumsRequest(image_id=ids[1])).total_count == 0
    stub.DeleteAlbum(pb.DeleteAlbumRequest(album_id=made.album.id))
    assert stub.ListAlbums(pb.ListAlbumsRequest()).total_count == 0
    assert stub.GetImage(pb.GetImageRequest(image_id=ids[0])).image.id == ids[0]


def test_trashed_and_deleted_images_leave_the_album_page(storage, photos):
    ids, _theirs = photos
    stub = storage.stub
    album = stub.CreateAlbum(pb.CreateAlbumRequest(name="a", owner="o", image_ids=ids)).album

    stub.DeleteImage(pb.DeleteImageRequest(image_id=ids[0]))
    stub.UpdateAnnotations(
        pb.UpdateAnnotationsRequest(
            image_id=ids[1],
            annotations=pb.Annotations(trashed=True),
            update_mask=FieldMask(paths=["trashed"]),
        )
    )
    first = stub.GetAlbum(pb.GetAlbumRequest(album_id=album.id, page_size=1))
    second = stub.GetAlbum(
        pb.GetAlbumRequest(album_id=album.id, page_size=1, page_token=first.next_page_token)
    )

    assert list(first.image_ids) == [ids[2]] and first.album.image_count == 2
    assert list(second.image_ids) == [ids[3]] and not second.next_page_token


def test_bad_requests_get_precise_codes_and_reasons(storage, photos):
    stub = storage.stub
    stub.CreateAlbum(pb.CreateAlbumRequest(name="Same", owner="o"))

    cases = [
        (
            lambda: stub.GetAlbum(pb.GetAlbumRequest(album_id="nope")),
            "NOT_FOUND",
            "ALBUM_NOT_FOUND",
        ),
        (
            lambda: stub.AddToAlbum(pb.AddToAlbumRequest(album_id="nope", image_ids=["x"])),
            "NOT_FOUND",
            "ALBUM_NOT_FOUND",
        ),
        (
            lambda: stub.CreateAlbum(pb.CreateAlbumRequest(name="same", owner="o")),
            "ALREADY_EXISTS",
            "ALBUM_EXISTS",
        ),
        (lambda: stub.CreateAlbum(pb.CreateAlbumRequest(name=" ")), "INVALID_ARGUMENT", ""),
        (
            lambda: stub.CreateAlbum(pb.CreateAlbumRequest(name="x" * 201)),
            "INVALID_ARGUMENT",
            "",
        ),
        (lambda: stub.RenameAlbum(pb.RenameAlbumRequest(name="x")), "INVALID_ARGUMENT", ""),
        (
            lambda: stub.AddToAlbum(pb.AddToAlbumRequest(album_id="a", image_ids=["i"] * 1001)),
            "INVALID_ARGUMENT",
            "POLICY_VIOLATION",
        ),
        (
            lambda: stub.GetAlbum(pb.GetAlbumRequest(album_id="a", page_token="%%")),
            "INVALID_ARGUMENT",
            "",
        ),
    ]
    for call, code, reason in cases:
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code().name == code, caught.value.details()
        if reason:
            assert _reason(caught.value) == reason
        assert caught.value.details()


def test_album_changes_acknowledged_before_kill_9_survive(tmp_path, photo_jpegs):
    service = StorageProcess(tmp_path / "data", tmp_path / "storage.log")
    stub = service.start()
    source = next(iter(photo_jpegs.values()))
    ids = [put(stub, jpeg_variant(source, i), f"{i}.jpg", "o").image.id for i in range(6)]
    acked: dict[str, tuple[str, ...]] = {}
    in_flight: dict[str, tuple[str, ...]] = {}
    stop = threading.Event()

    def write(rng: random.Random, tag: str) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                album = stub.CreateAlbum(
                    pb.CreateAlbumRequest(name=f"{tag}{n}", owner="o", image_ids=ids[:1]),
                    timeout=10,
                ).album
                acked[album.id] = (ids[0],)
                extra = rng.choice(ids[1:])
                in_flight[album.id] = (ids[0], extra)
                stub.AddToAlbum(
                    pb.AddToAlbumRequest(album_id=album.id, image_ids=[extra]), timeout=10
                )
                acked[album.id] = (ids[0], extra)
                del in_flight[album.id]
            except grpc.RpcError:
                return

    writers = [threading.Thread(target=write, args=(random.Random(k), f"w{k}-")) for k in range(3)]
    for w in writers:
        w.start()
    time.sleep(1.5)
    service.kill()
    stop.set()
    for w in writers:
        w.join(timeout=30)
    stub = service.start()

    try:
        assert len(acked) > 5
        for album_id, members in acked.items():
            got = tuple(stub.GetAlbum(pb.GetAlbumRequest(album_id=album_id)).image_ids)
            assert got in (members, in_flight.get(album_id, members)), album_id
    finally:
        assert service.terminate() == 0
