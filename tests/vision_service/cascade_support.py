"""What the cascade tests share (test_bf16_cascade.py, test_ov_int8_cascade.py,
test_bf16_classifier.py, test_quantized.py): one-thread sessions, the bf16 skip mark, the
models' inputs of the cascade sets, the served moderation cascade with another band, its scores
in the service's batches of 8, and a copy of the manifest with open_nsfw's entry changed.
Imports nothing from the build-time models extra (onnx, nncf)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.vision_service.agreement_sets import cascade_sets
from tests.vision_service.photo_sets import model_inputs
from vision_service.agreement import nsfw_scores
from vision_service.engine import MODERATION
from vision_service.models.moderation import ModerationModel
from vision_service.registry import ModelEntry
from vision_service.sessions import SessionThreads, cpu_has_bf16

THREADS = SessionThreads(intra_op=1, inter_op=1)
needs_bf16 = pytest.mark.skipif(
    not cpu_has_bf16(), reason="OpenVINO reports no native bf16 on this CPU"
)
CLASSIFIER_INPUT, MODERATION_INPUT = 0, 1  # which of model_inputs' tensors


def cascade_inputs(which: int) -> dict[str, np.ndarray]:
    """One model's inputs (CLASSIFIER_INPUT or MODERATION_INPUT) of the tuning, held-out and
    unseen sets (the unseen set left out where its photos are not installed)."""
    return {what: model_inputs(images)[which] for what, images in cascade_sets().items() if images}


def held_out(
    sets: dict[str, np.ndarray], scores: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs the band was judged on but not chosen on (held-out variants; unseen photos),
    with their scores."""
    keys = [k for k in ("held_out", "unseen") if k in sets]
    return np.concatenate([sets[k] for k in keys]), np.concatenate([scores[k] for k in keys])


def chosen_on_scores(
    first_stage: Any, sets: dict[str, np.ndarray], float_scores: dict[str, np.ndarray]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(float scores, `first_stage`'s scores) of the sets a moderation band is chosen on (the
    tuning and held-out sets), as models/bf16_cascade.py and models/ov_int8.py pair them."""
    return {k: (float_scores[k], nsfw_scores(first_stage, sets[k])) for k in ("tuning", "held_out")}


def bf16_hinted_cascade(
    entry: ModelEntry, band: tuple[float, float], ov_int8: bool = False
) -> ModerationModel:
    """The service's moderation cascade where the CPU computes in bf16 (its first stage
    open_nsfw's OpenVINO int8 copy with `ov_int8`, else the float graph in bf16), with `band`
    instead of the manifest's."""
    model = ModerationModel.load(entry, THREADS, bf16=True, ov_int8=ov_int8)
    model.band = band
    return model


def served_scores(model: ModerationModel, x: np.ndarray) -> np.ndarray:
    """`model`'s scores of `x` in batches of 8, as the service runs them."""
    return np.concatenate([model.nsfw_scores(x[i : i + 8]) for i in range(0, len(x), 8)])


def copy_moderation_manifest(
    models_dir: Path, to: Path, changes: dict[str, Any], drop_file: str | None = None
) -> None:
    """Writes to `to` a copy of the real manifest holding open_nsfw's entry alone, with
    `changes` set in it and its `drop_file` role taken out, and that entry's files from
    models/ (the int8 graphs; the float ones come from their package)."""
    manifest = json.loads((models_dir / "manifest.json").read_text())
    moderation = next(m for m in manifest["models"] if m["name"] == MODERATION)
    manifest["models"] = [moderation]
    moderation.update(changes)
    if drop_file is not None:
        del moderation["files"][drop_file]
    (to / "manifest.json").write_text(json.dumps(manifest))
    for file in moderation["files"].values():
        if "package" not in file:
            (to / file["file"]).write_bytes((models_dir / file["file"]).read_bytes())
