"""End-to-end benchmark: the four services as processes (`python -m stack`), driven over HTTP.

Prints
- upload latency p50/p99 (one photo per request, sequential) and the share of each upload
  spent in each service, from the stage timings the gateway reports per upload;
- bulk-import throughput (`imagerepo import` with 4 workers) against a baseline of the same
  importer with 1 worker, measured in the same run on an equal set of different photos;
- the upload p50 against a baseline of the bare work on the same photos (storage PutImage
  then vision Analyze over gRPC, no HTTP, no indexing, no annotation write), interleaved with
  the uploads, so the cost of the whole pipeline over the unavoidable work shows as a ratio.

Photos: the real test photos (scikit-image, scikit-learn) and edited variants of each, so every
upload is new bytes (no exact duplicates, which would skip the models).
"""

from __future__ import annotations

import io
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import requests
from PIL import Image, ImageEnhance, ImageOps

from gateway.cli import run_import
from gateway.clients import CHUNK_BYTES
from imagerepo.storage.v1 import storage_service_pb2 as storage_pb
from imagerepo.storage.v1 import storage_service_pb2_grpc as storage_grpc
from imagerepo.vision.v1 import vision_service_pb2 as vision_pb
from imagerepo.vision.v1 import vision_service_pb2_grpc as vision_grpc
from service_runtime.grpc_server import channel_options
from tests.support import free_ports, real_photo_paths

REPO_ROOT = Path(__file__).resolve().parent.parent
STAGE_SERVICE = {
    "storage_put": "storage",
    "storage_read": "storage",
    "storage_annotate": "storage",
    "vision_analyze": "vision",
    "search_index": "search",
}


def variants(path: Path) -> list[bytes]:
    """Twelve different JPEGs of one photo: rotated, resized, brightened, mirrored."""
    with Image.open(path) as im:
        rgb = im.convert("RGB")
    out = []
    for angle in (0, 4, -4, 8):
        for scale, brightness in ((1.0, 1.0), (0.8, 1.2), (0.6, 0.9)):
            edit = rgb.rotate(angle) if angle else rgb
            if scale != 1.0:
                edit = edit.resize((int(rgb.width * scale), int(rgb.height * scale)))
            if brightness != 1.0:
                edit = ImageEnhance.Brightness(edit).enhance(brightness)
            if angle == 8:
                edit = ImageOps.mirror(edit)
            buf = io.BytesIO()
            edit.save(buf, "JPEG", quality=90)
            out.append(buf.getvalue())
    return out


def start_stack(data_dir: Path) -> tuple[subprocess.Popen[str], dict[str, int]]:
    storage, vision, search, gateway = free_ports(4)
    env = dict(
        os.environ,
        IMAGEREPO_DATA_DIR=str(data_dir),
        STORAGE_PORT=str(storage),
        VISION_PORT=str(vision),
        SEARCH_PORT=str(search),
        GATEWAY_PORT=str(gateway),
        SEARCH_VISION_ADDR=f"127.0.0.1:{vision}",
        GATEWAY_STORAGE_ADDR=f"127.0.0.1:{storage}",
        GATEWAY_VISION_ADDR=f"127.0.0.1:{vision}",
        GATEWAY_SEARCH_ADDR=f"127.0.0.1:{search}",
        LOG_LEVEL="WARNING",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "stack"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + 240
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "imagerepo is up" in line:
            break
        if not line and proc.poll() is not None:
            raise RuntimeError(f"the stack exited with {proc.returncode}")
    else:
        raise RuntimeError("the stack did not come up in time")
    return proc, {"storage": storage, "vision": vision, "search": search, "gateway": gateway}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


class BareWork:
    """Baseline: PutImage then Analyze straight over gRPC (no HTTP, no gateway, no index)."""

    def __init__(self, ports: dict[str, int]) -> None:
        self._channels = [
            grpc.insecure_channel(f"127.0.0.1:{ports[name]}", options=channel_options())
            for name in ("storage", "vision")
        ]
        self._storage = storage_grpc.StorageServiceStub(self._channels[0])
        self._vision = vision_grpc.VisionServiceStub(self._channels[1])

    def time_ms(self, name: str, data: bytes) -> float:
        def messages():
            header = storage_pb.PutImageHeader(filename=name, owner="bench")
            yield storage_pb.PutImageRequest(header=header)
            for start in range(0, len(data), CHUNK_BYTES):
                yield storage_pb.PutImageRequest(chunk=data[start : start + CHUNK_BYTES])

        started = time.perf_counter()
        self._storage.PutImage(messages(), timeout=60)
        self._vision.Analyze(vision_pb.AnalyzeRequest(image_data=data), timeout=60)
        return (time.perf_counter() - started) * 1000

    def close(self) -> None:
        for channel in self._channels:
            channel.close()


def same_pixels_new_bytes(data: bytes) -> bytes:
    """The JPEG with a comment added: identical pixels (same model cost), a different sha256."""
    assert data[:2] == b"\xff\xd8"
    comment = b"imagerepo-bench-baseline"
    segment = b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment
    return data[:2] + segment + data[2:]


def write_folder(root: Path, photos: list[bytes]) -> None:
    root.mkdir(parents=True)
    for i, data in enumerate(photos):
        (root / f"photo-{i:03d}.jpg").write_bytes(data)


def main() -> None:
    sources = real_photo_paths()
    all_photos = [v for path in sources.values() for v in variants(path)]  # 120 new images
    # Interleaved, so every set holds every photo (OCR-heavy pages and plain photos alike).
    latency_set = all_photos[0::3]
    import_seq, import_par = all_photos[1::3], all_photos[2::3]
    print(
        f"photos: {len(all_photos)} distinct JPEGs from {len(sources)} real photos "
        f"(latency {len(latency_set)}, import {len(import_seq)} + {len(import_par)})",
        flush=True,
    )

    with tempfile.TemporaryDirectory(prefix="imagerepo-e2e-bench-") as tmp:
        tmp_path = Path(tmp)
        started = time.perf_counter()
        proc, ports = start_stack(tmp_path / "data")
        print(f"stack up in {time.perf_counter() - started:.1f} s", flush=True)
        url = f"http://127.0.0.1:{ports['gateway']}"
        try:
            with requests.Session() as http:
                # Warm-up: first calls pay for lazy initialisation in every service.
                for data in all_photos[:2]:
                    http.post(f"{url}/api/predict", files={"file": ("w.jpg", data)}, timeout=120)

                latencies: list[float] = []
                bare: list[float] = []
                stage_ms: dict[str, float] = {}
                baseline = BareWork(ports)
                for i, data in enumerate(latency_set):
                    # Interleaved, so both see the same background load.
                    bare.append(baseline.time_ms(f"bare-{i:03d}.jpg", same_pixels_new_bytes(data)))
                    t0 = time.perf_counter()
                    reply = http.post(
                        f"{url}/api/images",
                        files={"file": (f"lat-{i:03d}.jpg", data)},
                        timeout=120,
                    )
                    latencies.append((time.perf_counter() - t0) * 1000)
                    result = reply.json()["results"][0]
                    assert result["result"] == "stored", result
                    for stage, ms in result["timings_ms"].items():
                        stage_ms[stage] = stage_ms.get(stage, 0.0) + ms

                baseline.close()

            seq_dir, par_dir = tmp_path / "seq", tmp_path / "par"
            write_folder(seq_dir, import_seq)
            write_folder(par_dir, import_par)
            seq = run_import(seq_dir, url, workers=1, progress=False)
            par = run_import(par_dir, url, workers=4, progress=False)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)

    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    bare_p50 = statistics.median(bare)
    print(f"\nupload latency (1 photo per request, n={len(latencies)}):")
    print(f"  p50 {p50:.1f} ms   p99 {p99:.1f} ms   mean {statistics.mean(latencies):.1f} ms")
    print(
        f"  baseline, same photos as bare PutImage + Analyze over gRPC: p50 {bare_p50:.1f} ms,"
        f" p99 {percentile(bare, 99):.1f} ms"
    )
    print(f"  ratio upload p50 / bare p50: {p50 / bare_p50:.2f}x")

    total = sum(latencies)
    by_service: dict[str, float] = {}
    for stage, ms in stage_ms.items():
        service = STAGE_SERVICE.get(stage, stage)
        by_service[service] = by_service.get(service, 0.0) + ms
    by_service["gateway + HTTP"] = total - sum(by_service.values())
    print("share of upload time by service:")
    for service, ms in sorted(by_service.items(), key=lambda kv: -kv[1]):
        print(f"  {service:<15} {100 * ms / total:5.1f} %   ({ms / len(latencies):6.1f} ms/upload)")
    print(
        "  stages (ms/upload): "
        + ", ".join(f"{s} {ms / len(latencies):.1f}" for s, ms in stage_ms.items())
    )

    seq_rate = sum(seq.counts.values()) / seq.elapsed_s
    par_rate = sum(par.counts.values()) / par.elapsed_s
    print(f"\nbulk import of {len(import_par)} photos with 4 workers: {par.describe()}")
    print(f"baseline, {len(import_seq)} photos with 1 worker:       {seq.describe()}")
    print(
        f"  throughput {par_rate:.2f} files/s vs {seq_rate:.2f} files/s: {par_rate / seq_rate:.2f}x"
    )


if __name__ == "__main__":
    main()
