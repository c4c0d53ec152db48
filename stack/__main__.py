"""`python -m stack`: start storage, vision, search and gateway; stop all on Ctrl-C.

Each service is its own process with its data under one local directory. The launcher waits
for every gRPC health check to answer SERVING and for the gateway to answer HTTP, prints where
the gallery is, and on Ctrl-C or SIGTERM sends SIGTERM to each child and waits for it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVICES = ("storage_service", "vision_service", "search_service")
STARTUP_TIMEOUT_S = 180.0


def stack_env(data_dir: Path, base: dict[str, str]) -> dict[str, str]:
    env = dict(base)
    env.setdefault("STORAGE_DATA_DIR", str(data_dir / "storage"))
    env.setdefault("SEARCH_DATA_DIR", str(data_dir / "search"))
    return env


def wait_serving(address: str, deadline: float) -> bool:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.RpcError:
                pass
            time.sleep(0.3)
    return False


def wait_http(url: str, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except OSError:
            time.sleep(0.3)
    return False


def main() -> int:
    data_dir = Path(os.environ.get("IMAGEREPO_DATA_DIR", "data")).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = stack_env(data_dir, dict(os.environ))
    procs: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def stop(_signum: int = 0, _frame: object = None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        for name in (*SERVICES, "gateway"):
            procs[name] = subprocess.Popen([sys.executable, "-m", name], env=env)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        ports = {
            "storage_service": env.get("STORAGE_PORT", "50051"),
            "vision_service": env.get("VISION_PORT", "50052"),
            "search_service": env.get("SEARCH_PORT", "50053"),
        }
        for name, port in ports.items():
            if not wait_serving(f"127.0.0.1:{port}", deadline) and not stopping:
                print(f"imagerepo: {name} did not become SERVING in time", file=sys.stderr)
                return 1
        gateway_port = env.get("GATEWAY_PORT", "8080")
        if not wait_http(f"http://127.0.0.1:{gateway_port}/api/health", deadline) and not stopping:
            print("imagerepo: the gateway did not answer in time", file=sys.stderr)
            return 1
        if not stopping:
            print(
                f"\nimagerepo is up: open http://127.0.0.1:{gateway_port}/ "
                f"(data in {data_dir}). Ctrl-C stops everything.\n",
                flush=True,
            )
        while not stopping:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    print(f"imagerepo: {name} exited with {proc.returncode}", file=sys.stderr)
                    return 1
            time.sleep(0.5)
        return 0
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in procs.items():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                print(f"imagerepo: {name} did not stop, killing it", file=sys.stderr)
                proc.kill()


if __name__ == "__main__":
    sys.exit(main())
