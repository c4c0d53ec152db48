"""The contracts under protos/ pass `buf lint` (STANDARD rules; v2 in full) and `buf breaking`
against the last release (protos/releases/v1.binpb): the same commands `make lint` runs, on the
real tree, and on a copy with a breaking edit to prove the check bites."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BUF = REPO_ROOT / "tools" / "buf" / "node_modules" / ".bin" / "buf"
RELEASE_IMAGE = Path("protos/releases/v1.binpb")


@pytest.fixture(scope="module")
def buf() -> Path:
    """buf as `make setup` installs it (npm ci in tools/buf)."""
    assert BUF.exists(), f"{BUF} is missing: run `make setup` (npm ci installs buf)"
    return BUF


def run_buf(buf: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(buf), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def copy_of_contracts(tmp_path: Path) -> Path:
    """protos/ and buf.yaml copied, so an edit cannot touch the real tree."""
    shutil.copytree(REPO_ROOT / "protos", tmp_path / "protos")
    shutil.copy(REPO_ROOT / "buf.yaml", tmp_path / "buf.yaml")
    return tmp_path


def test_contracts_pass_buf_lint(buf: Path) -> None:
    result = run_buf(buf, REPO_ROOT, "lint")

    assert result.returncode == 0, result.stdout + result.stderr


def test_contracts_are_not_breaking_against_the_release(buf: Path) -> None:
    result = run_buf(buf, REPO_ROOT, "breaking", "--against", str(RELEASE_IMAGE))

    assert result.returncode == 0, result.stdout + result.stderr


def test_release_image_holds_every_v1_package(buf: Path, tmp_path: Path) -> None:
    listing = run_buf(buf, REPO_ROOT, "ls-files", str(RELEASE_IMAGE))

    files = set(listing.stdout.split())
    assert listing.returncode == 0, listing.stderr
    for service in ("common", "storage", "search", "vision"):
        assert any(f"imagerepo/{service}/v1/" in f for f in files), files


def test_deleting_a_v1_field_fails_buf_breaking(buf: Path, tmp_path: Path) -> None:
    root = copy_of_contracts(tmp_path)
    proto = root / "protos/imagerepo/storage/v1/storage_service.proto"
    text = proto.read_text()
    assert "  string filename = 2;\n" in text
    proto.write_text(text.replace("  string filename = 2;\n", "  reserved 2;\n", 1))

    result = run_buf(buf, root, "breaking", "--against", str(RELEASE_IMAGE))

    assert result.returncode != 0
    assert 'with name "filename"' in result.stdout and "was deleted" in result.stdout


def test_a_v2_enum_whose_zero_is_a_real_value_fails_buf_lint(buf: Path, tmp_path: Path) -> None:
    root = copy_of_contracts(tmp_path)
    proto = root / "protos/imagerepo/vision/v2/vision_service.proto"
    text = proto.read_text()
    assert "OCR_MODE_UNSPECIFIED = 0;" in text
    proto.write_text(text.replace("OCR_MODE_UNSPECIFIED = 0;", "OCR_MODE_AUTOMATIC = 0;"))

    result = run_buf(buf, root, "lint")

    assert result.returncode != 0
    assert 'zero value name "OCR_MODE_AUTOMATIC"' in result.stdout
