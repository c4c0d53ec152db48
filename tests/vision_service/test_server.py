"""The vision service over real gRPC on a free port: answers, error statuses, micro-batching of
concurrent calls, model and label listings, and readiness."""

from __future__ import annotations

import io
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from imagerepo.vision.v1 import vision_service_pb2 as pb
from imagerepo.vision.v1 import vision_service_pb2_grpc as pb_grpc
from vision_service.server import build_server
from vision_service.servicer import EngineSlot

IMAGE_ONLY = [pb.ANALYSIS_TASK_LABELS, pb.ANALYSIS_TASK_FEATURES]


def _analyze(stub, data: bytes, **kwargs) -> pb.AnalyzeResponse:
    return stub.Analyze(pb.AnalyzeRequest(image_data=data, **kwargs), timeout=60)


def _invalid(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return info.value


def test_analyze_returns_labels_features_moderation_and_size(vision, photo_jpegs):
    reply = _analyze(vision, photo_jpegs["chelsea"])

    assert len(reply.labels) == 5
    assert {"tabby", "tiger cat", "Egyptian cat"} & {label.name for label in reply.labels[:3]}
    assert len(reply.feature_vector) == 1280
    assert abs(np.linalg.norm(np.array(reply.feature_vector)) - 1.0) < 1e-3
    assert 0.0 <= reply.moderation_score < 0.2
    assert (reply.width, reply.height, reply.format) == (451, 300, "JPEG")
    assert reply.model_versions["efficientnet-lite0"]
    assert not reply.ocr_ran


def test_analyze_reads_text_with_boxes(vision, photo_jpegs):
    reply = _analyze(vision, photo_jpegs["page"], tasks=[pb.ANALYSIS_TASK_OCR])

    assert reply.ocr_ran
    assert "Region-based segmentation" in reply.ocr_text
    assert reply.text_boxes[0].text == "Region-based segmentation"
    assert len(reply.text_boxes[0].box) == 4 and reply.text_boxes[0].confidence > 0.5
    assert not reply.labels and not reply.feature_vector


def test_analyze_honours_top_k_and_tasks(vision, photo_jpegs):
    reply = _analyze(vision, photo_jpegs["coffee"], tasks=[pb.ANALYSIS_TASK_LABELS], top_k=10)

    assert len(reply.labels) == 10 and reply.labels[0].name == "espresso"
    assert not reply.feature_vector
    assert set(reply.model_versions) == {"efficientnet-lite0"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"definitely not a picture", "not an image"),
        (None, "truncated"),
        (None, "decompression bomb"),
    ],
    ids=["non-image", "truncated", "bomb"],
)
def test_bad_images_are_invalid_argument_with_a_message(vision, photo_jpegs, data, message):
    if message == "truncated":
        data = photo_jpegs["rocket"][:5000]
    elif message == "decompression bomb":
        buf = io.BytesIO()
        Image.new("1", (9000, 9000)).save(buf, "PNG")  # 81 MP in a few kB
        data = buf.getvalue()

    error = _invalid(lambda: _analyze(vision, data))

    assert message in error.details()


def test_unknown_task_and_negative_top_k_are_invalid_argument(vision, photo_jpegs):
    _invalid(lambda: _analyze(vision, photo_jpegs["chelsea"], tasks=[pb.ANALYSIS_TASK_UNSPECIFIED]))
    _invalid(lambda: _analyze(vision, photo_jpegs["chelsea"], top_k=-1))


def test_concurrent_calls_are_batched_and_each_gets_its_own_answer(vision, engine, photo_jpegs):
    names = ["chelsea", "coffee", "rocket", "astronaut", "motorcycle", "china", "flower", "camera"]
    expected = {n: _analyze(vision, photo_jpegs[n], tasks=IMAGE_ONLY) for n in names}
    batches_before = len(engine.classifier_batches.batch_sizes)
    start = threading.Barrier(16)

    def call(name: str) -> tuple[str, pb.AnalyzeResponse]:
        start.wait()
        return name, _analyze(vision, photo_jpegs[name], tasks=IMAGE_ONLY)

    with ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(call, names * 2))

    for name, reply in replies:
        assert reply.labels[0].name == expected[name].labels[0].name
        cosine = np.dot(reply.feature_vector, expected[name].feature_vector)
        assert cosine > 0.999, name
    batch_sizes = list(engine.classifier_batches.batch_sizes)[batches_before:]
    assert sum(batch_sizes) == 16
    assert max(batch_sizes) > 1


def test_embed_text_puts_kitten_nearer_cat_than_truck(vision):
    reply = vision.EmbedText(pb.EmbedTextRequest(texts=["cat", "kitten", "truck"]), timeout=30)

    cat, kitten, truck = (np.array(e.values) for e in reply.embeddings)
    assert reply.dimension == 384 and len(cat) == 384
    assert "minilm" in reply.model.lower()
    assert kitten @ cat > kitten @ truck


def test_embed_blank_text_is_invalid_argument(vision):
    error = _invalid(lambda: vision.EmbedText(pb.EmbedTextRequest(texts=["ok", ""]), timeout=5))

    assert "blank" in error.details()


def test_list_models_names_every_verified_model(vision, models_dir):
    manifest = json.loads((models_dir / "manifest.json").read_text())

    reply = vision.ListModels(pb.ListModelsRequest(), timeout=5)

    by_name = {m.name: m for m in reply.models}
    assert set(by_name) == {m["name"] for m in manifest["models"]}
    for entry in manifest["models"]:
        listed = by_name[entry["name"]]
        assert listed.sha256 == entry["files"]["onnx"]["sha256"]
        assert listed.loaded and listed.version and listed.license and listed.input_spec
    assert {m.task for m in reply.models} == {
        "labels+features",
        "moderation",
        "ocr-det",
        "ocr-rec",
        "text-embedding",
    }


def test_list_labels_gives_every_class_with_synonyms_in_index_order(vision):
    reply = vision.ListLabels(pb.ListLabelsRequest(), timeout=5)

    assert len(reply.labels) == 1000
    assert [label.class_index for label in reply.labels] == list(range(1000))
    assert reply.labels[281].name == "tabby" and "tabby cat" in reply.labels[281].synonyms
    assert reply.model.startswith("efficientnet-lite0")


def test_server_is_not_serving_and_unavailable_until_models_load(
    vision_config, engine, photo_jpegs
):
    slot = EngineSlot()
    server, port, health = build_server("127.0.0.1:0", vision_config, slot)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.VisionServiceStub(channel)
            probe = health_pb2_grpc.HealthStub(channel)
            status = probe.Check(health_pb2.HealthCheckRequest(), timeout=5).status
            with pytest.raises(grpc.RpcError) as info:
                _analyze(stub, photo_jpegs["chelsea"])

            slot.set(engine)
            health.set_serving(True)

            assert status == health_pb2.HealthCheckResponse.NOT_SERVING
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "loading" in info.value.details()
            assert _analyze(stub, photo_jpegs["chelsea"], tasks=IMAGE_ONLY).labels
    finally:
        server.stop(grace=None)
