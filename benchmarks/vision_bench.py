"""Vision benchmark: the bare classifier on onnxruntime vs the whole service over gRPC.

Measured in one run, on the same machine, with the same onnxruntime thread settings:
- baseline: EfficientNet-Lite0 alone on ready-made input tensors, batch 1 and batch 8
  (no decoding, no preprocessing, no gRPC);
- service: `Analyze` over gRPC on loopback with tasks LABELS+FEATURES and OCR off, from 1 and
  from 8 concurrent clients sending real photos as JPEG. Each call includes JPEG decoding,
  preprocessing, micro-batched classification, top-k labels, the 1280-d feature vector and
  protobuf encoding both ways. Moderation (a ResNet-50, ~7x the classifier's CPU cost) is
  not in these figures; a last line measures the service's default task set (labels +
  features + moderation + OCR where text is likely) for information.

The headline ratio is service (8 clients) / bare batch 8; the goal is at least 0.85. Bare and
service rounds alternate and the best of each is kept, so load from other processes on a
shared machine skews both sides alike.
"""

from __future__ import annotations

import io
import multiprocessing
import threading
import time
from dataclasses import dataclass

import grpc
import numpy as np
from PIL import Image

from imagerepo.vision.v1 import vision_service_pb2 as pb
from imagerepo.vision.v1 import vision_service_pb2_grpc as pb_grpc
from service_runtime.grpc_server import channel_options
from tests.support import real_photo_paths
from vision_service.config import VisionConfig
from vision_service.engine import CLASSIFIER, VisionEngine
from vision_service.preprocess import classifier_input, decode_image
from vision_service.registry import load_registry
from vision_service.server import build_server
from vision_service.servicer import EngineSlot
from vision_service.sessions import SessionThreads, open_session

ROUND_S = 8.0
ROUNDS = 3
CLIENTS = 8
IMAGE_ONLY = [pb.ANALYSIS_TASK_LABELS, pb.ANALYSIS_TASK_FEATURES]


def _photos() -> list[bytes]:
    """Real photos from installed packages, as JPEG uploads (quality 90)."""
    photos = real_photo_paths()
    names = ["chelsea", "coffee", "rocket", "astronaut", "motorcycle", "china", "flower", "camera"]
    paths = [photos[name] for name in names]
    out = []
    for path in paths:
        with Image.open(path) as im:
            buf = io.BytesIO()
            im.convert("RGB").save(buf, "JPEG", quality=90)
            out.append(buf.getvalue())
    return out


@dataclass(frozen=True)
class Rate:
    images_per_s: float
    # CPU time of this process (all its threads) per image: the bare model's cost, or the
    # service's whole cost (gRPC, decoding, preprocessing, model). Clients run elsewhere.
    cpu_ms_per_image: float


def bare_throughput(config: VisionConfig, tensors: np.ndarray, batch: int, streams: int) -> Rate:
    """The classifier alone on ready-made tensors, with the service's session settings, run
    by `streams` threads at once (the service's batch workers) on one shared session."""
    entry = load_registry(config.models_dir)[CLASSIFIER]
    session = open_session(
        entry.path(),
        SessionThreads(config.intra_op_threads, config.inter_op_threads, config.ort_spin),
    )
    inputs = np.ascontiguousarray(np.resize(tensors, (batch, *tensors.shape[1:])))
    session.run(None, {"input": inputs})  # warm-up
    stop = threading.Event()
    counts = [0] * streams

    def stream(i: int) -> None:
        while not stop.is_set():
            session.run(None, {"input": inputs})
            counts[i] += batch

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(streams)]
    cpu_started = time.process_time()
    started = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(ROUND_S)
    done = sum(counts)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    stop.set()
    for t in threads:
        t.join()
    return Rate(done / elapsed, 1000.0 * cpu / max(done, 1))


def _client_process(
    port: int, photos: list[bytes], clients: int, tasks: list[int], started_event, out
) -> None:
    """Runs in its own process: `clients` threads calling Analyze for ROUND_S seconds; puts
    (calls completed, seconds) on `out`."""
    stop = threading.Event()
    counts = [0] * clients
    start = threading.Barrier(clients + 1)
    ocr_mode = pb.OCR_MODE_NEVER if tasks == IMAGE_ONLY else pb.OCR_MODE_AUTO

    def client(i: int) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=channel_options()) as channel:
            stub = pb_grpc.VisionServiceStub(channel)
            requests = [
                pb.AnalyzeRequest(image_data=p, tasks=tasks, top_k=5, ocr_mode=ocr_mode)
                for p in photos
            ]
            stub.Analyze(requests[0], timeout=60)  # connect and warm up outside the clock
            start.wait()
            n = i
            while not stop.is_set():
                stub.Analyze(requests[n % len(requests)], timeout=60)
                counts[i] += 1
                n += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    started_event.set()
    started = time.perf_counter()
    time.sleep(ROUND_S)
    done = sum(counts)
    elapsed = time.perf_counter() - started
    out.put((done, elapsed))
    stop.set()
    for t in threads:
        t.join()


def service_throughput(port: int, photos: list[bytes], clients: int, tasks: list[int]) -> Rate:
    """Calls per second from `clients` concurrent clients in a separate process, as the
    gateway or the ingest pipeline would call: this process does only the service's work."""
    context = multiprocessing.get_context("spawn")
    started, out = context.Event(), context.Queue()
    process = context.Process(
        target=_client_process, args=(port, photos, clients, tasks, started, out)
    )
    process.start()
    while not started.wait(timeout=0.5):
        if not process.is_alive():
            raise RuntimeError("benchmark clients failed to start (see their error above)")
    cpu_started = time.process_time()
    done, elapsed = out.get(timeout=ROUND_S + 120)
    cpu = time.process_time() - cpu_started
    process.join()
    return Rate(done / elapsed, 1000.0 * cpu / max(done, 1))


def main() -> None:
    config = VisionConfig.from_env()
    photos = _photos()
    tensors = np.stack(
        [classifier_input(decode_image(p, max_pixels=config.max_image_pixels).rgb) for p in photos]
    )
    print(
        f"onnxruntime threads: intra-op {config.intra_op_threads}, inter-op "
        f"{config.inter_op_threads}, spinning {'on' if config.ort_spin else 'off'}; "
        f"{config.batch_workers} batch workers; batch <= {config.batch_max_size}, "
        f"wait <= {config.batch_max_wait_ms} ms; "
        f"{len(photos)} real photos as JPEG; {ROUND_S:.0f} s rounds",
        flush=True,
    )
    engine = VisionEngine.load(config)
    server, port, health = build_server("127.0.0.1:0", config, EngineSlot(engine))
    server.start()
    health.set_serving(True)

    def show(what: str, rate: Rate) -> None:
        print(
            f"{what:<42} {rate.images_per_s:7.1f} img/s  {rate.cpu_ms_per_image:6.2f} CPU ms/img",
            flush=True,
        )

    try:
        bare1 = bare_throughput(config, tensors, 1, streams=1)
        show("bare classifier, batch 1", bare1)
        svc1 = service_throughput(port, photos, 1, IMAGE_ONLY)
        show("service over gRPC, 1 client", svc1)
        best_bare8: Rate | None = None
        best_svc8: Rate | None = None
        for round_no in range(1, ROUNDS + 1):
            bare8 = bare_throughput(config, tensors, 8, streams=config.batch_workers)
            show(f"round {round_no}: bare, batch 8 x {config.batch_workers} streams", bare8)
            svc8 = service_throughput(port, photos, CLIENTS, IMAGE_ONLY)
            show(f"round {round_no}: service, {CLIENTS} clients", svc8)
            if best_bare8 is None or bare8.images_per_s > best_bare8.images_per_s:
                best_bare8 = bare8
            if best_svc8 is None or svc8.images_per_s > best_svc8.images_per_s:
                best_svc8 = svc8
        assert best_bare8 is not None and best_svc8 is not None
        sizes = list(engine.classifier_batches.batch_sizes)[-500:]
        print(f"mean classifier batch in the service with {CLIENTS} clients: {np.mean(sizes):.1f}")
        show("best bare classifier, batch 8", best_bare8)
        show(f"best service, {CLIENTS} clients", best_svc8)
        print(
            f"ratio service 1 client / bare batch 1: {svc1.images_per_s / bare1.images_per_s:.2f}"
        )
        ratio = best_svc8.images_per_s / best_bare8.images_per_s
        print(f"RATIO service {CLIENTS} clients / bare batch 8: {ratio:.2f}  (goal >= 0.85)")
        cpu_ratio = best_bare8.cpu_ms_per_image / best_svc8.cpu_ms_per_image
        print(f"CPU cost per image, bare / service: {cpu_ratio:.2f} (less sensitive to load)")
        full = service_throughput(port, photos, CLIENTS, [])
        show(f"service, default tasks, {CLIENTS} clients", full)
        print("  (default tasks = labels + features + moderation + OCR where text is likely)")
    finally:
        server.stop(grace=None)
        engine.close()


if __name__ == "__main__":
    main()
