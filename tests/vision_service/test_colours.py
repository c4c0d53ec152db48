"""Dominant named colours on real photos: the pure module, the engine and the gRPC answer."""

from __future__ import annotations

import io

import grpc
import numpy as np
import pytest
from PIL import Image

from imagerepo.vision.v1 import vision_service_pb2 as pb
from imagerepo.vision.v1 import vision_service_pb2_grpc as pb_grpc
from vision_service.engine import AnalysisRequest, Task
from vision_service.models.colours import (
    COLOUR_NAMES,
    MIN_SHARE,
    MIN_VIVID_SHARE,
    VIVID,
    category_table,
    colour_codes,
    colour_histogram,
    dominant_colours,
    pixel_categories,
)

CHROMATIC = set(COLOUR_NAMES) - {"black", "white", "grey"}


def _colours(photo_jpegs, name: str) -> dict[str, float]:
    with Image.open(io.BytesIO(photo_jpegs[name])) as im:
        return {c.name: c.share for c in dominant_colours(im)}


def test_coffee_is_red_and_brown(photo_jpegs):
    # A red cup and saucer on a brown wooden table.
    colours = _colours(photo_jpegs, "coffee")
    assert {"red", "brown"} <= colours.keys()
    assert not colours.keys() & {"blue", "green", "purple", "grey"}


def test_rocket_at_dusk_is_mostly_blue(photo_jpegs):
    colours = _colours(photo_jpegs, "rocket")
    assert max(colours, key=colours.__getitem__) == "blue"
    assert colours["blue"] > 0.5


def test_grey_photos_get_no_chromatic_colour(photo_jpegs):
    for name in ("camera", "text", "page"):
        colours = _colours(photo_jpegs, name)
        assert colours, name
        assert not colours.keys() & CHROMATIC, (name, colours)


def test_a_small_vivid_red_counts(photo_jpegs):
    # A red motorcycle (about 9% of the photo) in a grey and brown garage.
    colours = _colours(photo_jpegs, "motorcycle")
    assert list(colours)[:2] == ["grey", "brown"]
    assert "red" in colours


def test_cat_is_brown(photo_jpegs):
    colours = _colours(photo_jpegs, "chelsea")
    assert max(colours, key=colours.__getitem__) == "brown"


def test_shares_are_sorted_above_the_floor_and_at_most_three(photo_jpegs):
    for name in photo_jpegs:
        colours = list(_colours(photo_jpegs, name).items())
        shares = [share for _, share in colours]
        assert 1 <= len(colours) <= 3, name
        assert shares == sorted(shares, reverse=True)
        for colour, share in colours:
            assert (MIN_VIVID_SHARE if colour in VIVID else MIN_SHARE) <= share <= 1.0
        assert {n for n, _ in colours} <= set(COLOUR_NAMES)


def test_flat_colours_are_named_as_expected():
    cases = {
        (230, 30, 30): "red",
        (250, 140, 20): "orange",
        (240, 220, 30): "yellow",
        (40, 160, 50): "green",
        (30, 70, 220): "blue",
        (120, 40, 170): "purple",
        (250, 160, 190): "pink",
        (110, 70, 35): "brown",
        (5, 5, 5): "black",
        (250, 250, 250): "white",
        (128, 128, 128): "grey",
    }
    for rgb, name in cases.items():
        image = Image.fromarray(np.full((32, 48, 3), rgb, dtype=np.uint8))
        assert [(c.name, c.share) for c in dominant_colours(image)] == [(name, 1.0)], rgb


def test_engine_computes_colours_by_default_and_only_when_asked(engine, photo_jpegs):
    default = engine.analyze(AnalysisRequest(image_data=photo_jpegs["coffee"]))
    assert "red" in {c.name for c in default.colours}
    labels_only = engine.analyze(
        AnalysisRequest(image_data=photo_jpegs["coffee"], tasks=frozenset({Task.LABELS}))
    )
    assert labels_only.colours == []


def test_grpc_answer_carries_colours(vision_server, photo_jpegs):
    with grpc.insecure_channel(f"127.0.0.1:{vision_server}") as channel:
        stub = pb_grpc.VisionServiceStub(channel)
        response = stub.Analyze(
            pb.AnalyzeRequest(image_data=photo_jpegs["rocket"], tasks=[pb.ANALYSIS_TASK_COLOURS]),
            timeout=30,
        )
    assert response.colours[0].name == "blue"
    assert response.colours[0].share == pytest.approx(0.77, abs=0.1)
    assert not response.labels


def test_the_lookup_table_gives_exactly_the_computed_categories(photo_jpegs):
    # The histogram looks categories up in a table built from pixel_categories: on a grid of
    # 262k colours (every 4th level, both ends included) and on every pixel of real photos
    # the lookup must be exactly the computation.
    levels = np.unique(np.r_[np.arange(0, 256, 4), 255]).astype(np.uint8)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(-1, 3)
    assert np.array_equal(category_table()[colour_codes(grid)], pixel_categories(grid))
    for name in ("coffee", "rocket", "chelsea", "flower"):
        with Image.open(io.BytesIO(photo_jpegs[name])) as im:
            pixels = np.asarray(im.convert("RGB"))
        assert np.array_equal(category_table()[colour_codes(pixels)], pixel_categories(pixels))


def test_histogram_equals_the_categories_of_the_thumbnail(photo_jpegs):
    with Image.open(io.BytesIO(photo_jpegs["china"])) as im:
        photo = im.convert("RGB")
    thumb = np.asarray(photo.resize((64, 64), Image.Resampling.BOX))
    expected = (
        np.bincount(pixel_categories(thumb), minlength=len(COLOUR_NAMES)) / thumb[..., 0].size
    )

    assert np.array_equal(colour_histogram(photo), expected)
