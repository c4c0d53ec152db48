"""open_nsfw as an OpenVINO int8 -> float cascade (the manifest's "ov_int8" band, chosen by
models/ov_int8.py): OpenVINO runs open_nsfw's NNCF int8 copy (bf16 hint) first and its score is
kept where it lies in the band; onnxruntime's float graph scores the rest. The served cascade
must follow the float model within the issue's 0.02 on inputs the band was not chosen on, and
the service runs it only where the bf16 cascades run (VISION_BF16) and VISION_OV_INT8 is on.

The agreement tests need a CPU with native bf16 (the band was chosen with the bf16 hint);
elsewhere the service runs the int8 cascade as before (test_quantized.py).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from models.ov_int8 import SERVED_PRECISION, band_of
from tests.vision_service.agreement_sets import cascade_sets
from tests.vision_service.photo_sets import model_inputs
from vision_service.agreement import CASCADE_MAX_DIFF, MAX_MODERATION_DIFF, nsfw_scores
from vision_service.config import VisionConfig
from vision_service.engine import MODERATION, AnalysisRequest, Task
from vision_service.errors import ModelFileError
from vision_service.models.moderation import ModerationModel
from vision_service.registry import load_registry
from vision_service.sessions import OpenVinoSession, SessionThreads, cpu_has_bf16, open_session

THREADS = SessionThreads(intra_op=1, inter_op=1)
needs_bf16 = pytest.mark.skipif(
    not cpu_has_bf16(), reason="OpenVINO reports no native bf16 on this CPU"
)


@pytest.fixture(scope="module")
def entry(models_dir):
    return load_registry(models_dir)[MODERATION]


@pytest.fixture(scope="module")
def sets() -> dict[str, np.ndarray]:
    """Moderation inputs of the tuning, held-out and unseen sets."""
    return {what: model_inputs(images)[1] for what, images in cascade_sets().items() if images}


@pytest.fixture(scope="module")
def float_scores(entry, sets) -> dict[str, np.ndarray]:
    session = open_session(entry.path("reference"), THREADS)
    return {what: nsfw_scores(session, x) for what, x in sets.items()}


def _served(entry, band: tuple[float, float]) -> ModerationModel:
    """The service's OpenVINO int8 cascade, with `band` instead of the manifest's."""
    model = ModerationModel.load(entry, THREADS, bf16=True, ov_int8=True)
    assert model.ov_int8 and model.bf16
    model.band = band
    return model


def _scored(model: ModerationModel, x: np.ndarray) -> np.ndarray:
    return np.concatenate([model.nsfw_scores(x[i : i + 8]) for i in range(0, len(x), 8)])


def _held_out(sets: dict[str, np.ndarray], scores: dict[str, np.ndarray]):
    """Inputs the band was judged on but not chosen on (held-out variants; unseen photos)."""
    keys = [k for k in ("held_out", "unseen") if k in sets]
    return np.concatenate([sets[k] for k in keys]), np.concatenate([scores[k] for k in keys])


def test_the_manifest_band_and_files_are_the_ones_the_script_recorded(models_dir, entry):
    report = json.loads((models_dir / "ov_int8.json").read_text())
    assert report["adopted"] is True
    assert entry.ov_int8_band == tuple(report["accept"])
    assert report["float_sha256"] == entry.files["reference"].sha256
    assert report["int8_sha256"] == entry.files["ov_int8"].sha256
    assert report["int8_weights_sha256"] == entry.files["ov_int8_weights"].sha256
    assert entry.path("ov_int8").with_suffix(".bin") == entry.path("ov_int8_weights")
    assert report["settings"]["served_precision_hint"] == SERVED_PRECISION == "bf16"
    for what in ("tuning", "held_out"):
        assert report[what]["max_score_diff"] <= CASCADE_MAX_DIFF, (what, report[what])
    assert report["unseen"]["max_score_diff"] <= MAX_MODERATION_DIFF, report["unseen"]


@needs_bf16
def test_the_band_is_the_one_the_rule_picks_on_tuning_and_held_out(entry, sets, float_scores):
    int8 = OpenVinoSession(entry.path("ov_int8"), SERVED_PRECISION, THREADS)
    scores = {k: (float_scores[k], nsfw_scores(int8, sets[k])) for k in ("tuning", "held_out")}

    assert band_of(scores) == entry.ov_int8_band


@needs_bf16
def test_the_served_cascade_follows_the_float_model_on_held_out_and_unseen_photos(
    entry, sets, float_scores
):
    """Every served score within the issue's 0.02 of the float model's, most of them from the
    int8 run, and within the 0.01 the band was chosen by on the held-out variants."""
    assert entry.ov_int8_band is not None, "the manifest ships open_nsfw with an ov_int8 band"
    model = _served(entry, entry.ov_int8_band)
    x, reference = _held_out(sets, float_scores)
    served = _scored(model, x)

    assert len(x) >= 217
    assert np.abs(served - reference).max() <= MAX_MODERATION_DIFF
    assert 0 < model.fell_back <= model.scored // 5, (model.fell_back, model.scored)
    held = _scored(_served(entry, entry.ov_int8_band), sets["held_out"])
    assert np.abs(held - float_scores["held_out"]).max() <= CASCADE_MAX_DIFF


@needs_bf16
@pytest.mark.parametrize("band", [(0.0, 1.0), (0.0, 0.06)])
def test_a_wider_band_breaks_it(entry, sets, float_scores, band):
    """int8 alone ((0, 1)) moves an unseen photo's score by 0.075; a band of 0.06 lets in
    held-out and unseen scores over 0.02 off: the test above guards the band."""
    model = _served(entry, band)
    x, reference = _held_out(sets, float_scores)
    served = _scored(model, x)

    assert np.abs(served - reference).max() > MAX_MODERATION_DIFF
    if band == (0.0, 1.0):
        assert model.fell_back == 0


@needs_bf16
def test_outside_the_band_the_float_model_answers(entry, sets, float_scores):
    model = _served(entry, (1.0, 1.0))
    served = model.nsfw_scores(sets["tuning"][:16])

    assert model.fell_back == model.scored == 16
    assert np.array_equal(served, float_scores["tuning"][:16])


def test_vision_ov_int8_setting():
    assert VisionConfig().ov_int8 is True
    assert VisionConfig.from_env({"VISION_OV_INT8": "0"}).ov_int8 is False
    assert VisionConfig.from_env({"VISION_OV_INT8": "1"}).ov_int8 is True


def test_without_the_setting_or_bf16_the_earlier_cascades_run(entry):
    assert ModerationModel.load(entry, THREADS, bf16=True, ov_int8=False).ov_int8 is False
    int8 = ModerationModel.load(entry, THREADS, bf16=False, ov_int8=True)
    assert not int8.ov_int8 and not int8.bf16
    assert int8.band == entry.cascade_band
    assert entry.run_version(bf16=False, ov_int8=True).endswith("-int8-cascade")
    assert entry.run_version(bf16=True, ov_int8=False).endswith("-bf16-cascade")
    assert entry.run_version(bf16=True, ov_int8=True).endswith("-ov-int8-cascade")


def test_the_service_runs_the_ov_int8_cascade_where_the_cpu_has_bf16(engine, photo_jpegs):
    """The session's engine (defaults): the OpenVINO int8 cascade on a bf16 CPU, reported in
    the model version; the int8 cascade (onnxruntime) elsewhere."""
    name, jpeg = next(iter(photo_jpegs.items()))
    analysis = engine.analyze(AnalysisRequest(jpeg, tasks=frozenset({Task.MODERATION})))
    version = analysis.model_versions[MODERATION]
    assert version.endswith("-ov-int8-cascade" if cpu_has_bf16() else "-int8-cascade"), version


@pytest.mark.parametrize(
    ("drop", "spec", "message"),
    [
        (None, {"accept": [0.5, 0.1]}, "must lie in [0, 1]"),
        (None, {"band": [0.0, 0.1]}, '"accept"'),
        ("ov_int8_weights", {"accept": [0.0, 0.035]}, '"ov_int8_weights" files'),
    ],
)
def test_an_ov_int8_cascade_the_manifest_cannot_run_is_refused(
    models_dir, tmp_path, drop, spec, message
):
    manifest = json.loads((models_dir / "manifest.json").read_text())
    moderation = next(m for m in manifest["models"] if m["name"] == MODERATION)
    manifest["models"] = [moderation]
    moderation["ov_int8"] = spec
    if drop:
        del moderation["files"][drop]
    for file in moderation["files"].values():
        if "package" not in file:
            (tmp_path / file["file"]).write_bytes((models_dir / file["file"]).read_bytes())
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))

    with pytest.raises(ModelFileError, match=re.escape(message)):
        load_registry(tmp_path)
