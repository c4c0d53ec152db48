"""Helpers the tests and the benchmarks share: the real photos shipped in installed packages,
and free loopback ports for services started as processes."""

from __future__ import annotations

import socket
import zlib
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


def png_damaged_in_pixels(data: bytes) -> bytes:
    """The PNG `data` with 64 bytes in the middle of its first IDAT chunk overwritten and the
    chunk's CRC fixed: structurally whole (storage's check accepts it), but its pixels cannot
    be inflated (its thumbnails fail)."""
    out = bytearray(data)
    pos = 8
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        if data[pos + 4 : pos + 8] == b"IDAT":
            start = pos + 8 + length // 2
            out[start : start + 64] = bytes(range(64))
            crc = zlib.crc32(bytes(out[pos + 4 : pos + 8 + length]))
            out[pos + 8 + length : pos + 12 + length] = crc.to_bytes(4, "big")
            return bytes(out)
        pos += 12 + length
    raise AssertionError("no IDAT chunk")
