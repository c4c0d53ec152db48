"""imagerepo.vision.v2 served beside v1 by the real vision server (every real model): the
same analysis, said with v2's contract (OCR_MODE_UNSPECIFIED zero value, moderation score
and class index with presence, colour and model-task enums)."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from imagerepo.common.v2 import common_pb2 as common_v2
from imagerepo.vision.v1 import vision_service_pb2 as v1
from imagerepo.vision.v1 import vision_service_pb2_grpc as v1_grpc
from imagerepo.vision.v2 import vision_service_pb2 as pb
from imagerepo.vision.v2 import vision_service_pb2_grpc as pb_grpc
from service_runtime.grpc_server import channel_options


@pytest.fixture
def channel(vision_server: int) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{vision_server}", options=channel_options()) as ch:
        yield ch


@pytest.fixture
def vision_v2(channel: grpc.Channel) -> pb_grpc.VisionServiceStub:
    return pb_grpc.VisionServiceStub(channel)


def test_analyze_answers_as_v1_does(channel, vision_v2, photo_jpegs):
    data = photo_jpegs["chelsea"]

    new = vision_v2.Analyze(pb.AnalyzeRequest(image_data=data), timeout=120)
    old = v1_grpc.VisionServiceStub(channel).Analyze(
        v1.AnalyzeRequest(image_data=data), timeout=120
    )

    assert [(lb.name, lb.class_index) for lb in new.labels] == [
        (lb.name, lb.class_index) for lb in old.labels
    ]
    assert all(lb.HasField("class_index") for lb in new.labels)
    assert new.HasField("moderation_score")
    assert new.moderation_score == pytest.approx(old.moderation_score)
    assert len(new.feature_vector) == len(old.feature_vector) == 1280
    assert [(c.colour, round(c.share, 4)) for c in new.colours] == [
        (common_v2.Colour.Value("COLOUR_" + c.name.upper()), round(c.share, 4)) for c in old.colours
    ]
    assert (new.width, new.height, new.format) == (old.width, old.height, old.format)


def test_moderation_not_asked_for_is_unset_not_zero(vision_v2, photo_jpegs):
    request = pb.AnalyzeRequest(
        image_data=photo_jpegs["coffee"], tasks=[pb.ANALYSIS_TASK_LABELS], top_k=3
    )

    reply = vision_v2.Analyze(request, timeout=120)

    assert not reply.HasField("moderation_score")
    assert len(reply.labels) == 3 and not reply.feature_vector


def test_ocr_mode_zero_means_auto_and_never_skips_ocr(vision_v2, photo_jpegs):
    data = photo_jpegs["coffee"]
    unspecified = vision_v2.Analyze(
        pb.AnalyzeRequest(image_data=data, tasks=[pb.ANALYSIS_TASK_OCR]), timeout=120
    )
    auto = vision_v2.Analyze(
        pb.AnalyzeRequest(image_data=data, tasks=[pb.ANALYSIS_TASK_OCR], ocr_mode=pb.OCR_MODE_AUTO),
        timeout=120,
    )

    never = vision_v2.Analyze(
        pb.AnalyzeRequest(
            image_data=data, tasks=[pb.ANALYSIS_TASK_OCR], ocr_mode=pb.OCR_MODE_NEVER
        ),
        timeout=120,
    )

    assert (unspecified.ocr_ran, unspecified.ocr_text) == (auto.ocr_ran, auto.ocr_text)
    assert not never.ocr_ran


def test_class_index_zero_is_present_in_the_label_list(vision_v2):
    reply = vision_v2.ListLabels(pb.ListLabelsRequest(), timeout=30)

    assert reply.labels[0].name == "tench"
    assert reply.labels[0].HasField("class_index") and reply.labels[0].class_index == 0
    assert [label.class_index for label in reply.labels] == list(range(1000))


def test_models_name_their_task_with_an_enum(vision_v2):
    reply = vision_v2.ListModels(pb.ListModelsRequest(), timeout=30)

    tasks = {model.task for model in reply.models}
    assert pb.MODEL_TASK_UNSPECIFIED not in tasks
    assert {pb.MODEL_TASK_LABELS_AND_FEATURES, pb.MODEL_TASK_TEXT_EMBEDDING} <= tasks


def test_bad_input_is_invalid_argument(vision_v2):
    with pytest.raises(grpc.RpcError) as info:
        vision_v2.Analyze(pb.AnalyzeRequest(image_data=b"not an image"), timeout=30)

    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_embed_text_matches_v1(channel, vision_v2):
    new = vision_v2.EmbedText(pb.EmbedTextRequest(texts=["a cat"]), timeout=30)
    old = v1_grpc.VisionServiceStub(channel).EmbedText(
        v1.EmbedTextRequest(texts=["a cat"]), timeout=30
    )

    assert new.dimension == old.dimension and new.model == old.model
    assert list(new.embeddings[0].values) == pytest.approx(list(old.embeddings[0].values))
