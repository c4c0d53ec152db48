"""The storage service through real gRPC channels, over real photos and a real data dir."""

from __future__ import annotations

import io
import logging
import shutil
import threading

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from PIL import Image

from imagerepo.common.v1 import common_pb2
from imagerepo.storage.v1 import storage_service_pb2 as pb
from tests.storage_service.conftest import (
    ServiceRunner,
    jpeg_variant,
    put,
    read_all,
    upload_requests,
)

# A feature vector of the image model's dimension (1280), exactly representable as float32.
# Whole numbers up to 127: exact in every vector encoding storage writes (int8 included).
VECTOR = [32.0, -80.0, 127.0, 0.0] * 320


def _code(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.details()
    return info.value.code()


def test_put_then_read_returns_every_photo_byte_exact(storage, photo_paths):
    originals = {name: path.read_bytes() for name, path in photo_paths.items()}

    ids = {
        name: put(storage.stub, data, path.name).image.id
        for (name, data), path in zip(originals.items(), photo_paths.values(), strict=True)
    }
    storage.store.flush()

    for name, image_id in ids.items():
        assert read_all(storage.stub, image_id) == originals[name]
        got = storage.stub.GetImage(pb.GetImageRequest(image_id=image_id, include_data=True))
        assert got.data == originals[name]


def test_put_sniffs_type_and_reports_size_exif_and_thumbnails(storage, photo_paths, photo_jpegs):
    png = photo_paths["chelsea"].read_bytes()

    meta = put(storage.stub, png, "cat.jpg", owner="alice").image
    small = storage.stub.GetThumbnail(pb.GetThumbnailRequest(image_id=meta.id))

    assert (meta.content_type, meta.format) == ("image/png", "PNG")
    assert (meta.width, meta.height, meta.byte_size) == (451, 300, len(png))
    assert meta.status == common_pb2.ANALYSIS_STATUS_PENDING
    assert small.content_type == "image/webp"
    assert max(small.width, small.height) == 256
    with Image.open(io.BytesIO(small.data)) as thumb:
        assert thumb.size == (small.width, small.height)


def _put_keeping_duplicates(stub, data: bytes, filename: str) -> pb.PutImageResponse:
    header = pb.PutImageHeader(filename=filename, keep_duplicate=True)
    return stub.PutImage(iter([pb.PutImageRequest(header=header), pb.PutImageRequest(chunk=data)]))


def test_duplicate_upload_kept_on_request_names_the_earlier_copy(storage, photo_jpegs):
    first = _put_keeping_duplicates(storage.stub, photo_jpegs["coffee"], "a.jpg")

    second = _put_keeping_duplicates(storage.stub, photo_jpegs["coffee"], "b.jpg")

    assert list(second.duplicate_of) == [first.image.id]
    assert list(first.duplicate_of) == []
    assert second.image.id != first.image.id
    assert not second.already_stored


def test_find_by_filename_returns_newest_first_across_flush_and_restart(
    storage_runner, storage, photo_jpegs
):
    ids = [
        put(storage.stub, jpeg_variant(photo_jpegs["rocket"], i), "IMG_0001.JPG").image.id
        for i in range(3)
    ]
    put(storage.stub, photo_jpegs["flower"], "other.jpg")

    before = storage.stub.FindByFilename(pb.FindByFilenameRequest(filename="IMG_0001.JPG"))
    storage = storage_runner.restart()
    after = storage.stub.FindByFilename(pb.FindByFilenameRequest(filename="IMG_0001.JPG"))
    limited = storage.stub.FindByFilename(
        pb.FindByFilenameRequest(filename="IMG_0001.JPG", limit=1)
    )

    assert [m.id for m in before.images] == ids[::-1]
    assert [m.id for m in after.images] == ids[::-1]
    assert [m.id for m in limited.images] == [ids[-1]]


def test_list_images_pages_newest_first_and_filters_by_owner(storage, photo_jpegs):
    ids = [
        put(
            storage.stub,
            jpeg_variant(photo_jpegs["china"], i),
            f"{i}.jpg",
            owner="bob" if i % 2 else "alice",
        ).image.id
        for i in range(7)
    ]

    seen, token = [], ""
    while True:
        page = storage.stub.ListImages(pb.ListImagesRequest(page_size=3, page_token=token))
        seen += [m.id for m in page.images]
        token = page.next_page_token
        if not token:
            break
    bobs = storage.stub.ListImages(pb.ListImagesRequest(owner="bob"))

    assert seen == ids[::-1]
    assert page.total_count == 7
    assert [m.id for m in bobs.images] == [ids[5], ids[3], ids[1]]
    assert bobs.total_count == 3


def test_list_images_with_a_forged_token_is_invalid_argument(storage):
    assert _code(lambda: storage.stub.ListImages(pb.ListImagesRequest(page_token="nope"))) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )


def test_update_annotations_sets_masked_fields_and_survives_restart(
    storage_runner, storage, photo_jpegs
):
    image_id = put(storage.stub, photo_jpegs["chelsea"], "cat.jpg").image.id
    request = pb.UpdateAnnotationsRequest(
        image_id=image_id,
        annotations=pb.Annotations(
            labels=[
                common_pb2.Label(
                    name="tabby", probability=0.8, synonyms=["tabby cat"], class_index=281
                )
            ],
            feature_vector=VECTOR,
            ocr_text="ignored: not in the mask",
            status=common_pb2.ANALYSIS_STATUS_READY,
        ),
        update_mask=FieldMask(paths=["labels", "feature_vector", "status"]),
        add_tags=["pets", "cats"],
        add_feedback=[common_pb2.LabelFeedback(label="tabby", comment="it is a tiger")],
    )

    storage.stub.UpdateAnnotations(request)
    storage.stub.UpdateAnnotations(
        pb.UpdateAnnotationsRequest(image_id=image_id, remove_tags=["pets"])
    )
    storage.store.flush()
    storage = storage_runner.restart()
    got = storage.stub.GetImage(
        pb.GetImageRequest(image_id=image_id, include_feature_vector=True)
    ).image

    assert [
        (lb.name, round(lb.probability, 3), list(lb.synonyms), lb.class_index) for lb in got.labels
    ] == [("tabby", 0.8, ["tabby cat"], 281)]
    assert list(got.feature_vector) == VECTOR
    assert got.has_feature_vector
    assert got.ocr_text == ""
    assert list(got.tags) == ["cats"]
    assert got.status == common_pb2.ANALYSIS_STATUS_READY
    assert [f.comment for f in got.feedback] == ["it is a tiger"]


def test_update_with_unknown_mask_path_is_invalid_argument(storage, photo_jpegs):
    image_id = put(storage.stub, photo_jpegs["chelsea"], "cat.jpg").image.id
    request = pb.UpdateAnnotationsRequest(
        image_id=image_id, update_mask=FieldMask(paths=["filename"])
    )

    assert _code(lambda: storage.stub.UpdateAnnotations(request)) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )


def test_delete_then_get_is_not_found_everywhere(storage, photo_jpegs):
    image_id = put(storage.stub, photo_jpegs["flower"], "f.jpg").image.id

    deleted = storage.stub.DeleteImage(pb.DeleteImageRequest(image_id=image_id))

    assert deleted.image.id == image_id
    assert _code(lambda: storage.stub.GetImage(pb.GetImageRequest(image_id=image_id))) == (
        grpc.StatusCode.NOT_FOUND
    )
    assert _code(lambda: read_all(storage.stub, image_id)) == grpc.StatusCode.NOT_FOUND
    assert _code(lambda: storage.stub.DeleteImage(pb.DeleteImageRequest(image_id=image_id))) == (
        grpc.StatusCode.NOT_FOUND
    )
    assert not storage.stub.FindByFilename(pb.FindByFilenameRequest(filename="f.jpg")).images
    assert storage.stub.ListImages(pb.ListImagesRequest()).total_count == 0


def test_compaction_keeps_live_rows_and_frees_space(storage_runner, storage, photo_jpegs):
    datas = [jpeg_variant(photo_jpegs["astronaut"], i) for i in range(8)]
    ids = [put(storage.stub, d, f"a{i}.jpg").image.id for i, d in enumerate(datas)]
    storage.store.flush()
    for image_id in ids[:5]:
        storage.stub.DeleteImage(pb.DeleteImageRequest(image_id=image_id))
    storage.store.flush()
    before = storage.stub.GetStats(pb.GetStatsRequest())

    report = storage.stub.Compact(pb.CompactRequest())
    after = storage.stub.GetStats(pb.GetStatsRequest())
    storage = storage_runner.restart()

    assert report.segments_after == 1
    assert report.rows_dropped >= 10
    assert report.bytes_after < report.bytes_before * 0.6
    assert after.disk_bytes - after.wal_bytes < (before.disk_bytes - before.wal_bytes) * 0.6
    assert after.deleted_count == 0
    assert after.image_count == 3
    for image_id, data in zip(ids[5:], datas[5:], strict=True):
        assert read_all(storage.stub, image_id) == data
    assert storage.stub.ListImages(pb.ListImagesRequest()).total_count == 3


def test_restart_keeps_every_image_and_annotation(storage_runner, storage, photo_jpegs):
    stored = {
        put(storage.stub, data, f"{name}.jpg").image.id: data for name, data in photo_jpegs.items()
    }
    victim = next(iter(stored))
    storage.stub.DeleteImage(pb.DeleteImageRequest(image_id=victim))
    del stored[victim]

    storage = storage_runner.restart()
    stats = storage.stub.GetStats(pb.GetStatsRequest())

    assert stats.image_count == len(stored)
    for image_id, data in stored.items():
        assert read_all(storage.stub, image_id) == data
    assert _code(lambda: storage.stub.GetImage(pb.GetImageRequest(image_id=victim))) == (
        grpc.StatusCode.NOT_FOUND
    )


def test_get_stats_reports_per_column_sizes(storage, photo_jpegs):
    for i, data in enumerate(photo_jpegs.values()):
        put(storage.stub, data, f"{i}.jpg")
    storage.store.flush()

    stats = storage.stub.GetStats(pb.GetStatsRequest())
    columns = {c.name: c for c in stats.columns}

    assert stats.image_count == len(photo_jpegs)
    assert stats.raw_image_bytes == sum(len(d) for d in photo_jpegs.values())
    assert columns["data"].raw_bytes == stats.raw_image_bytes
    assert columns["filename"].stored_bytes > 0
    assert stats.segment_count >= 1


def test_sixteen_concurrent_writers_and_readers_see_only_whole_images(storage, photo_jpegs):
    sources = [jpeg_variant(photo_jpegs[name], i) for i, name in enumerate(list(photo_jpegs) * 2)][
        :16
    ]
    written: dict[str, bytes] = {}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        for round_ in range(4):
            reply = _put_keeping_duplicates(storage.stub, sources[k], f"w{k}-{round_}.jpg")
            image_id = reply.image.id
            with lock:
                written[image_id] = sources[k]

    def reader() -> None:
        for _ in range(12):
            page = storage.stub.ListImages(pb.ListImagesRequest(page_size=20))
            for meta in page.images:
                data = read_all(storage.stub, meta.id)
                assert len(data) == meta.byte_size
                assert data in sources

    def run(target, *args) -> None:
        try:
            target(*args)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(writer, k)) for k in range(16)]
    threads += [threading.Thread(target=run, args=(reader,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert len(written) == 64
    for image_id, data in written.items():
        assert read_all(storage.stub, image_id) == data
    assert storage.stub.GetStats(pb.GetStatsRequest()).image_count == 64


# --- hostile input -------------------------------------------------------------------------


def _put_code(storage, requests) -> grpc.StatusCode:
    code = _code(lambda: storage.stub.PutImage(iter(requests), timeout=30))
    return code


def _nothing_stored(storage) -> bool:
    stats = storage.stub.GetStats(pb.GetStatsRequest())
    return stats.image_count == 0 and stats.memtable_rows == 0


@pytest.mark.parametrize(
    ("case", "payload"),
    [
        ("empty", b""),
        ("not an image", b"hello, I am a text file, not a photo" * 10),
        ("html", b"<!doctype html><html><body>hi</body></html>"),
    ],
)
def test_put_of_non_image_is_invalid_argument_and_leaves_nothing(storage, case, payload):
    code = _put_code(storage, upload_requests(payload, f"{case}.jpg"))

    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert _nothing_stored(storage)


def test_put_of_truncated_photo_is_invalid_argument(storage, photo_jpegs):
    truncated = photo_jpegs["astronaut"][: len(photo_jpegs["astronaut"]) // 2]

    code = _put_code(storage, upload_requests(truncated, "cut.jpg"))

    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert _nothing_stored(storage)


def test_put_of_decompression_bomb_is_invalid_argument(storage):
    buf = io.BytesIO()
    Image.new("1", (4000, 4000)).save(buf, "PNG")  # 16 Mpx in a few KiB; limit here is 4 Mpx

    with pytest.raises(grpc.RpcError) as info:
        storage.stub.PutImage(upload_requests(buf.getvalue(), "bomb.png"), timeout=30)

    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "bomb" in info.value.details()
    assert _nothing_stored(storage)


def test_put_over_the_size_limit_is_refused_while_streaming(storage_runner, photo_jpegs):
    storage_runner.max_image_bytes = 50_000
    storage = storage_runner.start()
    big = photo_jpegs["astronaut"]

    streamed = _put_code(storage, upload_requests(big, "big.jpg", chunk=10_000))
    announced = _put_code(storage, upload_requests(b"x", "big.jpg", expected_size=10**9))

    assert len(big) > 50_000
    assert streamed == grpc.StatusCode.INVALID_ARGUMENT
    assert announced == grpc.StatusCode.INVALID_ARGUMENT
    assert _nothing_stored(storage)


def test_put_with_oversized_chunk_or_missing_header_is_invalid_argument(storage, photo_jpegs):
    header = pb.PutImageRequest(header=pb.PutImageHeader(filename="x.jpg"))
    huge_chunk = pb.PutImageRequest(chunk=b"\0" * (1024 * 1024 + 1))
    chunk = pb.PutImageRequest(chunk=photo_jpegs["coffee"])

    assert _put_code(storage, [header, huge_chunk]) == grpc.StatusCode.INVALID_ARGUMENT
    assert _put_code(storage, [chunk]) == grpc.StatusCode.INVALID_ARGUMENT
    assert _put_code(storage, [header, chunk, header]) == grpc.StatusCode.INVALID_ARGUMENT
    assert _put_code(storage, []) == grpc.StatusCode.INVALID_ARGUMENT
    assert _nothing_stored(storage)


def test_unknown_id_is_not_found(storage):
    assert _code(lambda: storage.stub.GetImage(pb.GetImageRequest(image_id="nope"))) == (
        grpc.StatusCode.NOT_FOUND
    )
    assert _code(lambda: storage.stub.GetThumbnail(pb.GetThumbnailRequest(image_id="nope"))) == (
        grpc.StatusCode.NOT_FOUND
    )
    assert (
        _code(
            lambda: storage.stub.UpdateAnnotations(
                pb.UpdateAnnotationsRequest(image_id="nope", add_tags=["x"])
            )
        )
        == grpc.StatusCode.NOT_FOUND
    )


def test_flipped_byte_in_a_segment_is_data_loss_naming_it_and_others_still_serve(
    storage_runner, storage, photo_jpegs
):
    datas = {name: data for name, data in list(photo_jpegs.items())[:3]}
    ids = {name: put(storage.stub, data, f"{name}.jpg").image.id for name, data in datas.items()}
    storage.store.flush()
    (segment_path,) = (storage.data_dir / "segments").glob("*.seg")
    segment = storage.store._segments[0]
    victim = list(ids.values())[1]
    # Its put row: the background thumbnailer's rows (no image bytes) may sit between the puts.
    row = next(
        r
        for r, image_id in enumerate(segment.ids())
        if image_id == victim and segment.blob_location("data", r)[1]
    )
    offset, length = segment.blob_location("data", row)
    storage_runner.stop()
    raw = bytearray(segment_path.read_bytes())
    raw[offset + length // 2] ^= 0x40
    segment_path.write_bytes(bytes(raw))

    storage = storage_runner.start()

    with pytest.raises(grpc.RpcError) as info:
        read_all(storage.stub, victim)
    assert info.value.code() == grpc.StatusCode.DATA_LOSS
    assert segment_path.name in info.value.details()
    assert storage.stub.GetImage(pb.GetImageRequest(image_id=victim)).image.id == victim
    for name, image_id in ids.items():
        if image_id != victim:
            assert read_all(storage.stub, image_id) == datas[name]


def test_list_images_filters_by_status_for_the_reconciler(storage, photo_jpegs):
    ids = [
        put(storage.stub, jpeg_variant(photo_jpegs["coffee"], i), f"{i}.jpg").image.id
        for i in range(3)
    ]
    storage.stub.UpdateAnnotations(
        pb.UpdateAnnotationsRequest(
            image_id=ids[1],
            annotations=pb.Annotations(status=common_pb2.ANALYSIS_STATUS_READY),
            update_mask=FieldMask(paths=["status"]),
        )
    )

    pending = storage.stub.ListImages(
        pb.ListImagesRequest(status=common_pb2.ANALYSIS_STATUS_PENDING)
    )
    ready = storage.stub.ListImages(pb.ListImagesRequest(status=common_pb2.ANALYSIS_STATUS_READY))

    assert [m.id for m in pending.images] == [ids[2], ids[0]]
    assert [m.id for m in ready.images] == [ids[1]]
    assert (pending.total_count, ready.total_count) == (2, 1)


def test_flipped_byte_in_the_log_drops_that_write_with_a_log_line_and_serves_the_rest(
    storage, photo_jpegs, tmp_path, caplog
):
    datas = [photo_jpegs["chelsea"], photo_jpegs["coffee"], photo_jpegs["rocket"]]
    ids = [put(storage.stub, data, f"{i}.jpg").image.id for i, data in enumerate(datas)]
    # The data dir as a kill -9 would leave it now: the puts are only in the log.
    crashed = tmp_path / "crashed"
    shutil.copytree(storage.data_dir, crashed)
    (log_file,) = (crashed / "wal").glob("*.log")
    raw = bytearray(log_file.read_bytes())
    raw[raw.find(datas[1][1000:1100]) + 50] ^= 0x08
    log_file.write_bytes(bytes(raw))

    with caplog.at_level(logging.ERROR):
        runner = ServiceRunner(crashed)
        reopened = runner.start()
    try:
        with pytest.raises(grpc.RpcError) as info:
            reopened.stub.GetImage(pb.GetImageRequest(image_id=ids[1]))
        served = [read_all(reopened.stub, ids[0]), read_all(reopened.stub, ids[2])]
    finally:
        runner.stop()

    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert served == [datas[0], datas[2]]
    assert any("write-ahead log damage" in r.message for r in caplog.records)
