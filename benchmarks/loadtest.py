"""`make loadtest`: the locust mix of benchmarks/locustfile.py, headless, bounded in users and
time, against a gateway on this machine only, then a table of throughput, p50/p99 per route and
errors.

With no --host it starts a throwaway stack (`python -m stack` on free ports over a temporary
data dir) and stops it afterwards; `--host http://127.0.0.1:8080` (make: LOADTEST_URL) runs
against a `make run` already up. Only loopback hosts are accepted. LOADTEST_KEY is sent as the
Bearer key when the gateway has keys. Exits non-zero when any request failed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
MAX_USERS = 50
MAX_SECONDS = 600
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _loopback(url: str) -> bool:
    host = urllib.parse.urlparse(url).hostname or ""
    return host in LOOPBACK or host.startswith("127.")


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/health", timeout=3) as reply:
            return int(reply.status) == 200
    except OSError:
        return False


def _free_base() -> int:
    for _ in range(200):
        base = random.randrange(20000, 60000, 20)
        socks = []
        try:
            for offset in (0, 1, 2, 3, 11, 12, 13):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no free block of ports for a throwaway stack")


def _start_stack(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    base = _free_base()
    env = dict(os.environ, IMAGEREPO_DATA_DIR=str(data_dir), IMAGEREPO_BASE_PORT=str(base))
    env["IMAGEREPO_LOG_FORMAT"] = "json"
    env["LOG_LEVEL"] = "WARNING"
    for name in [k for k in env if k.endswith(("_PORT", "_ADDR")) and k != "IMAGEREPO_BASE_PORT"]:
        del env[name]
    log = (data_dir / "stack.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "stack"], cwd=REPO_ROOT, env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{base}"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if _healthy(url):
            return proc, url
        time.sleep(1)
    proc.terminate()
    raise RuntimeError(f"the throwaway stack did not come up; see {data_dir / 'stack.log'}")


def _read_stats(prefix: Path) -> list[dict[str, str]]:
    with open(f"{prefix}_stats.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _print_table(rows: list[dict[str, str]], seconds: float) -> dict[str, object]:
    print(f"\n{'route':<34} {'requests':>8} {'errors':>6} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7}")
    summary: dict[str, object] = {}
    for row in rows:
        name = row["Name"] if row["Name"] != "Aggregated" else "ALL"
        label = f"{row['Type']} {name}".strip() if name != "ALL" else "ALL"
        print(
            f"{label[:34]:<34} {row['Request Count']:>8} {row['Failure Count']:>6} "
            f"{float(row['Requests/s']):>7.2f} {row['50%']:>7} {row['99%']:>7}"
        )
        summary[label] = {
            "requests": int(row["Request Count"]),
            "errors": int(row["Failure Count"]),
            "rps": round(float(row["Requests/s"]), 2),
            "p50_ms": row["50%"],
            "p99_ms": row["99%"],
        }
    print(f"(over {seconds:.0f} s)")
    return summary


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadtest", description=__doc__)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--time", type=int, default=60, help="seconds of load")
    parser.add_argument("--host", default="", help="a running gateway (loopback only)")
    parser.add_argument("--json", default="", help="also write the figures to this file")
    args = parser.parse_args(argv)
    users = max(1, min(args.users, MAX_USERS))
    seconds = max(5, min(args.time, MAX_SECONDS))

    stack: subprocess.Popen[bytes] | None = None
    workdir = Path(tempfile.mkdtemp(prefix="imagerepo-loadtest-"))
    try:
        if args.host:
            url = args.host.rstrip("/")
            if not _loopback(url):
                print(f"refusing {url}: the load test targets this machine only", file=sys.stderr)
                return 2
            if not _healthy(url):
                print(f"no healthy gateway at {url}: start it with `make run`", file=sys.stderr)
                return 2
        else:
            print("starting a throwaway stack (data in a temporary dir)...", flush=True)
            stack, url = _start_stack(workdir)
        print(f"load: {users} users for {seconds} s against {url}", flush=True)
        prefix = workdir / "locust"
        started = time.monotonic()
        subprocess.run(
            [
                str(Path(sys.executable).with_name("locust")),
                "-f",
                str(LOCUSTFILE),
                "--headless",
                "--host",
                url,
                "--users",
                str(users),
                "--spawn-rate",
                str(max(1, users // 2)),
                "--run-time",
                f"{seconds}s",
                "--stop-timeout",
                "30",
                "--csv",
                str(prefix),
                "--only-summary",
                "--loglevel",
                "WARNING",
            ],
            cwd=REPO_ROOT,
            env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
            check=False,
            timeout=seconds + 120,
            stdout=subprocess.DEVNULL,
            stderr=(workdir / "locust.log").open("wb"),
        )
        rows = _read_stats(prefix)
        summary = _print_table(rows, time.monotonic() - started)
        if args.json:
            Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
        failures = Path(f"{prefix}_failures.csv")
        errors = sum(int(r["Failure Count"]) for r in rows if r["Name"] == "Aggregated")
        if errors and failures.exists():
            print("\nerrors:\n" + failures.read_text())
        if not rows:
            print((workdir / "locust.log").read_text()[-3000:], file=sys.stderr)
            return 1
        return 1 if errors else 0
    finally:
        if stack is not None:
            stack.terminate()
            stack.wait(timeout=90)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
