"""open_nsfw as a bf16 -> float cascade (the manifest's "bf16" band, chosen by
models/bf16_cascade.py): OpenVINO runs the float graph in bfloat16 first and its score is kept
where it lies in the band; onnxruntime's float graph scores the rest. The served cascade must
follow the float model within the band's 0.005 on inputs the band was not chosen on, and the
service must run it only where the CPU computes in bf16 (VISION_BF16=auto) or when asked.

The agreement tests need a CPU with native bf16 (AVX-512 BF16 or AMX); elsewhere OpenVINO
computes in f32 and the service runs the int8 cascade as before (tested in test_quantized.py).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from models.bf16_cascade import BF16_MAX_DIFF, moderation_band
from tests.vision_service.cascade_support import (
    THREADS,
    bf16_hinted_cascade,
    chosen_on_scores,
    copy_moderation_manifest,
    held_out,
    needs_bf16,
    served_scores,
)
from vision_service.agreement import MAX_MODERATION_DIFF
from vision_service.config import VisionConfig
from vision_service.engine import MODERATION, AnalysisRequest, Task
from vision_service.errors import ModelFileError
from vision_service.registry import load_registry
from vision_service.sessions import OpenVinoSession, cpu_has_bf16

# Fixtures (tests/vision_service/conftest.py): moderation_entry, open_nsfw's in the manifest;
# moderation_sets, its inputs of the tuning, held-out and unseen sets; float_nsfw_scores, the
# float model's scores of them.


def test_the_manifest_band_is_the_one_the_script_recorded(models_dir, moderation_entry):
    report = json.loads((models_dir / "bf16.json").read_text())[MODERATION]
    assert report["adopted"] is True
    assert moderation_entry.bf16_band == tuple(report["accept"])
    float_role = moderation_entry.model_role(False)
    assert report["float_sha256"] == moderation_entry.files[float_role].sha256
    assert report["max_diff_allowed_in_band"] == BF16_MAX_DIFF < MAX_MODERATION_DIFF
    for what in ("tuning", "held_out", "unseen"):
        assert report[what]["max_score_diff"] <= BF16_MAX_DIFF, (what, report[what])
    # The classifier's bf16 cascade: tests/vision_service/test_bf16_classifier.py.


@needs_bf16
def test_the_band_is_the_one_the_rule_picks_on_tuning_and_held_out(
    moderation_entry, moderation_sets, float_nsfw_scores
):
    path = moderation_entry.path(moderation_entry.model_role(False))
    bf16 = OpenVinoSession(path, "bf16", THREADS)
    scores = chosen_on_scores(bf16, moderation_sets, float_nsfw_scores)

    assert moderation_band(scores) == moderation_entry.bf16_band


@needs_bf16
def test_the_served_cascade_follows_the_float_model_on_held_out_and_unseen_photos(
    moderation_entry, moderation_sets, float_nsfw_scores
):
    """Every served score within 0.005 of the float model's (the issue's rule is 0.02), most
    of them from the bf16 run."""
    assert moderation_entry.bf16_band is not None, "the manifest ships open_nsfw with a bf16 band"
    x, reference = held_out(moderation_sets, float_nsfw_scores)
    model = bf16_hinted_cascade(moderation_entry, moderation_entry.bf16_band)
    served = served_scores(model, x)

    assert len(x) >= 217
    assert np.abs(served - reference).max() <= BF16_MAX_DIFF
    assert 0 < model.fell_back <= model.scored // 5, (model.fell_back, model.scored)


@needs_bf16
@pytest.mark.parametrize("band", [(0.0, 1.0), (0.0, 0.115)])
def test_a_wider_band_breaks_it(moderation_entry, moderation_sets, float_nsfw_scores, band):
    """bf16 alone ((0, 1)) moves an unseen photo's score by more than the issue's 0.02; the
    band the 0.01 rule would pick (0.115) lets in a score 0.009 off: the test above guards the
    band."""
    x, reference = held_out(moderation_sets, float_nsfw_scores)
    model = bf16_hinted_cascade(moderation_entry, band)
    served = served_scores(model, x)

    assert np.abs(served - reference).max() > BF16_MAX_DIFF
    if band == (0.0, 1.0):
        assert model.fell_back == 0
        assert np.abs(served - reference).max() > MAX_MODERATION_DIFF


@needs_bf16
def test_outside_the_band_the_float_model_answers(
    moderation_entry, moderation_sets, float_nsfw_scores
):
    model = bf16_hinted_cascade(moderation_entry, (1.0, 1.0))
    served = model.nsfw_scores(moderation_sets["tuning"][:16])

    assert model.fell_back == model.scored == 16
    assert np.array_equal(served, float_nsfw_scores["tuning"][:16])


def test_openvino_runs_one_inference_thread_per_stream(moderation_entry):
    path = moderation_entry.path(moderation_entry.model_role(False))
    session = OpenVinoSession(path, "bf16", THREADS, streams=2)

    assert session.property("NUM_STREAMS") == "2"
    assert session.property("INFERENCE_NUM_THREADS") == "2"
    assert session.property("ENABLE_CPU_PINNING") == "False"


@pytest.mark.parametrize(
    ("value", "mode"), [("auto", "auto"), ("0", "0"), ("1", "1"), ("no", "0"), ("TRUE", "1")]
)
def test_vision_bf16_setting(value, mode):
    config = VisionConfig.from_env({"VISION_BF16": value})
    assert config.bf16 == mode
    assert config.use_bf16() == {"0": False, "1": True, "auto": cpu_has_bf16()}[mode]


def test_bf16_is_off_by_setting_or_with_the_float_originals():
    assert VisionConfig().bf16 == "auto"
    assert VisionConfig.from_env({"VISION_BF16": "0"}).use_bf16() is False
    assert VisionConfig.from_env({"VISION_BF16": "1", "VISION_QUANTIZED": "0"}).use_bf16() is False
    with pytest.raises(ValueError, match="VISION_BF16='maybe'"):
        VisionConfig.from_env({"VISION_BF16": "maybe"})


def test_the_service_runs_the_bf16_cascade_where_the_cpu_has_bf16(engine, photo_jpegs):
    """The session's engine (VISION_BF16=auto): a bf16-hinted first stage on a bf16 CPU (with
    VISION_OV_INT8=1, the default, the OpenVINO int8 copy: test_ov_int8_cascade.py), reported
    in the model version; the int8 cascade as before elsewhere."""
    assert engine.bf16 == cpu_has_bf16()
    name, jpeg = next(iter(photo_jpegs.items()))
    analysis = engine.analyze(AnalysisRequest(jpeg, tasks=frozenset({Task.MODERATION})))
    version = analysis.model_versions[MODERATION]
    assert version.endswith("-ov-int8-cascade" if engine.bf16 else "-int8-cascade"), version


@pytest.mark.parametrize(
    ("bf16", "message"),
    [({"accept": [0.5, 0.1]}, "must lie in [0, 1]"), ({"band": [0.0, 0.1]}, '"accept"')],
)
def test_a_bf16_band_the_manifest_cannot_run_is_refused(models_dir, tmp_path, bf16, message):
    copy_moderation_manifest(models_dir, tmp_path, {"bf16": bf16})

    with pytest.raises(ModelFileError, match=re.escape(message)):
        load_registry(tmp_path)
