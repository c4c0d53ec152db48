"""`make loadtest` stays on this machine and says when there is nothing to load."""

from __future__ import annotations

from benchmarks.loadtest import main
from tests.support import free_port


def test_the_load_test_refuses_hosts_other_than_loopback(capsys):
    assert main(["--host", "http://192.0.2.10:8080", "--time", "5"]) == 2
    assert "this machine only" in capsys.readouterr().err


def test_the_load_test_says_when_no_gateway_answers(capsys):
    assert main(["--host", f"http://127.0.0.1:{free_port()}", "--time", "5"]) == 2
    assert "make run" in capsys.readouterr().err
