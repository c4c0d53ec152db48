"""A photo mosaic: a picture rebuilt from small tiles of other pictures, matched by colour.

Pure image code (numpy, Pillow, scipy), no service calls. The target is cut into a grid of
cells; each cell's mean colour (a box-filter downscale computes all of them at once) is
matched to the tile with the nearest mean colour by a KD-tree; the chosen tiles are then laid
out with one reshape. A little of the cell's colour is blended into its tile (`tint`), which
keeps the picture readable when the tile set has few colours.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy.spatial import cKDTree

DEFAULT_TILE_PX = 24
MAX_COLUMNS = 160
# How much farther (RGB distance) than the nearest tile a varied choice may be.
VARIETY_TOLERANCE = 18.0


@dataclass(frozen=True)
class TileSet:
    # (N, tile_px, tile_px, 3) uint8 RGB tiles and their (N, 3) float32 mean colours.
    tiles: np.ndarray
    means: np.ndarray

    def __len__(self) -> int:
        return int(self.tiles.shape[0])

    @property
    def tile_px(self) -> int:
        return int(self.tiles.shape[1])


def tiles_from_picture(picture: Image.Image, tile_px: int = DEFAULT_TILE_PX) -> np.ndarray:
    """The picture's centre square and its 2x2 and 3x3 crops as tiles: (14, t, t, 3) uint8.

    Crops give a small repository more distinct colours to build from than whole thumbnails.
    """
    rgb = picture.convert("RGB")
    width, height = rgb.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = rgb.crop((left, top, left + side, top + side))
    crops = [square]
    for n in (2, 3):
        step = side / n
        for row in range(n):
            for col in range(n):
                box = (
                    round(col * step),
                    round(row * step),
                    round((col + 1) * step),
                    round((row + 1) * step),
                )
                crops.append(square.crop(box))
    return np.stack(
        [np.asarray(c.resize((tile_px, tile_px), Image.Resampling.BILINEAR)) for c in crops]
    )


def build_tile_set(tile_arrays: Iterable[np.ndarray]) -> TileSet:
    tiles = np.concatenate(list(tile_arrays), axis=0)
    if tiles.ndim != 4 or tiles.shape[0] == 0:
        raise ValueError("a mosaic needs at least one tile")
    means = tiles.reshape(tiles.shape[0], -1, 3).mean(axis=1).astype(np.float32)
    return TileSet(tiles=tiles, means=means)


def cell_colours(target: Image.Image, columns: int) -> np.ndarray:
    """Mean colour of each cell of a grid `columns` wide: (rows, columns, 3) float32."""
    width, height = target.size
    rows = max(1, round(columns * height / width))
    small = target.convert("RGB").resize((columns, rows), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32)


def nearest_tiles(
    colours: np.ndarray,
    tile_set: TileSet,
    variety: int = 1,
    tolerance: float = VARIETY_TOLERANCE,
    seed: int = 0,
) -> np.ndarray:
    """Index of the tile whose mean colour is nearest (Euclidean, RGB) to each colour.

    With variety > 1, each cell takes one of its `variety` nearest tiles at random, if that
    tile is within `tolerance` of the nearest: flat areas stop repeating one tile.
    """
    flat = colours.reshape(-1, 3)
    k = max(1, min(variety, len(tile_set)))
    distance, index = cKDTree(tile_set.means).query(flat, k=k)
    if k == 1:
        return np.asarray(index, dtype=np.intp).reshape(colours.shape[:-1])
    rows = np.arange(len(flat))
    pick = np.random.default_rng(seed).integers(0, k, size=len(flat))
    close_enough = distance[rows, pick] <= distance[:, 0] + tolerance
    chosen = np.where(close_enough, index[rows, pick], index[:, 0])
    return np.asarray(chosen, dtype=np.intp).reshape(colours.shape[:-1])


def render_mosaic(
    target: Image.Image,
    tile_set: TileSet,
    columns: int = 48,
    tint: float = 0.25,
    variety: int = 1,
) -> Image.Image:
    """The target rebuilt from tiles: (rows * tile_px) x (columns * tile_px) pixels."""
    if not 1 <= columns <= MAX_COLUMNS:
        raise ValueError(f"columns must be between 1 and {MAX_COLUMNS}")
    if not 0.0 <= tint <= 1.0:
        raise ValueError("tint must be between 0 and 1")
    colours = cell_colours(target, columns)
    rows, cols = colours.shape[:2]
    index = nearest_tiles(colours, tile_set, variety)
    chosen = tile_set.tiles[index].astype(np.float32)  # (rows, cols, t, t, 3)
    if tint:
        shift = colours - tile_set.means[index]
        chosen += tint * shift[:, :, None, None, :]
    t = tile_set.tile_px
    grid = chosen.transpose(0, 2, 1, 3, 4).reshape(rows * t, cols * t, 3)
    return Image.fromarray(np.clip(grid, 0, 255).astype(np.uint8), "RGB")
