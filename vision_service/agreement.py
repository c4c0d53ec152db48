"""How closely a quantized model follows its float original on the same inputs.

Used by the quantization script (to decide whether an int8 model is adopted), by the tests
(which guard the adopted models) and by the benchmark (which prints the figures). Pure
functions over onnxruntime sessions and ready-made input tensors; no photos are read here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from vision_service.models.classifier import l2_normalise, softmax

# Adoption thresholds (issue 13): top-1 label agreement and moderation score difference.
MIN_TOP1_AGREEMENT = 0.98
MAX_MODERATION_DIFF = 0.02


@dataclass(frozen=True)
class ClassifierAgreement:
    inputs: int
    top1_agreement: float  # share of inputs whose top-1 class is the same
    top5_overlap: float  # mean share of the float top-5 found in the quantized top-5
    min_feature_cosine: float
    mean_feature_cosine: float
    max_probability_diff: float  # largest |p_float - p_int8| of the float top-1 class

    @property
    def holds(self) -> bool:
        return self.top1_agreement >= MIN_TOP1_AGREEMENT


@dataclass(frozen=True)
class ModerationAgreement:
    inputs: int
    max_score_diff: float
    mean_score_diff: float
    max_float_score: float  # the highest float score in the set (how unsafe it got)

    @property
    def holds(self) -> bool:
        return self.max_score_diff <= MAX_MODERATION_DIFF


def _run_batched(session: ort.InferenceSession, inputs: np.ndarray, batch: int = 8) -> list:
    name = session.get_inputs()[0].name
    outputs: list[list[np.ndarray]] = []
    for start in range(0, len(inputs), batch):
        outputs.append(session.run(None, {name: inputs[start : start + batch]}))
    return [np.concatenate(parts) for parts in zip(*outputs, strict=True)]


def classifier_agreement(
    reference: ort.InferenceSession, candidate: ort.InferenceSession, inputs: np.ndarray
) -> ClassifierAgreement:
    """`inputs` is float32[N,3,224,224] from `preprocess.classifier_input`."""
    ref_logits, ref_features = _run_batched(reference, inputs)
    cand_logits, cand_features = _run_batched(candidate, inputs)
    ref_p = softmax(ref_logits.astype(np.float64))
    cand_p = softmax(cand_logits.astype(np.float64))
    ref_top1 = ref_p.argmax(axis=1)
    top1 = float(np.mean(ref_top1 == cand_p.argmax(axis=1)))
    ref_top5 = np.argsort(-ref_p, axis=1)[:, :5]
    cand_top5 = np.argsort(-cand_p, axis=1)[:, :5]
    overlap = float(
        np.mean([len(set(a) & set(b)) / 5 for a, b in zip(ref_top5, cand_top5, strict=True)])
    )
    cosines = np.sum(
        l2_normalise(ref_features.astype(np.float64))
        * l2_normalise(cand_features.astype(np.float64)),
        axis=1,
    )
    rows = np.arange(len(inputs))
    prob_diff = np.abs(ref_p[rows, ref_top1] - cand_p[rows, ref_top1])
    return ClassifierAgreement(
        inputs=len(inputs),
        top1_agreement=top1,
        top5_overlap=overlap,
        min_feature_cosine=float(cosines.min()),
        mean_feature_cosine=float(cosines.mean()),
        max_probability_diff=float(prob_diff.max()),
    )


def moderation_agreement(
    reference: ort.InferenceSession, candidate: ort.InferenceSession, inputs: np.ndarray
) -> ModerationAgreement:
    """`inputs` is float32[N,224,224,3] from `moderation.moderation_input`."""
    (ref,) = _run_batched(reference, inputs)
    (cand,) = _run_batched(candidate, inputs)
    diff = np.abs(ref[:, 1].astype(np.float64) - cand[:, 1].astype(np.float64))
    return ModerationAgreement(
        inputs=len(inputs),
        max_score_diff=float(diff.max()),
        mean_score_diff=float(diff.mean()),
        max_float_score=float(ref[:, 1].max()),
    )
