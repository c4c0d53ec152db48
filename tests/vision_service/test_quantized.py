"""The int8 CNNs that models/quantize.py adopted must keep agreeing with their float originals
on the real-photo set (issue 13's thresholds), and VISION_QUANTIZED=0 must run the originals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.vision_service.photo_sets import debian_photos, model_inputs, photo_variants, real_photos
from vision_service.agreement import (
    ClassifierAgreement,
    ModerationAgreement,
    classifier_agreement,
    moderation_agreement,
)
from vision_service.config import VisionConfig
from vision_service.engine import CLASSIFIER, MODERATION
from vision_service.models.classifier import ImageClassifier
from vision_service.models.moderation import ModerationModel
from vision_service.registry import load_registry
from vision_service.sessions import SessionThreads, open_session

THREADS = SessionThreads(intra_op=1, inter_op=1)


@pytest.fixture(scope="module")
def registry(models_dir):
    return load_registry(models_dir)


@pytest.fixture(scope="module")
def inputs() -> tuple[np.ndarray, np.ndarray]:
    """The agreement set models/quantize.py judges by: every real photo (Debian's
    mate-backgrounds included where installed), its mirror image and two crops."""
    return model_inputs(photo_variants({**real_photos(), **debian_photos()}))


def test_the_manifest_matches_the_quantization_report(models_dir, registry):
    report = json.loads((models_dir / "quantization.json").read_text())
    for name in (CLASSIFIER, MODERATION):
        entry = registry[name]
        figures = report[name]
        if figures["adopted"]:
            assert entry.path().name == figures["file"]
            assert entry.sha256 == figures["sha256"]
            assert entry.files["reference"].sha256 == figures["float_sha256"]
        else:
            assert "reference" not in entry.files
            assert entry.sha256 == figures["float_sha256"]


def test_int8_models_are_served_only_where_their_agreement_holds(models_dir, registry):
    report = json.loads((models_dir / "quantization.json").read_text())
    checks = (
        (CLASSIFIER, ClassifierAgreement, ("inputs", "top1_agreement", "top5_overlap")),
        (MODERATION, ModerationAgreement, ("inputs", "max_score_diff", "mean_score_diff")),
    )

    for name, kind, fields in checks:
        recorded = report[name]["agreement"]
        agreement = kind(**{f: recorded.get(f, 0.0) for f in kind.__dataclass_fields__})
        served_int8 = "reference" in registry[name].files

        assert all(f in recorded for f in fields), (name, recorded)
        assert served_int8 == agreement.holds == report[name]["adopted"], (name, recorded)


def test_int8_classifier_agrees_with_the_float_one(registry, inputs):
    entry = registry[CLASSIFIER]
    if "reference" not in entry.files:
        # Not adopted (the test above checks the recorded agreement is why): the served float
        # model must agree with itself, which proves the agreement measure on real photos.
        session = open_session(entry.path(), THREADS)
        agreement = classifier_agreement(session, session, inputs[0])
        assert agreement.inputs >= 60 and agreement.top1_agreement == 1.0, agreement
        return
    agreement = classifier_agreement(
        open_session(entry.path("reference"), THREADS),
        open_session(entry.path(), THREADS),
        inputs[0],
    )

    assert agreement.inputs >= 60
    assert agreement.holds, agreement
    assert agreement.min_feature_cosine > 0.9


def test_int8_moderation_agrees_with_the_float_one(registry, inputs):
    entry = registry[MODERATION]
    if "reference" not in entry.files:
        # Not adopted (the recorded agreement says why): the served float model must agree
        # with itself, which proves the agreement measure on real photos.
        session = open_session(entry.path(), THREADS)
        agreement = moderation_agreement(session, session, inputs[1])
        assert agreement.inputs >= 60 and agreement.max_score_diff == 0.0, agreement
        return
    agreement = moderation_agreement(
        open_session(entry.path("reference"), THREADS),
        open_session(entry.path(), THREADS),
        inputs[1],
    )

    assert agreement.inputs >= 60
    assert agreement.holds, agreement


def test_quantized_off_runs_the_float_originals(registry):
    config = VisionConfig.from_env({"VISION_QUANTIZED": "0"})
    assert config.quantized is False
    for name, model in ((CLASSIFIER, ImageClassifier), (MODERATION, ModerationModel)):
        entry = registry[name]
        float_role = entry.model_role(quantized=False)
        assert float_role == ("reference" if "reference" in entry.files else "onnx")
        assert entry.run_version(quantized=False) != entry.version or float_role == "onnx"
        assert model.load(entry, THREADS, quantized=False) is not None
