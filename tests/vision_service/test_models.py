"""What the real models compute on real photos, through the engine (no gRPC): labels, feature
similarity, moderation, OCR and text embeddings."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

from vision_service.engine import AnalysisRequest, OcrMode, Task, VisionEngine
from vision_service.errors import InvalidImageError, InvalidTextError

CAT_CLASSES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}
IMAGE_ONLY = frozenset({Task.LABELS, Task.FEATURES})


def _analyze(engine: VisionEngine, data: bytes, **kwargs):
    return engine.analyze(AnalysisRequest(image_data=data, **kwargs))


def _jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=92)
    return buf.getvalue()


@pytest.fixture(scope="module")
def features(engine, photo_jpegs) -> dict[str, np.ndarray]:
    """The feature vector of every test photo."""
    out = {}
    for name, data in photo_jpegs.items():
        analysis = _analyze(engine, data, tasks=frozenset({Task.FEATURES}))
        assert analysis.features is not None
        out[name] = analysis.features
    return out


def test_cat_photo_has_a_cat_label_in_the_top_three(engine, photo_jpegs):
    analysis = _analyze(engine, photo_jpegs["chelsea"], tasks=IMAGE_ONLY, top_k=3)

    assert CAT_CLASSES & {label.name for label in analysis.labels}


def test_coffee_photo_is_espresso_or_cup_in_the_top_three(engine, photo_jpegs):
    analysis = _analyze(engine, photo_jpegs["coffee"], tasks=IMAGE_ONLY, top_k=3)

    assert {"espresso", "cup"} & {label.name for label in analysis.labels}


def test_labels_are_sorted_probabilities_and_carry_synonyms(engine, photo_jpegs):
    analysis = _analyze(engine, photo_jpegs["chelsea"], tasks=IMAGE_ONLY, top_k=10)

    probabilities = [label.probability for label in analysis.labels]
    assert len(analysis.labels) == 10
    assert probabilities == sorted(probabilities, reverse=True)
    assert 0.0 < sum(probabilities) <= 1.0 + 1e-5
    tabby = next(label for label in analysis.labels if label.name == "tabby")
    assert "tabby cat" in tabby.synonyms and tabby.class_index == 281


def test_features_are_unit_length_1280_d(features):
    for vector in features.values():
        assert vector.shape == (1280,)
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4


def test_edited_copy_is_similar_while_unrelated_photos_are_not(engine, photo_paths, features):
    with Image.open(photo_paths["chelsea"]) as im:
        original = im.convert("RGB")
    w, h = original.size
    edited = original.rotate(8, resample=Image.Resampling.BICUBIC, fillcolor=(128, 128, 128))
    edited = edited.resize((int(w * 0.6), int(h * 0.6)), Image.Resampling.LANCZOS)
    edited = ImageEnhance.Brightness(edited).enhance(1.3)

    copy = _analyze(engine, _jpeg(edited), tasks=frozenset({Task.FEATURES})).features

    assert copy is not None
    assert float(copy @ features["chelsea"]) > 0.8
    photos = ["chelsea", "coffee", "rocket", "astronaut", "motorcycle", "china", "flower"]
    for a, b in itertools.combinations(photos, 2):
        assert float(features[a] @ features[b]) < 0.5, (a, b)


def test_large_camera_sized_photo_gets_the_same_labels_and_features(engine, photo_paths, features):
    with Image.open(photo_paths["chelsea"]) as im:
        big = im.convert("RGB").resize((451 * 8, 300 * 8), Image.Resampling.BICUBIC)

    analysis = _analyze(engine, _jpeg(big), tasks=IMAGE_ONLY, top_k=3)

    assert (analysis.width, analysis.height) == (3608, 2400)
    assert CAT_CLASSES & {label.name for label in analysis.labels}
    assert analysis.features is not None
    assert float(analysis.features @ features["chelsea"]) > 0.9


def test_safe_photos_score_low_on_moderation(engine, photo_jpegs):
    for name, data in photo_jpegs.items():
        analysis = _analyze(engine, data, tasks=frozenset({Task.MODERATION}))

        assert analysis.moderation_score is not None
        assert 0.0 <= analysis.moderation_score < 0.2, name


def _text_image(lines: list[str]) -> bytes:
    font = ImageFont.load_default(size=56)
    image = Image.new("RGB", (1100, 120 + 90 * len(lines)), "white")
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((60, 60 + 90 * i), line, fill="black", font=font)
    return _jpeg(image)


def test_ocr_reads_the_words_of_a_rendered_sign(engine):
    data = _text_image(["Fresh coffee daily", "Open until 9 pm"])

    analysis = _analyze(engine, data, ocr_mode=OcrMode.AUTO)

    assert analysis.ocr is not None
    words = set(analysis.ocr.text.lower().split())
    assert {"fresh", "coffee", "daily", "open", "until"} <= words
    for line in analysis.ocr.lines:
        assert 0.5 <= line.confidence <= 1.0 and len(line.box) == 4


def test_ocr_reads_a_scanned_page(engine, photo_jpegs):
    analysis = _analyze(engine, photo_jpegs["page"])

    assert analysis.ocr is not None
    assert "Region-based segmentation" in analysis.ocr.text
    assert "markers" in analysis.ocr.text


def test_ocr_boxes_are_in_original_image_pixels(engine):
    small = Image.open(io.BytesIO(_text_image(["Fresh coffee daily"])))
    big = small.resize((small.width * 3, small.height * 3))

    small_boxes = _analyze(engine, _jpeg(small), ocr_mode=OcrMode.ALWAYS).ocr
    big_boxes = _analyze(engine, _jpeg(big), ocr_mode=OcrMode.ALWAYS).ocr

    assert small_boxes is not None and big_boxes is not None
    small_right = max(x for x, _ in small_boxes.lines[0].box)
    big_right = max(x for x, _ in big_boxes.lines[0].box)
    assert big_right == pytest.approx(3 * small_right, rel=0.1)


def test_ocr_is_skipped_on_a_photo_without_text_in_auto_mode(engine, photo_jpegs):
    analysis = _analyze(engine, photo_jpegs["chelsea"])

    assert analysis.ocr is None
    assert "pp-ocrv6-rec-tiny" not in analysis.model_versions


def test_ocr_always_runs_when_asked_and_never_when_told_not_to(engine, photo_jpegs):
    always = _analyze(engine, photo_jpegs["chelsea"], ocr_mode=OcrMode.ALWAYS)
    never = _analyze(engine, photo_jpegs["page"], ocr_mode=OcrMode.NEVER)

    assert always.ocr is not None
    assert never.ocr is None


@pytest.mark.parametrize("name", ["coffee", "motorcycle", "chelsea"])
def test_ocr_finds_no_text_in_a_photo_without_any(engine, photo_jpegs, name):
    analysis = _analyze(engine, photo_jpegs[name], ocr_mode=OcrMode.ALWAYS)

    assert analysis.ocr is not None
    assert analysis.ocr.text == ""


def test_ocr_keeps_a_short_word_read_clearly(engine):
    data = _text_image(["EXIT", "OK"])

    analysis = _analyze(engine, data, ocr_mode=OcrMode.ALWAYS)

    assert analysis.ocr is not None
    assert [line.text for line in analysis.ocr.lines] == ["EXIT", "OK"]


def test_analysis_reports_size_format_and_model_versions(engine, photo_paths):
    analysis = _analyze(engine, photo_paths["coffee"].read_bytes(), ocr_mode=OcrMode.NEVER)

    assert (analysis.width, analysis.height, analysis.format) == (600, 400, "PNG")
    assert set(analysis.model_versions) == {"efficientnet-lite0", "open-nsfw"}


def test_truncated_photo_is_refused_and_the_engine_keeps_working(engine, photo_jpegs):
    data = photo_jpegs["rocket"]

    with pytest.raises(InvalidImageError):
        _analyze(engine, data[: len(data) // 3])
    analysis = _analyze(engine, photo_jpegs["coffee"], tasks=IMAGE_ONLY)

    assert analysis.labels


def test_kitten_is_nearer_cat_than_truck(engine):
    cat, kitten, truck = engine.embed_texts(["cat", "kitten", "truck"])

    assert float(kitten @ cat) > float(kitten @ truck) + 0.2


def test_text_embeddings_are_unit_length_and_independent_of_the_batch(engine):
    alone = engine.embed_texts(["a photo of a red motorcycle"])[0]
    batched = engine.embed_texts(["dog", "a photo of a red motorcycle", "the moon at night"])

    assert batched.shape == (3, 384)
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-4)
    assert float(alone @ batched[1]) > 0.999


def test_blank_text_is_refused(engine):
    with pytest.raises(InvalidTextError, match="blank"):
        engine.embed_texts(["cat", "   "])
