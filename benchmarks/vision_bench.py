"""Vision benchmark: the bare classifier on onnxruntime vs the whole service over gRPC.

Measured in one run, on the same machine, with the same onnxruntime thread settings:
- baseline: EfficientNet-Lite0 alone on ready-made input tensors, batch 1 and batch 8
  (no decoding, no preprocessing, no gRPC);
- service: `Analyze` over gRPC on loopback with tasks LABELS+FEATURES and OCR off, from 1 and
  from 8 concurrent clients sending real photos as JPEG. Each call includes JPEG decoding,
  preprocessing, micro-batched classification, top-k labels, the 1280-d feature vector and
  protobuf encoding both ways. Moderation (a ResNet-50, about twice the classifier's cost) is
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
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
from PIL import Image

from imagerepo.vision.v1 import vision_service_pb2 as pb
from imagerepo.vision.v1 import vision_service_pb2_grpc as pb_grpc
from service_runtime.grpc_server import channel_options
from vision_service.config import VisionConfig
from vision_service.engine import CLASSIFIER, VisionEngine
from vision_service.preprocess import classifier_input, decode_image
from vision_service.registry import load_registry
from vision_service.server import build_server
from vision_service.servicer import EngineSlot
from vision_service.sessions import SessionThreads, open_session

ROUND_S = 8.0
ROUNDS = 2
CLIENTS = 8
IMAGE_ONLY = [pb.ANALYSIS_TASK_LABELS, pb.ANALYSIS_TASK_FEATURES]


def _photos() -> list[bytes]:
    """Real photos from installed packages, as JPEG uploads (quality 90)."""
    import skimage
    import sklearn

    sk = Path(skimage.__file__).parent / "data"
    skl = Path(sklearn.__file__).parent / "datasets" / "images"
    paths = [
        sk / "chelsea.png",
        sk / "coffee.png",
        sk / "rocket.jpg",
        sk / "astronaut.png",
        sk / "motorcycle_left.png",
        skl / "china.jpg",
        skl / "flower.jpg",
        sk / "camera.png",
    ]
    out = []
    for path in paths:
        with Image.open(path) as im:
            buf = io.BytesIO()
            im.convert("RGB").save(buf, "JPEG", quality=90)
            out.append(buf.getvalue())
    return out


def _rate(work: Callable[[], int], seconds: float) -> float:
    """Items per second of calling `work` (which returns items done) for about `seconds`."""
    done = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        done += work()
    return done / elapsed


def bare_throughput(config: VisionConfig, tensors: np.ndarray, batch: int) -> float:
    entry = load_registry(config.models_dir)[CLASSIFIER]
    session = open_session(
        entry.path(),
        SessionThreads(config.intra_op_threads, config.inter_op_threads, config.ort_spin),
    )
    inputs = np.ascontiguousarray(np.resize(tensors, (batch, *tensors.shape[1:])))
    session.run(None, {"input": inputs})  # warm-up

    def run() -> int:
        session.run(None, {"input": inputs})
        return batch

    return _rate(run, ROUND_S)


def _client_process(port: int, photos: list[bytes], clients: int, tasks: list[int], out) -> None:  # noqa: ANN001
    """Runs in its own process: `clients` threads calling Analyze for ROUND_S seconds."""
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
    started = time.perf_counter()
    time.sleep(ROUND_S)
    done_at_stop = sum(counts)
    elapsed = time.perf_counter() - started
    stop.set()
    for t in threads:
        t.join()
    out.put(done_at_stop / elapsed)


def service_throughput(port: int, photos: list[bytes], clients: int, tasks: list[int]) -> float:
    """Calls per second from `clients` concurrent clients in a separate process, as the
    gateway or the ingest pipeline would call: the service process does only service work."""
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    process = context.Process(target=_client_process, args=(port, photos, clients, tasks, out))
    process.start()
    rate = float(out.get(timeout=ROUND_S + 120))
    process.join()
    return rate


def main() -> None:
    config = VisionConfig.from_env()
    photos = _photos()
    tensors = np.stack(
        [classifier_input(decode_image(p, max_pixels=config.max_image_pixels).rgb) for p in photos]
    )
    print(
        f"onnxruntime threads: intra-op {config.intra_op_threads}, inter-op "
        f"{config.inter_op_threads}; service batch <= {config.batch_max_size}, wait <= "
        f"{config.batch_max_wait_ms} ms; {len(photos)} real photos as JPEG; {ROUND_S:.0f} s rounds",
        flush=True,
    )
    engine = VisionEngine.load(config)
    server, port, health = build_server("127.0.0.1:0", config, EngineSlot(engine))
    server.start()
    health.set_serving(True)
    try:
        bare1 = bare_throughput(config, tensors, 1)
        print(f"bare classifier, batch 1:                {bare1:7.1f} img/s", flush=True)
        svc1 = service_throughput(port, photos, 1, IMAGE_ONLY)
        print(f"service over gRPC, 1 client:             {svc1:7.1f} img/s", flush=True)
        bare8 = svc8 = 0.0
        for round_no in range(1, ROUNDS + 1):
            b = bare_throughput(config, tensors, 8)
            s = service_throughput(port, photos, CLIENTS, IMAGE_ONLY)
            print(
                f"round {round_no}: bare batch 8 {b:6.1f} img/s | service {CLIENTS} clients "
                f"{s:6.1f} img/s",
                flush=True,
            )
            bare8, svc8 = max(bare8, b), max(svc8, s)
        sizes = list(engine.classifier_batches.batch_sizes)[-500:]
        print(f"bare classifier, batch 8 (best):         {bare8:7.1f} img/s")
        print(f"service over gRPC, {CLIENTS} clients (best):   {svc8:7.1f} img/s")
        print(f"mean classifier batch in the service (8 clients): {np.mean(sizes):.1f}")
        print(f"ratio service 1 client / bare batch 1:   {svc1 / bare1:7.2f}")
        print(
            f"ratio service {CLIENTS} clients / bare batch 8:  {svc8 / bare8:7.2f}  (goal >= 0.85)"
        )
        full = service_throughput(port, photos, CLIENTS, [])
        print(
            f"service default tasks (labels+features+moderation+OCR auto), {CLIENTS} clients: "
            f"{full:.1f} img/s",
            flush=True,
        )
    finally:
        server.stop(grace=None)
        engine.close()


if __name__ == "__main__":
    main()
