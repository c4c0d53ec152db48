"""Fixtures every test package shares: real photos shipped in installed packages."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tests.support import real_photo_paths

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def photo_paths() -> dict[str, Path]:
    """Real photos from installed packages, by short name (files, not synthetic arrays)."""
    return real_photo_paths()


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
