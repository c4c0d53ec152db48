"""imagerepo.storage.v2 served beside v1 by the same servicer, on real gRPC over a real store:
round trips of every kind of call, v2's types (Timestamps, enums, presence, opaque tokens),
the analysis queue, the change feed, albums, and v1 answering on the same port."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.field_mask_pb2 import FieldMask
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from PIL import Image

from imagerepo.common.v2 import common_pb2 as common
from imagerepo.storage.v1 import storage_service_pb2 as v1
from imagerepo.storage.v1 import storage_service_pb2_grpc as v1_grpc
from imagerepo.storage.v2 import storage_service_pb2 as pb
from imagerepo.storage.v2 import storage_service_pb2_grpc as pb_grpc
from service_runtime.grpc_server import channel_options
from storage_service.columnstore.store import ColumnStore
from storage_service.server import build_server


@pytest.fixture
def channel(tmp_path: Path) -> Iterator[grpc.Channel]:
    store = ColumnStore.open(tmp_path / "storage")
    server, port, health = build_server(store, "127.0.0.1:0", heartbeat_s=0.3)
    server.start()
    health.set_serving(True)
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=channel_options()) as chan:
        yield chan
    server.stop(grace=None).wait()
    store.close()


@pytest.fixture
def stub(channel: grpc.Channel) -> pb_grpc.StorageServiceStub:
    return pb_grpc.StorageServiceStub(channel)


@pytest.fixture
def v1_stub(channel: grpc.Channel) -> v1_grpc.StorageServiceStub:
    return v1_grpc.StorageServiceStub(channel)


def jpeg(photo_jpegs: dict[str, bytes], name: str) -> bytes:
    """A real photo as new bytes (a unique JPEG comment)."""
    with Image.open(io.BytesIO(photo_jpegs[name])) as im:
        out = io.BytesIO()
        im.convert("RGB").save(out, "JPEG", quality=90, comment=uuid.uuid4().hex.encode())
    return out.getvalue()


def put(stub, data: bytes, filename: str, tags=(), owner: str = "ann") -> pb.PutImageResponse:
    header = pb.PutImageHeader(
        filename=filename, owner=owner, expected_size=len(data), tags=list(tags)
    )
    messages = [pb.PutImageRequest(header=header)]
    messages += [pb.PutImageRequest(chunk=data[i : i + 65536]) for i in range(0, len(data), 65536)]
    return stub.PutImage(iter(messages), timeout=30)


def code_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.details()
    return info.value.code()


def test_put_then_get_round_trip_with_tags_and_timestamps(stub, photo_jpegs):
    data = jpeg(photo_jpegs, "rocket")

    put_reply = put(stub, data, "rocket.jpg", tags=["space"])
    got = stub.GetImage(pb.GetImageRequest(image_id=put_reply.image.id, include_data=True))

    image = got.image
    assert got.data == data
    assert (image.filename, image.owner, list(image.tags)) == ("rocket.jpg", "ann", ["space"])
    assert image.status == common.ANALYSIS_STATUS_PENDING
    assert image.create_time.seconds > 1_700_000_000
    assert image.HasField("taken_time") and not image.HasField("trash_time")
    assert not image.HasField("moderation_score")  # not analysed yet: no score, not 0


def test_the_same_bytes_again_answer_the_stored_copy(stub, photo_jpegs):
    data = jpeg(photo_jpegs, "coffee")
    first = put(stub, data, "a.jpg")

    second = put(stub, data, "b.jpg", tags=["cup"])

    assert second.already_stored and second.image.id == first.image.id
    assert list(second.image.tags) == ["cup"]


def test_batch_get_answers_in_request_order_and_lists_the_missing(stub, photo_jpegs):
    ids = [put(stub, jpeg(photo_jpegs, n), f"{n}.jpg").image.id for n in ("rocket", "coffee")]

    reply = stub.BatchGetImages(pb.BatchGetImagesRequest(image_ids=[ids[1], "nope", ids[0]]))

    assert [image.id for image in reply.images] == [ids[1], ids[0]]
    assert list(reply.not_found_ids) == ["nope"]


def test_list_pages_with_opaque_tokens_and_orders(stub, photo_jpegs):
    names = ("rocket", "coffee", "chelsea", "camera", "astronaut")
    ids = [put(stub, jpeg(photo_jpegs, n), f"{n}.jpg").image.id for n in names]

    seen, token, pages = [], "", 0
    while True:
        reply = stub.ListImages(pb.ListImagesRequest(page_size=2, page_token=token))
        seen += [image.id for image in reply.images]
        pages += 1
        token = reply.next_page_token
        if not token:
            break
    oldest_taken = stub.ListImages(
        pb.ListImagesRequest(page_size=10, order=pb.LIST_ORDER_TAKEN_OLDEST)
    )

    assert pages == 3 and seen == ids[::-1]  # newest upload first
    assert reply.total_count == 5 and reply.snapshot_seq >= 5
    times = [image.taken_time.ToNanoseconds() for image in oldest_taken.images]
    assert times == sorted(times) and len(times) == 5
    bad_order = pb.ListImagesRequest(order=9)  # type: ignore[arg-type]
    assert code_of(lambda: stub.ListImages(bad_order)) == grpc.StatusCode.INVALID_ARGUMENT


def test_find_by_filename_pages_with_a_token(stub, photo_jpegs):
    ids = [put(stub, jpeg(photo_jpegs, "rocket"), "same.jpg").image.id for _ in range(5)]

    first = stub.FindByFilename(pb.FindByFilenameRequest(filename="same.jpg", page_size=2))
    second = stub.FindByFilename(
        pb.FindByFilenameRequest(filename="same.jpg", page_size=2, page_token=first.next_page_token)
    )
    wrong = pb.FindByFilenameRequest(filename="other.jpg", page_token=first.next_page_token)

    # A newer upload of the same name between pages does not shift the next page.
    put(stub, jpeg(photo_jpegs, "rocket"), "same.jpg")
    third = stub.FindByFilename(
        pb.FindByFilenameRequest(
            filename="same.jpg", page_size=2, page_token=second.next_page_token
        )
    )

    got = [i.id for page in (first, second, third) for i in page.images]
    assert got == ids[::-1] and not third.next_page_token
    assert code_of(lambda: stub.FindByFilename(wrong)) == grpc.StatusCode.INVALID_ARGUMENT


def test_read_data_thumbnail_and_sha256_lookup(stub, photo_jpegs):
    data = jpeg(photo_jpegs, "chelsea")
    image = put(stub, data, "cat.jpg").image

    chunks = list(stub.ReadImageData(pb.ReadImageDataRequest(image_id=image.id, chunk_size=4096)))
    thumb = stub.GetThumbnail(pb.GetThumbnailRequest(image_id=image.id))
    found = stub.FindBySha256(pb.FindBySha256Request(sha256=[image.sha256], owner="ann"))
    other_owner = stub.FindBySha256(pb.FindBySha256Request(sha256=[image.sha256], owner="bob"))

    assert b"".join(c.chunk for c in chunks) == data and len(chunks) > 1
    assert max(thumb.width, thumb.height) <= 256 and thumb.data
    assert list(found.matches[0].image_ids) == [image.id]
    assert not other_owner.matches[0].image_ids


def test_annotations_keep_class_index_zero_and_colour_enums(stub, photo_jpegs):
    image = put(stub, jpeg(photo_jpegs, "rocket"), "r.jpg").image
    tench = common.Label(name="tench", probability=0.4, class_index=0)
    unknown = common.Label(name="thing", probability=0.2)

    reply = stub.UpdateAnnotations(
        pb.UpdateAnnotationsRequest(
            image_id=image.id,
            annotations=pb.Annotations(
                labels=[tench, unknown], favourite=True, status=common.ANALYSIS_STATUS_READY
            ),
            update_mask=FieldMask(paths=["labels", "favourite", "status"]),
            add_feedback=[common.LabelFeedback(label="tench", comment="a rocket")],
        )
    )

    labels = reply.image.labels
    assert labels[0].HasField("class_index") and labels[0].class_index == 0
    assert not labels[1].HasField("class_index")
    assert reply.image.favourite
    assert reply.image.HasField("moderation_score") and reply.image.moderation_score == 0.0
    assert reply.image.feedback[0].create_time.seconds > 1_700_000_000


def test_the_analysis_queue_round_trip(stub, photo_jpegs):
    image = put(stub, jpeg(photo_jpegs, "coffee"), "c.jpg").image

    claimed = stub.ClaimAnalysis(
        pb.ClaimAnalysisRequest(worker_id="w1", max_images=5, lease=Duration(seconds=30))
    )
    leased = claimed.images[0].image.analysis
    done = stub.CompleteAnalysis(
        pb.CompleteAnalysisRequest(
            image_id=image.id,
            generation=claimed.images[0].generation,
            result=pb.AnalysisResult(
                labels=[common.Label(name="espresso", probability=0.9, class_index=967)],
                moderation_score=0.0,
                colours=[common.ColourShare(colour=common.COLOUR_BROWN, share=0.6)],
            ),
        )
    )
    stale = pb.CompleteAnalysisRequest(
        image_id=image.id, generation=0, failure=pb.AnalysisFailure(reason="x")
    )

    assert [c.image.id for c in claimed.images] == [image.id]
    assert leased.lease_owner == "w1" and leased.HasField("lease_expire_time")
    assert done.image.status == common.ANALYSIS_STATUS_READY
    assert done.image.moderation_score == 0.0 and done.image.HasField("moderation_score")
    assert [(c.colour, round(c.share, 2)) for c in done.image.colours] == [
        (common.COLOUR_BROWN, 0.6)
    ]
    assert code_of(lambda: stub.CompleteAnalysis(stale)) == grpc.StatusCode.ABORTED


def test_watch_changes_and_delete(stub, photo_jpegs):
    image = put(stub, jpeg(photo_jpegs, "rocket"), "r.jpg", tags=["a"]).image
    deleted = stub.DeleteImage(pb.DeleteImageRequest(image_id=image.id)).image

    replies = list(stub.WatchChanges(pb.WatchChangesRequest(follow=False), timeout=10))

    changes = [c for r in replies for c in r.changes]
    assert [c.kind for c in changes] == [
        pb.CHANGE_KIND_PUT,
        pb.CHANGE_KIND_ANNOTATE,
        pb.CHANGE_KIND_DELETE,
    ]
    assert deleted.id == image.id
    missing = pb.GetImageRequest(image_id=image.id)
    assert code_of(lambda: stub.GetImage(missing)) == grpc.StatusCode.NOT_FOUND


def test_stats_verify_and_compact(stub, photo_jpegs):
    put(stub, jpeg(photo_jpegs, "rocket"), "r.jpg")

    verify = list(stub.Verify(pb.VerifyRequest(), timeout=30))
    stats = stub.GetStats(pb.GetStatsRequest())
    compact = stub.Compact(pb.CompactRequest(), timeout=30)

    report = verify[-1].report
    assert report.ok and report.HasField("finish_time")
    assert stats.image_count == 1 and stats.pending_count == 1
    assert stats.HasField("oldest_pending_age") and stats.last_verify.ok
    assert compact.segments_after >= 0


def test_albums_round_trip(stub, photo_jpegs):
    ids = [put(stub, jpeg(photo_jpegs, n), f"{n}.jpg").image.id for n in ("rocket", "coffee")]

    album = stub.CreateAlbum(pb.CreateAlbumRequest(name="Trip", owner="ann", image_ids=ids)).album
    page = stub.GetAlbum(pb.GetAlbumRequest(album_id=album.id, page_size=1, include_images=True))
    listed = stub.ListAlbums(pb.ListAlbumsRequest(owner="ann"))

    assert album.image_count == 2 and album.HasField("create_time")
    assert list(page.image_ids) == [ids[0]] and page.images[0].id == ids[0]
    assert page.next_page_token
    assert [a.name for a in listed.albums] == ["Trip"]


def test_v1_is_still_served_and_reflection_lists_both(channel, stub, v1_stub, photo_jpegs):
    image = put(stub, jpeg(photo_jpegs, "rocket"), "r.jpg", tags=["t"]).image

    old = v1_stub.GetImage(v1.GetImageRequest(image_id=image.id)).image
    listing = next(
        reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
    )

    assert (old.id, old.filename, list(old.tags)) == (image.id, "r.jpg", ["t"])
    assert old.created_at_unix_ms == image.create_time.ToMilliseconds()
    services = {s.name for s in listing.list_services_response.service}
    assert {
        "imagerepo.storage.v1.StorageService",
        "imagerepo.storage.v2.StorageService",
    } <= services
    health = health_pb2_grpc.HealthStub(channel)
    for version in ("v1", "v2"):
        name = f"imagerepo.storage.{version}.StorageService"
        status = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING, name
