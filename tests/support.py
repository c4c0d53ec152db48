"""Helpers the tests and the benchmarks share: the real photos shipped in installed packages,
and free loopback ports for services started as processes."""

from __future__ import annotations

import socket
from pathlib import Path


def real_photo_paths() -> dict[str, Path]:
    """Real photos from scikit-image and scikit-learn, by short name (files, not arrays)."""
    import skimage
    import sklearn

    sk = Path(skimage.__file__).parent / "data"
    skl = Path(sklearn.__file__).parent / "datasets" / "images"
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
    if missing:
        raise FileNotFoundError(f"photos missing from the installed packages: {missing}")
    return paths


def free_ports(n: int) -> list[int]:
    """n distinct loopback ports free right now (all bound at once, then released)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]
