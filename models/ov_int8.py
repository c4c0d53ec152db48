"""open_nsfw in int8 through OpenVINO (NNCF post-training quantization), and the band of its
scores a moderation cascade may keep.

    .venv/bin/pip install -e '.[models]'   # nncf: build time only, not run time or CI
    .venv/bin/python models/ov_int8.py [--out models]

Needs a CPU where OpenVINO reports native bf16 (the int8 graph is served, and its band chosen,
with the bf16 precision hint: its float stem conv computes in bf16), which is where
VISION_BF16=auto serves the bf16 cascades.

The float open_nsfw graph (the manifest's "reference") is read by OpenVINO and quantized by
`nncf.quantize` (PERFORMANCE preset: symmetric int8 weights per channel and activations per
tensor; fast bias correction), calibrated on the same real-photo inputs as models/quantize.py
(`calibration_variants` of the judged photos, batch 1), its first conv (7x7 on the 3-channel
input) left in float: quantized too it moves scores by up to 0.23 (the band within 0.01 shrinks
to [0, 0.0046]). Saved as OpenVINO IR (open_nsfw_int8_ov.xml + .bin, weights not compressed
to fp16). The band is [0, t], the widest whose accepted inputs all stay within
CASCADE_MAX_DIFF (0.01, the int8 cascade's rule in models/quantize.py) of the float model on
the tuning and held-out sets of tests/vision_service/agreement_sets.py together, rounded down
to CASCADE_BAND_STEP; it is then judged on the unseen photographs (rule: 0.02). Measured while
choosing (alternatives, one thread, batch 8, load 5-9): the stem quantized 5.8-6.0 ms per image
(band [0, 0.0046] within 0.01); MIXED preset (asymmetric activations) with the stem in float
band 0.036 on tuning + held-out (the PERFORMANCE one: 0.044 with the f32 hint); full bias
correction instead of fast: no change; the int8 graph as onnxruntime's QDQ file read by
OpenVINO (models/open_nsfw_int8.onnx): 9.5 ms, no faster than the float graph in bf16.

Writes models/ov_int8.json (figures per set), the IR files, and the manifest's "ov_int8"
entry (band and file hashes) to copy into models/manifest.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from models.bf16_cascade import (  # noqa: E402
    CHOSEN_ON,
    ONE_THREAD,
    band_rule,
    bf16_script_args,
    judged_band,
)
from tests.vision_service.agreement_sets import cascade_sets, judged_photos  # noqa: E402
from tests.vision_service.photo_sets import calibration_variants, model_inputs  # noqa: E402
from vision_service.agreement import (  # noqa: E402
    CASCADE_BAND_STEP,
    CASCADE_MAX_DIFF,
    MAX_MODERATION_DIFF,
    chosen_band,
    cpu_ms_per_input,
    nsfw_scores,
)
from vision_service.registry import load_registry, sha256_of  # noqa: E402
from vision_service.sessions import OpenVinoSession, open_session  # noqa: E402

MODEL = "open-nsfw"
IR_NAME = "open_nsfw_int8_ov"
SERVED_PRECISION = "bf16"
FLOAT_CONVS = 1  # leading convs kept in float


def quantize(float_path: Path, calibration: np.ndarray, out_dir: Path) -> Path:
    """Writes out_dir/IR_NAME.xml (+ .bin) and returns the .xml path."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(float_path))
    convs = [
        op.get_friendly_name()
        for op in model.get_ordered_ops()
        if op.get_type_name() == "Convolution"
    ]
    quantized = nncf.quantize(
        model,
        nncf.Dataset([calibration[i : i + 1] for i in range(len(calibration))]),
        preset=nncf.QuantizationPreset.PERFORMANCE,
        subset_size=len(calibration),
        ignored_scope=nncf.IgnoredScope(names=convs[:FLOAT_CONVS]),
    )
    xml = out_dir / f"{IR_NAME}.xml"
    ov.save_model(quantized, str(xml), compress_to_fp16=False)
    return xml


def band_of(scores: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[float, float]:
    """[0, t]: the widest band within CASCADE_MAX_DIFF on CHOSEN_ON together (each set a
    (float scores, int8 scores) pair), rounded down to CASCADE_BAND_STEP."""
    return chosen_band(scores, CHOSEN_ON, CASCADE_MAX_DIFF, CASCADE_BAND_STEP)


def main(argv: list[str] | None = None) -> int:
    args = bf16_script_args(__doc__, argv)
    if args is None:
        return 1
    import nncf
    import openvino as ov

    float_path = load_registry(args.out)[MODEL].path("reference")
    calibration = model_inputs(calibration_variants(judged_photos()))[1]
    xml = quantize(float_path, calibration, args.out)
    inputs = {what: model_inputs(imgs)[1] for what, imgs in cascade_sets().items() if imgs}
    print(", ".join(f"{what}: {len(x)} inputs" for what, x in inputs.items()), flush=True)
    ref_s = open_session(float_path, ONE_THREAD)
    int8_s = OpenVinoSession(xml, SERVED_PRECISION, ONE_THREAD)
    bf16_s = OpenVinoSession(float_path, "bf16", ONE_THREAD)
    scores = {what: (nsfw_scores(ref_s, x), nsfw_scores(int8_s, x)) for what, x in inputs.items()}
    band = band_of(scores)
    per_set, adopted = judged_band(scores, band, CASCADE_MAX_DIFF, "int8")
    report = {
        "openvino": ov.__version__,
        "nncf": nncf.__version__,
        "float_file": float_path.name,
        "float_sha256": sha256_of(float_path),
        "int8_file": xml.name,
        "int8_sha256": sha256_of(xml),
        "int8_weights_sha256": sha256_of(xml.with_suffix(".bin")),
        "settings": {
            "preset": "PERFORMANCE",
            "calibration_inputs": len(calibration),
            "float_convs": FLOAT_CONVS,
            "served_precision_hint": SERVED_PRECISION,
        },
        "adopted": adopted,
        "on": "score",
        "accept": [band[0], band[1]],
        "rule": band_rule(CASCADE_MAX_DIFF, CASCADE_BAND_STEP) + f" (rule {MAX_MODERATION_DIFF})",
        "cpu_ms_per_image_batch8_one_thread": {
            "onnxruntime_f32": cpu_ms_per_input(ref_s, inputs["tuning"]),
            "openvino_bf16": cpu_ms_per_input(bf16_s, inputs["tuning"]),
            "openvino_int8": cpu_ms_per_input(int8_s, inputs["tuning"]),
        },
        **per_set,
    }
    print(json.dumps(report, indent=1), flush=True)
    (args.out / "ov_int8.json").write_text(json.dumps(report, indent=1) + "\n")
    if adopted:
        print(
            f'ADOPTED; manifest ({MODEL}): "ov_int8": {{"accept": {list(band)}}}, files '
            f'"ov_int8": {{"file": "{xml.name}", "sha256": "{report["int8_sha256"]}"}}, '
            f'"ov_int8_weights": {{"file": "{xml.with_suffix(".bin").name}", '
            f'"sha256": "{report["int8_weights_sha256"]}"}}'
        )
    else:
        print("NOT adopted")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
