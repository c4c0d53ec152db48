"""Ingest benchmark (issue 13: cheaper puts, smaller on disk): PutImage over gRPC with 8 clients,
against the previous put paths and a SQLite-backed server, and on-disk bytes over raw bytes.

Photo sets, all real photos re-encoded (scikit-image, scikit-learn, and Debian's MATE
wallpapers when installed): the storage benchmark's web-sized set (crops rescaled up to 2x,
JPEG q80-95, ~70 KB), a web-sized set spread over 40-300 KB (long side 800-2048 px), and
camera-sized 12 Mpx photos (~2.6 MB).

Printed:
1. prepare_image in this process (decode, checks, EXIF, thumbnails) per thumbnail setting:
   CPU ms per image, thumbnail bytes over raw bytes, the small thumbnail's SSIM against a
   full-resolution Lanczos reference; and small thumbnails encoded as WebP and JPEG.
2. Feature vectors: recall@10 of float16 and int8 copies of real photo vectors (the vision
   service's EfficientNet-Lite0) against float32, and their bytes after zstd.
3. On-disk bytes over raw image bytes per set: the column store before issue 13 (LEGACY
   thumbnails, float32 vectors), today (SETTINGS, float16) and SQLite (today's thumbnails,
   float32 vectors), each image annotated with a real photo's vector.
4. PutImage over gRPC, a real server process per run and 8 client threads, interleaved rounds:
   images/s until the last ack and until the last thumbnail, the server's CPU ms per put
   (from /proc) to the last ack and in all, the clients' CPU ms per put, the seconds the
   thumbnails took after the last ack; for the column store with thumbnails made before the
   ack (LEGACY, CHEAP, BUDGET), after it by the previous thumbnailer (one row and fsync per
   image, no pause while puts arrive) and by today's (batches when catching up, one image
   and a pause while puts arrive), and a SQLite-backed PutImage server with today's checks
   and thumbnails; for web photos, 40-300 KB photos and camera photos. Every put is durable
   and fully checked (keep_duplicate). The load average beside each row: wall-clock rates
   on a shared machine depend on it, CPU per put much less.

`python -m benchmarks ingest` (or `make bench PART=ingest`); INGEST_IMAGES, INGEST_ROUNDS and
INGEST_CLIENTS change the sizes, INGEST_PARTS (settings,vectors,disk,grpc) the tables printed.
"""

from __future__ import annotations

import dataclasses
import glob
import io
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import zstandard
from PIL import Image

from imagerepo.storage.v1 import storage_service_pb2 as storage_pb
from imagerepo.storage.v1 import storage_service_pb2_grpc as storage_grpc
from service_runtime.grpc_server import channel_options
from service_runtime.probe import is_serving
from storage_service.columnstore import thumbnails, vectors
from storage_service.columnstore.image_check import prepare_image
from storage_service.columnstore.model import AnnotationUpdate, PreparedImage
from tests.support import free_port, real_photo_paths

REPO_ROOT = Path(__file__).resolve().parent.parent
WEB_IMAGES = int(os.environ.get("INGEST_IMAGES", "600"))
RANGE_IMAGES = 120
CAMERA_IMAGES = 16
ROUNDS = int(os.environ.get("INGEST_ROUNDS", "2"))
CLIENTS = int(os.environ.get("INGEST_CLIENTS", "8"))
# Which tables to print (all by default): settings, vectors, disk, grpc.
PARTS = frozenset(os.environ.get("INGEST_PARTS", "settings,vectors,disk,grpc").split(","))
CHUNK_BYTES = 256 * 1024
TICKS = os.sysconf("SC_CLK_TCK")
SEED = 11
WALLPAPERS = "/usr/share/backgrounds/mate/*/*.jpg"

# A server process: argv[1] is the store ("ours" or "sqlite"), argv[2] the thumbnail settings'
# name in storage_service.columnstore.thumbnails, argv[3] "after" (thumbnails made after the
# ack, by the background thumbnailer) or "before" (the previous path: made before the ack);
# "after:N" sets the thumbnailer's batch (N images per fsync; 1 was the path before batches),
# "after:N:M:S" also its workers' nice and their pause while puts arrive (S seconds).
_SERVER = (
    "import sys\n"
    "from storage_service.columnstore import image_check, thumbnailer, thumbnails\n"
    "thumbnails.SETTINGS = getattr(thumbnails, sys.argv[2])\n"
    "when, batch, nice, pause = (sys.argv[3] + ':::').split(':')[:4]\n"
    "image_check.DEFER_THUMBNAILS = when == 'after'\n"
    "thumbnailer.BATCH_SIZE = int(batch or thumbnailer.BATCH_SIZE)\n"
    "thumbnailer.WORKER_NICE = int(nice or thumbnailer.WORKER_NICE)\n"
    "thumbnailer.FOREGROUND_YIELD_S = float(pause or thumbnailer.FOREGROUND_YIELD_S)\n"
    "if sys.argv[1] == 'sqlite':\n"
    "    from benchmarks.ingest_bench import serve_sqlite\n"
    "    serve_sqlite()\n"
    "else:\n"
    "    from storage_service.__main__ import main\n"
    "    main()\n"
)


# --- photo sets ----------------------------------------------------------------------------------


def make_web_range(count: int) -> list[bytes]:
    """Web-sized JPEGs spread over 40-300 KB: real photos at a long side of 800-2048 px, JPEG
    q80-92 (Debian's wallpapers are real camera photos; the scikit photos are upscaled)."""
    rng = random.Random(SEED)
    paths = [*real_photo_paths().values(), *map(Path, sorted(glob.glob(WALLPAPERS)))]
    bases = []
    for path in paths:
        with Image.open(path) as im:
            im.draft("RGB", (2048, 2048))
            bases.append(im.convert("RGB"))
    out: list[bytes] = []
    attempts = 0
    while len(out) < count and attempts < count * 20:
        attempts += 1
        base = bases[attempts % len(bases)]
        side = rng.choice([800, 1024, 1280, 1600, 2048])
        w, h = base.size
        crop = base.crop((rng.randrange(0, w // 10 + 1), rng.randrange(0, h // 10 + 1), w, h))
        scale = side / max(crop.size)
        resized = crop.resize(
            (max(1, round(crop.width * scale)), max(1, round(crop.height * scale))),
            Image.Resampling.BICUBIC,
        )
        buf = io.BytesIO()
        resized.save(buf, "JPEG", quality=rng.randrange(80, 93))
        if 40_000 <= buf.tell() <= 300_000:
            out.append(buf.getvalue())
    return out


def _kb(photos: list[bytes]) -> float:
    return sum(map(len, photos)) / len(photos) / 1e3


# --- gRPC ----------------------------------------------------------------------------------------


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class Server:
    """A storage server process over a fresh data directory."""

    def __init__(self, data_dir: Path, kind: str, settings_name: str, when: str) -> None:
        self.port = free_port()
        self.metrics_port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER, kind, settings_name, when],
            cwd=REPO_ROOT,
            env={
                **os.environ,
                "LOG_LEVEL": "WARNING",
                "STORAGE_PORT": str(self.port),
                "STORAGE_DATA_DIR": str(data_dir),
                "STORAGE_MAX_WORKERS": str(max(16, CLIENTS * 2)),
                "IMAGEREPO_METRICS_PORT": str(self.metrics_port),
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

    def thumbnails_left(self) -> float:
        """Puts whose thumbnails are not made yet, plus feed changes not read (from /metrics)."""
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics") as reply:
            text = reply.read().decode()
        left = 0.0
        for line in text.splitlines():
            if line.startswith(("storage_thumbnails_backlog ", "storage_thumbnails_feed_lag ")):
                left += float(line.split()[1])
        return left

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class SqlitePutServicer(storage_grpc.StorageServiceServicer):
    """PutImage only, over the storage benchmark's SQLite table: the same checks and thumbnails
    (prepare_image), then one committed, fsynced transaction per image."""

    def __init__(self, store: object) -> None:
        self._store = store

    def PutImage(  # noqa: N802 - the gRPC method's name
        self, request_iterator: Iterable[storage_pb.PutImageRequest], context: grpc.ServicerContext
    ) -> storage_pb.PutImageResponse:
        messages = iter(request_iterator)
        first = next(messages, None)
        if first is None or first.WhichOneof("part") != "header":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message must be a header")
        assert first is not None
        header = first.header
        data = bytearray()
        for message in messages:
            data += message.chunk
        image = prepare_image(bytes(data))
        image_id = self._store.put(header.filename, header.owner, image)  # type: ignore[attr-defined]
        return storage_pb.PutImageResponse(
            image=storage_pb.ImageMetadata(
                id=image_id, filename=header.filename, byte_size=len(data), sha256=image.sha256
            )
        )


def serve_sqlite() -> None:
    """The SQLite-backed PutImage server (run in a child process by `Server`)."""
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    from benchmarks.storage_bench import SqliteStore

    data_dir = Path(os.environ["STORAGE_DATA_DIR"])
    data_dir.mkdir(parents=True, exist_ok=True)
    store = SqliteStore(data_dir / "images.db")
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=int(os.environ["STORAGE_MAX_WORKERS"])),
        options=channel_options(),
    )
    storage_grpc.add_StorageServiceServicer_to_server(SqlitePutServicer(store), server)
    health_servicer = health.HealthServicer()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_insecure_port(f"127.0.0.1:{os.environ['STORAGE_PORT']}")
    server.start()
    server.wait_for_termination()


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
    # Until the last put was acknowledged, and until every thumbnail was made (the same when
    # they are made before the ack).
    wall_s: float
    done_s: float
    server_cpu_s: float
    client_cpu_s: float
    load: float
    # The server's CPU until the last ack (the thumbnailer runs beside the puts, at low priority).
    ack_cpu_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.images / self.wall_s

    @property
    def sustained(self) -> float:
        return self.images / self.done_s

    @property
    def server_ms(self) -> float:
        return self.server_cpu_s / self.images * 1e3

    @property
    def ack_ms(self) -> float:
        return self.ack_cpu_s / self.images * 1e3

    @property
    def client_ms(self) -> float:
        return self.client_cpu_s / self.images * 1e3


def ingest(kind: str, settings_name: str, when: str, photos: list[bytes], work: Path) -> Run:
    """Every photo put once by CLIENTS threads sharing one channel, into a fresh store; with
    thumbnails made after the ack, timed on until the last one is made."""
    data_dir = work / f"{kind}-{settings_name}-{time.monotonic_ns()}"
    server = Server(data_dir, kind, settings_name, when)
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}", options=channel_options())
        stub = storage_grpc.StorageServiceStub(channel)
        # One warm-up put (imports, first segment) outside the measurement.
        stub.PutImage(_requests("warm-up.jpg", photos[0]), timeout=120)
        if when.startswith("after"):
            while server.thumbnails_left():
                time.sleep(0.01)
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
        ack_cpu = server.cpu_s() - server0
        client_cpu = time.process_time() - cpu0
        if when.startswith("after"):
            # Every 50 ms: a scrape of /metrics costs the server ~1.2 ms of CPU.
            while server.thumbnails_left():
                time.sleep(0.05)
        done = time.perf_counter() - t0
        run = Run(
            len(photos),
            wall,
            done,
            server.cpu_s() - server0,
            client_cpu,
            os.getloadavg()[0],
            ack_cpu,
        )
        channel.close()
        if errors:
            raise RuntimeError(f"{len(errors)} puts failed, first: {errors[0]}")
        return run
    finally:
        server.stop()


# (label, store, thumbnail settings, thumbnails made "before" or "after" the ack) measured
# over gRPC; the first is the baseline.
GRPC_RUNS = [
    ("LEGACY, before the ack", "ours", "LEGACY", "before"),
    ("CHEAP, before (previous)", "ours", "CHEAP", "before"),
    ("BUDGET, before the ack", "ours", "BUDGET", "before"),
    ("BUDGET, after, previous thumbnailer", "ours", "BUDGET", "after:1:10:0"),
    ("SETTINGS, after the ack (used)", "ours", "SETTINGS", "after"),
    ("SQLite, CHEAP, before", "sqlite", "CHEAP", "before"),
]


def grpc_table(
    label: str,
    photos: list[bytes],
    work: Path,
    rounds: int,
    runs_wanted: list[tuple[str, str, str, str]] = GRPC_RUNS,
) -> None:
    runs: dict[str, list[Run]] = {name: [] for name, _, _, _ in runs_wanted}
    for _ in range(rounds):
        for name, kind, settings_name, when in runs_wanted:  # interleaved: load hits all alike
            runs[name].append(ingest(kind, settings_name, when, photos, work))
    print(
        f"\n{label}: {len(photos)} photos, {_kb(photos):.0f} KB on average, {CLIENTS} clients, "
        f"best of {rounds} (load average while running: "
        f"{min(r.load for v in runs.values() for r in v):.1f}-"
        f"{max(r.load for v in runs.values() for r in v):.1f})"
    )
    print(
        "acks/s: until the last put is acknowledged; all thumbs/s: until every thumbnail is "
        "made too (sustained); server CPU per put: until the last ack, and in all (thumbnails "
        "included); CPU-bound: what 2 idle cores would reach at the total CPU per put (server + "
        "clients), ack-bound: at the CPU spent before the acks"
    )
    print(
        f"{'':30s} {'acks/s':>7s} {'all thumbs/s':>12s} {'srv ms to ack':>13s}"
        f" {'srv ms all':>10s} {'client ms':>9s} {'CPU-bound/s':>11s} {'ack-bound/s':>11s}"
        f" {'catch-up s':>10s} {'load':>5s}"
    )
    for name in runs:
        best = max(runs[name], key=lambda r: r.sustained)
        bound = 2 * 1e3 / (best.server_ms + best.client_ms)
        ack_bound = 2 * 1e3 / (best.ack_ms + best.client_ms)
        print(
            f"{name:30s} {best.rate:7.1f} {best.sustained:12.1f} {best.ack_ms:13.2f}"
            f" {best.server_ms:10.2f} {best.client_ms:9.2f} {bound:11.0f} {ack_bound:11.0f}"
            f" {best.done_s - best.wall_s:10.2f} {best.load:5.1f}"
        )
    rates = {k: [(round(r.rate), round(r.sustained)) for r in v] for k, v in runs.items()}
    print(f"every round's (acks/s, all thumbs/s): {rates}")


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
    previews: int


def prepare_all(settings: thumbnails.ThumbnailSettings, photos: list[bytes]) -> list[PreparedImage]:
    saved = thumbnails.SETTINGS
    thumbnails.SETTINGS = settings
    try:
        return [prepare_image(d) for d in photos]
    finally:
        thumbnails.SETTINGS = saved


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

        def timed_encode(
            image: Image.Image, s: thumbnails.ThumbnailSettings, fmt: str = "WEBP"
        ) -> bytes:
            nonlocal encode_s
            t = time.process_time()
            try:
                return real_encode(image, s, fmt)
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
        sum(1 for p in out if p.thumb_preview),
    )


def settings_table(web: list[bytes], web_range: list[bytes], camera: list[bytes]) -> None:
    cheap = thumbnails.CHEAP
    candidates = [
        thumbnails.LEGACY,
        thumbnails.FAST,
        cheap,
        thumbnails.CHEAP_JPEG,
        thumbnails.BUDGET,
        dataclasses.replace(thumbnails.BUDGET, name="budget, reduce to 1.5x", reducing_gap=1.5),
        dataclasses.replace(
            thumbnails.BUDGET, name="budget, decode to 1x small", small_decode_gap=1.0
        ),
        dataclasses.replace(cheap, name="cheap, previews saving 3x", preview_min_saving=3),
        dataclasses.replace(cheap, name="cheap, previews saving 5x", preview_min_saving=5),
        dataclasses.replace(cheap, name="cheap, decode to 1x small", small_decode_gap=1.0),
        dataclasses.replace(cheap, name="cheap, WebP q75", webp_quality=75),
        dataclasses.replace(cheap, name="cheap, bilinear", resample=Image.Resampling.BILINEAR),
    ]
    refs = [_reference(d) for d in web]
    print(
        "\nprepare_image in this process (decode, checks, EXIF, thumbnails): CPU ms per image, "
        "thumbnail bytes / raw bytes, previews kept; SSIM of the small thumbnail against a "
        "full-resolution Lanczos reference (first set)"
    )
    print(
        f"sets: web {len(web)} x {_kb(web):.0f} KB | web 40-300 KB {len(web_range)} x "
        f"{_kb(web_range):.0f} KB | camera {len(camera)} x {_kb(camera):.0f} KB"
    )
    print(
        f"{'settings':28s} {'web ms':>7s} {'enc':>5s} {'thumbs':>7s} {'SSIM':>6s} {'min':>6s}"
        f" | {'range ms':>8s} {'thumbs':>7s} {'prev':>4s} | {'camera ms':>9s} {'thumbs':>7s}"
    )
    for s in candidates:
        w = measure_settings(s, web, refs)
        r = measure_settings(s, web_range, None)
        c = measure_settings(s, camera, None)
        print(
            f"{s.name:28s} {w.cpu_ms:7.2f} {w.encode_ms:5.2f} {w.thumb_ratio:7.4f} "
            f"{w.ssim_mean:6.4f} {w.ssim_min:6.4f} | {r.cpu_ms:8.2f} {r.thumb_ratio:7.4f} "
            f"{r.previews:4d} | {c.cpu_ms:9.1f} {c.thumb_ratio:7.4f}",
            flush=True,
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
        ("WebP q75 method 2", "WEBP", {"quality": 75, "method": 2}),
        ("JPEG q75 optimized", "JPEG", {"quality": 75, "optimize": True}),
        ("JPEG q80 optimized", "JPEG", {"quality": 80, "optimize": True}),
        ("JPEG q85 optimized", "JPEG", {"quality": 85, "optimize": True}),
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


# --- feature vectors ---------------------------------------------------------------------------


def _zstd_bytes(values: list[bytes]) -> float:
    z = zstandard.ZstdCompressor(level=3)
    return statistics.fmean(min(len(z.compress(v)), len(v)) for v in values)


def vector_table(exact: np.ndarray) -> None:
    from tests.storage_service.photo_vectors import recall_at_k

    stored = np.stack([vectors.decode(vectors.encode(v, "float16")) for v in exact])
    q8 = [vectors.encode(v, "int8") for v in exact]

    def shuffled(v: np.ndarray) -> bytes:
        return np.frombuffer(v.astype("<f4").tobytes(), np.uint8).reshape(-1, 4).T.tobytes()

    rows = [
        ("float32 (before)", 1.0, _zstd_bytes([shuffled(v) for v in exact])),
        (
            "float16",
            recall_at_k(exact, stored),
            _zstd_bytes([vectors.encode(v, "float16") for v in exact]),
        ),
        (
            "int8 + scale (used)",
            recall_at_k(exact, np.stack([vectors.decode(v) for v in q8])),
            _zstd_bytes(q8),
        ),
    ]
    print(
        f"\nfeature vectors: {len(exact)} real photo vectors (EfficientNet-Lite0 features, "
        f"{exact.shape[1]}-d), similar-image recall@10 against float32"
    )
    print(f"{'encoding':20s} {'recall@10':>9s} {'bytes after zstd':>17s}")
    for name, recall, size in rows:
        print(f"{name:20s} {recall:9.4f} {size:17.0f}")


# --- on disk -----------------------------------------------------------------------------------


def disk_ratio(
    prepared: list[PreparedImage],
    vecs: np.ndarray,
    path: Path,
    *,
    float16: bool,
    int8: bool = False,
) -> tuple[float, dict[str, int]]:
    """Our store's bytes at rest over raw image bytes, every image annotated with a vector."""
    from storage_service.columnstore.store import ColumnStore, StoreOptions, directory_bytes

    encoding = "int8" if int8 else "float16" if float16 else "float32"
    store = ColumnStore.open(path, StoreOptions(vector_encoding=encoding))
    for i, image in enumerate(prepared):
        meta = store.put(f"IMG_{i:05d}.jpg", "bench", image).image
        update = AnnotationUpdate(
            fields=frozenset({"feature_vector"}),
            feature_vector=tuple(float(x) for x in vecs[i % len(vecs)]),
        )
        store.update_annotations(meta.id, update)
    store.flush()
    store.compact()
    columns = {c.name: c.stored_bytes for c in store.stats().columns}
    store.close()
    raw = sum(len(p.data) for p in prepared)
    return directory_bytes(path) / raw, columns


def sqlite_ratio(prepared: list[PreparedImage], vecs: np.ndarray, path: Path) -> float:
    from benchmarks.storage_bench import SqliteStore

    path.mkdir(parents=True)
    store = SqliteStore(path / "images.db")
    for i, image in enumerate(prepared):
        image_id = store.put(f"IMG_{i:05d}.jpg", "bench", image)
        store.annotate(
            image_id,
            AnnotationUpdate(
                fields=frozenset({"feature_vector"}),
                feature_vector=tuple(float(x) for x in vecs[i % len(vecs)]),
            ),
        )
    # At rest as ours is (after compaction): free pages left by the annotations' row rewrites
    # returned.
    store.db.execute("VACUUM")
    return store.disk_bytes() / sum(len(p.data) for p in prepared)


def disk_table(sets: dict[str, list[bytes]], vecs: np.ndarray, work: Path) -> None:
    print(
        "\non-disk bytes / raw image bytes (at rest after compaction; every image annotated "
        "with a real photo's feature vector)"
    )
    print(
        f"{'set':26s} {'before (LEGACY, f32)':>20s} {'CHEAP, f16':>11s}"
        f" {'now (SETTINGS, f16)':>20s} {'now, int8':>10s} {'SQLite':>8s}"
        "   now: thumbnails, vectors, rest (share of raw)"
    )
    for label, photos in sets.items():
        legacy = prepare_all(thumbnails.LEGACY, photos)
        cheap = prepare_all(thumbnails.CHEAP, photos)
        now = prepare_all(thumbnails.SETTINGS, photos)
        raw = sum(map(len, photos))
        before, _ = disk_ratio(legacy, vecs, work / f"{label}-before", float16=False)
        previous, _ = disk_ratio(cheap, vecs, work / f"{label}-cheap", float16=True)
        after, cols = disk_ratio(now, vecs, work / f"{label}-after", float16=True)
        with_int8, _ = disk_ratio(now, vecs, work / f"{label}-int8", float16=False, int8=True)
        sql = sqlite_ratio(now, vecs, work / f"{label}-sqlite")
        thumbs = (cols.get("thumb_small", 0) + cols.get("thumb_preview", 0)) / raw
        vec = cols.get("feature_vector", 0) / raw
        rest = after - 1 - thumbs - vec
        print(
            f"{label:26s} {before:20.4f} {previous:11.4f} {after:20.4f} {with_int8:10.4f} "
            f"{sql:8.4f}   "
            f"{thumbs:.4f} {vec:.4f} {rest:.4f}",
            flush=True,
        )


def main() -> None:
    from benchmarks.storage_bench import make_camera_images, make_images
    from tests.storage_service.photo_vectors import real_photo_vectors

    print(f"load average at the start: {os.getloadavg()}", flush=True)
    web = make_images(WEB_IMAGES)
    web_range = make_web_range(RANGE_IMAGES)
    camera = make_camera_images(CAMERA_IMAGES)
    if "settings" in PARTS:
        settings_table(web[:120], web_range, camera[:6])
        encoder_table(web[:120])
    if "vectors" in PARTS:
        vector_table(real_photo_vectors())
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        work = Path(tmp)
        if "disk" in PARTS:
            disk_table(
                {
                    f"web ({_kb(web[:300]):.0f} KB)": web[:300],
                    f"web 40-300 KB ({_kb(web_range):.0f} KB)": web_range,
                    f"camera ({_kb(camera) / 1e3:.1f} MB)": camera,
                },
                real_photo_vectors(),
                work,
            )
        if "grpc" in PARTS:
            grpc_table("web-sized photos over gRPC", web, work, ROUNDS)
            grpc_table(
                "web-sized photos of 40-300 KB over gRPC",
                web_range * 2,
                work,
                ROUNDS,
                [GRPC_RUNS[3], GRPC_RUNS[4]],
            )
            grpc_table(
                "camera-sized photos over gRPC",
                camera,
                work,
                1,
                [GRPC_RUNS[0], GRPC_RUNS[1], GRPC_RUNS[3], GRPC_RUNS[4], GRPC_RUNS[5]],
            )
    print(
        "\nserver CPU per put minus prepare_image's is gRPC, the servicer and the store; the "
        "clients run on the same 2 cores, so img/s <= cores / (server + client CPU per put)."
    )
    print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
