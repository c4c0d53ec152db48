"""An import interrupted anywhere (Ctrl-C or kill -9), re-run from another directory, or run
twice at once on the same folder, ends with exactly one copy of each photo in the library.

The importers are real `python -m gateway.cli import` processes against the stack's gateway;
the interruption points are drawn at random (the seed is printed for a failing run).
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time

import requests

from tests.conftest import REPO_ROOT

from .test_bulk_import import fresh_photo

# Enough that each round is cut short mid-import (uploads run at 30-40 files/s here).
PHOTOS = 120


def _folder(root, photo_jpegs, tag: int) -> list:
    """PHOTOS small fresh photos in two subfolders, plus a copy of one under another name."""
    names = sorted(photo_jpegs)
    paths = []
    for i in range(PHOTOS):
        folder = root / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{names[i % len(names)]}-{i}.jpg"
        path.write_bytes(fresh_photo(photo_jpegs[names[i % len(names)]], tag + i, side=320))
        paths.append(path)
    (root / "b" / "again.jpg").write_bytes(paths[0].read_bytes())
    return paths


def _importer(folder, gateway_url: str, cwd) -> subprocess.Popen:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "import", str(folder), "--url", gateway_url]
        + ["--workers", "3", "--no-progress", "--grace", "3"],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )


def _copies_of_each(gateway_url: str, paths) -> list[int]:
    digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    reply = requests.post(f"{gateway_url}/api/images/lookup", json={"sha256": digests}, timeout=60)
    assert reply.status_code == 200, reply.text
    return [len(match["images"]) for match in reply.json()["matches"]]


def test_import_interrupted_at_random_points_ends_with_one_copy_of_each(
    tmp_path, gateway_url, photo_jpegs
):
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    rng = random.Random(seed)
    photos = _folder(tmp_path / "photos", photo_jpegs, tag=100)
    interruptions = [signal.SIGINT, signal.SIGKILL, signal.SIGINT, signal.SIGKILL]

    interrupted = 0
    for round_number, sig in enumerate(interruptions):
        proc = _importer(tmp_path / "photos", gateway_url, tmp_path / f"cwd-{round_number}")
        time.sleep(rng.uniform(0.4, 1.4))
        sent_at = time.monotonic()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
        stopped_after_s = time.monotonic() - sent_at
        print(f"round {round_number}: {sig.name} -> {proc.returncode}: {out.strip()[-160:]}")
        if proc.returncode == 0:
            continue  # it had finished before the signal
        if proc.returncode == -signal.SIGINT and (out.splitlines() or [""])[-1].startswith(
            "stored "
        ):
            # It had finished (its summary says so, not "interrupted: ...") and the signal
            # came while the interpreter exited, after the handler was put back: Python then
            # dies of the signal, as a Unix program should.
            continue
        interrupted += 1
        if sig == signal.SIGINT:
            assert proc.returncode == 130, err
            assert out.splitlines()[-1].startswith("interrupted: stored "), out
            assert "Traceback" not in err
            assert stopped_after_s < 3 + 5, "waits at most --grace for uploads in flight"
        else:
            assert proc.returncode == -signal.SIGKILL

    final = _importer(tmp_path / "photos", gateway_url, tmp_path / "elsewhere")
    out, err = final.communicate(timeout=300)

    assert interrupted, "no round was cut short: the photos upload too fast for this test"
    assert final.returncode == 0, out + err
    assert _copies_of_each(gateway_url, photos) == [1] * PHOTOS, f"seed {seed}"
    assert "rejected 0, failed 0" in out


def test_two_importers_on_the_same_folder_at_once_store_each_photo_once(
    tmp_path, gateway_url, photo_jpegs
):
    photos = _folder(tmp_path / "photos", photo_jpegs, tag=300)

    first = _importer(tmp_path / "photos", gateway_url, tmp_path / "one")
    second = _importer(tmp_path / "photos", gateway_url, tmp_path / "two")
    outputs = [p.communicate(timeout=300) for p in (first, second)]

    assert [first.returncode, second.returncode] == [0, 0], outputs
    assert _copies_of_each(gateway_url, photos) == [1] * PHOTOS
    stored = [int(out.split("stored ")[-1].split(",")[0]) for out, _err in outputs]
    assert sum(stored) == PHOTOS, outputs
