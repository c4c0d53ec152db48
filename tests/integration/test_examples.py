"""Each example under examples/ runs against a real stack, as a user would run it from a
checkout (python examples/<name>.py), with the addresses in the IMAGEREPO_*_ADDR variables."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from imagerepo_client import ImageRepoClient

from tests.conftest import REPO_ROOT

from .test_bulk_import import fresh_photo

EXAMPLES = REPO_ROOT / "examples"


@pytest.fixture
def run_example(stack):
    env = {
        **os.environ,
        "IMAGEREPO_STORAGE_ADDR": f"127.0.0.1:{stack.ports['storage']}",
        "IMAGEREPO_SEARCH_ADDR": f"127.0.0.1:{stack.ports['search']}",
        "IMAGEREPO_VISION_ADDR": f"127.0.0.1:{stack.ports['vision']}",
    }
    env.pop("PYTHONPATH", None)

    def run(name: str, *args: str) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [sys.executable, str(EXAMPLES / name), *args],
            capture_output=True,
            text=True,
            timeout=180,
            env=env,
            cwd=REPO_ROOT,
        )
        assert done.returncode == 0, done.stderr
        return done

    return run


def test_examples_upload_a_folder_once_then_list_and_search_it(
    stack, run_example, tmp_path, photo_jpegs
):
    owner = f"examples-{uuid.uuid4().hex[:8]}"
    tag = "ex" + "".join(chr(ord("a") + int(c, 16)) for c in uuid.uuid4().hex[:10])
    folder = tmp_path / "album"
    folder.mkdir()
    for i, name in enumerate(["chelsea", "coffee", "rocket"]):
        (folder / f"{name}.jpg").write_bytes(fresh_photo(photo_jpegs[name], 200 + i))

    first = run_example("upload_folder.py", str(folder), "--tag", tag, "--owner", owner)
    again = run_example("upload_folder.py", str(folder), "--owner", owner)
    with ImageRepoClient(
        storage_address=f"127.0.0.1:{stack.ports['storage']}",
        search_address=f"127.0.0.1:{stack.ports['search']}",
        owner=owner,
    ) as repo:
        for image in repo.list():
            repo.wait_until_analysed(image.id)
    listed = run_example("list_images.py", "--owner", owner, "--page-size", "2")
    found = run_example("search.py", tag, "--owner", owner)
    like = run_example("search.py", "--like", str(folder / "chelsea.jpg"), "--owner", owner)

    assert [line.split()[0] for line in first.stdout.splitlines()] == ["stored"] * 3
    assert all(line.startswith("already in your library") for line in again.stdout.splitlines())
    assert "page 2 (1 of 3 images)" in listed.stdout and "3 images" in listed.stdout
    assert "3 images match" in found.stdout
    assert all(f"{name}.jpg" in found.stdout for name in ["chelsea", "coffee", "rocket"])
    assert f"tags:{tag}" in found.stdout
    assert like.stdout.splitlines()[1].split()[-1] == "chelsea.jpg"
