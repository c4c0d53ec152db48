"""How closely a quantized model follows its float original on the same inputs.

Used by the quantization script (to decide whether an int8 model is adopted), by the tests
(which guard the adopted models) and by the benchmark (which prints the figures). Pure
functions over onnxruntime sessions and ready-made input tensors; no photos are read here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from vision_service.models.classifier import l2_normalise, softmax, top1_margin

# Adoption thresholds (issue 13): top-1 label agreement and moderation score difference.
MIN_TOP1_AGREEMENT = 0.98
MAX_MODERATION_DIFF = 0.02
# A quantized first stage's cascade band keeps only scores within CASCADE_MAX_DIFF (a margin
# under the 0.02 rule) of the float model, rounded down to CASCADE_BAND_STEP (models/quantize.py,
# models/ov_int8.py).
CASCADE_MAX_DIFF = 0.01
CASCADE_BAND_STEP = 0.005


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


def nsfw_scores(session: Any, inputs: np.ndarray, batch: int = 8) -> np.ndarray:
    """open_nsfw's score of each input (class 1, float64, clipped to [0, 1]) from a session with
    onnxruntime's run surface (an OpenVinoSession too), run `batch` inputs at a time."""
    (out,) = _run_batched(session, inputs, batch)
    return np.clip(out[:, 1].astype(np.float64), 0.0, 1.0)


def widest_band(float_scores: np.ndarray, cheap_scores: np.ndarray, max_diff: float) -> float:
    """The largest t such that every input whose cheap (int8 or bf16) score is at most t stays
    within `max_diff` of its float score: the widest cascade band [0, t] these inputs allow."""
    diff = np.abs(float_scores - cheap_scores)
    widest = 0.0
    for t in np.unique(cheap_scores):
        if diff[cheap_scores <= t].max() > max_diff:
            break
        widest = float(t)
    return widest


def chosen_band(
    scores: dict[str, tuple[np.ndarray, np.ndarray]],
    chosen_on: tuple[str, ...],
    max_diff: float,
    step: float,
) -> tuple[float, float]:
    """[0, t]: the widest band within `max_diff` on the sets named `chosen_on` together (each
    set a (float scores, cheap scores) pair), rounded down to `step`."""
    widest = widest_band(
        np.concatenate([scores[k][0] for k in chosen_on]),
        np.concatenate([scores[k][1] for k in chosen_on]),
        max_diff,
    )
    return (0.0, round(float(np.floor(widest / step)) * step, 6))


def band_figures(
    ref: np.ndarray, cheap: np.ndarray, band: tuple[float, float], max_diff: float, cheap_name: str
) -> dict:
    """A cascade band's figures on one set: share of inputs the cheap model keeps, the largest
    difference from float it serves, the cheap model's alone (as `<cheap_name>_alone_...`)."""
    diff = np.abs(ref - cheap)
    accepted = (cheap >= band[0]) & (cheap <= band[1])
    served = np.where(accepted, cheap, ref)
    return {
        "inputs": len(ref),
        "accepted_share": round(float(accepted.mean()), 4),
        "max_score_diff_accepted": round(float(diff[accepted].max(initial=0.0)), 5),
        "max_score_diff": round(float(np.abs(served - ref).max()), 5),
        f"{cheap_name}_alone_max_score_diff": round(float(diff.max()), 5),
        "widest_band_within_it": [0.0, round(widest_band(ref, cheap, max_diff), 5)],
        "highest_float_score": round(float(ref.max()), 4),
    }


def cpu_ms_per_input(session: Any, x: np.ndarray, repeat: int = 4) -> float:
    """CPU ms per input of `session` on the first 8 inputs of `x` (one warm-up run)."""
    name = session.get_inputs()[0].name
    x = np.ascontiguousarray(x[:8])
    session.run(None, {name: x})
    started = time.process_time()
    for _ in range(repeat):
        session.run(None, {name: x})
    return round(1000.0 * (time.process_time() - started) / (repeat * len(x)), 2)


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


# A classifier cascade (models/quantize.py, vision_service/models/classifier.py) keeps the int8
# model's output where its top-1 probability leads the second by at least a margin chosen on
# real photos; the float model runs for the rest. These figures compare what it serves with
# what the float model alone would serve, for every part of the classifier's answer.
NEAR_DUPLICATE_COSINE = 0.95  # search's default near-duplicate threshold (search_service)
LABEL_MIN_PROBABILITY = 0.05  # search indexes every label at or above this probability


@dataclass(frozen=True)
class ClassifierOutputs:
    """One model's answers for a set of inputs: softmax probabilities and unit features."""

    probabilities: np.ndarray  # float64[N,1000]
    features: np.ndarray  # float64[N,1280], unit rows

    def take(self, rows: np.ndarray) -> ClassifierOutputs:
        return ClassifierOutputs(self.probabilities[rows], self.features[rows])


def classifier_outputs(session: ort.InferenceSession, inputs: np.ndarray) -> ClassifierOutputs:
    logits, features = _run_batched(session, inputs)
    return ClassifierOutputs(
        softmax(logits.astype(np.float64)), l2_normalise(features.astype(np.float64))
    )


@dataclass(frozen=True)
class CascadeAgreement:
    inputs: int
    min_margin: float  # the int8 output is kept where its top-1 margin is at least this
    accepted_share: float  # share of inputs that kept the int8 output (the cheap path)
    top1_agreement: float  # served top-1 class == float top-1 class
    top5_overlap: float  # mean share of the float top-5 in the served top-5
    label_set_agreement: float  # same set of labels >= LABEL_MIN_PROBABILITY as the float
    max_probability_diff: float  # largest |p_served - p_float| of any class
    mean_probability_diff: float  # mean over inputs of that input's largest difference
    min_feature_cosine: float  # served features against the float ones, same input
    mean_feature_cosine: float
    recall_at_10: float  # similar-image search over the served features vs the float ones
    near_duplicate_pairs: int  # pairs at cosine >= NEAR_DUPLICATE_COSINE with float features
    near_duplicate_flips: int  # pairs on the other side of that threshold when served

    @property
    def holds(self) -> bool:
        return self.top1_agreement >= MIN_TOP1_AGREEMENT


def cascade_served(
    reference: ClassifierOutputs, candidate: ClassifierOutputs, min_margin: float
) -> tuple[ClassifierOutputs, np.ndarray]:
    """What the cascade serves (the candidate's rows at or above the margin, the reference's
    elsewhere) and which rows took the candidate's path."""
    accepted = top1_margin(candidate.probabilities) >= min_margin
    keep = accepted[:, None]
    served = ClassifierOutputs(
        np.where(keep, candidate.probabilities, reference.probabilities),
        np.where(keep, candidate.features, reference.features),
    )
    return served, accepted


def _top_k(features: np.ndarray, k: int) -> np.ndarray:
    similarity = features @ features.T
    np.fill_diagonal(similarity, -np.inf)
    return np.argsort(-similarity, axis=1, kind="stable")[:, :k]


def cascade_agreement(
    reference: ClassifierOutputs, candidate: ClassifierOutputs, min_margin: float
) -> CascadeAgreement:
    """The cascade at `min_margin` against the reference (float) model on the same inputs;
    recall@10 and near duplicates are over the set itself (each input a query against the
    others), so mixed paths (int8 features beside float ones) are what is measured."""
    served, accepted = cascade_served(reference, candidate, min_margin)
    ref_p, got_p = reference.probabilities, served.probabilities
    ref_top5 = np.argsort(-ref_p, axis=1)[:, :5]
    got_top5 = np.argsort(-got_p, axis=1)[:, :5]
    overlap = [len(set(a) & set(b)) / 5 for a, b in zip(ref_top5, got_top5, strict=True)]
    label_sets = np.all(
        (ref_p >= LABEL_MIN_PROBABILITY) == (got_p >= LABEL_MIN_PROBABILITY), axis=1
    )
    prob_diff = np.abs(ref_p - got_p).max(axis=1)
    cosines = np.sum(reference.features * served.features, axis=1)
    k = min(10, len(ref_p) - 1)
    ref_near, got_near = _top_k(reference.features, k), _top_k(served.features, k)
    recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(ref_near, got_near, strict=True)])
    upper = np.triu_indices(len(ref_p), 1)
    ref_dup = (reference.features @ reference.features.T)[upper] >= NEAR_DUPLICATE_COSINE
    got_dup = (served.features @ served.features.T)[upper] >= NEAR_DUPLICATE_COSINE
    return CascadeAgreement(
        inputs=len(ref_p),
        min_margin=float(min_margin),
        accepted_share=float(accepted.mean()),
        top1_agreement=float(np.mean(ref_p.argmax(axis=1) == got_p.argmax(axis=1))),
        top5_overlap=float(np.mean(overlap)),
        label_set_agreement=float(label_sets.mean()),
        max_probability_diff=float(prob_diff.max()),
        mean_probability_diff=float(prob_diff.mean()),
        min_feature_cosine=float(cosines.min()),
        mean_feature_cosine=float(cosines.mean()),
        recall_at_10=float(recall),
        near_duplicate_pairs=int(ref_dup.sum()),
        near_duplicate_flips=int(np.sum(ref_dup != got_dup)),
    )


def smallest_safe_margin(
    reference: ClassifierOutputs, candidate: ClassifierOutputs, step: float = 0.01
) -> float:
    """The threshold rule: the smallest margin on a `step` grid above which no input of this
    (tuning) set keeps an int8 top-1 class that differs from the float one, i.e. one step past
    the most confident int8 disagreement."""
    margin = top1_margin(candidate.probabilities)
    wrong = reference.probabilities.argmax(axis=1) != candidate.probabilities.argmax(axis=1)
    worst = float(margin[wrong].max(initial=0.0))
    return round(float(np.floor(worst / step) + 1) * step, 6)
