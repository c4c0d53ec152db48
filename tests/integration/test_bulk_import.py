"""`imagerepo import PATH...` against the running stack: summary, reasons, dry run, files and
folders, and repeated runs that find everything already in the library."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import uuid

import requests
from PIL import Image

from gateway.cli import main
from tests.conftest import REPO_ROOT


def fresh_photo(data: bytes, seed: int, side: int = 0) -> bytes:
    """A crop of a real photo that no earlier test uploaded (so it is stored, not found)."""
    with Image.open(io.BytesIO(data)) as im:
        crop = im.convert("RGB").crop((seed * 7 % 40, seed * 3 % 30, im.width - 5, im.height - 5))
        if side:
            crop.thumbnail((side, side))
        buf = io.BytesIO()
        crop.save(buf, "JPEG", quality=80 + seed % 10, comment=uuid.uuid4().hex.encode())
    return buf.getvalue()


NAMES = ["chelsea", "coffee", "rocket", "flower", "china", "motorcycle"]


def photo_tree(root, photo_jpegs) -> list:
    """Six fresh photos in a small tree, a copy of one, a text file posing as a photo and a
    file that is no image by its name. Returns the six photos' paths."""
    (root / "2024" / "summer").mkdir(parents=True)
    paths = []
    for i, name in enumerate(NAMES):
        path = root / ("2024/summer" if i % 2 else "") / f"{name}.jpg"
        path.write_bytes(fresh_photo(photo_jpegs[name], i))
        paths.append(path)
    (root / "2024" / "copy-of-motorcycle.jpg").write_bytes(paths[-1].read_bytes())
    (root / "2024" / "broken.jpg").write_bytes(b"this is not a jpeg")
    (root / "notes.txt").write_text("not uploaded: no image extension")
    return paths


def copies_in_library(gateway_url: str, path) -> int:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    reply = requests.get(f"{gateway_url}/api/images/by-sha256/{digest}", timeout=30)
    assert reply.status_code == 200, reply.text
    return len(reply.json()["images"])


def test_import_uploads_tree_and_reports_every_file_left_out(
    tmp_path, gateway_url, photo_jpegs, capsys
):
    photos = photo_tree(tmp_path / "photos", photo_jpegs)

    code = main(
        [
            "import",
            str(tmp_path / "photos"),
            "--url",
            gateway_url,
            "--workers",
            "3",
            "--no-progress",
        ]
    )

    out = capsys.readouterr().out
    assert code == 1  # the text file posing as a photo was refused
    assert "stored 6, already in the library 1, rejected 1, failed 0, skipped 1 in" in out
    assert f"skipped {tmp_path / 'photos' / 'notes.txt'}: unsupported extension .txt" in out
    assert f"rejected {tmp_path / 'photos' / '2024' / 'broken.jpg'}: " in out
    assert all(copies_in_library(gateway_url, p) == 1 for p in photos)


def test_import_run_again_finds_everything_in_the_library(
    tmp_path, gateway_url, photo_jpegs, capsys
):
    photos = photo_tree(tmp_path / "photos", photo_jpegs)
    (tmp_path / "photos" / "2024" / "broken.jpg").unlink()
    args = ["import", str(tmp_path / "photos"), "--url", gateway_url, "--no-progress"]
    assert main(args) == 0
    capsys.readouterr()

    code = main(args)

    assert code == 0
    assert "stored 0, already in the library 7, rejected 0" in capsys.readouterr().out
    assert all(copies_in_library(gateway_url, p) == 1 for p in photos)


def test_import_takes_single_files_and_folders_together(tmp_path, gateway_url, photo_jpegs, capsys):
    (tmp_path / "album").mkdir()
    (tmp_path / "album" / "a.jpg").write_bytes(fresh_photo(photo_jpegs["rocket"], 31))
    single = tmp_path / "best.jpg"
    single.write_bytes(fresh_photo(photo_jpegs["china"], 32))

    code = main(
        ["import", str(tmp_path / "album"), str(single), "--url", gateway_url, "--no-progress"]
    )

    assert code == 0
    assert "stored 2, already in the library 0" in capsys.readouterr().out
    assert copies_in_library(gateway_url, single) == 1


def test_dry_run_lists_what_would_be_uploaded_and_stores_nothing(
    tmp_path, gateway_url, photo_jpegs, capsys
):
    photos = photo_tree(tmp_path / "photos", photo_jpegs)
    (tmp_path / "photos" / "2024" / "broken.jpg").unlink()
    main(["import", str(photos[0]), "--url", gateway_url, "--no-progress"])
    capsys.readouterr()

    code = main(["import", str(tmp_path / "photos"), "--url", gateway_url, "--dry-run"])

    out = capsys.readouterr().out
    assert code == 0
    assert "dry run: would upload 5 " in out
    # chelsea.jpg is in the library; copy-of-motorcycle.jpg repeats motorcycle.jpg.
    assert "2 already in the library, skipped 1" in out
    assert sum(line.startswith("  would upload ") for line in out.splitlines()) == 5
    assert [copies_in_library(gateway_url, p) for p in photos] == [1, 0, 0, 0, 0, 0]


def test_import_as_a_command_shows_progress_and_leaves_no_state_file(
    tmp_path, gateway_url, photo_jpegs
):
    folder = tmp_path / "few"
    folder.mkdir()
    for i, name in enumerate(["rocket", "china"]):
        (folder / f"{name}.jpg").write_bytes(fresh_photo(photo_jpegs[name], 50 + i))

    run = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "import", str(folder), "--url", gateway_url],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )

    assert run.returncode == 0, run.stderr
    assert "stored 2, already in the library 0, rejected 0, failed 0" in run.stdout
    assert "import: 100%" in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["few"]


def test_import_refused_for_want_of_an_api_key_stops_with_one_message(
    stack, tmp_path, photo_jpegs, capsys
):
    keyed = stack.start_gateway(api_keys=frozenset({"kim:secret"}))
    (tmp_path / "a.jpg").write_bytes(fresh_photo(photo_jpegs["coffee"], 61))
    (tmp_path / "b.jpg").write_bytes(fresh_photo(photo_jpegs["rocket"], 62))
    try:
        refused = main(["import", str(tmp_path), "--url", keyed.url, "--no-progress"])
        refused_out = capsys.readouterr()
        accepted = main(
            ["import", str(tmp_path), "--url", keyed.url, "--api-key", "kim:secret"]
            + ["--no-progress"]
        )
        accepted_out = capsys.readouterr().out
    finally:
        keyed.stop()

    assert refused == 1
    assert refused_out.err.count("stopped early: the gateway refused to ") == 1
    assert "'Authorization: Bearer <key>'" in refused_out.err
    assert "2 not started" in refused_out.out
    assert accepted == 0
    assert "stored 2, already in the library 0" in accepted_out
