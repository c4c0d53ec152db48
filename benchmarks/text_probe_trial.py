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
Not a test: a benchmark prints figures; tests/vision_service/test_text_prefilter.py guards the
decisions.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

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
    small_sign_photos,
    text_photos,
    textless_photos,
    tuning_font_signs,
)
from vision_service import preprocess, text_prefilter
from vision_service.models import colours
from vision_service.models.colours import (
    COLOUR_NAMES,
    THUMB_SIDE,
    dominant_colours,
    pixel_categories,
)
from vision_service.models.moderation import moderation_input
from vision_service.models.ocr import PROBE_MAX_SIDE, TextProbe, _text_like_regions
from vision_service.preprocess import CLASSIFIER_RESIZE, classifier_input, decode_image
from vision_service.sessions import SessionThreads
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


def _cpu_ms(fn: Callable[[object], object], items: list, rounds: int = 5) -> float:
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
        ("moderation input (incl. JPEG round-trip)", moderation_input, decoded),
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
        print(f"  {what:<44} {_cpu_ms(fn, items):6.2f}")
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


def main() -> None:
    import sys

    if "--service" in sys.argv:
        service_rounds()
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
    textfree = as_analysed(textless_photos())
    step_costs(previous, probe, list(textfree.values()))
    earlier = as_analysed({**text_photos(), **small_sign_photos()})
    sets: dict[str, tuple[bool, dict]] = {
        "tuned: the 42 earlier text photos": (True, earlier),
        "tuned: font signs": (True, as_analysed(tuning_font_signs())),
        "tuned: text-free photos and crops": (False, textfree),
        "held out: font signs 4-7%": (True, as_analysed(heldout_font_signs())),
    }
    walls = other_wallpapers()
    if walls:
        bases = {**walls, **debian_photos()}
        signs = font_sign_photos(bases, installed_fonts(), (0.045, 0.055, 0.07, 0.09), salt=23)
        sets["held out: other Debian wallpapers"] = (False, as_analysed(walls))
        sets["held out: signs on them and on mate's"] = (True, as_analysed(signs))
    decisions(previous, probe, detector, sets)


if __name__ == "__main__":
    main()
