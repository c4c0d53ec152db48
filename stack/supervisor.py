"""Starts the services as child processes, restarts one that crashes (with backoff), and
stops them all on request.

A service that exits on its own is started again after 1 s, then 2, 4, ... up to 30 s while it
keeps crashing; the delay resets once it has stayed up for a minute. One that fails
MAX_FAILED_STARTS times in a row without ever answering its health check is given up on, and
the whole stack stops with a non-zero status (a broken install or config, not a crash). One
that exits with NOT_STARTED_EXIT before serving is given up on at once: the services exit 2
only after saying, in one line, which setting or data directory they cannot use, and
restarting cannot change that.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from stack.output import Output

FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
STABLE_AFTER_S = 60.0
MAX_FAILED_STARTS = 5
STOP_TIMEOUT_S = 20.0
# service_runtime.settings.not_started: a setting, address or data directory it cannot use.
NOT_STARTED_EXIT = 2
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Children get SIGTERM if the supervisor dies without stopping them (kill -9)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    module: str
    env: dict[str, str]
    probe: Callable[[], bool]
    # Services that must answer before this one is probed (the gateway's health check says
    # 503 until every service answers: no point asking, and logging, before).
    needs: tuple[str, ...] = ()
    proc: subprocess.Popen[str] | None = None
    started_at: float = 0.0
    serving: bool = False
    restarts: int = 0
    failed_starts: int = 0
    backoff_s: float = FIRST_BACKOFF_S
    restart_at: float | None = None
    reader: threading.Thread | None = field(default=None, repr=False)


class GaveUpError(Exception):
    """A service failed to start too many times in a row."""


class Supervisor:
    def __init__(self, children: list[Child], out: Output) -> None:
        self.children = children
        self.out = out
        self.stopping = threading.Event()

    # --- processes ------------------------------------------------------------------------------

    def _spawn(self, child: Child) -> None:
        proc = subprocess.Popen(
            [sys.executable, "-m", child.module],
            env=child.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            bufsize=1,
            start_new_session=True,  # Ctrl-C reaches the supervisor only; it stops them in order
            preexec_fn=_die_with_parent,
        )
        child.proc, child.started_at, child.serving = proc, time.monotonic(), False
        child.reader = threading.Thread(
            target=self._relay, args=(child.name, proc), name=f"relay-{child.name}", daemon=True
        )
        child.reader.start()

    def _relay(self, name: str, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.out.child_line(name, line)

    def start_all(self) -> None:
        for child in self.children:
            self._spawn(child)
            self.out.event(f"{child.name} started", pid=child.proc.pid if child.proc else None)

    # --- one pass of the watch loop ---------------------------------------------------------------

    def tick(self) -> None:
        """Notice exits, restart what is due, and report services that answer again."""
        now = time.monotonic()
        for child in self.children:
            proc = child.proc
            if child.restart_at is not None:
                if now >= child.restart_at and not self.stopping.is_set():
                    child.restart_at = None
                    child.restarts += 1
                    self._spawn(child)
                    self.out.event(
                        f"{child.name} restarted",
                        pid=child.proc.pid if child.proc else None,
                        restarts=child.restarts,
                    )
                continue
            if proc is None:
                continue
            code = proc.poll()
            if code is not None:
                self._crashed(child, code, now)
            elif not child.serving and self._ready_to_probe(child) and child.probe():
                child.serving = True
                child.failed_starts = 0
                if child.restarts:
                    self.out.event(f"{child.name} is back and serving", restarts=child.restarts)
            elif child.serving and now - child.started_at > STABLE_AFTER_S:
                child.backoff_s = FIRST_BACKOFF_S

    def _crashed(self, child: Child, code: int, now: float) -> None:
        if child.reader is not None:
            # Its last lines (why it stopped) are printed before what the launcher says of it.
            child.reader.join(timeout=2)
        if not child.serving and code == NOT_STARTED_EXIT:
            self.out.event(
                f"{child.name} did not start: a setting or its data directory cannot be used "
                "(its own line above says which); giving up",
                level="ERROR",
                exit_code=code,
            )
            raise GaveUpError(child.name)
        if not child.serving:
            child.failed_starts += 1
        if child.failed_starts >= MAX_FAILED_STARTS:
            self.out.event(
                f"{child.name} failed to start {child.failed_starts} times in a row; giving up",
                level="ERROR",
                exit_code=code,
            )
            raise GaveUpError(child.name)
        delay = child.backoff_s
        child.backoff_s = min(child.backoff_s * 2, MAX_BACKOFF_S)
        child.restart_at = now + delay
        child.proc = None
        self.out.event(
            f"{child.name} exited with {_describe(code)}; restarting in {delay:g}s",
            level="WARNING",
            exit_code=code,
        )

    def _ready_to_probe(self, child: Child) -> bool:
        serving = {c.name for c in self.children if c.serving}
        return set(child.needs) <= serving

    def all_serving(self) -> bool:
        return all(c.serving for c in self.children)

    def not_serving(self) -> list[str]:
        return [c.name for c in self.children if not c.serving]

    # --- stopping ---------------------------------------------------------------------------------

    def stop_all(self) -> None:
        """SIGTERM the gateway first and storage last, wait for each, kill what hangs."""
        self.stopping.set()
        running = [c for c in reversed(self.children) if c.proc and c.proc.poll() is None]
        for child in running:
            assert child.proc is not None
            child.proc.send_signal(signal.SIGTERM)
        for child in running:
            assert child.proc is not None
            try:
                child.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.out.event(f"{child.name} did not stop in time; killing it", level="WARNING")
                child.proc.kill()
                child.proc.wait()
        for child in self.children:
            if child.reader is not None:
                child.reader.join(timeout=2)


def _describe(code: int) -> str:
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


def pid_alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, exited but not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]
