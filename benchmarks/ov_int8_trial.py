"""int8 through OpenVINO for the vision CNNs: per-model speed, and the service before/after the
OpenVINO int8 moderation cascade (the manifest's "ov_int8", models/ov_int8.py).

    .venv/bin/python -m benchmarks.ov_int8_trial [--rounds 3] [--no-service]

1. Per model, process CPU ms per image on one inference thread, in alternating rounds
   (median): onnxruntime f32 (as served), OpenVINO f32, OpenVINO bf16, and int8 read by
   OpenVINO: open_nsfw's served NNCF copy (open_nsfw_int8_ov.xml, bf16 hint), and the
   onnxruntime QDQ copies (models/open_nsfw_int8.onnx, models/efficientnet_lite0_int8.onnx,
   f32 and bf16 hints), beside onnxruntime running those QDQ files. With nncf installed
   (`pip install -e '.[models]'`), EfficientNet-Lite0 and the PP-OCRv6 detector are also
   quantized by NNCF here (calibrated on real photos) and measured; their top-1 agreement /
   probability-map difference is printed (neither is served). Batch 8 (the detector: batch 1 at
   the probe's 320x224).
2. The service with the default tasks over gRPC from 8 clients, three engines in this process
   alternating twice: VISION_BF16=0 (the int8 onnxruntime cascade), VISION_BF16=1 with
   VISION_OV_INT8=0 (the bf16 cascade, round 15) and =1 (the OpenVINO int8 cascade), on the
   benchmark's 8 photos and the text-free set: CPU ms per image in all and in the moderation
   batches (OpenVINO's stream threads counted with them).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import statistics
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.bf16_trial import MODELS_DIR, ONE_THREAD, _cpu_ms_per_image
from benchmarks.vision_bench import (
    CLIENTS,
    _load,
    _native_tids,
    _photos,
    _thread_cpu_ms,
    service_throughput,
)
from tests.vision_service.agreement_sets import cascade_sets, judged_photos
from tests.vision_service.photo_sets import (
    calibration_variants,
    jpeg_bytes,
    model_inputs,
    text_photos,
    textless_photos,
)
from vision_service.config import VisionConfig
from vision_service.engine import VisionEngine
from vision_service.models.ocr import _DET_OFFSET, _DET_SCALE
from vision_service.registry import load_registry
from vision_service.server import build_server
from vision_service.servicer import EngineSlot
from vision_service.sessions import OpenVinoSession, cpu_has_bf16, open_session
from vision_service.text_prefilter import thumbnail


def _detector_input(rgb) -> np.ndarray:
    thumb = thumbnail(rgb, 320)
    h, w = thumb.shape[:2]
    x = np.empty((1, 3, h, w), dtype=np.float32)
    for channel in range(3):
        x[0, channel] = thumb[:, :, 2 - channel] * _DET_SCALE[channel] + _DET_OFFSET[channel]
    return x


def _nncf_int8(path: Path, calibration: list[np.ndarray], out: Path) -> Path | None:
    """NNCF's default int8 copy of a float graph (PERFORMANCE preset), or None without nncf."""
    if importlib.util.find_spec("nncf") is None:
        return None
    import nncf
    import openvino as ov

    model = nncf.quantize(
        ov.Core().read_model(str(path)),
        nncf.Dataset(calibration),
        subset_size=len(calibration),
    )
    ov.save_model(model, str(out), compress_to_fp16=False)
    return out


def speeds(rounds: int, work: Path) -> None:
    registry = load_registry(MODELS_DIR)
    nsfw = registry["open-nsfw"]
    clf = registry["efficientnet-lite0"]
    det = registry["pp-ocrv6-det-tiny"].path()
    calib = model_inputs(calibration_variants(judged_photos()))
    tuning = model_inputs(cascade_sets()["tuning"])
    det_inputs = [_detector_input(im) for im in text_photos().values()]
    det_inputs += [_detector_input(im) for im in list(textless_photos().values())[:40]]
    rng = np.random.default_rng(0)
    det_x = rng.standard_normal((1, 3, 224, 320)).astype(np.float32)
    clf_nncf = _nncf_int8(
        clf.path(), [calib[0][i : i + 1] for i in range(len(calib[0]))], work / "clf.xml"
    )
    det_nncf = _nncf_int8(det, det_inputs, work / "det.xml")
    one: Callable[[Path], object] = lambda p: open_session(p, ONE_THREAD)  # noqa: E731
    cases: dict[str, tuple[np.ndarray, dict[str, Callable[[], object]]]] = {
        "open_nsfw": (
            np.ascontiguousarray(tuning[1][:8]),
            {
                "ORT f32": lambda: one(nsfw.path("reference")),
                "OV f32": lambda: OpenVinoSession(nsfw.path("reference"), "f32", ONE_THREAD),
                "OV bf16": lambda: OpenVinoSession(nsfw.path("reference"), "bf16", ONE_THREAD),
                "ORT int8 QDQ": lambda: one(nsfw.path("onnx")),
                "OV int8 QDQ f32": lambda: OpenVinoSession(nsfw.path("onnx"), "f32", ONE_THREAD),
                "OV int8 NNCF (served)": lambda: OpenVinoSession(
                    nsfw.path("ov_int8"), "bf16", ONE_THREAD
                ),
            },
        ),
        "EfficientNet-Lite0": (
            np.ascontiguousarray(tuning[0][:8]),
            {
                "ORT f32": lambda: one(clf.path()),
                "OV f32": lambda: OpenVinoSession(clf.path(), "f32", ONE_THREAD),
                "OV bf16": lambda: OpenVinoSession(clf.path(), "bf16", ONE_THREAD),
                "ORT int8 QDQ": lambda: one(MODELS_DIR / "efficientnet_lite0_int8.onnx"),
                "OV int8 QDQ bf16": lambda: OpenVinoSession(
                    MODELS_DIR / "efficientnet_lite0_int8.onnx", "bf16", ONE_THREAD
                ),
                **(
                    {"OV int8 NNCF bf16": lambda: OpenVinoSession(clf_nncf, "bf16", ONE_THREAD)}
                    if clf_nncf
                    else {}
                ),
            },
        ),
        "PP-OCRv6 det 320x224": (
            det_x,
            {
                "ORT f32": lambda: one(det),
                "OV f32": lambda: OpenVinoSession(det, "f32", ONE_THREAD),
                "OV bf16": lambda: OpenVinoSession(det, "bf16", ONE_THREAD),
                **(
                    {
                        "OV int8 NNCF f32": lambda: OpenVinoSession(det_nncf, "f32", ONE_THREAD),
                        "OV int8 NNCF bf16": lambda: OpenVinoSession(det_nncf, "bf16", ONE_THREAD),
                    }
                    if det_nncf
                    else {}
                ),
            },
        ),
    }
    print(f"-- CPU ms per image, one thread, median of {rounds} alternating rounds ({_load()})")
    for model, (x, makers) in cases.items():
        sessions = {what: make() for what, make in makers.items()}
        samples: dict[str, list[float]] = {what: [] for what in sessions}
        repeat = 20 if len(x) == 1 else 4
        for _ in range(rounds):
            for what, session in sessions.items():
                samples[what].append(_cpu_ms_per_image(session, x, repeat))
        print(
            f"  {model:<20} "
            + "  ".join(f"{what} {statistics.median(v):.2f}" for what, v in samples.items()),
            flush=True,
        )
    if clf_nncf:
        ref = open_session(clf.path(), ONE_THREAD)
        q = OpenVinoSession(clf_nncf, "bf16", ONE_THREAD)
        for what, images in cascade_sets().items():
            if not images:
                continue
            x = model_inputs(images)[0]
            a = np.concatenate(
                [ref.run(None, {"input": x[i : i + 8]})[0] for i in range(0, len(x), 8)]
            )
            b = np.concatenate(
                [q.run(None, {"input": x[i : i + 8]})[0] for i in range(0, len(x), 8)]
            )
            print(
                f"  EfficientNet-Lite0 NNCF int8 alone, {what}: top-1 agreement "
                f"{np.mean(a.argmax(1) == b.argmax(1)):.3f} (rule 0.98)"
            )
    if det_nncf:
        ref = open_session(det, ONE_THREAD)
        q = OpenVinoSession(det_nncf, "bf16", ONE_THREAD)
        name = ref.get_inputs()[0].name
        diff = max(
            float(np.abs(ref.run(None, {name: x})[0] - q.run(None, {name: x})[0]).max())
            for x in det_inputs
        )
        print(f"  detector NNCF int8: largest probability-map difference {diff:.3f}")


def service_rounds(config: VisionConfig, photos: list[bytes]) -> None:
    print(f"-- the service, default tasks, {CLIENTS} clients, alternating ({_load()}) --")
    if not cpu_has_bf16():
        print("  OpenVINO reports no native bf16 on this CPU: the service runs as with BF16=0")
        return
    modes = {
        "int8 ORT (BF16=0)": dataclasses.replace(config, bf16="0"),
        "bf16 (OV_INT8=0)": dataclasses.replace(config, bf16="1", ov_int8=False),
        "OV int8 (default)": dataclasses.replace(config, bf16="1", ov_int8=True),
    }
    engines: dict[str, VisionEngine] = {}
    ov_threads: set[int] = set()
    for what, cfg in modes.items():
        tids = _native_tids()
        engines[what] = VisionEngine.load(cfg)
        ov_threads |= _native_tids() - tids
    ports = {}
    servers = []
    for what, engine in engines.items():
        server, port, health = build_server("127.0.0.1:0", config, EngineSlot(engine))
        server.start()
        health.set_serving(True)
        servers.append(server)
        ports[what] = port
    textless = [jpeg_bytes(im) for im in textless_photos().values()]
    try:
        for mix_name, mix in ((f"{len(photos)} benchmark photos", photos), ("text-free", textless)):
            totals: dict[str, list[float]] = {m: [] for m in modes}
            moderation: dict[str, list[float]] = {m: [] for m in modes}
            for _ in range(2):
                for what in modes:
                    before = _thread_cpu_ms()
                    rate = service_throughput(ports[what], mix, CLIENTS, [])
                    after = _thread_cpu_ms()
                    used = {
                        tid: cpu - before.get(tid, (name, 0.0))[1]
                        for tid, (name, cpu) in after.items()
                    }
                    total = sum(used.values()) or 1.0
                    mod = sum(
                        cpu
                        for tid, cpu in used.items()
                        if after[tid][0].startswith("batcher-moderation")
                        or (tid in ov_threads and after[tid][0] == "native")
                    )
                    totals[what].append(rate.cpu_ms_per_image)
                    moderation[what].append(rate.cpu_ms_per_image * mod / total)
            print(
                f"  {mix_name:<20} CPU ms/img "
                + ", ".join(
                    f"{what} {np.mean(v):.2f} ({' / '.join(f'{s:.2f}' for s in v)};"
                    f" moderation {np.mean(moderation[what]):.2f})"
                    for what, v in totals.items()
                )
                + f" ({_load()})",
                flush=True,
            )
        model = engines["OV int8 (default)"]._moderation
        print(
            f"  OV int8 path: {model.scored - model.fell_back} of {model.scored} images kept "
            f"(band {list(model.band or ())})"
        )
    finally:
        for server in servers:
            server.stop(grace=None)
        for engine in engines.values():
            engine.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-service", action="store_true")
    parser.add_argument("--no-models", action="store_true")
    args = parser.parse_args(argv)
    import tempfile

    print(f"OpenVINO reports BF16 on this CPU: {cpu_has_bf16()}; {_load()}", flush=True)
    if not args.no_models:
        with tempfile.TemporaryDirectory() as work:
            speeds(args.rounds, Path(work))
    if not args.no_service:
        config = VisionConfig(models_dir=MODELS_DIR)
        service_rounds(config, _photos())
    print(f"done ({_load()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
