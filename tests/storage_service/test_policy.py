"""The image and annotation policy, as storage applies it over real gRPC: what the rest of the
system cannot use is refused with INVALID_ARGUMENT naming the limit; what it can use (any
script in a filename, HEIC and AVIF photos) is stored and served."""

from __future__ import annotations

import io
import math
import unicodedata

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from PIL import Image

from imagerepo.common.v1 import common_pb2
from imagerepo.storage.v1 import storage_service_pb2 as pb
from imagerepo.storage.v1 import storage_service_pb2_grpc as pb_grpc
from service_runtime.grpc_server import channel_options
from storage_service.columnstore import policy
from storage_service.server import build_server
from tests.storage_service.conftest import put, read_all, upload_requests


def _refusal(call) -> tuple[grpc.StatusCode, str, str]:
    """(code, message, ErrorInfo reason) of a call that must fail."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    status = rpc_status.from_call(info.value)
    reason = ""
    if status is not None:
        for detail in status.details:
            error_info = error_details_pb2.ErrorInfo()
            if detail.Unpack(error_info):
                reason = error_info.reason
    return info.value.code(), info.value.details(), reason


def _annotate(storage, image_id: str, fields: list[str], **annotations):
    return storage.stub.UpdateAnnotations(
        pb.UpdateAnnotationsRequest(
            image_id=image_id,
            annotations=pb.Annotations(**annotations),
            update_mask=FieldMask(paths=fields),
        ),
        timeout=30,
    )


@pytest.fixture
def image_id(storage, photo_jpegs) -> str:
    return put(storage.stub, photo_jpegs["chelsea"], "cat.jpg").image.id


@pytest.mark.parametrize(
    ("vector", "message"),
    [
        ([0.1, 0.2, 0.3], "1280"),
        ([math.nan] * 1280, "NaN"),
        ([0.0] * 1279 + [math.inf], "infinite"),
        ([0.5] * (3 * 1024 * 1024), "1280"),  # 12 MB
    ],
    ids=["3 values", "NaN", "inf", "12 MB"],
)
def test_feature_vector_of_the_wrong_size_or_not_finite_is_refused(
    storage, image_id, vector, message
):
    code, details, reason = _refusal(
        lambda: _annotate(storage, image_id, ["feature_vector"], feature_vector=vector)
    )

    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "POLICY_VIOLATION")
    assert message in details
    got = storage.stub.GetImage(pb.GetImageRequest(image_id=image_id)).image
    assert not got.has_feature_vector


def test_model_sized_vector_is_stored(storage, image_id):
    vector = [0.25] * policy.FEATURE_DIM

    _annotate(storage, image_id, ["feature_vector"], feature_vector=vector)
    got = storage.stub.GetImage(pb.GetImageRequest(image_id=image_id, include_feature_vector=True))

    assert list(got.image.feature_vector) == vector


@pytest.mark.parametrize(
    ("fields", "annotations", "message"),
    [
        (["tags"], {"tags": ["t" * 100_000] * 100}, "tag is 100000 characters"),
        (["tags"], {"tags": [f"t{i}" for i in range(300)]}, "300 tags"),
        (["ocr_text"], {"ocr_text": "x" * (10 * 1024 * 1024)}, "ocr_text is"),
        (["moderation_score"], {"moderation_score": math.nan}, "moderation_score"),
        (
            ["labels"],
            {"labels": [common_pb2.Label(name="cat", probability=0.5)] * 60},
            "60 labels",
        ),
        (
            ["labels"],
            {"labels": [common_pb2.Label(name="n" * 1000, probability=0.5)]},
            "label name is 1000 bytes",
        ),
    ],
    ids=["10 MB of tags", "300 tags", "10 MB ocr", "NaN score", "60 labels", "long label"],
)
def test_oversized_annotations_are_refused_naming_the_limit(
    storage, image_id, fields, annotations, message
):
    code, details, _ = _refusal(lambda: _annotate(storage, image_id, fields, **annotations))

    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message in details
    assert len(details) < 300


def test_added_tags_beyond_the_per_image_limit_are_refused(storage, image_id):
    first = [f"a{i}" for i in range(150)]
    storage.stub.UpdateAnnotations(pb.UpdateAnnotationsRequest(image_id=image_id, add_tags=first))

    code, details, _ = _refusal(
        lambda: storage.stub.UpdateAnnotations(
            pb.UpdateAnnotationsRequest(image_id=image_id, add_tags=[f"b{i}" for i in range(60)])
        )
    )

    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "210 tags" in details
    got = storage.stub.GetImage(pb.GetImageRequest(image_id=image_id)).image
    assert len(got.tags) == 150


@pytest.mark.parametrize(
    ("filename", "message"),
    [
        ("evil\r\nSet-Cookie: x.jpg", "control character"),
        ("nul\x00.jpg", "control character"),
        ("tab\t.jpg", "control character"),
        ("\u202egpj.exe", "control character"),
        ("a" * (1024 * 1024) + ".jpg", "over the limit of 255 bytes"),
        ("ж" * 130 + ".jpg", "over the limit of 255 bytes"),
        ("../../etc/passwd.jpg", "holds a path"),
    ],
    ids=["CR/LF", "NUL", "tab", "RTL override", "1 MiB", "264 bytes Cyrillic", "path"],
)
def test_hostile_filenames_are_refused_and_nothing_is_stored(
    storage, photo_jpegs, filename, message
):
    code, details, reason = _refusal(lambda: put(storage.stub, photo_jpegs["coffee"], filename))

    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "POLICY_VIOLATION")
    assert message in details
    assert len(details) < 300
    assert storage.stub.ListImages(pb.ListImagesRequest()).total_count == 0


@pytest.mark.parametrize("filename", ["..jpg", "...", "..hidden.png"])
def test_names_that_start_with_two_dots_are_no_path_and_are_kept(storage, photo_jpegs, filename):
    stored = put(storage.stub, photo_jpegs["rocket"], filename).image

    assert stored.filename == filename


@pytest.mark.parametrize("filename", ["..", "."])
def test_the_parent_and_current_folder_names_are_refused(storage, photo_jpegs, filename):
    code, details, _ = _refusal(lambda: put(storage.stub, photo_jpegs["coffee"], filename))

    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "holds a path" in details


@pytest.mark.parametrize("filename", ["fleur été 🌸.jpg", "ракета.jpg", "東京タワー.png"])
def test_names_in_any_script_are_kept_and_found_in_either_normal_form(
    storage, photo_jpegs, filename
):
    stored = put(storage.stub, photo_jpegs["rocket"], filename).image
    decomposed = unicodedata.normalize("NFD", filename)

    found = storage.stub.FindByFilename(pb.FindByFilenameRequest(filename=decomposed)).images

    assert stored.filename == unicodedata.normalize("NFC", filename)
    assert [m.id for m in found] == [stored.id]


def test_a_decomposed_name_is_stored_composed(storage, photo_jpegs):
    stored = put(storage.stub, photo_jpegs["rocket"], "  cafe\u0301.jpg ").image

    assert stored.filename == "café.jpg"


@pytest.mark.parametrize(("fmt", "content_type"), [("HEIF", "image/heif"), ("AVIF", "image/avif")])
def test_heic_and_avif_photos_are_stored_with_thumbnails_and_previews(
    storage, photo_paths, fmt, content_type
):
    buf = io.BytesIO()
    with Image.open(photo_paths["astronaut"]) as im:
        im.convert("RGB").save(buf, fmt, quality=80)
    data = buf.getvalue()

    meta = put(storage.stub, data, f"astronaut.{fmt.lower()}").image
    small = storage.stub.GetThumbnail(pb.GetThumbnailRequest(image_id=meta.id))
    preview = storage.stub.GetThumbnail(
        pb.GetThumbnailRequest(image_id=meta.id, size=pb.THUMBNAIL_SIZE_PREVIEW)
    )

    assert (meta.content_type, meta.format, meta.width, meta.height) == (
        content_type,
        fmt,
        512,
        512,
    )
    assert read_all(storage.stub, meta.id) == data
    for thumb, side in ((small, 256), (preview, 512)):
        assert thumb.content_type == "image/webp"
        with Image.open(io.BytesIO(thumb.data)) as shown:
            assert shown.size == (side, side)
            # The astronaut photo, not a blank: real variation in the pixels.
            assert max(shown.convert("L").getextrema()) - min(shown.convert("L").getextrema()) > 100


@pytest.mark.parametrize(("fmt", "name"), [("ICO", "ICO"), ("PCX", "PCX"), ("TGA", "TGA")])
def test_a_refused_format_is_named(storage, photo_jpegs, fmt, name):
    buf = io.BytesIO()
    with Image.open(io.BytesIO(photo_jpegs["coffee"])) as im:
        im.convert("RGB").resize((64, 64)).save(buf, fmt)

    code, details, reason = _refusal(lambda: put(storage.stub, buf.getvalue(), f"x.{fmt}"))

    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "UNSUPPORTED_FORMAT")
    assert f"the {name} format is not accepted" in details


def test_an_image_over_the_byte_limit_names_the_limit(storage_runner, photo_jpegs):
    storage_runner.max_image_bytes = 50_000
    storage = storage_runner.start()

    code, details, reason = _refusal(
        lambda: storage.stub.PutImage(
            upload_requests(photo_jpegs["astronaut"], "big.jpg", chunk=10_000)
        )
    )

    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "IMAGE_TOO_LARGE")
    assert "50000 bytes" in details


def test_pages_stay_under_the_default_4_mib_message_limit(storage, photo_jpegs):
    """60 images with 64 KiB of OCR text each are 3.9 MB of metadata: a client with gRPC's
    default limits still reads every page, and pages are cut to fit."""
    ocr = "word " * (policy.MAX_OCR_TEXT_BYTES // 5)
    ids = []
    for i in range(60):
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (i, 255 - i, 7)).save(buf, "PNG")
        image_id = put(storage.stub, buf.getvalue(), f"{i}.png").image.id
        _annotate(storage, image_id, ["ocr_text"], ocr_text=ocr)
        ids.append(image_id)
    # A second real server over the same store, read through a channel with gRPC's defaults.
    server, port, _ = build_server(storage.store, "127.0.0.1:0")
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as default_channel:
        stub = pb_grpc.StorageServiceStub(default_channel)
        seen: list[str] = []
        sizes: list[int] = []
        token = ""
        while True:
            page = stub.ListImages(pb.ListImagesRequest(page_size=1000, page_token=token))
            seen += [m.id for m in page.images]
            sizes.append(page.ByteSize())
            token = page.next_page_token
            if not token:
                break
        batch = stub.BatchGetImages(pb.BatchGetImagesRequest(image_ids=ids))
    server.stop(grace=None)

    assert seen == ids[::-1]
    assert len(sizes) >= 2
    assert max(sizes) < 4 * 1024 * 1024
    assert len(batch.images) + len(batch.not_returned_ids) == 60
    assert batch.not_returned_ids
    assert batch.ByteSize() < 4 * 1024 * 1024


def test_vision_decodes_what_storage_accepts_and_shares_its_limits(photo_paths):
    from vision_service.models.classifier import FEATURE_DIM
    from vision_service.preprocess import decode_image

    buf = io.BytesIO()
    with Image.open(photo_paths["astronaut"]) as im:
        im.convert("RGB").save(buf, "HEIF", quality=80)

    decoded = decode_image(buf.getvalue(), max_pixels=40_000_000)

    assert (decoded.format, decoded.width, decoded.height) == ("HEIF", 512, 512)
    assert FEATURE_DIM == policy.FEATURE_DIM
    assert len(policy.clip_ocr_text("é" * policy.MAX_OCR_TEXT_BYTES).encode()) <= (
        policy.MAX_OCR_TEXT_BYTES
    )


def test_the_decode_budget_refuses_what_would_not_fit_and_jpeg_decodes_reduced(
    storage, photo_paths
):
    """With a 16 MiB decode budget: a 12 MP JPEG is taken (decoded at half scale, 12 MB), the
    same pixels as PNG are refused naming the budget (48 MB), a 4 MP PNG (16 MB) is taken."""
    server, port, _ = build_server(storage.store, "127.0.0.1:0", decode_memory_bytes=16 * 2**20)
    server.start()
    with Image.open(photo_paths["coffee"]) as im:
        big = im.convert("RGB").resize((4000, 3000))
    encoded = {}
    for name, fmt, image in (
        ("big.jpg", "JPEG", big),
        ("big.png", "PNG", big),
        ("fits.png", "PNG", big.resize((2000, 2000))),
    ):
        buf = io.BytesIO()
        image.save(buf, fmt, **({"compress_level": 1} if fmt == "PNG" else {"quality": 85}))
        encoded[name] = buf.getvalue()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=channel_options()) as channel:
            stub = pb_grpc.StorageServiceStub(channel)
            jpeg = put(stub, encoded["big.jpg"], "big.jpg").image
            refused = _refusal(lambda: put(stub, encoded["big.png"], "big.png"))
            fits = put(stub, encoded["fits.png"], "fits.png").image
    finally:
        server.stop(grace=None)

    assert (jpeg.width, jpeg.height) == (4000, 3000)
    assert (refused[0], refused[2]) == (grpc.StatusCode.INVALID_ARGUMENT, "IMAGE_TOO_LARGE")
    assert "16 MiB decode budget" in refused[1]
    assert (fits.width, fits.height) == (2000, 2000)
