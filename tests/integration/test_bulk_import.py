"""`imagerepo import DIR` against the running stack: summary, concurrency and resumption."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import uuid

from PIL import Image

from gateway.cli import main
from tests.conftest import REPO_ROOT


def _fresh_photo(data: bytes, seed: int) -> bytes:
    """A crop of a real photo that no earlier test uploaded (so it is stored, not a duplicate)."""
    with Image.open(io.BytesIO(data)) as im:
        crop = im.crop((seed * 7 % 40, seed * 3 % 30, im.width - 5, im.height - 5))
        buf = io.BytesIO()
        crop.save(buf, "JPEG", quality=80 + seed % 10, comment=uuid.uuid4().hex.encode())
    return buf.getvalue()


def _photo_tree(root, photo_jpegs) -> int:
    (root / "2024" / "summer").mkdir(parents=True)
    names = ["chelsea", "coffee", "rocket", "flower", "china", "motorcycle"]
    for i, name in enumerate(names):
        folder = root / ("2024/summer" if i % 2 else "")
        data = _fresh_photo(photo_jpegs[name], i)
        (folder / f"{name}.jpg").write_bytes(data)
    # A copy of one photo, a text file pretending to be a photo, and a file that is skipped.
    (root / "2024" / "copy-of-motorcycle.jpg").write_bytes(data)
    (root / "2024" / "broken.jpg").write_bytes(b"this is not a jpeg")
    (root / "notes.txt").write_text("not uploaded: no image suffix")
    return len(names)


def test_import_uploads_tree_and_summarises(tmp_path, gateway_url, photo_jpegs, capsys):
    photos = _photo_tree(tmp_path / "photos", photo_jpegs)
    state = tmp_path / "state.jsonl"

    code = main(
        [
            "import",
            str(tmp_path / "photos"),
            "--url",
            gateway_url,
            "--state",
            str(state),
            "--workers",
            "3",
            "--no-progress",
        ]
    )

    out = capsys.readouterr().out
    assert code == 0
    assert f"stored {photos}, duplicate 1, rejected 1, failed 0 (skipped 0" in out
    entries = [json.loads(line) for line in state.read_text().splitlines()]
    assert len(entries) == photos + 2
    assert {e["path"] for e in entries if e["result"] == "rejected"} == {"2024/broken.jpg"}


def test_import_resumes_after_interruption(tmp_path, gateway_url, photo_jpegs, capsys):
    photos = _photo_tree(tmp_path / "photos", photo_jpegs)
    state = tmp_path / "state.jsonl"
    args = [
        "import",
        str(tmp_path / "photos"),
        "--url",
        gateway_url,
        "--state",
        str(state),
        "--no-progress",
    ]
    assert main(args) == 0
    capsys.readouterr()
    # An interruption: only the first three files were recorded, the last line torn.
    lines = state.read_text().splitlines()
    state.write_text("\n".join(lines[:3]) + "\n" + lines[3][:10])

    code = main(args)

    out = capsys.readouterr().out
    assert code == 0
    counts = {k: int(v) for k, v in re.findall(r"(\w+) (\d+)", out.split(" in ")[0])}
    # Only the five unrecorded files went again; none was stored twice (same bytes as the first
    # run, so the gateway reports them as duplicates).
    assert counts["skipped"] == 3
    assert counts["stored"] == 0
    assert counts["duplicate"] + counts["rejected"] == photos + 2 - 3


def test_import_run_again_skips_everything(tmp_path, gateway_url, photo_jpegs, capsys):
    photos = _photo_tree(tmp_path / "photos", photo_jpegs)
    args = [
        "import",
        str(tmp_path / "photos"),
        "--url",
        gateway_url,
        "--state",
        str(tmp_path / "s.jsonl"),
        "--no-progress",
    ]
    main(args)
    capsys.readouterr()

    code = main(args)

    assert code == 0
    assert (
        f"stored 0, duplicate 0, rejected 0, failed 0 (skipped {photos + 2} already imported)"
        in capsys.readouterr().out
    )


def test_import_as_a_command_shows_progress_and_summary(tmp_path, gateway_url, photo_jpegs):
    folder = tmp_path / "few"
    folder.mkdir()
    for i, name in enumerate(["rocket", "china"]):
        (folder / f"{name}.jpg").write_bytes(_fresh_photo(photo_jpegs[name], 50 + i))

    run = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "import", str(folder), "--url", gateway_url],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )

    assert run.returncode == 0, run.stderr
    assert "stored 2, duplicate 0, rejected 0, failed 0" in run.stdout
    assert "import: 100%" in run.stderr
    assert list(tmp_path.glob(".imagerepo-import-*.jsonl"))
