"""The bulk importer's file discovery and resumable state (uploads: tests/integration)."""

from __future__ import annotations

import json

from gateway.cli import FileResult, ImportState, file_sha256, find_images, main


def test_find_images_walks_tree_by_suffix_skipping_hidden(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".cache").mkdir()
    for rel in ["x.JPG", "a/y.png", "a/b/z.webp", "notes.txt", ".hidden.jpg", ".cache/c.jpg"]:
        (tmp_path / rel).write_bytes(b"data")

    found = [p.relative_to(tmp_path).as_posix() for p in find_images(tmp_path)]

    assert found == ["x.JPG", "a/y.png", "a/b/z.webp"]


def test_state_survives_a_torn_last_line(tmp_path):
    state_path = tmp_path / "state.jsonl"
    state = ImportState(state_path)
    state.record(FileResult("a.jpg", "1" * 64, "stored", "", "id1"))
    state.record(FileResult("b.jpg", "2" * 64, "duplicate", "", "id2"))
    with state_path.open("a") as f:
        f.write('{"path": "c.jpg", "sha2')  # killed mid-write

    reloaded = ImportState(state_path)

    assert reloaded.is_done("a.jpg", "1" * 64)
    assert reloaded.is_done("b.jpg", "2" * 64)
    assert not reloaded.is_done("c.jpg", "3" * 64)


def test_state_redoes_a_file_whose_content_changed(tmp_path):
    photo = tmp_path / "p.jpg"
    photo.write_bytes(b"first")
    state = ImportState(tmp_path / "s.jsonl")
    state.record(FileResult("p.jpg", file_sha256(photo), "stored"))

    photo.write_bytes(b"second")

    assert not ImportState(tmp_path / "s.jsonl").is_done("p.jpg", file_sha256(photo))


def test_state_lines_are_json_with_result(tmp_path):
    state = ImportState(tmp_path / "s.jsonl")

    state.record(FileResult("r.jpg", "9" * 64, "rejected", "not an image"))

    line = json.loads((tmp_path / "s.jsonl").read_text())
    assert line["result"] == "rejected" and line["detail"] == "not an image"


def test_import_of_missing_folder_exits_2(tmp_path, capsys):
    code = main(["import", str(tmp_path / "nope")])

    assert code == 2
    assert "is not a folder" in capsys.readouterr().err
