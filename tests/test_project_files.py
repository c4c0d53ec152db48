"""The project's own files: generated code is fresh, deploy files are valid, help is complete."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT


def test_generated_grpc_code_matches_protos(tmp_path: Path):
    protos = sorted(str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "protos").rglob("*.proto"))

    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-Iprotos",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            *protos,
        ],
        cwd=REPO_ROOT,
        check=True,
    )

    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    committed = sorted(
        p.relative_to(REPO_ROOT)
        for p in (REPO_ROOT / "imagerepo").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    assert fresh == committed, "imagerepo/ differs from protos/: run `make proto`"
    stale = [str(p) for p in fresh if not filecmp.cmp(tmp_path / p, REPO_ROOT / p, shallow=False)]
    assert not stale, f"stale generated files (run `make proto`): {stale}"


def test_docker_compose_file_is_valid():
    assert shutil.which("docker-compose"), "docker-compose missing: .ci/run installs it"

    result = subprocess.run(
        ["docker-compose", "-f", "docker-compose.yml", "config", "--services"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )

    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == {"storage", "vision", "search", "analysis", "gateway"}


def test_make_help_lists_every_front_door_target():
    result = subprocess.run(["make", "help"], cwd=REPO_ROOT, capture_output=True, text=True)

    listed = {line.split()[1] for line in result.stdout.splitlines() if line.strip()}
    assert {"setup", "run", "test", "lint", "proto", "bench"} <= listed
