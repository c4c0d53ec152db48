"""The client library installs alone into a clean virtualenv (`pip install ./clients/python`):
grpcio, protobuf and the generated stubs, none of the server's dependencies, and it talks to a
real storage service from there."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO_ROOT
from tests.integration.storage_factory import open_storage

SERVER_ONLY = ["onnxruntime", "numpy", "Pillow", "opencv-python", "Flask", "rapidocr"]


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory):
    venv = tmp_path_factory.mktemp("client-venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(REPO_ROOT / "clients" / "python")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr
    return python


def test_client_installs_with_only_grpcio_and_protobuf(client_venv):
    listed = subprocess.run(
        [str(client_venv), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    names = {line.split("==")[0].lower() for line in listed.splitlines()}

    assert {"imagerepo-client", "grpcio", "protobuf"} <= names
    assert not names & {n.lower() for n in SERVER_ONLY}
    probe = subprocess.run(
        [str(client_venv), "-c", "import imagerepo_client, onnxruntime"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "No module named 'onnxruntime'" in probe.stderr


def test_installed_client_uploads_to_a_real_storage_service(client_venv, tmp_path, photo_jpegs):
    server, port, health, close = open_storage("127.0.0.1:0", tmp_path / "storage")
    server.start()
    health.set_serving(True)
    (tmp_path / "photo.jpg").write_bytes(photo_jpegs["rocket"])
    script = textwrap.dedent(
        f"""
        import imagerepo.storage.v1.storage_service_pb2 as pb
        from imagerepo_client import ImageRepoClient, NotFoundError
        with ImageRepoClient(storage_address="127.0.0.1:{port}") as repo:
            first = repo.upload("photo.jpg")
            again = repo.upload("photo.jpg")
            assert again.already_stored and again.image.id == first.image.id
            assert repo.download(first.image.id) == open("photo.jpg", "rb").read()
            try:
                repo.get("no-such-image")
            except NotFoundError as exc:
                print("not found:", exc.code.name)
            print("stubs from", pb.__file__)
        """
    )
    try:
        run = subprocess.run(
            [str(client_venv), "-c", script],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
    finally:
        server.stop(grace=None).wait()
        close()

    assert run.returncode == 0, run.stderr
    assert "not found: NOT_FOUND" in run.stdout
    assert str(client_venv.parent.parent) in run.stdout.split("stubs from ")[1]
