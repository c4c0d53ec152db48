"""The cheap text probe decides where OCR runs in AUTO mode: it must miss no photo with text in
the tuning set, and leave text-free photos alone. The OCR reader pool must not serialise
requests."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from tests.vision_service.photo_sets import debian_photos, jpeg_bytes, text_photos, textless_photos
from vision_service.engine import AnalysisRequest, OcrMode, Task, VisionEngine
from vision_service.models.ocr import (
    PROBE_MIN_REGION_SCORE,
    TextProbe,
    TextReader,
    _text_like_regions,
)
from vision_service.sessions import SessionThreads

OCR_ONLY = frozenset({Task.OCR})


@pytest.fixture(scope="module")
def with_text() -> dict[str, bytes]:
    return {name: jpeg_bytes(image) for name, image in text_photos().items()}


@pytest.fixture(scope="module")
def without_text() -> dict[str, bytes]:
    return {name: jpeg_bytes(image) for name, image in textless_photos().items()}


def _ocr_ran(engine: VisionEngine, data: bytes) -> bool:
    analysis = engine.analyze(
        AnalysisRequest(image_data=data, tasks=OCR_ONLY, ocr_mode=OcrMode.AUTO)
    )
    return analysis.ocr is not None


def test_the_set_holds_the_page_the_text_and_photos_with_signs(with_text, without_text):
    assert {"page", "text"} <= set(with_text)
    assert sum(name.endswith("-sign") for name in with_text) >= 10
    assert len(without_text) >= 60


def test_probe_misses_no_photo_with_text(engine, with_text):
    missed = [name for name, data in with_text.items() if not _ocr_ran(engine, data)]

    assert missed == []


def test_ocr_reads_the_sign_the_probe_found(engine, with_text):
    analysis = engine.analyze(AnalysisRequest(image_data=with_text["china-sign"], tasks=OCR_ONLY))

    assert analysis.ocr is not None
    assert "NO PARKING" in analysis.ocr.text


def test_probe_leaves_text_free_photos_alone(engine, without_text):
    flagged = [name for name, data in without_text.items() if _ocr_ran(engine, data)]

    # Tuned to flag none of them; a probe that says "text" everywhere flags all of them.
    assert len(flagged) <= 2, flagged


def test_a_read_proceeds_while_another_engine_is_busy(models_dir):
    reader = TextReader(
        models_dir / "PP-OCRv6_det_tiny.onnx", models_dir / "PP-OCRv6_rec_tiny.onnx", engines=2
    )
    sign = text_photos()["rocket-sign"]
    results: list[str] = []
    # One engine is held by a (simulated) long request; a single global lock would block
    # the second read until it is released.
    with reader._engine():
        worker = threading.Thread(target=lambda: results.append(reader.read(sign).text))
        worker.start()
        worker.join(timeout=60)
        finished = not worker.is_alive()

    worker.join()
    assert finished
    assert results == ["LAUNCH PAD 39A"]


def test_concurrent_ocr_requests_each_get_their_own_text(engine, with_text):
    names = ["china-sign", "rocket-sign", "grass-sign", "brick-sign"]
    texts: dict[str, str] = {}

    def read(name: str) -> None:
        analysis = engine.analyze(
            AnalysisRequest(image_data=with_text[name], tasks=OCR_ONLY, ocr_mode=OcrMode.ALWAYS)
        )
        assert analysis.ocr is not None
        texts[name] = analysis.ocr.text

    threads = [threading.Thread(target=read, args=(name,)) for name in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert texts == {
        "china-sign": "NO PARKING",
        "rocket-sign": "LAUNCH PAD 39A",
        "grass-sign": "Keep off the grass",
        "brick-sign": "Main Street",
    }


@pytest.mark.parametrize("size", [(1, 1), (12, 3000), (3000, 12), (4000, 3000)])
def test_probe_takes_any_shape_and_finds_nothing_on_a_blank_image(engine, size):
    assert engine.likely_has_text(Image.new("RGB", size, "white")) is False


def test_text_free_set_holds_the_installed_debian_photos(without_text):
    installed = debian_photos()
    if not installed:
        pytest.skip("mate-backgrounds is not installed (apt-get install mate-backgrounds)")

    assert set(installed) <= set(without_text)
    assert len(installed) == 12


def _bar_map(peak: float) -> np.ndarray:
    """A probability map with one wide bar (a line of text) at `peak`, faint noise elsewhere."""
    probabilities = np.full((96, 160), 0.05, dtype=np.float32)
    probabilities[40:48, 20:100] = peak
    return probabilities


def test_a_confident_wide_bar_is_one_text_region():
    regions = _text_like_regions(_bar_map(PROBE_MIN_REGION_SCORE + 0.05))

    assert [(w, h) for w, h, _, _ in regions] == [(80, 8)]


def test_a_bar_below_the_region_score_is_no_text():
    assert _text_like_regions(_bar_map(PROBE_MIN_REGION_SCORE - 0.05)) == []


def test_probe_side_sets_the_detector_resolution(models_dir):
    probe = TextProbe(models_dir / "PP-OCRv6_det_tiny.onnx", SessionThreads(1, 1), max_side=256)
    photo = text_photos()["china-sign"]

    probabilities = probe.probability_map(photo)

    assert max(probabilities.shape) == 256
    assert probe.likely_has_text(photo)
