"""The mosaic: tiles cut from real photos, nearest colour by KD-tree, the picture rebuilt."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from gateway.mosaic import (
    build_tile_set,
    cell_colours,
    nearest_tiles,
    render_mosaic,
    tiles_from_picture,
)


@pytest.fixture(scope="module")
def photo_tiles(photo_jpegs: dict[str, bytes]):
    """Tiles from every test photo, as the repository's thumbnails would give them."""
    arrays = []
    for data in photo_jpegs.values():
        with Image.open(io.BytesIO(data)) as picture:
            picture.thumbnail((256, 256))
            arrays.append(tiles_from_picture(picture, tile_px=16))
    return build_tile_set(arrays)


def test_tiles_from_picture_cuts_whole_and_crops(photo_jpegs):
    with Image.open(io.BytesIO(photo_jpegs["coffee"])) as picture:
        tiles = tiles_from_picture(picture, tile_px=20)

    assert tiles.shape == (14, 20, 20, 3)
    assert tiles.dtype == np.uint8
    assert len({tile.tobytes() for tile in tiles}) == 14


def test_nearest_tiles_matches_brute_force_search(photo_tiles, photo_jpegs):
    with Image.open(io.BytesIO(photo_jpegs["chelsea"])) as target:
        colours = cell_colours(target, 40)

    index = nearest_tiles(colours, photo_tiles)

    flat = colours.reshape(-1, 3)
    distances = ((flat[:, None, :] - photo_tiles.means[None, :, :]) ** 2).sum(axis=2)
    best = distances.min(axis=1)
    chosen = distances[np.arange(len(flat)), index.reshape(-1)]
    assert np.allclose(chosen, best, rtol=1e-4, atol=1e-3)


def test_render_mosaic_has_grid_size_and_follows_target_colours(photo_tiles, photo_jpegs):
    with Image.open(io.BytesIO(photo_jpegs["rocket"])) as target:
        target.load()
        colours = cell_colours(target, 32)
        mosaic = render_mosaic(target, photo_tiles, columns=32, tint=0.0)

    rows = colours.shape[0]
    assert mosaic.size == (32 * 16, rows * 16)
    rebuilt = np.asarray(mosaic, np.float32).reshape(rows, 16, 32, 16, 3).mean(axis=(1, 3))
    error = np.abs(rebuilt - colours).mean()
    rng = np.random.default_rng(0)
    random_tiles = photo_tiles.means[rng.integers(0, len(photo_tiles), size=(rows, 32))]
    random_error = np.abs(random_tiles - colours).mean()
    assert error < random_error / 2


def test_tint_brings_cells_closer_to_target(photo_tiles, photo_jpegs):
    with Image.open(io.BytesIO(photo_jpegs["astronaut"])) as target:
        target.load()
        colours = cell_colours(target, 24)
        plain = render_mosaic(target, photo_tiles, columns=24, tint=0.0)
        tinted = render_mosaic(target, photo_tiles, columns=24, tint=0.5)

    rows = colours.shape[0]

    def cell_error(img: Image.Image) -> float:
        means = np.asarray(img, np.float32).reshape(rows, 16, 24, 16, 3).mean(axis=(1, 3))
        return float(np.abs(means - colours).mean())

    assert cell_error(tinted) < cell_error(plain)


def test_render_mosaic_rejects_bad_columns(photo_tiles, photo_jpegs):
    with Image.open(io.BytesIO(photo_jpegs["flower"])) as target, pytest.raises(ValueError):
        render_mosaic(target, photo_tiles, columns=0)


def test_build_tile_set_needs_a_tile():
    with pytest.raises(ValueError):
        build_tile_set([np.zeros((0, 8, 8, 3), np.uint8)])


def test_variety_uses_more_tiles_while_staying_close_in_colour(photo_tiles, photo_jpegs):
    with Image.open(io.BytesIO(photo_jpegs["coffee"])) as target:
        colours = cell_colours(target, 40)

    plain = nearest_tiles(colours, photo_tiles)
    varied = nearest_tiles(colours, photo_tiles, variety=4, tolerance=18.0)

    flat = colours.reshape(-1, 3)

    def distance(index: np.ndarray) -> np.ndarray:
        return np.linalg.norm(flat - photo_tiles.means[index.reshape(-1)], axis=1)

    assert len(np.unique(varied)) > len(np.unique(plain))
    assert np.all(distance(varied) <= distance(plain) + 18.0 + 1e-3)
