"""`imagerepo import` of a file whose name on disk is not UTF-8 (Latin-1 from an old camera, a
Windows zip, a Samba share), against the running stack: it is stored under the name decoded
as Windows-1252 ("café.jpg"), and the run finishes. The upload raised UnicodeEncodeError inside
a worker thread, which died, and the importer waited for it for ever."""

from __future__ import annotations

import io
import os
import uuid

import pytest
import requests
from PIL import Image

from gateway.cli import main


def _fresh_jpeg(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as im:
        out = io.BytesIO()
        im.convert("RGB").save(out, "JPEG", quality=85, comment=uuid.uuid4().hex.encode())
    return out.getvalue()


@pytest.mark.timeout(120)
def test_a_latin1_filename_is_imported_under_its_readable_name(
    tmp_path, gateway_url, photo_jpegs, capsys
):
    stem = f"caf\xe9-{uuid.uuid4().hex[:6]}".encode("latin-1")
    with open(os.path.join(os.fsencode(tmp_path), stem + b".jpg"), "wb") as f:
        f.write(_fresh_jpeg(photo_jpegs["coffee"]))

    code = main(["import", str(tmp_path), "--url", gateway_url, "--no-progress"])

    out = capsys.readouterr().out
    assert code == 0, out
    assert "stored 1" in out
    name = stem.decode("cp1252") + ".jpg"
    found = requests.get(f"{gateway_url}/api/images/by-filename/{name}", timeout=30).json()
    assert len(found["images"]) == 1
