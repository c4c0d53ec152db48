"""Fixtures every test package shares: real photos shipped in installed packages."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def _skimage_data_dir() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


def _sklearn_images_dir() -> Path:
    import sklearn

    return Path(sklearn.__file__).parent / "datasets" / "images"


@pytest.fixture(scope="session")
def photo_paths() -> dict[str, Path]:
    """Real photos from installed packages, by short name (files, not synthetic arrays)."""
    sk = _skimage_data_dir()
    skl = _sklearn_images_dir()
    paths = {
        "chelsea": sk / "chelsea.png",
        "coffee": sk / "coffee.png",
        "rocket": sk / "rocket.jpg",
        "astronaut": sk / "astronaut.png",
        "motorcycle": sk / "motorcycle_left.png",
        "camera": sk / "camera.png",
        "text": sk / "text.png",
        "page": sk / "page.png",
        "china": skl / "china.jpg",
        "flower": skl / "flower.jpg",
    }
    missing = [name for name, p in paths.items() if not p.exists()]
    assert not missing, f"test photos missing from installed packages: {missing}"
    return paths


@pytest.fixture(scope="session")
def photo_jpegs(photo_paths: dict[str, Path]) -> dict[str, bytes]:
    """The same photos as JPEG bytes, as a camera or phone would upload them."""
    from PIL import Image

    out: dict[str, bytes] = {}
    for name, path in photo_paths.items():
        with Image.open(path) as im:
            buf = io.BytesIO()
            im.convert("RGB").save(buf, "JPEG", quality=92)
            out[name] = buf.getvalue()
    return out
