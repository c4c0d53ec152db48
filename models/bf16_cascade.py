"""Choose the bf16 cascades' bands: OpenVINO runs a float graph in bfloat16 first, and its
answer is kept only where it stays close to the float model's on real photos.

    .venv/bin/python models/bf16_cascade.py [--out models]

Needs a CPU with native bf16 (OpenVINO's OPTIMIZATION_CAPABILITIES lists BF16: AVX-512 BF16 or
AMX); elsewhere OpenVINO would compute in f32 and there is nothing to measure.

open_nsfw: the float graph's scores (onnxruntime, as served without bf16) against the same
graph in bf16 (OpenVINO, INFERENCE_PRECISION_HINT bf16) on the sets of
tests/vision_service/agreement_sets.py. The band is [0, t], the widest whose accepted inputs
all stay within BF16_MAX_DIFF (0.005, a quarter of issue 13's 0.02) of the float model on the
tuning and held-out sets together, rounded down to BF16_BAND_STEP; it is then judged on the
unseen photographs. The float model scores what falls outside the band.

EfficientNet-Lite0 is measured the same way, its band read on the bf16 top-1 minus top-2
probability: the margin is the larger of the one `smallest_safe_margin` picks on tuning +
held-out (0.04: one step above every bf16/float top-1 disagreement seen there) and the smallest
margin on a 0.01 grid that keeps similar-image recall@10 over the mixed features at 0.98 on
each of those sets (0.06 on the tuning set; at 0.04 it was 0.978). It is adopted if, at that
margin, top-1 agreement stays >= 98% and recall@10 >= 0.98 on all three sets (the unseen
photos included). Label probabilities still move by up to about 0.10 on the inputs kept from
the bf16 run (the set of labels >= 0.05 differs on 10-13% of inputs): recorded, not a rule.
Writes models/bf16.json (figures per set) and prints the manifest's "bf16" entry.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.vision_service.agreement_sets import cascade_sets  # noqa: E402
from tests.vision_service.photo_sets import model_inputs  # noqa: E402
from vision_service.agreement import (  # noqa: E402
    MAX_MODERATION_DIFF,
    MIN_TOP1_AGREEMENT,
    ClassifierOutputs,
    band_figures,
    cascade_agreement,
    chosen_band,
    classifier_outputs,
    cpu_ms_per_input,
    nsfw_scores,
    smallest_safe_margin,
)
from vision_service.registry import load_registry, sha256_of  # noqa: E402
from vision_service.sessions import (  # noqa: E402
    OpenVinoSession,
    SessionThreads,
    cpu_has_bf16,
    open_session,
)

BF16_MAX_DIFF = 0.005
BF16_BAND_STEP = 0.005
MIN_RECALL_AT_10 = 0.98  # similar-image search over the mixed features (the project's rule)
CHOSEN_ON = ("tuning", "held_out")
ONE_THREAD = SessionThreads(intra_op=1, inter_op=1)


def moderation_band(scores: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[float, float]:
    """[0, t]: the widest band within BF16_MAX_DIFF on the tuning and held-out sets together
    (each a (float scores, bf16 scores) pair), rounded down to BF16_BAND_STEP."""
    return chosen_band(scores, CHOSEN_ON, BF16_MAX_DIFF, BF16_BAND_STEP)


def band_rule(max_diff: float, step: float) -> str:
    """How a moderation band is chosen (here and in models/ov_int8.py), as the reports say."""
    return (
        f"widest [0, t] whose accepted inputs stay within {max_diff} of the float "
        f"model on the {' and '.join(CHOSEN_ON)} sets together, rounded down to "
        f"{step}; judged on the unseen photos"
    )


def judged_band(
    scores: dict[str, tuple[np.ndarray, np.ndarray]],
    band: tuple[float, float],
    max_diff: float,
    first_stage: str,
) -> tuple[dict[str, dict], bool]:
    """Each set's figures for the cascade with `band` (`band_figures`, scores as (float,
    `first_stage`) pairs), and whether it is adopted: every set's scores within issue 13's
    MAX_MODERATION_DIFF of the float model's."""
    per_set = {
        what: band_figures(r, c, band, max_diff, first_stage) for what, (r, c) in scores.items()
    }
    return per_set, all(s["max_score_diff"] <= MAX_MODERATION_DIFF for s in per_set.values())


def moderation_figures(path: Path, sets: dict[str, np.ndarray]) -> dict:
    ref_s = open_session(path, ONE_THREAD)
    bf16_s = OpenVinoSession(path, "bf16", ONE_THREAD)
    scores = {what: (nsfw_scores(ref_s, x), nsfw_scores(bf16_s, x)) for what, x in sets.items()}
    band = moderation_band(scores)
    per_set, adopted = judged_band(scores, band, BF16_MAX_DIFF, "bf16")
    return {
        "adopted": adopted,
        "on": "score",
        "accept": [band[0], band[1]],
        "rule": band_rule(BF16_MAX_DIFF, BF16_BAND_STEP),
        "max_diff_allowed_in_band": BF16_MAX_DIFF,
        "cpu_ms_per_image_batch8_one_thread": {
            "onnxruntime_f32": cpu_ms_per_input(ref_s, sets["tuning"]),
            "openvino_bf16": cpu_ms_per_input(bf16_s, sets["tuning"]),
        },
        **per_set,
    }


def _joined(outputs: list[ClassifierOutputs]) -> ClassifierOutputs:
    return ClassifierOutputs(
        np.concatenate([o.probabilities for o in outputs]),
        np.concatenate([o.features for o in outputs]),
    )


def recall_margin(reference: ClassifierOutputs, candidate: ClassifierOutputs) -> float:
    """The smallest margin on a 0.01 grid at which the cascade keeps recall@10 over the mixed
    features at MIN_RECALL_AT_10 on this set (1.0: the float model for every input)."""
    for t in np.arange(0.0, 1.0, 0.01):
        if cascade_agreement(reference, candidate, float(t)).recall_at_10 >= MIN_RECALL_AT_10:
            return round(float(t), 2)
    return 1.0


def classifier_margin(outs: dict[str, tuple[ClassifierOutputs, ClassifierOutputs]]) -> float:
    """The classifier cascade's margin from (float, bf16) outputs of the sets it is chosen
    on: above every bf16 top-1 disagreement there, and keeping recall@10 on each set."""
    safe = smallest_safe_margin(
        _joined([ref for ref, _ in outs.values()]), _joined([got for _, got in outs.values()])
    )
    return max([safe, *(recall_margin(ref, got) for ref, got in outs.values())])


def classifier_figures(path: Path, sets: dict[str, np.ndarray]) -> dict:
    ref_s = open_session(path, ONE_THREAD)
    bf16_s = OpenVinoSession(path, "bf16", ONE_THREAD)
    outs = {
        what: (classifier_outputs(ref_s, x), classifier_outputs(bf16_s, x))
        for what, x in sets.items()
    }
    margin = classifier_margin({k: outs[k] for k in CHOSEN_ON})
    figures: dict = {
        "on": "top1_margin",
        "accept": [margin, 1.0],
        "rule": (
            "the larger of: the smallest 0.01 step above the top-1 margin of every bf16 top-1 "
            f"that differs from the float one on the {' and '.join(CHOSEN_ON)} sets together; "
            f"the smallest 0.01 step keeping recall@10 >= {MIN_RECALL_AT_10} on each of them"
        ),
        "cpu_ms_per_image_batch8_one_thread": {
            "onnxruntime_f32": cpu_ms_per_input(ref_s, sets["tuning"]),
            "openvino_bf16": cpu_ms_per_input(bf16_s, sets["tuning"]),
        },
    }
    holds = True
    for what, (ref, cand) in outs.items():
        served = cascade_agreement(ref, cand, margin)
        alone = cascade_agreement(ref, cand, 0.0)
        figures[what] = {
            k: round(v, 5) if isinstance(v, float) else v for k, v in vars(served).items()
        }
        figures[what]["bf16_alone"] = {
            "top1_agreement": round(alone.top1_agreement, 5),
            "recall_at_10": round(alone.recall_at_10, 5),
            "max_probability_diff": round(alone.max_probability_diff, 5),
        }
        # The smallest margin on a 0.01 grid that keeps recall@10 at the rule on this set.
        figures[what]["margin_for_recall_rule"] = recall_margin(ref, cand)
        holds &= served.top1_agreement >= MIN_TOP1_AGREEMENT
        holds &= served.recall_at_10 >= MIN_RECALL_AT_10
    figures["adopted"] = bool(holds)
    return figures


def bf16_script_args(doc: str, argv: list[str] | None) -> argparse.Namespace | None:
    """The arguments of a script that chooses a band with OpenVINO's bf16 hint (here and
    models/ov_int8.py): --out, the models directory. None, having said why, where OpenVINO
    reports no native bf16 (it would compute in f32: nothing to measure)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "models")
    args = parser.parse_args(argv)
    if not cpu_has_bf16():
        print("OpenVINO reports no native bf16 on this CPU (or is not installed): nothing to do")
        return None
    return args


def main(argv: list[str] | None = None) -> int:
    args = bf16_script_args(__doc__, argv)
    if args is None:
        return 1
    import openvino as ov

    registry = load_registry(args.out)
    images = cascade_sets()
    inputs = {what: model_inputs(imgs) for what, imgs in images.items() if imgs}
    print(", ".join(f"{what}: {len(x[0])} inputs" for what, x in inputs.items()), flush=True)
    report: dict = {"openvino": ov.__version__}
    for name, index, measure in (
        ("open-nsfw", 1, moderation_figures),
        ("efficientnet-lite0", 0, classifier_figures),
    ):
        entry = registry[name]
        path = entry.path(entry.model_role(False))
        figures = measure(path, {what: x[index] for what, x in inputs.items()})
        report[name] = {"float_file": path.name, "float_sha256": sha256_of(path), **figures}
        verdict = "ADOPTED" if figures["adopted"] else "NOT adopted"
        print(f"{name}: {verdict}\n{json.dumps(report[name], indent=1)}", flush=True)
        if figures["adopted"]:
            print(f'  manifest: "bf16": {{"accept": {figures["accept"]}}}')
    (args.out / "bf16.json").write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
