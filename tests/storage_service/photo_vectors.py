"""Feature vectors of real photos, as the vision service computes them (EfficientNet-Lite0's
pooled features, L2-normalised), for measuring what storing them smaller costs in recall.

The photos are scikit-image's and scikit-learn's, each in several variants (crops, mirror,
small rotations), so every photo has near neighbours and far ones, as a real library does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_PATH = REPO_ROOT / "models" / "efficientnet_lite0.onnx"
_SKIMAGE_PHOTOS = [
    "astronaut.png",
    "brick.png",
    "camera.png",
    "chelsea.png",
    "coffee.png",
    "coins.png",
    "color.png",
    "grass.png",
    "gravel.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "logo.png",
    "moon.png",
    "motorcycle_left.png",
    "page.png",
    "retina.jpg",
    "rocket.jpg",
    "text.png",
]


def photo_paths() -> list[Path]:
    import skimage
    import sklearn

    sk = Path(skimage.__file__).parent / "data"
    skl = Path(sklearn.__file__).parent / "datasets" / "images"
    return [sk / name for name in _SKIMAGE_PHOTOS] + [skl / "china.jpg", skl / "flower.jpg"]


def photo_variants(variants: int = 8, seed: int = 3) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    out = []
    for path in photo_paths():
        with Image.open(path) as im:
            base = im.convert("RGB")
        w, h = base.size
        for v in range(variants):
            left, top = int(rng.integers(0, w // 4)), int(rng.integers(0, h // 4))
            right, bottom = w - int(rng.integers(0, w // 4)), h - int(rng.integers(0, h // 4))
            variant = base.crop((left, top, right, bottom))
            if v % 2:
                variant = ImageOps.mirror(variant)
            if v % 3 == 0:
                variant = variant.rotate(int(rng.integers(-20, 20)))
            out.append(variant)
    return out


def real_photo_vectors(variants: int = 8) -> npt.NDArray[np.float32]:
    """float32[N, 1280], unit length, one row per photo variant."""
    import onnxruntime as ort

    from vision_service.preprocess import classifier_input

    session = ort.InferenceSession(str(MODEL_PATH), providers=["CPUExecutionProvider"])
    batch = np.stack([classifier_input(im) for im in photo_variants(variants)])
    parts = [
        session.run(["features"], {"input": batch[i : i + 32]})[0] for i in range(0, len(batch), 32)
    ]
    features = np.concatenate(parts).astype(np.float32)
    return features / np.linalg.norm(features, axis=1, keepdims=True)


def recall_at_k(
    exact: npt.NDArray[np.float32], approx: npt.NDArray[np.float32], k: int = 10
) -> float:
    """Mean share of each vector's k nearest neighbours by cosine (itself excluded) under
    `exact` that are also among its k nearest under `approx`."""

    def neighbours(vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
        unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        sims = unit @ unit.T
        np.fill_diagonal(sims, -np.inf)
        return np.argsort(-sims, axis=1, kind="stable")[:, :k]

    a, b = neighbours(exact), neighbours(approx)
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(a, b, strict=True)]))
