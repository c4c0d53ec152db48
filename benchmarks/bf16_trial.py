"""bf16 through OpenVINO for the vision CNNs: speed and agreement with the float models.

    .venv/bin/python -m benchmarks.bf16_trial [--rounds 3]

For EfficientNet-Lite0, open_nsfw and the PP-OCRv6 text detector (the probe's 320 px thumbnail
shape): process CPU ms per image, one inference thread, batch 8 (the detector: batch 1, as the
probe runs it), in alternating rounds (median) of onnxruntime float32 (as served),
OpenVINO f32 and OpenVINO bf16 (INFERENCE_PRECISION_HINT). Then agreement with the
onnxruntime float models on the real-photo sets of tests/vision_service/agreement_sets.py
(tuning, held-out variants, unseen photos) for bf16 alone and as a cascade:

- classifier: the bf16 answer kept where its top-1 minus top-2 probability is at least a margin
  (`smallest_safe_margin`: one 0.01 step above the most confident bf16/float top-1
  disagreement on the tuning and held-out sets together), the float model for the rest; judged
  on the unseen photos: top-1 agreement (rule >= 98%), recall@10 over the mixed features
  (>= 0.98), label sets at 0.05, the share on the bf16 path;
- moderation: the bf16 score kept where it lies in [0, t] (the widest band whose accepted
  inputs stay within 0.01 of the float model on tuning + held-out, rounded down to 0.005, the
  rule models/quantize.py uses for the int8 band), the float model for the rest; judged on the
  unseen photos (rule: within 0.02).

The cascades' CPU per image on each set is estimated from the measured per-model costs and
the fallback share (the fallback's batch is smaller than 8, so this slightly flatters it).
Nothing here is served; it prints figures only.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks.vision_bench import _load
from tests.vision_service.agreement_sets import cascade_sets
from tests.vision_service.photo_sets import model_inputs
from vision_service.agreement import (
    CASCADE_BAND_STEP,
    CASCADE_MAX_DIFF,
    ClassifierOutputs,
    cascade_agreement,
    classifier_outputs,
    nsfw_scores,
    smallest_safe_margin,
    widest_band,
)
from vision_service.registry import load_registry
from vision_service.sessions import (
    OpenVinoSession,
    SessionThreads,
    cpu_has_bf16,
    open_session,
)

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
ONE_THREAD = SessionThreads(intra_op=1, inter_op=1)


def _cpu_ms_per_image(session, x: np.ndarray, repeat: int = 4) -> float:
    """Process CPU ms per image of `session` (onnxruntime's run surface, an OpenVinoSession
    too) run on batch `x` `repeat` times, after one warm-up run."""
    name = session.get_inputs()[0].name
    session.run(None, {name: x})
    started = time.process_time()
    for _ in range(repeat):
        session.run(None, {name: x})
    return 1000.0 * (time.process_time() - started) / (repeat * len(x))


def speeds(paths: dict[str, Path], tensors: dict[str, np.ndarray], rounds: int) -> dict:
    """{model: {runtime: median CPU ms per image}} in alternating rounds."""
    runtimes = {
        "onnxruntime f32": lambda p: open_session(p, ONE_THREAD),
        "openvino f32": lambda p: OpenVinoSession(p, "f32", ONE_THREAD),
        "openvino bf16": lambda p: OpenVinoSession(p, "bf16", ONE_THREAD),
    }
    out: dict[str, dict[str, float]] = {}
    for model, path in paths.items():
        sessions = {what: make(path) for what, make in runtimes.items()}
        x = tensors[model]
        samples: dict[str, list[float]] = {what: [] for what in sessions}
        for _ in range(rounds):
            for what, session in sessions.items():
                samples[what].append(_cpu_ms_per_image(session, x))
        out[model] = {what: statistics.median(v) for what, v in samples.items()}
        ref = sessions["onnxruntime f32"]
        name = ref.get_inputs()[0].name
        f32_diff = max(
            float(np.abs(a - b).max())
            for a, b in zip(
                ref.run(None, {name: x}), sessions["openvino f32"].run(None, {name: x}), strict=True
            )
        )
        print(
            f"  {model:<18} "
            + "  ".join(f"{what} {ms:6.2f}" for what, ms in out[model].items())
            + f"  (bf16/ORT {out[model]['openvino bf16'] / out[model]['onnxruntime f32']:.2f}x;"
            f" OpenVINO f32 vs ORT f32: largest output difference {f32_diff:.2e})",
            flush=True,
        )
    return out


def classifier_trial(path: Path, sets: dict[str, np.ndarray], ms: dict[str, float]) -> dict:
    ref_s = open_session(path, ONE_THREAD)
    bf16_s = OpenVinoSession(path, "bf16", ONE_THREAD)
    outs: dict[str, tuple[ClassifierOutputs, ClassifierOutputs]] = {
        what: (classifier_outputs(ref_s, x), classifier_outputs(bf16_s, x))
        for what, x in sets.items()
        if len(x)
    }
    chosen_on = [outs[k] for k in ("tuning", "held_out")]
    margin = smallest_safe_margin(
        ClassifierOutputs(
            np.concatenate([r.probabilities for r, _ in chosen_on]),
            np.concatenate([r.features for r, _ in chosen_on]),
        ),
        ClassifierOutputs(
            np.concatenate([c.probabilities for _, c in chosen_on]),
            np.concatenate([c.features for _, c in chosen_on]),
        ),
    )
    print(
        f"  classifier cascade margin (chosen on tuning + held-out): {margin}; "
        f"cost f32 {ms['onnxruntime f32']:.2f}, bf16 {ms['openvino bf16']:.2f} ms/img",
        flush=True,
    )
    figures = {"margin": margin}
    for what, (ref, cand) in outs.items():
        alone = cascade_agreement(ref, cand, 0.0)
        casc = cascade_agreement(ref, cand, margin)
        per_set = {}
        for t in sorted({0.01, 0.02, 0.03, 0.05, margin}):
            per_set[t] = cascade_agreement(ref, cand, t)
        est = ms["openvino bf16"] + (1 - casc.accepted_share) * ms["onnxruntime f32"]
        print(
            f"  {what:<9} {casc.inputs:4d} inputs: bf16 alone top-1 {alone.top1_agreement:.3f} "
            f"recall@10 {alone.recall_at_10:.3f} max p diff {alone.max_probability_diff:.3f}; "
            f"CASCADE top-1 {casc.top1_agreement:.3f}, recall@10 {casc.recall_at_10:.3f}, "
            f"label sets {casc.label_set_agreement:.3f}, top-5 {casc.top5_overlap:.3f}, "
            f"max p diff {casc.max_probability_diff:.3f}, min cos {casc.min_feature_cosine:.4f}, "
            f"near-dup flips {casc.near_duplicate_flips}/{casc.near_duplicate_pairs}, "
            f"on bf16 {casc.accepted_share:.1%} -> est. {est:.2f} ms/img",
            flush=True,
        )
        print(
            "            by margin: "
            + "; ".join(
                f"{t}: top-1 {a.top1_agreement:.3f} recall {a.recall_at_10:.3f} "
                f"bf16 {a.accepted_share:.0%}"
                for t, a in per_set.items()
            )
        )
        figures[what] = {
            "alone_top1": alone.top1_agreement,
            "top1": casc.top1_agreement,
            "recall_at_10": casc.recall_at_10,
            "accepted_share": casc.accepted_share,
            "est_ms": est,
        }
    return figures


def moderation_trial(
    paths: dict[str, Path], sets: dict[str, np.ndarray], ms: dict[str, float]
) -> dict:
    ref_s = open_session(paths["float"], ONE_THREAD)
    bf16_s = OpenVinoSession(paths["float"], "bf16", ONE_THREAD)
    int8_s = open_session(paths["int8"], ONE_THREAD)
    scores = {
        what: (nsfw_scores(ref_s, x), nsfw_scores(bf16_s, x), nsfw_scores(int8_s, x))
        for what, x in sets.items()
        if len(x)
    }
    ref_all = np.concatenate([scores[k][0] for k in ("tuning", "held_out")])
    bf_all = np.concatenate([scores[k][1] for k in ("tuning", "held_out")])
    bands = {}
    for max_diff in (0.005, CASCADE_MAX_DIFF):
        widest = widest_band(ref_all, bf_all, max_diff)
        bands[max_diff] = round(float(np.floor(widest / CASCADE_BAND_STEP)) * CASCADE_BAND_STEP, 6)
    print(
        "  moderation bands [0, t] chosen on tuning + held-out: "
        + ", ".join(f"within {d}: t = {t}" for d, t in bands.items()),
        flush=True,
    )
    figures: dict = {"bands": bands}
    for what, (ref, bf, q) in scores.items():
        diff = np.abs(ref - bf)
        line = (
            f"  {what:<9} {len(ref):4d} inputs: bf16 alone max diff {diff.max():.4f} "
            f"(mean {diff.mean():.4f}), int8 alone {np.abs(ref - q).max():.4f}; "
            f"highest float score {ref.max():.3f}"
        )
        for max_diff, t in bands.items():
            accepted = bf <= t
            served = np.where(accepted, bf, ref)
            est = ms["openvino bf16"] + (1 - accepted.mean()) * ms["onnxruntime f32"]
            line += (
                f"\n            band [0, {t}] (<= {max_diff}): on bf16 {accepted.mean():.1%}, "
                f"cascade max diff {np.abs(served - ref).max():.4f}, "
                f"widest within {max_diff} here {widest_band(ref, bf, max_diff):.4f} "
                f"-> est. {est:.2f} ms/img"
            )
            figures.setdefault(what, {})[t] = {
                "accepted_share": float(accepted.mean()),
                "max_diff": float(np.abs(served - ref).max()),
                "est_ms": est,
            }
        int8_kept = q <= 0.015
        line += (
            f"\n            served int8 cascade [0, 0.015]: on int8 {int8_kept.mean():.1%}, "
            f"est. {ms['int8']:.2f} + {(1 - int8_kept.mean()):.0%} x float "
            f"= {ms['int8'] + (1 - int8_kept.mean()) * ms['onnxruntime f32']:.2f} ms/img"
        )
        print(line, flush=True)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"OpenVINO reports BF16 on this CPU: {cpu_has_bf16()}; {_load()}", flush=True)
    registry = load_registry(MODELS_DIR)
    paths = {
        "efficientnet-lite0": registry["efficientnet-lite0"].path("onnx"),
        "open-nsfw": registry["open-nsfw"].path("reference"),
        "pp-ocrv6-det-tiny": registry["pp-ocrv6-det-tiny"].path("onnx"),
    }
    print("building the agreement sets ...", flush=True)
    image_sets = cascade_sets()
    inputs = {what: model_inputs(images) for what, images in image_sets.items() if images}
    rng = np.random.default_rng(0)
    tensors = {
        "efficientnet-lite0": np.ascontiguousarray(inputs["tuning"][0][:8]),
        "open-nsfw": np.ascontiguousarray(inputs["tuning"][1][:8]),
        "pp-ocrv6-det-tiny": rng.standard_normal((1, 3, 224, 320)).astype(np.float32),
    }
    print(
        f"-- CPU ms per image, one thread, batch 8 (detector batch 1, 320x224), median of "
        f"{args.rounds} alternating rounds ({_load()}) --",
        flush=True,
    )
    ms = speeds(paths, tensors, args.rounds)
    int8 = open_session(registry["open-nsfw"].path("onnx"), ONE_THREAD)
    ms["open-nsfw"]["int8"] = _cpu_ms_per_image(int8, tensors["open-nsfw"])
    print(f"  open-nsfw int8 (onnxruntime, served first stage): {ms['open-nsfw']['int8']:.2f}")
    print(f"-- classifier: bf16 vs float on the agreement sets ({_load()}) --", flush=True)
    classifier_trial(
        paths["efficientnet-lite0"],
        {what: x[0] for what, x in inputs.items()},
        ms["efficientnet-lite0"],
    )
    print(f"-- moderation: bf16 vs float on the agreement sets ({_load()}) --", flush=True)
    moderation_trial(
        {"float": paths["open-nsfw"], "int8": registry["open-nsfw"].path("onnx")},
        {what: x[1] for what, x in inputs.items()},
        ms["open-nsfw"],
    )
    print(f"done ({_load()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
