"""`python -m stack [run]`: start storage, vision, search, the analysis worker and the gateway on
loopback, restart
any that crashes, stop all on Ctrl-C or SIGTERM. `python -m stack stop`: stop a running one.
`python -m stack init-secrets [DIR] [--tls]`: the secret files docker-compose.yml mounts.

Settings (environment): IMAGEREPO_DATA_DIR (data of every service, and the pid file),
IMAGEREPO_BASE_PORT (moves every port, see service_runtime.ports), the per-service variables
of the README (which win over the derived ones), IMAGEREPO_LOG_FORMAT (text or json; text when
the output is a terminal). Before starting anything it checks that every port it will use is
free and names the one that is not.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from service_runtime.ports import GRPC_ROLES, Ports
from service_runtime.probe import http_ok, is_serving
from service_runtime.security import SecurityConfigError, TransportSecurity
from service_runtime.settings import env_port
from stack.output import Output
from stack.supervisor import Child, GaveUpError, Supervisor, pid_alive

MODULES = {
    "storage": "storage_service",
    "vision": "vision_service",
    "search": "search_service",
    "analysis": "analysis_service",
    "gateway": "gateway",
}
# The analysis worker's health port (base port + 4, like the others; its metrics on + 10).
ANALYSIS_DEFAULT_PORT = 50054
ANALYSIS_BASE_OFFSET = 4
STARTUP_TIMEOUT_S = 180.0
PID_FILE = "stack.pid"


def stack_env(data_dir: Path, base: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """The environment of each service: one set of ports and addresses for all, derived from
    IMAGEREPO_BASE_PORT unless set explicitly, data under `data_dir`, and each gRPC service's
    own metrics port."""
    ports = Ports.from_env(base)
    shared = dict(base)
    shared.setdefault("STORAGE_DATA_DIR", str(data_dir / "storage"))
    shared.setdefault("SEARCH_DATA_DIR", str(data_dir / "search"))
    shared.setdefault("GATEWAY_DATA_DIR", str(data_dir / "gateway"))
    for role, port in ports.ports.items():
        shared[f"{role.upper()}_PORT"] = str(port)
    shared.update(ports.addresses(base))
    analysis_port, analysis_metrics = _analysis_ports(base)
    shared["ANALYSIS_PORT"] = str(analysis_port)
    shared.setdefault("ANALYSIS_STORAGE_ADDR", ports.dial("storage", base))
    shared.setdefault("ANALYSIS_VISION_ADDR", ports.dial("vision", base))
    envs = {}
    for role in MODULES:
        env = dict(shared)
        if role in GRPC_ROLES:
            env["IMAGEREPO_METRICS_PORT"] = str(ports.metrics[role])
        elif role == "analysis":
            env["IMAGEREPO_METRICS_PORT"] = str(analysis_metrics)
        envs[role] = env
    return envs


def _analysis_ports(env: Mapping[str, str]) -> tuple[int, int]:
    """(health port, metrics port) of the analysis worker: ANALYSIS_PORT, else base + 4, else
    50054; metrics ANALYSIS_METRICS_PORT, else its port + 10."""
    base = env_port(env, "IMAGEREPO_BASE_PORT")
    port = env_port(env, "ANALYSIS_PORT") or (
        base + ANALYSIS_BASE_OFFSET if base is not None else ANALYSIS_DEFAULT_PORT
    )
    return port, env_port(env, "ANALYSIS_METRICS_PORT") or port + 10


def listen_ports(envs: Mapping[str, Mapping[str, str]]) -> list[tuple[str, str, int]]:
    """(what, host, port) of every socket the stack will listen on."""
    found = []
    for role, env in envs.items():
        host = env.get(f"{role.upper()}_HOST", "127.0.0.1")
        found.append((role, host, int(env[f"{role.upper()}_PORT"])))
        if "IMAGEREPO_METRICS_PORT" in env:
            metrics_host = env.get("IMAGEREPO_METRICS_HOST", "127.0.0.1")
            found.append((f"{role} metrics", metrics_host, int(env["IMAGEREPO_METRICS_PORT"])))
    return found


def port_in_use(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # The servers set SO_REUSEADDR too: a port held only by TIME_WAIT connections is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def _probe(role: str, env: Mapping[str, str], security: TransportSecurity):  # type: ignore[no-untyped-def]
    if role == "gateway":
        host = env.get("GATEWAY_HOST", "127.0.0.1")
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        url = f"http://{host}:{env['GATEWAY_PORT']}/api/health"
        return lambda: http_ok(url, timeout_s=2.0)
    if role == "analysis":
        worker = f"127.0.0.1:{env['ANALYSIS_PORT']}"
        return lambda: is_serving(worker, timeout_s=1.0, security=security)
    # What the gateway dials is what must answer.
    address = env[f"GATEWAY_{role.upper()}_ADDR"]
    return lambda: is_serving(address, timeout_s=1.0, security=security)


def run(env: Mapping[str, str], out: Output) -> int:
    data_dir = Path(env.get("IMAGEREPO_DATA_DIR", "data")).resolve()
    try:
        envs = stack_env(data_dir, env)
        security = TransportSecurity.from_env(env)
    except (ValueError, SecurityConfigError) as exc:
        out.event(f"bad setting: {exc}", level="ERROR")
        return 2
    pid_file = data_dir / PID_FILE
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        # Written and removed again: a directory the services could not write either is
        # named here, once, not by each of them failing to start five times.
        pid_file.with_suffix(".check").write_text("")
        pid_file.with_suffix(".check").unlink()
    except OSError as exc:
        out.event(
            f"cannot use the data dir {data_dir}: {exc.strerror or exc} (IMAGEREPO_DATA_DIR "
            "chooses it)",
            level="ERROR",
        )
        return 2
    busy = [(w, host, port) for w, host, port in listen_ports(envs) if port_in_use(host, port)]
    if busy:
        for what, host, port in busy:
            out.event(
                f"port {port} ({what}) on {host} is in use: stop what holds it, or move every "
                "port with IMAGEREPO_BASE_PORT",
                level="ERROR",
                port=port,
            )
        return 1
    other = running_pid(pid_file)
    if other is not None:
        out.event(f"imagerepo already runs from {data_dir} (pid {other})", level="ERROR")
        return 1
    write_pid_file(pid_file, os.getpid())

    children = [
        Child(
            role,
            module,
            envs[role],
            _probe(role, envs[role], security),
            needs=GRPC_ROLES if role == "gateway" else (),
        )
        for role, module in MODULES.items()
    ]
    supervisor = Supervisor(children, out)

    def request_stop(signum: int, _frame: object) -> None:
        supervisor.stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        supervisor.start_all()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        announced = False
        while not supervisor.stopping.is_set():
            supervisor.tick()
            if not announced and supervisor.all_serving():
                announced = True
                url = f"http://127.0.0.1:{envs['gateway']['GATEWAY_PORT']}/"
                out.event(
                    f"imagerepo is up: open {url} (data in {data_dir}). Ctrl-C stops everything.",
                    url=url,
                )
            if not announced and time.monotonic() > deadline:
                late = ", ".join(supervisor.not_serving())
                out.event(f"not serving after {STARTUP_TIMEOUT_S:g}s: {late}", level="ERROR")
                return 1
            supervisor.stopping.wait(0.5)
        return 0
    except GaveUpError:
        return 1
    finally:
        out.event("stopping")
        supervisor.stop_all()
        pid_file.unlink(missing_ok=True)
        out.event("stopped")


def write_pid_file(pid_file: Path, pid: int) -> None:
    """`pid` and its process's start time: a pid alone is reused once its process is gone."""
    start = _process_start(pid)
    pid_file.write_text(f"{pid} {start}\n" if start is not None else f"{pid}\n")


def running_pid(pid_file: Path) -> int | None:
    """The pid of the launcher that wrote `pid_file`, if it still runs.

    A launcher killed with -9, or a reboot, leaves the file behind, and its pid may since have
    gone to another process: that one is neither refused as a second launcher nor sent SIGTERM
    by `stop`. The start time written beside the pid tells them apart (a file without one is
    believed only while the pid runs `-m stack`)."""
    try:
        fields = pid_file.read_text().split()
        pid = int(fields[0])
        start = fields[1] if len(fields) > 1 else None
    except (OSError, ValueError, IndexError):
        return None
    if pid == os.getpid() or not pid_alive(pid):
        return None
    if start is not None:
        actual = _process_start(pid)
        return pid if actual is None or actual == start else None
    return pid if _runs_stack(pid) else None


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22), or
    None where /proc is not there."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # Fields after the command name, which is in parentheses and may hold spaces: state is
    # field 3, so field 22 is the 20th of these.
    after_name = stat.rpartition(")")[2].split()
    return after_name[19] if len(after_name) > 19 else None


def _runs_stack(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc: the pid alone, as before
    return any(a == b"-m" and b == b"stack" for a, b in zip(argv, argv[1:], strict=False))


def stop(env: Mapping[str, str], out: Output, timeout_s: float = 60.0) -> int:
    """SIGTERM the supervisor whose pid file is in the data dir and wait for it to finish."""
    data_dir = Path(env.get("IMAGEREPO_DATA_DIR", "data")).resolve()
    pid = running_pid(data_dir / PID_FILE)
    if pid is None:
        out.event(f"imagerepo is not running from {data_dir}")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if pid_alive(pid):
        out.event(f"imagerepo (pid {pid}) did not stop within {timeout_s:g}s", level="ERROR")
        return 1
    out.event(f"imagerepo stopped (pid {pid})")
    return 0


def main(argv: list[str]) -> int:
    out = Output(fmt=os.environ.get("IMAGEREPO_LOG_FORMAT", ""))
    command = argv[0] if argv else "run"
    if command == "run":
        return run(os.environ, out)
    if command == "stop":
        return stop(os.environ, out)
    if command == "init-secrets":
        from stack.secrets import main as init_secrets

        return init_secrets(argv[1:])
    print("usage: python -m stack [run | stop | init-secrets [DIR] [--tls]]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
