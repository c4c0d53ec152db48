"""The `imagerepo` command line: file discovery with a reason for every skipped file, the
arguments and the complete help (uploads against a real stack: tests/integration)."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gateway.cli import build_parser, main
from gateway.importer import Importer, ImportSummary, Skipped, discover
from tests.conftest import REPO_ROOT


def test_discover_walks_folders_in_order_and_takes_single_files(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for rel in ["x.JPG", "a/y.png", "a/b/z.webp", "single.jpeg"]:
        (tmp_path / rel).write_bytes(b"data")

    found, skipped = discover([tmp_path / "a", tmp_path / "x.JPG", tmp_path / "single.jpeg"])

    assert [c.path.relative_to(tmp_path).as_posix() for c in found] == [
        "a/y.png",
        "a/b/z.webp",
        "x.JPG",
        "single.jpeg",
    ]
    assert skipped == []


def test_discover_gives_every_skipped_file_its_reason(tmp_path):
    (tmp_path / ".cache").mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "README").write_text("hello")
    (tmp_path / ".hidden.jpg").write_bytes(b"data")
    (tmp_path / ".cache" / "c.jpg").write_bytes(b"data")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "big.png").write_bytes(b"x" * 2048)
    (tmp_path / "ok.jpg").write_bytes(b"data")
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")

    found, skipped = discover([tmp_path, tmp_path / "gone.jpg"], max_bytes=1024)

    reasons = {os.path.relpath(s.path, tmp_path): s.reason for s in skipped}
    assert [c.path.name for c in found] == ["ok.jpg"]
    assert reasons == {
        "notes.txt": "unsupported extension .txt",
        "README": "unsupported no extension",
        ".hidden.jpg": "hidden file",
        ".cache": "hidden folder",
        "empty.jpg": "empty file",
        "big.png": "too large (0.0 MiB over the 0.0 MiB limit)",
        "gone.jpg": "not found",
        "dangling.jpg": "unreadable (No such file or directory)",
    }


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_discover_reports_an_unreadable_file(tmp_path):
    locked = tmp_path / "locked.jpg"
    locked.write_bytes(b"data")
    locked.chmod(0)

    found, skipped = discover([tmp_path])

    assert found == []
    assert skipped == [Skipped(str(locked), "unreadable (permission denied)")]


def test_a_file_counted_twice_is_imported_once(tmp_path):
    (tmp_path / "p.jpg").write_bytes(b"data")

    found, _ = discover([tmp_path, tmp_path / "p.jpg"])

    assert len(found) == 1


def test_summary_exit_status_reflects_failures_and_interruption():
    assert ImportSummary().exit_status == 0
    assert ImportSummary(skipped=[Skipped("a.txt", "unsupported extension .txt")]).exit_status == 0
    assert ImportSummary(skipped=[Skipped("b.jpg", "too large (60 MiB)")]).exit_status == 1
    assert ImportSummary(stopped="gateway away").exit_status == 3
    assert ImportSummary(interrupted=True).exit_status == 130


def test_help_documents_every_import_option_in_full():
    run = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "import", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
        env={**os.environ, "COLUMNS": "80"},
    )

    assert run.returncode == 0
    actions = build_parser()._subparsers._group_actions[0].choices["import"]._actions  # type: ignore[union-attr]
    for action in actions:
        assert action.help, action.dest
        for flag in action.option_strings:
            assert flag in run.stdout
    for phrase in ["never stores a photo twice", "--dry-run", "exit status:", "130", "Ctrl-C"]:
        assert phrase in run.stdout
    assert "\n" + "examples:" in run.stdout  # ends with its examples, not cut off


def test_import_without_paths_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["import"])

    assert exit_info.value.code == 2
    assert "PATH" in capsys.readouterr().err


def test_import_against_a_gateway_that_is_down_stops_with_one_message(tmp_path, capsys):
    for i in range(5):
        (tmp_path / f"p{i}.jpg").write_bytes(b"data %d" % i)
    from tests.support import free_port

    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()

    code = main(["import", str(tmp_path), "--url", url, "--no-progress", "--retry-for", "1.5"])

    out, err = capsys.readouterr()
    assert code == 3
    assert 1.5 <= time.monotonic() - started < 10, "retried for --retry-for, then gave up"
    assert err.count("gateway unreachable") == 1, "said once, not once per worker"
    assert "retrying for up to 1.5 s" in err
    assert err.count("not answering") == 1
    assert "cannot connect" in err
    assert "stored 0" in out and "5 not started" in out


def test_import_stopped_while_waiting_for_the_gateway_is_interrupted_at_once(tmp_path):
    for i in range(3):
        (tmp_path / f"p{i}.jpg").write_bytes(b"data %d" % i)
    from gateway.importer import Gateway
    from tests.support import free_port

    stop = threading.Event()
    gateway = Gateway(f"http://127.0.0.1:{free_port()}", "", 5.0, retry_for_s=60, stop=stop)
    importer = Importer(gateway, stop=stop)
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()

    summary = importer.run([tmp_path])

    assert time.monotonic() - started < 3, "a Ctrl-C does not wait out the 60 s of retries"
    assert summary.interrupted and not summary.stopped
    assert summary.exit_status == 130


@pytest.mark.parametrize("retry_for", ["-1", "nan", "soon"])
def test_import_with_a_retry_time_that_is_not_seconds_is_a_usage_error(tmp_path, capsys, retry_for):
    with pytest.raises(SystemExit) as exit_info:
        main(["import", str(tmp_path), "--retry-for", retry_for, "--no-progress"])

    assert exit_info.value.code == 2
    assert "--retry-for" in capsys.readouterr().err


def test_importer_that_is_asked_to_stop_sends_nothing(tmp_path):
    (tmp_path / "p.jpg").write_bytes(b"data")
    from gateway.importer import Gateway

    importer = Importer(Gateway("http://127.0.0.1:9", "", 1.0))
    importer.stop.set()

    summary = importer.run([tmp_path])

    assert summary.interrupted and summary.exit_status == 130
    assert summary.not_started == 1


@pytest.mark.parametrize("timeout", ["0", "-1", "nan", "inf"])
def test_import_with_a_timeout_that_is_not_a_positive_number_is_a_usage_error(
    timeout, tmp_path, capsys
):
    (tmp_path / "p.jpg").write_bytes(b"data")

    with pytest.raises(SystemExit) as exit_info:
        main(["import", str(tmp_path), "--timeout", timeout, "--no-progress"])

    assert exit_info.value.code == 2
    assert "--timeout" in capsys.readouterr().err


def test_import_with_a_negative_grace_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["import", str(tmp_path), "--grace", "-3"])

    assert exit_info.value.code == 2
    assert "--grace" in capsys.readouterr().err


@pytest.mark.parametrize("url", ["ftp://127.0.0.1:21", "http://", "http:///api"])
def test_import_with_a_url_that_is_not_http_is_a_usage_error(url, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["import", str(tmp_path), "--url", url])

    assert exit_info.value.code == 2
    assert "--url" in capsys.readouterr().err


def test_import_url_without_a_scheme_means_http(tmp_path, capsys):
    (tmp_path / "p.jpg").write_bytes(b"data")
    from tests.support import free_port

    code = main(
        ["import", str(tmp_path), "--url", f"127.0.0.1:{free_port()}", "--no-progress"]
        + ["--retry-for", "0"]
    )

    out, err = capsys.readouterr()
    assert code == 3
    assert "cannot connect to http://127.0.0.1:" in err
    assert "1 not started" in out


class _GatewayThatBreaksOffUploads(http.server.BaseHTTPRequestHandler):
    """Answers the lookup (nothing stored), then cuts every upload's answer short: a gateway
    killed while it answers."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *_args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path.startswith("/api/images/lookup"):
            body = json.dumps({"matches": []}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.write(b'10\r\n{"results": [{"r')
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)


def test_an_upload_whose_answer_keeps_breaking_off_is_failed_not_called_unreadable(
    tmp_path, capsys
):
    (tmp_path / "p.jpg").write_bytes(b"data")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _GatewayThatBreaksOffUploads)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    try:
        code = main(
            ["import", str(tmp_path), "--url", f"http://127.0.0.1:{server.server_port}"]
            + ["--no-progress", "--retry-for", "1"]
        )
    finally:
        server.shutdown()
        server.server_close()

    out, err = capsys.readouterr()
    assert code == 3, "retried for --retry-for (a gateway killed mid-answer comes back)"
    assert "retrying for up to 1 s" in err
    failed = [line for line in out.splitlines() if "p.jpg" in line]
    assert len(failed) == 1 and failed[0].lstrip().startswith("failed")
    assert "unreadable" not in failed[0]
    assert "re-run" in failed[0]


class _NotAGateway(http.server.BaseHTTPRequestHandler):
    """Some other web server on the port: 200 and a web page to every request."""

    def log_message(self, *_args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b"<html><body>Welcome to nginx!</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_import_against_a_server_that_is_not_a_gateway_stops_with_one_message(tmp_path, capsys):
    (tmp_path / "p.jpg").write_bytes(b"data")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotAGateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    try:
        code = main(
            ["import", str(tmp_path), "--url", f"http://127.0.0.1:{server.server_port}"]
            + ["--no-progress"]
        )
    finally:
        server.shutdown()
        server.server_close()

    out, err = capsys.readouterr()
    assert code == 3
    assert "not an imagerepo gateway" in err
    assert "1 not started" in out


def test_discover_names_a_symlinked_folder_it_does_not_walk(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "far.jpg").write_bytes(b"data")
    (tmp_path / "root" / "near.jpg").write_bytes(b"data")
    (tmp_path / "root" / "linked").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "root" / "loop").symlink_to(tmp_path / "root")

    found, skipped = discover([tmp_path / "root"])

    assert [c.path.name for c in found] == ["near.jpg"]
    reasons = {Path(s.path).name: s.reason for s in skipped}
    assert set(reasons) == {"linked", "loop"}
    assert all(r.startswith("symlinked folder, not followed") for r in reasons.values())


def test_discover_skips_what_is_not_a_regular_file_saying_so(tmp_path):
    os.mkfifo(tmp_path / "pipe.jpg")

    found, skipped = discover([tmp_path])

    assert found == []
    assert skipped == [Skipped(str(tmp_path / "pipe.jpg"), "not a regular file")]


@pytest.mark.parametrize(
    ("env", "storage", "url"),
    [
        ({}, "127.0.0.1:50051", "http://127.0.0.1:8080"),
        ({"IMAGEREPO_BASE_PORT": "18400"}, "127.0.0.1:18401", "http://127.0.0.1:18400"),
        (
            {"STORAGE_PORT": "6001", "GATEWAY_PORT": "6000"},
            "127.0.0.1:6001",
            "http://127.0.0.1:6000",
        ),
        (
            {"GATEWAY_STORAGE_ADDR": "db:7000", "IMAGEREPO_URL": "http://gw:1"},
            "db:7000",
            "http://gw:1",
        ),
        ({"IMAGEREPO_BASE_PORT": "x"}, "127.0.0.1:50051", "http://127.0.0.1:8080"),
    ],
)
def test_verify_and_import_find_the_stack_where_make_run_put_it(monkeypatch, env, storage, url):
    for name in ("IMAGEREPO_BASE_PORT", "STORAGE_PORT", "GATEWAY_PORT", "GATEWAY_STORAGE_ADDR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("IMAGEREPO_URL", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    parser = build_parser()

    assert parser.parse_args(["verify"]).storage == storage
    assert parser.parse_args(["import", "photos"]).url == url
