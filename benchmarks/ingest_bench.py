"""Ingest benchmark: PutImage over gRPC with 8 clients, thumbnails made the old way and the new.

A real storage server runs as a child process (`python -m storage_service` with its thumbnail
settings chosen by `thumbnails.SETTINGS`: `LEGACY` is the put path before issue 13's cheaper
puts, `FAST` today's) over a fresh data directory; 8 client threads upload real photos from
scikit-image / scikit-learn, re-encoded at web-like sizes (the storage benchmark's set: crops
rescaled up to 2x, JPEG q80-95, ~65 KB) and at camera-like sizes (12 Mpx, ~2.6 MB). Every put
is durable and fully checked (keep_duplicate, so none takes the already-stored fast path).

Printed, per setting: images/s, the server's CPU ms per put (from /proc), the clients' CPU ms per
put (this process), and the ratio new/old; then in this process: prepare_image CPU ms per image
(decode + checks + thumbnails) and the part of it the WebP encoder takes, thumbnail bytes over
raw image bytes (the thumbnails' share of the on-disk size) and the thumbnails' SSIM against a
full-resolution Lanczos reference, for the settings measured to choose the defaults.

`python -m benchmarks ingest` (or `make bench PART=ingest`); INGEST_IMAGES, INGEST_ROUNDS and
INGEST_CLIENTS change the sizes.
"""

from __future__ import annotations

import dataclasses
import io
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
from PIL import Image

from imagerepo.storage.v1 import storage_service_pb2 as storage_pb
from imagerepo.storage.v1 import storage_service_pb2_grpc as storage_grpc
from service_runtime.grpc_server import channel_options
from service_runtime.probe import is_serving
from storage_service.columnstore import thumbnails
from storage_service.columnstore.image_check import prepare_image
from tests.support import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
WEB_IMAGES = int(os.environ.get("INGEST_IMAGES", "600"))
CAMERA_IMAGES = 16
ROUNDS = int(os.environ.get("INGEST_ROUNDS", "2"))
CLIENTS = int(os.environ.get("INGEST_CLIENTS", "8"))
CHUNK_BYTES = 256 * 1024
TICKS = os.sysconf("SC_CLK_TCK")

# The server, with the thumbnail settings named by argv[1] (thumbnails.LEGACY or .FAST).
_SERVER = (
    "import sys\n"
    "from storage_service.columnstore import thumbnails\n"
    "thumbnails.SETTINGS = getattr(thumbnails, sys.argv[1])\n"
    "from storage_service.__main__ import main\n"
    "main()\n"
)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class Server:
    def __init__(self, data_dir: Path, settings_name: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER, settings_name],
            cwd=REPO_ROOT,
            env={
                **os.environ,
                "LOG_LEVEL": "WARNING",
                "STORAGE_PORT": str(self.port),
                "STORAGE_DATA_DIR": str(data_dir),
                "STORAGE_MAX_WORKERS": str(max(16, CLIENTS * 2)),
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while not is_serving(f"127.0.0.1:{self.port}", timeout_s=1.0):
            if self.proc.poll() is not None:
                raise RuntimeError(f"storage exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("storage did not come up in time")
            time.sleep(0.2)

    def cpu_s(self) -> float:
        return _cpu_s(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _requests(name: str, data: bytes) -> Iterator[storage_pb.PutImageRequest]:
    header = storage_pb.PutImageHeader(
        filename=name, owner="bench", expected_size=len(data), keep_duplicate=True
    )
    yield storage_pb.PutImageRequest(header=header)
    for start in range(0, len(data), CHUNK_BYTES):
        yield storage_pb.PutImageRequest(chunk=data[start : start + CHUNK_BYTES])


@dataclasses.dataclass
class Run:
    images: int
    wall_s: float
    server_cpu_s: float
    client_cpu_s: float

    @property
    def rate(self) -> float:
        return self.images / self.wall_s

    @property
    def server_ms(self) -> float:
        return self.server_cpu_s / self.images * 1e3

    @property
    def client_ms(self) -> float:
        return self.client_cpu_s / self.images * 1e3


def ingest(settings_name: str, photos: list[bytes], work: Path) -> Run:
    """Every photo put once by CLIENTS threads sharing one channel, into a fresh store."""
    server = Server(work / f"store-{settings_name}-{time.monotonic_ns()}", settings_name)
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}", options=channel_options())
        stub = storage_grpc.StorageServiceStub(channel)
        # One warm-up put (imports, first segment) outside the measurement.
        stub.PutImage(_requests("warm-up.jpg", photos[0]), timeout=120)
        next_index = iter(range(len(photos)))
        lock = threading.Lock()
        errors: list[BaseException] = []

        def client() -> None:
            while True:
                with lock:
                    i = next(next_index, None)
                if i is None:
                    return
                try:
                    stub.PutImage(_requests(f"photo-{i}.jpg", photos[i]), timeout=120)
                except grpc.RpcError as e:  # pragma: no cover - reported, not hidden
                    errors.append(e)
                    return

        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        cpu0, server0, t0 = time.process_time(), server.cpu_s(), time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        run = Run(len(photos), wall, server.cpu_s() - server0, time.process_time() - cpu0)
        channel.close()
        if errors:
            raise RuntimeError(f"{len(errors)} puts failed, first: {errors[0]}")
        return run
    finally:
        server.stop()


def _best(runs: list[Run]) -> Run:
    return max(runs, key=lambda r: r.rate)


def grpc_table(label: str, photos: list[bytes], work: Path, rounds: int) -> None:
    runs: dict[str, list[Run]] = {"LEGACY": [], "FAST": []}
    for _ in range(rounds):
        for name in runs:  # interleaved, so load from elsewhere hits both alike
            runs[name].append(ingest(name, photos, work))
    old, new = _best(runs["LEGACY"]), _best(runs["FAST"])
    print(
        f"\n{label}: {len(photos)} photos, {sum(map(len, photos)) / len(photos) / 1e3:.0f} KB "
        f"on average, {CLIENTS} clients, best of {rounds}"
    )
    print(f"{'':24s} {'img/s':>8s} {'server CPU ms/put':>18s} {'client CPU ms/put':>18s}")
    for name, run in (("before (LEGACY)", old), ("after (FAST)", new)):
        print(f"{name:24s} {run.rate:8.1f} {run.server_ms:18.2f} {run.client_ms:18.2f}")
    print(
        f"{'after / before':24s} {new.rate / old.rate:7.2f}x {new.server_ms / old.server_ms:17.2f}x"
        f" {new.client_ms / old.client_ms:17.2f}x"
    )
    all_rates = {k: [round(r.rate) for r in v] for k, v in runs.items()}
    print(f"every round's img/s: {all_rates}")


# --- in-process: CPU per prepare_image, thumbnail bytes, thumbnail quality ----------------------


def _reference(data: bytes) -> np.ndarray:
    """The small thumbnail as a full-resolution decode + Lanczos would make it (unencoded)."""
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        ref = im.convert("RGB")
    ref.thumbnail((thumbnails.SMALL_PX, thumbnails.SMALL_PX), Image.Resampling.LANCZOS, None)
    return np.asarray(ref)


def _ssim(thumb: bytes, ref: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    with Image.open(io.BytesIO(thumb)) as im:
        got = np.asarray(im.convert("RGB"))
    return float(structural_similarity(got, ref, channel_axis=2, data_range=255))


@dataclasses.dataclass
class Prepared:
    cpu_ms: float
    encode_ms: float
    thumb_ratio: float
    ssim_mean: float
    ssim_min: float


def measure_settings(
    settings: thumbnails.ThumbnailSettings,
    photos: list[bytes],
    refs: list[np.ndarray] | None,
) -> Prepared:
    saved = thumbnails.SETTINGS
    thumbnails.SETTINGS = settings
    try:
        prepare_image(photos[0])
        encode_s = 0.0
        real_encode = thumbnails._encode

        def timed_encode(image: Image.Image, s: thumbnails.ThumbnailSettings) -> bytes:
            nonlocal encode_s
            t = time.process_time()
            try:
                return real_encode(image, s)
            finally:
                encode_s += time.process_time() - t

        thumbnails._encode = timed_encode  # type: ignore[assignment]
        try:
            t0 = time.process_time()
            out = [prepare_image(d) for d in photos]
            cpu = time.process_time() - t0
        finally:
            thumbnails._encode = real_encode  # type: ignore[assignment]
    finally:
        thumbnails.SETTINGS = saved
    thumb_bytes = sum(len(p.thumb_small) + len(p.thumb_preview) for p in out)
    scores = [_ssim(p.thumb_small, r) for p, r in zip(out, refs or [], strict=False)]
    scores = scores or [float("nan")]
    return Prepared(
        cpu / len(photos) * 1e3,
        encode_s / len(photos) * 1e3,
        thumb_bytes / sum(map(len, photos)),
        statistics.fmean(scores),
        min(scores),
    )


def settings_table(web: list[bytes], camera: list[bytes]) -> None:
    fast = thumbnails.FAST
    candidates = [
        thumbnails.LEGACY,
        fast,
        dataclasses.replace(fast, name="fast, WebP method 0", webp_method=0),
        dataclasses.replace(fast, name="fast, WebP method 4", webp_method=4),
        dataclasses.replace(fast, name="fast, Lanczos", resample=Image.Resampling.LANCZOS),
        dataclasses.replace(fast, name="fast, decode to 1x small", small_decode_gap=1.0),
        dataclasses.replace(fast, name="fast, WebP q70", webp_quality=70),
    ]
    refs = [_reference(d) for d in web]
    print(
        "\nprepare_image in this process (decode, checks, EXIF, thumbnails); SSIM of the small "
        "thumbnail against a full-resolution Lanczos reference"
    )
    print(
        f"{'settings':28s} {'web ms':>7s} {'encode':>7s} {'thumbs/raw':>10s} {'SSIM mean':>9s}"
        f" {'min':>6s}   {'camera ms':>9s} {'thumbs/raw':>10s}"
    )
    for s in candidates:
        w = measure_settings(s, web, refs)
        c = measure_settings(s, camera, None) if s in (thumbnails.LEGACY, fast) else None
        cam = f"{c.cpu_ms:9.1f} {c.thumb_ratio:10.4f}" if c else ""
        print(
            f"{s.name:28s} {w.cpu_ms:7.2f} {w.encode_ms:7.2f} {w.thumb_ratio:10.4f} "
            f"{w.ssim_mean:9.4f} {w.ssim_min:6.4f}   {cam}"
        )


def encoder_table(web: list[bytes]) -> None:
    """The small thumbnails (made once, unencoded) encoded as WebP and as JPEG: bytes, encode
    CPU and SSIM against the full-resolution Lanczos reference."""
    refs = [_reference(d) for d in web]
    images = [Image.fromarray(r) for r in refs]
    rows: list[tuple[str, str, dict[str, object]]] = [
        ("WebP q80 method 0", "WEBP", {"quality": 80, "method": 0}),
        ("WebP q80 method 2 (used)", "WEBP", {"quality": 80, "method": 2}),
        ("WebP q80 method 4 (legacy)", "WEBP", {"quality": 80, "method": 4}),
        ("WebP q80 method 6", "WEBP", {"quality": 80, "method": 6}),
        ("JPEG q80 optimized", "JPEG", {"quality": 80, "optimize": True}),
        ("JPEG q85 optimized", "JPEG", {"quality": 85, "optimize": True}),
        ("JPEG q90 optimized", "JPEG", {"quality": 90, "optimize": True}),
    ]
    print("\nsmall thumbnails encoded (the same pixels for every row)")
    print(f"{'encoder':28s} {'KB':>6s} {'encode ms':>9s} {'SSIM mean':>9s} {'min':>6s}")
    for label, fmt, options in rows:
        out = []
        t0 = time.process_time()
        for image in images:
            buf = io.BytesIO()
            image.save(buf, fmt, **options)
            out.append(buf.getvalue())
        ms = (time.process_time() - t0) / len(images) * 1e3
        scores = [_ssim(o, r) for o, r in zip(out, refs, strict=True)]
        kb = statistics.fmean(len(o) for o in out) / 1e3
        print(f"{label:28s} {kb:6.2f} {ms:9.2f} {statistics.fmean(scores):9.4f} {min(scores):6.4f}")


def main() -> None:
    from benchmarks.storage_bench import make_camera_images, make_images

    web = make_images(WEB_IMAGES)
    camera = make_camera_images(CAMERA_IMAGES)
    settings_table(web[:120], camera[:6])
    encoder_table(web[:120])
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        work = Path(tmp)
        grpc_table("web-sized photos over gRPC", web, work, ROUNDS)
        grpc_table("camera-sized photos over gRPC", camera, work, 1)
    print(
        "\nserver CPU per put minus prepare_image's is gRPC, the servicer and the store; the "
        "clients run on the same 2 cores, so img/s <= cores / (server + client CPU per put)."
    )


if __name__ == "__main__":
    main()
