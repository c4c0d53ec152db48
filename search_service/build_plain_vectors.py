"""Build-time tool: the feature vectors of plain, one-colour images (`plain_vectors.json`).

    .venv/bin/python -m search_service.build_plain_vectors

runs the real vision engine (models/, as the vision service loads it by default) on 64 plain
320x240 images, every colour with channels in (0, 85, 170, 255), and writes their unit feature
vectors as int8 rows (x 127, base64) to `search_service/plain_vectors.json` (committed, and a
package data file like the other tables; search never runs a model). duplicates.py leaves
an image at least FEATURELESS_SIMILARITY alike to a plain image out of near-duplicate groups:
the model sees nothing in it, so a high cosine between two of them is no evidence of a copy.
MATE's transparent wallpapers are white pictures drawn in the alpha channel; composited on
white (vision's preprocess) each is a blank page, and seven distinct ones made one near group
at cosine 0.971. Rebuild when the features model changes (the test
compares the committed rows with what the model computes).
"""

from __future__ import annotations

import argparse
import base64
import io
import itertools
import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

OUTPUT = Path(__file__).with_name("plain_vectors.json")
LEVELS = (0, 85, 170, 255)
SIZE = (320, 240)


def plain_colours() -> list[tuple[int, int, int]]:
    return [(r, g, b) for r, g, b in itertools.product(LEVELS, repeat=3)]


def plain_png(colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", SIZE, colour).save(buf, "PNG")
    return buf.getvalue()


def as_rows(features: list[npt.NDArray[np.float32]]) -> npt.NDArray[np.int8]:
    """Unit vectors as int8 rows (x 127); a cosine against them loses < 0.001."""
    data = np.asarray(features, np.float64)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    return np.round(data * 127).astype(np.int8)


def to_json(rows: npt.NDArray[np.int8]) -> dict[str, object]:
    return {
        "about": "feature vectors of plain one-colour images (channels in "
        f"{LEVELS}), unit rows x 127 as int8, base64; built by "
        "search_service/build_plain_vectors.py with the vision models; do not edit",
        "shape": list(rows.shape),
        "int8": base64.b64encode(rows.tobytes()).decode("ascii"),
    }


def from_json(table: dict[str, object]) -> npt.NDArray[np.int8]:
    shape = [int(n) for n in table["shape"]]  # type: ignore[attr-defined]
    data = base64.b64decode(str(table["int8"]))
    return np.frombuffer(data, np.int8).reshape(shape)


def build(models_dir: Path) -> npt.NDArray[np.int8]:
    # Imported here: search itself never needs the vision models.
    from vision_service.config import VisionConfig
    from vision_service.engine import AnalysisRequest, Task, VisionEngine

    engine = VisionEngine.load(VisionConfig(models_dir=models_dir))
    try:
        features = []
        for colour in plain_colours():
            request = AnalysisRequest(plain_png(colour), tasks=frozenset({Task.FEATURES}))
            found = engine.analyze(request).features
            assert found is not None
            features.append(found)
    finally:
        engine.close()
    return as_rows(features)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    root = Path(__file__).resolve().parent.parent
    parser.add_argument("--models", type=Path, default=root / "models")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    rows = build(args.models)
    text = json.dumps(to_json(rows), indent=0)
    args.output.write_text(text + "\n", encoding="utf-8")
    print(f"{args.output}: {rows.shape[0]} plain images x {rows.shape[1]}")


if __name__ == "__main__":
    main()
