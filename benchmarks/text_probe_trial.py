"""The vision request path, step by step, and the text probe's decisions: the probe as it was
(the prefilter's first settings, contrast 70, 16x8 window, density 0.5, on its own INTER_AREA
grey copy; the detector on a bilinear thumbnail) against the current one (contrast 50, 12x4,
0.8, on the grey of the box-filtered thumbnail the detector then runs on), in the same run.

`.venv/bin/python -m benchmarks.text_probe_trial` prints (with `--service`, instead: the
service over gRPC with either probe, alternating, by thread)
- CPU ms per image (process CPU time, one thread, the two settings alternating) of every step a
  request thread runs for the default tasks: decode, classifier and moderation inputs, colours,
  prefilter, detector, probe (prefilter + detector where it passes); on the 8 photos of
  `make bench PART=vision` and on the text-free set;
- the probe's misses (photos with text where it says no) and false alarms (text-free photos
  where it says yes) on the sets the prefilter was tuned on and on held-out sets it was not:
  `heldout_font_signs()` and, where installed, Debian's other wallpapers (lomiri, ukui) with and
  without signs.
With `--gates`: cheaper text gates tried in front of the detector and refused, each measured on
held-out text photos (the rule: the gate drops none of the text photos the current probe finds):
- a linear "has text" probe (logistic regression) over the EfficientNet-Lite0 feature vector
  the classifier computes anyway, float and int8 features, used together with the prefilter;
- the detector at 128-192 px as a lenient first stage (its highest text probability anywhere);
and with `--inputs`: cheaper classifier and moderation inputs (Pillow's reducing_gap, bilinear,
OpenCV's JPEG, no JPEG round trip) against the served ones on the 495 real-photo inputs of
`tests/vision_service/agreement_sets.cascade_sets` (the rules: top-1 unchanged, moderation
within 0.005).
With `--bf16`: the probe's detector compiled by OpenVINO in bf16 (static shapes) against
onnxruntime's float run, alone and as a cascade (the float detector decides where bf16 says no
text but a region comes near the criteria), on the photos the prefilter passes: misses, added
finds, float runs, CPU per photo (measured, not served: it saves about 2 ms per detector run
but bf16 alone misses a held-out sign, and the cascade's float runs eat most of the saving on
the bench photos). With `--flat`: a second prefilter feature (a flat background beside the
dense window) and what it would reject and drop (not served).
Not a test: a benchmark prints figures; tests/vision_service/test_text_prefilter.py guards the
decisions.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from tests.support import real_photo_paths
from tests.vision_service.photo_sets import (
    as_analysed,
    debian_photos,
    font_sign_photos,
    heldout_font_signs,
    installed_fonts,
    jpeg_bytes,
    photo_file,
    real_photos,
    small_sign_photos,
    text_photos,
    textless_photos,
    tuning_font_signs,
)
from vision_service import preprocess, text_prefilter
from vision_service.models import colours, ocr
from vision_service.models.classifier import ImageClassifier, load_classes
from vision_service.models.colours import (
    COLOUR_NAMES,
    THUMB_SIDE,
    dominant_colours,
    pixel_categories,
)
from vision_service.models.moderation import moderation_input
from vision_service.models.ocr import PROBE_MAX_SIDE, TextProbe, _text_like_regions
from vision_service.preprocess import CLASSIFIER_RESIZE, classifier_input, decode_image
from vision_service.sessions import SessionThreads, cpu_has_bf16, open_session
from vision_service.text_prefilter import stride_side

MODELS = Path(__file__).resolve().parent.parent / "models"
BENCH_PHOTOS = (
    "chelsea",
    "coffee",
    "rocket",
    "astronaut",
    "motorcycle",
    "china",
    "flower",
    "camera",
)
# Debian wallpapers beside mate-backgrounds, where installed (not on CI): a held-out text-free
# set, and bases for held-out signs.
_OTHER_WALLPAPERS = Path("/usr/share/backgrounds")


class PreviousProbe(TextProbe):
    """The probe before this round: the first prefilter settings on an INTER_AREA grey copy,
    the detector on a bilinear thumbnail (the code as it was)."""

    def _grey(self, rgb: Image.Image) -> np.ndarray:
        pixels = np.asarray(rgb)
        h, w = pixels.shape[:2]
        grey = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
        scale = 320 / max(w, h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        return cv2.resize(grey, size, interpolation=cv2.INTER_AREA)

    def may_hold_text(self, rgb: Image.Image) -> bool:
        if max(rgb.size) < 320:
            return True
        gradient = cv2.morphologyEx(self._grey(rgb), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
        sharp = (gradient >= 70).astype(np.uint8)
        return bool(sharp.any()) and float(cv2.boxFilter(sharp, cv2.CV_32F, (16, 8)).max()) >= 0.5

    def probability_map(self, rgb: Image.Image, max_side: int | None = None) -> np.ndarray:
        w, h = rgb.size
        scale = (max_side or self.max_side) / max(w, h)
        size = (stride_side(w * scale), stride_side(h * scale))
        thumb = np.asarray(rgb.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0))
        return self._detect(thumb)

    def likely_has_text(self, rgb: Image.Image) -> bool:
        if self.prefilter and not self.may_hold_text(rgb):
            return False
        return any(_text_like_regions(self.probability_map(rgb)))


def other_wallpapers(max_side: int = 1024) -> dict[str, Image.Image]:
    out = {}
    for path in sorted(_OTHER_WALLPAPERS.glob("*.jpg")):
        out[f"wallpaper-{path.stem}"] = photo_file(path, max_side)
    return out


def trial_photos(tuned: str) -> dict[str, tuple[bool, dict[str, Image.Image]]]:
    """The sets the prefilter was tuned on (named `<tuned>: ...`: the trials tell them by that
    prefix) and the held-out ones (`held out: ...`; Debian's other wallpapers, and signs on
    them and on mate's, where installed), as made, not yet analysed; each with whether its
    photos hold text."""
    sets = {
        f"{tuned}: the 42 earlier text photos": (True, {**text_photos(), **small_sign_photos()}),
        f"{tuned}: font signs": (True, tuning_font_signs()),
        f"{tuned}: text-free photos and crops": (False, textless_photos()),
        "held out: font signs 4-7%": (True, heldout_font_signs()),
    }
    walls = other_wallpapers()
    if walls:
        bases = {**walls, **debian_photos()}
        signs = font_sign_photos(bases, installed_fonts(), (0.045, 0.055, 0.07, 0.09), salt=23)
        sets["held out: other Debian wallpapers"] = (False, walls)
        sets["held out: signs on them and on mate's"] = (True, signs)
    return sets


def analysed_trial_sets() -> dict[str, tuple[bool, dict[str, Image.Image]]]:
    """trial_photos("tuned") as the service analyses them (as_analysed)."""
    return {
        name: (has_text, as_analysed(images))
        for name, (has_text, images) in trial_photos("tuned").items()
    }


def _cpu_ms(fn: Callable[[Any], object], items: list, rounds: int = 5) -> float:
    for item in items:
        fn(item)
    started = time.process_time()
    for _ in range(rounds):
        for item in items:
            fn(item)
    return (time.process_time() - started) / rounds / len(items) * 1000


def _bench_uploads() -> list[bytes]:
    paths = real_photo_paths()
    out = []
    for name in BENCH_PHOTOS:
        with Image.open(paths[name]) as im:
            buf = io.BytesIO()
            im.convert("RGB").save(buf, "JPEG", quality=90)
            out.append(buf.getvalue())
    return out


def step_costs(previous: PreviousProbe, probe: TextProbe, textfree: list[Image.Image]) -> None:
    uploads = _bench_uploads()

    def decode(data: bytes) -> Image.Image:
        return decode_image(
            data,
            max_pixels=40_000_000,
            min_long_side=PROBE_MAX_SIDE,
            min_short_side=CLASSIFIER_RESIZE,
        ).rgb

    decoded = [decode(u) for u in uploads]
    steps: list[tuple[str, Callable, list]] = [
        ("decode (reduced-scale JPEG)", decode, uploads),
        ("classifier input", classifier_input, decoded),
        ("previous: moderation input (Pillow's JPEG decode)", _previous_moderation_input, decoded),
        ("current: moderation input (OpenCV's JPEG decode)", moderation_input, decoded),
        ("colours", dominant_colours, decoded),
        ("previous: colour histogram (HSV per pixel)", _previous_colour_histogram, decoded),
        ("current: colour histogram (table lookup)", colours.colour_histogram, decoded),
        ("previous: decode (exif_transpose always)", _previous_decode, uploads),
        ("previous: prefilter (own grey copy)", previous.may_hold_text, decoded),
        ("previous: detector (bilinear thumbnail incl.)", previous.probability_map, decoded),
        ("current: shared thumbnail (box)", text_prefilter.thumbnail, decoded),
        ("current: prefilter (thumbnail incl.)", text_prefilter.edge_density, decoded),
        ("current: detector (box thumbnail incl.)", probe.probability_map, decoded),
    ]
    print(f"-- request-thread steps, CPU ms per image, 8 bench photos ({_load()}) --")
    for what, fn, items in steps:
        print(f"  {what:<50} {_cpu_ms(fn, items):6.2f}")
    for label, items in (("8 bench photos", decoded), (f"{len(textfree)} text-free", textfree)):
        before: list[float] = []
        after: list[float] = []
        for _ in range(3):  # alternating rounds
            before.append(_cpu_ms(previous.likely_has_text, items, rounds=2))
            after.append(_cpu_ms(probe.likely_has_text, items, rounds=2))
        passed_before = sum(previous.may_hold_text(i) for i in items)
        passed_after = sum(text_prefilter.may_hold_text(i) for i in items)
        print(
            f"  {label}: the prefilter passes {passed_before} / {passed_after} of {len(items)}; "
            f"probe (prefilter + detector) {min(before):.2f} / {min(after):.2f} CPU ms per image "
            "(previous / current, best of 3 alternating rounds)"
        )


def decisions(
    previous: PreviousProbe,
    probe: TextProbe,
    detector: TextProbe,
    sets: dict[str, tuple[bool, dict]],
) -> None:
    print(f"-- text probe decisions: misses / false alarms ({_load()}) --")
    for name, (has_text, images) in sets.items():
        row = [f"  {name} ({len(images)} photos)"]
        for label, this, alone in (
            ("previous", previous, previous.probability_map),
            ("current", probe, detector.probability_map),
        ):
            said = {n for n, rgb in images.items() if this.likely_has_text(rgb)}
            found = {n for n, rgb in images.items() if any(_text_like_regions(alone(rgb)))}
            if has_text:
                dropped = sorted(found - said)
                row.append(
                    f"{label}: missed {len(images) - len(said)} (its detector alone misses "
                    f"{len(images) - len(found)}; dropped by its prefilter {len(dropped)} "
                    f"{dropped[:3]})"
                )
            else:
                row.append(f"{label}: false alarms {len(said)} (detector alone {len(found)})")
        print("; ".join(row), flush=True)


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f}"


def _previous_colour_histogram(image: Image.Image) -> np.ndarray:
    """The colour histogram as it was: a copy, then HSV computed for every pixel."""
    thumb = image.convert("RGB").resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BOX)
    counts = np.bincount(pixel_categories(np.asarray(thumb)), minlength=len(COLOUR_NAMES))
    return counts / counts.sum()


def _previous_moderation_input(rgb: Image.Image) -> np.ndarray:
    """open_nsfw's input as it was: the JPEG round trip decoded by Pillow, then a channel swap
    (the pixels are the same as moderation_input's)."""
    w, h = rgb.size
    o = 16 / 256
    crop = rgb.resize(
        (224, 224), Image.Resampling.BILINEAR, box=(w * o, h * o, w * (1 - o), h * (1 - o))
    )
    buf = io.BytesIO()
    crop.save(buf, format="JPEG")
    with Image.open(buf) as decoded:
        decoded.load()
        rgb8 = np.asarray(decoded)
    pixels = cv2.cvtColor(rgb8, cv2.COLOR_RGB2BGR).astype(np.float32)
    pixels -= _MEAN_BGR
    return pixels


# Every orientation value: exif_transpose on every decode, as before this round.
_ALWAYS_TRANSPOSE = set(range(-1, 1 << 16))


def _previous_decode(data: bytes) -> Image.Image:
    transposing = preprocess._TRANSPOSING_ORIENTATIONS
    preprocess._TRANSPOSING_ORIENTATIONS = _ALWAYS_TRANSPOSE
    try:
        return decode_image(
            data, max_pixels=40_000_000, min_long_side=PROBE_MAX_SIDE, min_short_side=256
        ).rgb
    finally:
        preprocess._TRANSPOSING_ORIENTATIONS = transposing


@contextmanager
def previous_request_path(engine: object, previous: PreviousProbe) -> Iterator[None]:
    """The request path as it was before this round: the previous probe, the colour
    histogram computed per pixel, exif_transpose (and its copy) on every decode."""
    current = engine._probe  # type: ignore[attr-defined]
    histogram = colours.colour_histogram
    transposing = preprocess._TRANSPOSING_ORIENTATIONS
    engine._probe = previous  # type: ignore[attr-defined]
    colours.colour_histogram = _previous_colour_histogram  # type: ignore[assignment]
    preprocess._TRANSPOSING_ORIENTATIONS = _ALWAYS_TRANSPOSE
    try:
        yield
    finally:
        engine._probe = current  # type: ignore[attr-defined]
        colours.colour_histogram = histogram  # type: ignore[assignment]
        preprocess._TRANSPOSING_ORIENTATIONS = transposing


def service_rounds(rounds: int = 3) -> None:
    """The vision service with the default tasks over gRPC from 8 clients (the helpers of
    `make bench PART=vision`), its request path as before this round (`previous_request_path`)
    and as now in alternating rounds: CPU ms per image of the request threads and of the whole
    process."""
    from benchmarks.vision_bench import (
        _THREAD_GROUPS,
        _photos,
        _round_by_thread,
        _share,
    )
    from vision_service.config import VisionConfig
    from vision_service.engine import VisionEngine
    from vision_service.server import build_server
    from vision_service.servicer import EngineSlot

    config = VisionConfig(models_dir=MODELS)
    engine = VisionEngine.load(config)
    previous = PreviousProbe(
        MODELS / "PP-OCRv6_det_tiny.onnx", SessionThreads(config.ocr_threads, 1)
    )
    server, port, health = build_server("127.0.0.1:0", config, EngineSlot(engine))
    server.start()
    health.set_serving(True)
    request_prefix = _THREAD_GROUPS[0][0]
    textless = [jpeg_bytes(im) for im in textless_photos().values()]
    print(f"-- service, default tasks, 8 clients, previous / current request path ({_load()}) --")
    try:
        for what, mix in (("8 bench photos", _photos()), (f"{len(textless)} text-free", textless)):
            figures: dict[str, list[tuple[float, float]]] = {"previous": [], "current": []}
            for _ in range(rounds):
                for label in ("previous", "current"):
                    with ExitStack() as stack:
                        if label == "previous":
                            stack.enter_context(previous_request_path(engine, previous))
                        rate, used = _round_by_thread(port, mix)
                    share = _share(used, request_prefix)
                    figures[label].append((rate.cpu_ms_per_image * share, rate.cpu_ms_per_image))
            for label, rows in figures.items():
                cells = ", ".join(f"{r:.2f} of {t:.2f}" for r, t in rows)
                print(f"  {what}, {label}: request threads of all CPU ms/img per round: {cells}")
            print(f"  ({_load()})", flush=True)
    finally:
        server.stop(grace=None)
        engine.close()


@dataclass
class Judged:
    """One photo set as the gates see it: has text or not, names, whether the current probe's
    parts say text (prefilter, detector alone), and the classifier's features (float, int8)."""

    has_text: bool
    photos: dict[str, Image.Image]
    prefilter: np.ndarray
    detector: np.ndarray
    features: dict[str, np.ndarray]

    @property
    def found(self) -> np.ndarray:
        """The photos the current probe (prefilter, then detector) says hold text."""
        return self.prefilter & self.detector


def _features(classifier: ImageClassifier, photos: list[Image.Image]) -> np.ndarray:
    x = np.stack([classifier_input(rgb) for rgb in photos])
    return np.stack(
        [c.features for i in range(0, len(x), 16) for c in classifier.classify(x[i : i + 16])]
    )


def judged_sets(detector: TextProbe) -> dict[str, Judged]:
    """The tuning and held-out sets, analysed as the service does; with the classifier's float
    and int8 features."""
    threads = SessionThreads(1, 1)
    classes = load_classes(MODELS / "imagenet_classes.json")
    classifiers = {
        kind: ImageClassifier(
            open_session(MODELS / f"efficientnet_lite0{suffix}.onnx", threads), classes
        )
        for kind, suffix in (("float", ""), ("int8", "_int8"))
    }
    out = {}
    for name, (has_text, images) in trial_photos("tuning").items():
        photos = as_analysed(images)
        rgbs = list(photos.values())
        out[name] = Judged(
            has_text,
            photos,
            np.array([text_prefilter.may_hold_text(rgb) for rgb in rgbs]),
            np.array([any(_text_like_regions(detector.probability_map(rgb))) for rgb in rgbs]),
            {kind: _features(c, rgbs) for kind, c in classifiers.items()},
        )
    return out


def _base_photo(name: str, bases: list[str]) -> str:
    """The base photo a variant or a sign photo was made from (the longest base name it starts
    with), so cross-validation never scores a photo whose base it was fitted on."""
    return next((b for b in bases if name == b or name.startswith(f"{b}-")), name)


def feature_probe_trial(sets: dict[str, Judged], costs: tuple[float, float]) -> None:
    """A logistic-regression "has text" probe over the classifier's features, in front of the
    detector beside the prefilter (the detector runs only where both say text may be there).
    Its threshold is the lowest score of a tuning photo with text (nothing tuned on is
    dropped); judged on held-out signs (dropped: text photos the current probe finds) and on
    text-free photos the prefilter passes (rejected: the detector saved)."""
    from sklearn.linear_model import LogisticRegression

    tuning = [n for n in sets if n.startswith("tuning")]
    bases = sorted({*real_photos(), *debian_photos(), "page", "text"}, key=len, reverse=True)
    detector_ms, gate_ms = costs
    print(
        f"-- feature probe (logistic regression on EfficientNet-Lite0 features) ({_load()}) --\n"
        f"  the detector costs {detector_ms:.2f} CPU ms per photo; the probe {gate_ms:.3f}"
    )
    for kind in ("float", "int8"):
        for c in (0.1, 1.0, 10.0):
            x = np.concatenate([sets[n].features[kind] for n in tuning])
            y = np.concatenate([np.full(len(sets[n].photos), sets[n].has_text) for n in tuning])
            model = LogisticRegression(C=c, max_iter=5000, class_weight="balanced").fit(x, y)
            threshold = model.decision_function(x[y]).min()
            cells = []
            for name, judged in sets.items():
                if name in tuning:
                    continue
                below = model.decision_function(judged.features[kind]) < threshold
                if judged.has_text:
                    dropped = int((below & judged.found).sum())
                    cells.append(f"{name}: dropped {dropped} of {int(judged.found.sum())}")
                else:
                    cells.append(
                        f"{name}: rejected {int((below & judged.prefilter).sum())} of "
                        f"{int(judged.prefilter.sum())} the prefilter passes"
                    )
            # Out-of-fold figures on the tuning sets, five folds by base photo.
            groups = np.array([_base_photo(p, bases) for n in tuning for p in sets[n].photos])
            found = np.concatenate(
                [
                    sets[n].found if sets[n].has_text else np.zeros(len(sets[n].photos), bool)
                    for n in tuning
                ]
            )
            passed = np.concatenate([sets[n].prefilter for n in tuning])
            below = np.zeros(len(y), dtype=bool)
            names = sorted(set(groups))
            np.random.default_rng(0).shuffle(names)
            for fold in range(5):
                test = np.isin(groups, names[fold::5])
                fitted = LogisticRegression(C=c, max_iter=5000, class_weight="balanced").fit(
                    x[~test], y[~test]
                )
                cut = fitted.decision_function(x[~test][y[~test]]).min()
                below[test] = fitted.decision_function(x[test]) < cut
            free = ~y & passed
            cells.append(
                f"tuning sets out of fold: dropped {int((below & found).sum())} of "
                f"{int(found.sum())}, rejected {int((below & free).sum())} of {int(free.sum())} "
                "text-free"
            )
            print(f"  {kind} features, C={c}: " + "; ".join(cells), flush=True)


def _detect_at(detector: TextProbe, side: int, rgb: Image.Image) -> np.ndarray:
    return detector._detect(text_prefilter.thumbnail(rgb, side))


def low_resolution_trial(detector: TextProbe, sets: dict[str, Judged]) -> None:
    """The detector on a smaller thumbnail as a lenient first stage: its highest text
    probability anywhere, against the lowest such value on the text photos the probe finds."""
    print(f"-- the detector at low resolution as a first stage ({_load()}) --")
    for side in (128, 160, 192):
        peaks = {
            name: np.array(
                [
                    float(detector._detect(text_prefilter.thumbnail(rgb, side)).max())
                    for rgb in j.photos.values()
                ]
            )
            for name, j in sets.items()
        }
        some = next(iter(sets.values())).photos.values()
        cost = _cpu_ms(partial(_detect_at, detector, side), list(some), rounds=1)
        lowest = min(float(peaks[n][j.found].min()) for n, j in sets.items() if j.has_text)
        rejected = [
            f"{n}: {int(((peaks[n] < lowest) & j.prefilter).sum())} of {int(j.prefilter.sum())}"
            for n, j in sets.items()
            if not j.has_text
        ]
        print(
            f"  {side} px ({cost:.2f} CPU ms): lowest peak on text the probe finds {lowest:.3f}; "
            "text-free photos the prefilter passes that a cut there rejects: "
            + "; ".join(rejected),
            flush=True,
        )


class Bf16Detector:
    """The probe's detector compiled by OpenVINO in bf16, one static-shape model per thumbnail
    shape (OpenVINO's dynamic-shape model costs 7.0 ms here against 5.0 static and 6.5 for
    onnxruntime at 320x224); `run` is onnxruntime's surface, so TextProbe can use it."""

    def __init__(self, path: Path) -> None:
        import openvino as ov

        self._core = ov.Core()
        self._path = str(path)
        self._requests: dict[tuple[int, ...], Any] = {}

    def run(self, _outputs: object, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        (x,) = feeds.values()
        request = self._requests.get(x.shape)
        if request is None:
            model = self._core.read_model(self._path)
            model.reshape(list(x.shape))
            compiled = self._core.compile_model(
                model,
                "CPU",
                {
                    "INFERENCE_PRECISION_HINT": "bf16",
                    "NUM_STREAMS": 1,
                    "INFERENCE_NUM_THREADS": 1,
                    "ENABLE_CPU_PINNING": False,
                },
            )
            request = self._requests[x.shape] = compiled.create_infer_request()
        return [np.array(request.infer({0: x})[0])]


def near_miss(probabilities: np.ndarray) -> float:
    """How close the map's best region comes to the probe's text criteria: the smallest of
    score / PROBE_MIN_REGION_SCORE, aspect / PROBE_MIN_ASPECT and area / PROBE_MIN_AREA,
    maximised over regions (>= 1: the probe says text; 0 when nothing reaches 0.3)."""
    if probabilities.max() < ocr.PROBE_PIXEL_THRESHOLD:
        return 0.0
    mask = (probabilities > ocr.PROBE_PIXEL_THRESHOLD).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    sums = np.bincount(labels.ravel(), weights=probabilities.ravel(), minlength=count)
    best = 0.0
    for i in range(1, count):
        width, height, area = (int(v) for v in stats[i, 2:5])
        best = max(
            best,
            min(
                sums[i] / area / ocr.PROBE_MIN_REGION_SCORE,
                width / height / ocr.PROBE_MIN_ASPECT,
                area / ocr.PROBE_MIN_AREA,
            ),
        )
    return float(best)


def _passed_thumbnails(images: dict[str, Image.Image]) -> list[np.ndarray]:
    """The probe's thumbnails of the photos its prefilter passes (those a detector runs on)."""
    out = []
    for rgb in images.values():
        thumb = text_prefilter.thumbnail(rgb)
        if text_prefilter.judged(rgb.size) and not text_prefilter.thumbnail_may_hold_text(thumb):
            continue  # the prefilter rejects it: no detector runs
        out.append(thumb)
    return out


def bf16_detector_trial(sets: dict[str, tuple[bool, dict]]) -> None:
    """The probe's detector in bf16 (OpenVINO, static shapes) against onnxruntime's float run:
    alone, and as a cascade that keeps the bf16 verdict unless it says "no text" with a region
    near the criteria (near_miss at or above a margin set from the tuning sets: one minus
    twice the largest drop bf16 gave a photo's near_miss there), where the float detector
    decides. The rule: no text photo the current probe finds is missed."""
    if not cpu_has_bf16():
        print("-- bf16 detector: this CPU has no bf16 (OpenVINO), not measured --")
        return
    detector = TextProbe(MODELS / "PP-OCRv6_det_tiny.onnx", SessionThreads(1, 1))
    float_session = detector._session
    bf16 = Bf16Detector(MODELS / "PP-OCRv6_det_tiny.onnx")
    maps: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for name, (_, images) in sets.items():
        rows = []
        for thumb in _passed_thumbnails(images):
            detector._session = float_session
            exact = detector._detect(thumb)
            detector._session = bf16  # type: ignore[assignment]
            rows.append((exact, detector._detect(thumb)))
        maps[name] = rows
    drops = [
        near_miss(a) - near_miss(b)
        for name, rows in maps.items()
        if name.startswith("tuned")
        for a, b in rows
    ]
    margin = 1.0 - 2.0 * max(drops)
    print(
        f"-- bf16 detector (OpenVINO) vs float (onnxruntime) on the photos the prefilter passes "
        f"({_load()}); cascade margin {margin:.3f} (largest near-miss drop on the tuning sets "
        f"{max(drops):.3f}) --"
    )
    for name, rows in maps.items():
        found = [bool(_text_like_regions(a)) for a, _ in rows]
        said = [bool(_text_like_regions(b)) for _, b in rows]
        fallback = [not s and near_miss(b) >= margin for s, (_, b) in zip(said, rows, strict=True)]
        cascade = [(f if fb else s) for f, s, fb in zip(found, said, fallback, strict=True)]
        pairs = list(zip(found, said, cascade, strict=True))
        print(
            f"  {name}: {len(rows)} passed; bf16 alone misses "
            f"{sum(f and not s for f, s, _ in pairs)}, adds {sum(s and not f for f, s, _ in pairs)}"
            f"; cascade misses {sum(f and not c for f, _, c in pairs)}, adds "
            f"{sum(c and not f for f, _, c in pairs)}, float runs {sum(fallback)}",
            flush=True,
        )
    bench = [
        text_prefilter.thumbnail(
            decode_image(
                u, max_pixels=40_000_000, min_long_side=PROBE_MAX_SIDE, min_short_side=256
            ).rgb
        )
        for u in _bench_uploads()
    ]
    for what, thumbs in (("8 bench photos", bench),):
        costs = {}
        for label, session in (("float", float_session), ("bf16", bf16)):
            detector._session = session  # type: ignore[assignment]
            costs[label] = _cpu_ms(detector._detect, thumbs, rounds=10)
        detector._session = bf16  # type: ignore[assignment]
        runs = sum(
            near_miss(m) >= margin and not _text_like_regions(m)
            for m in (detector._detect(t) for t in thumbs)
        )
        cascade_ms = costs["bf16"] + runs / len(thumbs) * costs["float"]
        print(
            f"  {what}: detector CPU ms per photo float {costs['float']:.2f}, bf16 "
            f"{costs['bf16']:.2f}, cascade {cascade_ms:.2f} (float runs on {runs} of {len(thumbs)})"
        )


def flat_background_trial(sets: dict[str, tuple[bool, dict]]) -> None:
    """A second prefilter feature tried: text sits on a flat background, so beside a window the
    prefilter finds dense with sharp edges some share of a larger window should be flat
    (morphological gradient under a few grey levels). Cut at 0.85x the lowest score of a
    tuning photo the probe finds; judged on the held-out sets."""
    detector = TextProbe(MODELS / "PP-OCRv6_det_tiny.onnx", SessionThreads(1, 1), prefilter=False)
    kernel = np.ones((3, 3), dtype=np.uint8)

    def score(thumb: np.ndarray, flat: int, window: tuple[int, int]) -> float:
        grey = cv2.cvtColor(thumb, cv2.COLOR_RGB2GRAY)
        gradient = cv2.morphologyEx(grey, cv2.MORPH_GRADIENT, kernel)
        dense = (
            cv2.boxFilter(
                (gradient >= text_prefilter.EDGE_CONTRAST).astype(np.uint8),
                cv2.CV_32F,
                text_prefilter.WINDOW,
            )
            >= text_prefilter.MIN_EDGE_DENSITY
        )
        if not dense.any():
            return 0.0
        share = cv2.boxFilter((gradient < flat).astype(np.uint8), cv2.CV_32F, window)
        return float(share[dense].max())

    judged: dict[str, list[tuple[bool, np.ndarray]]] = {}
    for name, (_, images) in sets.items():
        judged[name] = [
            (bool(_text_like_regions(detector._detect(thumb))), thumb)
            for thumb in _passed_thumbnails(images)
        ]
    print(f"-- prefilter feature tried: a flat background beside the dense window ({_load()}) --")
    for flat in (8, 12, 20):
        for window in ((24, 12), (32, 16), (48, 24)):
            scores = {
                n: [(f, score(t, flat, window)) for f, t in rows] for n, rows in judged.items()
            }
            cut = 0.85 * min(
                s for n, r in scores.items() if n.startswith("tuned") for f, s in r if f
            )
            cells = []
            for n, r in scores.items():
                if sets[n][0]:
                    cells.append(f"{n}: drops {sum(f and s < cut for f, s in r)}")
                else:
                    cells.append(f"{n}: rejects {sum(s < cut for f, s in r)} of {len(r)}")
            print(f"  flat < {flat}, window {window}: " + "; ".join(cells), flush=True)


_MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)


def _moderation_variant(gap: float | None, jpeg: str) -> Callable[[Image.Image], np.ndarray]:
    """moderation_input with Pillow's reducing_gap and the JPEG round trip done by Pillow
    ("pillow", as served), OpenCV ("opencv") or not at all ("none")."""

    def made(rgb: Image.Image) -> np.ndarray:
        w, h = rgb.size
        o = 16 / 256
        box = (w * o, h * o, w * (1 - o), h * (1 - o))
        crop = rgb.resize((224, 224), Image.Resampling.BILINEAR, box=box, reducing_gap=gap)
        if jpeg == "pillow":
            buf = io.BytesIO()
            crop.save(buf, format="JPEG")
            with Image.open(buf) as decoded:
                pixels = np.asarray(decoded.convert("RGB"))
        elif jpeg == "opencv":
            _, encoded = cv2.imencode(
                ".jpg", np.asarray(crop)[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 75]
            )
            bgr = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
            assert bgr is not None
            pixels = np.ascontiguousarray(bgr[:, :, ::-1])
        else:
            pixels = np.asarray(crop)
        out = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR).astype(np.float32)
        out -= _MEAN_BGR
        return out

    return made


def _classifier_variant(
    resample: Image.Resampling, gap: float | None
) -> Callable[[Image.Image], np.ndarray]:
    """classifier_input with another filter or Pillow's reducing_gap."""

    def made(rgb: Image.Image) -> np.ndarray:
        w, h = rgb.size
        side = min(w, h) * 224 / 256
        left, top = (w - side) / 2, (h - side) / 2
        box = (left, top, left + side, top + side)
        crop = rgb.resize((224, 224), resample, box=box, reducing_gap=gap)
        return preprocess._normalised_chw(np.asarray(crop))

    return made


def input_trial() -> None:
    """Cheaper model inputs against the served ones: CPU per image on the 8 bench photos,
    top-1 changes (float EfficientNet-Lite0) and moderation score differences (float
    open_nsfw) on the 495 real-photo inputs of cascade_sets."""
    from tests.vision_service.agreement_sets import cascade_sets
    from vision_service.models.classifier import ImageClassifier
    from vision_service.models.moderation import ModerationModel
    from vision_service.registry import load_registry

    threads = SessionThreads(1, 1)
    registry = load_registry(MODELS)
    classifier = ImageClassifier.load(registry["efficientnet-lite0"], threads, quantized=False)
    moderation = ModerationModel.load(registry["open-nsfw"], threads, quantized=False)
    photos = [rgb for s in cascade_sets().values() for rgb in as_analysed(s).values()]
    bench = [
        decode_image(u, max_pixels=40_000_000, min_long_side=PROBE_MAX_SIDE, min_short_side=256).rgb
        for u in _bench_uploads()
    ]

    def top1(make: Callable) -> np.ndarray:
        x = np.stack([make(rgb) for rgb in photos])
        return np.array(
            [
                c.probabilities.argmax()
                for i in range(0, len(x), 16)
                for c in classifier.classify(x[i : i + 16])
            ]
        )

    def scores(make: Callable) -> np.ndarray:
        x = np.stack([make(rgb) for rgb in photos])
        return np.concatenate([moderation.nsfw_scores(x[i : i + 16]) for i in range(0, len(x), 16)])

    print(f"-- model inputs: variants against the served ones, {len(photos)} inputs ({_load()}) --")
    served = top1(classifier_input)
    print(f"  classifier input as served: {_cpu_ms(classifier_input, bench, rounds=20):.3f} CPU ms")
    for label, make in (
        ("bicubic, reducing_gap 1.5", _classifier_variant(Image.Resampling.BICUBIC, 1.5)),
        ("bicubic, reducing_gap 1.0", _classifier_variant(Image.Resampling.BICUBIC, 1.0)),
        ("bilinear", _classifier_variant(Image.Resampling.BILINEAR, None)),
    ):
        changed = int((top1(make) != served).sum())
        print(
            f"  classifier input, {label}: {_cpu_ms(make, bench, rounds=20):.3f} CPU ms, "
            f"top-1 changed on {changed} of {len(photos)}",
            flush=True,
        )
    reference = scores(moderation_input)
    print(f"  moderation input as served: {_cpu_ms(moderation_input, bench, rounds=20):.3f} CPU ms")
    for label, make in (
        ("reducing_gap 2.0", _moderation_variant(2.0, "pillow")),
        ("reducing_gap 1.5", _moderation_variant(1.5, "pillow")),
        ("reducing_gap 1.0", _moderation_variant(1.0, "pillow")),
        ("OpenCV's JPEG round trip", _moderation_variant(None, "opencv")),
        ("no JPEG round trip", _moderation_variant(None, "none")),
    ):
        diff = np.abs(scores(make) - reference)
        print(
            f"  moderation input, {label}: {_cpu_ms(make, bench, rounds=20):.3f} CPU ms, "
            f"score differences max {diff.max():.4f}, p99 {np.quantile(diff, 0.99):.4f}",
            flush=True,
        )
    # Colours from the probe's 320 px box thumbnail instead of their own box-reduction of the
    # working copy (the thumbnail exists only where the text probe runs).
    thumbs = [Image.fromarray(text_prefilter.thumbnail(rgb)) for rgb in bench]
    same = sum(
        [c.name for c in dominant_colours(rgb)]
        == [c.name for c in dominant_colours(Image.fromarray(text_prefilter.thumbnail(rgb)))]
        for rgb in photos
    )
    print(
        f"  colours: {_cpu_ms(dominant_colours, bench, rounds=20):.3f} CPU ms as served, "
        f"{_cpu_ms(dominant_colours, thumbs, rounds=20):.3f} from the probe's thumbnail; the same "
        f"colour names on {same} of {len(photos)}",
        flush=True,
    )


def gates() -> None:
    threads = SessionThreads(1, 1)
    detector = TextProbe(MODELS / "PP-OCRv6_det_tiny.onnx", threads, prefilter=False)
    sets = judged_sets(detector)
    from sklearn.linear_model import LogisticRegression

    some = list(next(iter(sets.values())).photos.values())
    detector_ms = _cpu_ms(detector.probability_map, some, rounds=1)
    first = next(iter(sets.values())).features["float"]
    lr = LogisticRegression(max_iter=5000).fit(first[:20], np.arange(20) % 2)
    gate_ms = _cpu_ms(lambda f: lr.decision_function(f[None]), list(first), rounds=3)
    feature_probe_trial(sets, (detector_ms, gate_ms))
    low_resolution_trial(detector, sets)


def main() -> None:
    import sys

    if "--service" in sys.argv:
        service_rounds()
        return
    if "--gates" in sys.argv:
        gates()
        return
    if "--inputs" in sys.argv:
        input_trial()
        return
    if "--bf16" in sys.argv or "--flat" in sys.argv:
        trial_sets = analysed_trial_sets()
        if "--bf16" in sys.argv:
            bf16_detector_trial(trial_sets)
        if "--flat" in sys.argv:
            flat_background_trial(trial_sets)
        return
    threads = SessionThreads(1, 1)
    detector_path = MODELS / "PP-OCRv6_det_tiny.onnx"
    previous = PreviousProbe(detector_path, threads)
    probe = TextProbe(detector_path, threads)
    detector = TextProbe(detector_path, threads, prefilter=False)
    if not installed_fonts():
        raise SystemExit(
            "needs the DejaVu and Liberation fonts (fonts-dejavu-core, -extra, fonts-liberation)"
        )
    sets = analysed_trial_sets()
    step_costs(previous, probe, list(sets["tuned: text-free photos and crops"][1].values()))
    decisions(previous, probe, detector, sets)


if __name__ == "__main__":
    main()
