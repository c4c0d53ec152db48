"""The analysis worker as a real process (`python -m analysis_service`) against a real storage
service and the real vision models: images put straight into storage over gRPC are analysed
with no gateway; several workers share the work through storage's leases and none analyses an
image twice; a worker killed with SIGKILL leaves its images to another once its lease runs
out; an image vision refuses is FAILED with the reason; while vision is down images wait
PENDING with their attempts and last error, and are analysed once it is back.
"""

from __future__ import annotations

import io
import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from PIL import Image, ImageEnhance, ImageOps
from prometheus_client import REGISTRY

from imagerepo.common.v1 import common_pb2
from imagerepo.search.v1 import search_service_pb2 as search_pb
from imagerepo.search.v1 import search_service_pb2_grpc as search_grpc
from imagerepo.storage.v1 import storage_service_pb2 as storage_pb
from imagerepo.storage.v1 import storage_service_pb2_grpc as storage_grpc
from service_runtime.grpc_server import channel_options
from service_runtime.probe import is_serving
from tests.conftest import REPO_ROOT
from tests.support import free_port, real_photo_paths
from vision_service.config import VisionConfig
from vision_service.engine import VisionEngine
from vision_service.server import build_server as build_vision
from vision_service.servicer import EngineSlot

from .storage_factory import open_storage

PENDING = common_pb2.ANALYSIS_STATUS_PENDING
READY = common_pb2.ANALYSIS_STATUS_READY
FAILED = common_pb2.ANALYSIS_STATUS_FAILED
CHUNK_BYTES = 1024 * 1024


def photo_variants(count: int) -> list[bytes]:
    """`count` different JPEGs made from the real test photos (rotated, resized, brightened,
    mirrored): every one new bytes, so none is an exact duplicate of another."""
    sources = []
    for path in real_photo_paths().values():
        with Image.open(path) as im:
            sources.append(im.convert("RGB"))
    out: list[bytes] = []
    step = 0
    while len(out) < count:
        for rgb in sources:
            if len(out) == count:
                break
            angle = (-6, -3, 0, 3, 6)[step % 5]
            scale = (1.0, 0.85, 0.7)[(step // 5) % 3]
            edit = rgb.rotate(angle) if angle else rgb
            if scale != 1.0:
                edit = edit.resize((int(rgb.width * scale), int(rgb.height * scale)))
            edit = ImageEnhance.Brightness(edit).enhance(0.9 + 0.02 * (step % 11))
            if (step // 15) % 2:
                edit = ImageOps.mirror(edit)
            buf = io.BytesIO()
            edit.save(buf, "JPEG", quality=88, comment=f"variant {step}".encode())
            out.append(buf.getvalue())
        step += 1
    return out


def analyze_calls_ok() -> float:
    """Analyze calls the in-process vision servers answered OK (their interceptor's counter)."""
    value = REGISTRY.get_sample_value(
        "grpc_server_handled_total",
        {
            "grpc_service": "imagerepo.vision.v2.VisionService",
            "grpc_method": "Analyze",
            "grpc_code": "OK",
        },
    )
    return value or 0.0


def feed_streams_started() -> float:
    """WatchChanges streams the in-process storage servers started (their interceptor's
    counter, storage's v1 and v2 services)."""
    return sum(
        REGISTRY.get_sample_value(
            "grpc_server_started_total",
            {
                "grpc_service": f"imagerepo.storage.{version}.StorageService",
                "grpc_method": "WatchChanges",
            },
        )
        or 0.0
        for version in ("v1", "v2")
    )


@dataclass
class Pipeline:
    """Storage and vision as real gRPC servers in this process, workers as real processes."""

    tmp: Path
    engine: VisionEngine
    servers: dict[str, Any] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    workers: dict[str, subprocess.Popen[str]] = field(default_factory=dict)
    closers: list[Callable[[], None]] = field(default_factory=list)
    stub: storage_grpc.StorageServiceStub | None = None

    def start_storage(self) -> None:
        server, port, health, close = open_storage(
            f"127.0.0.1:{self.ports.get('storage', 0)}", self.tmp / "storage"
        )
        server.start()
        health.set_serving(True)
        self.servers["storage"], self.ports["storage"] = server, port
        self.closers.append(close)
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=channel_options())
        self.closers.append(channel.close)
        self.stub = storage_grpc.StorageServiceStub(channel)

    def start_vision(self, config: VisionConfig | None = None) -> None:
        server, port, health = build_vision(
            f"127.0.0.1:{self.ports.get('vision', 0)}",
            config or VisionConfig(),
            EngineSlot(self.engine),
        )
        assert port, "vision could not bind its port"
        server.start()
        health.set_serving(True)
        self.servers["vision"], self.ports["vision"] = server, port

    def stop_vision(self) -> None:
        self.servers.pop("vision").stop(grace=None).wait()

    def start_worker(self, name: str, **settings: str) -> subprocess.Popen[str]:
        port = free_port()
        env = dict(
            os.environ,
            ANALYSIS_PORT=str(port),
            ANALYSIS_STORAGE_ADDR=f"127.0.0.1:{self.ports['storage']}",
            ANALYSIS_VISION_ADDR=f"127.0.0.1:{self.ports['vision']}",
            ANALYSIS_WORKER_ID=name,
            ANALYSIS_POLL_INTERVAL_S="0.5",
            ANALYSIS_STATS_INTERVAL_S="1",
            IMAGEREPO_METRICS_PORT=str(free_port()),
            LOG_LEVEL="WARNING",
        )
        env.update(settings)
        # Its log goes to a file: a pipe nobody reads would fill up and block the worker.
        log_path = self.tmp / f"worker-{name}-{len(self.workers)}.log"
        with log_path.open("w") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "analysis_service"],
                cwd=REPO_ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log_file,
                text=True,
            )
        self.workers[name] = proc
        deadline = time.monotonic() + 60
        while not is_serving(f"127.0.0.1:{port}", timeout_s=1.0):
            assert proc.poll() is None, f"worker {name} exited: {log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"worker {name} never served"
            time.sleep(0.1)
        proc.metrics_port = int(env["IMAGEREPO_METRICS_PORT"])  # type: ignore[attr-defined]
        return proc

    def kill_worker(self, name: str) -> None:
        proc = self.workers.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def stop_worker(self, name: str) -> int:
        proc = self.workers.pop(name)
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=60)

    # --- storage, seen from outside ------------------------------------------------------------

    @property
    def storage(self) -> storage_grpc.StorageServiceStub:
        assert self.stub is not None
        return self.stub

    def put(self, name: str, data: bytes) -> str:
        def messages() -> Iterator[storage_pb.PutImageRequest]:
            yield storage_pb.PutImageRequest(
                header=storage_pb.PutImageHeader(filename=name, owner="alice")
            )
            for start in range(0, len(data), CHUNK_BYTES):
                yield storage_pb.PutImageRequest(chunk=data[start : start + CHUNK_BYTES])

        reply = self.storage.PutImage(messages(), timeout=60)
        assert not reply.already_stored
        return str(reply.image.id)

    def images(self, ids: list[str]) -> dict[str, storage_pb.ImageMetadata]:
        found: dict[str, storage_pb.ImageMetadata] = {}
        for start in range(0, len(ids), 500):
            reply = self.storage.BatchGetImages(
                storage_pb.BatchGetImagesRequest(image_ids=ids[start : start + 500]), timeout=30
            )
            found.update({image.id: image for image in reply.images})
        return found

    def wait_until(
        self,
        ids: list[str],
        done: Callable[[storage_pb.ImageMetadata], bool],
        timeout_s: float = 90.0,
    ) -> dict[str, storage_pb.ImageMetadata]:
        deadline = time.monotonic() + timeout_s
        while True:
            images = self.images(ids)
            if len(images) == len(ids) and all(done(image) for image in images.values()):
                return images
            if time.monotonic() > deadline:
                waiting = {i: (m.status, m.analysis) for i, m in images.items() if not done(m)}
                raise AssertionError(f"not done after {timeout_s:g}s: {waiting}")
            time.sleep(0.1)

    def close(self) -> None:
        for name in list(self.workers):
            self.kill_worker(name)
        for server in self.servers.values():
            server.stop(grace=None).wait()
        for close in reversed(self.closers):
            close()


@pytest.fixture
def pipeline(tmp_path: Path, vision_engine: VisionEngine) -> Iterator[Pipeline]:
    """Storage and vision serving, no worker yet, no gateway at all."""
    pipe = Pipeline(tmp_path, vision_engine)
    pipe.start_storage()
    pipe.start_vision()
    yield pipe
    pipe.close()


def worker_metric(proc: subprocess.Popen[str], name: str, labels: str) -> float:
    import urllib.request

    port = proc.metrics_port  # type: ignore[attr-defined]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    series = f"{name}{{{labels}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(series):
            return float(line.split()[-1])
    raise AssertionError(f"no {series.strip()} on the worker's /metrics")


def test_an_image_put_over_grpc_is_analysed_with_no_gateway(pipeline: Pipeline):
    pipeline.start_worker("w1")

    image_id = pipeline.put("chelsea.png", real_photo_paths()["chelsea"].read_bytes())
    image = pipeline.wait_until([image_id], lambda m: m.status != PENDING)[image_id]

    assert image.status == READY, image.status_detail
    assert len(image.labels) == 20
    assert {"tabby", "tiger cat", "Egyptian cat"} & {label.name for label in image.labels}
    assert image.has_feature_vector
    assert image.analysis.attempts == 1


def test_two_workers_share_the_work_and_analyse_no_image_twice(pipeline: Pipeline):
    first = pipeline.start_worker("w1", ANALYSIS_BATCH="2")
    second = pipeline.start_worker("w2", ANALYSIS_BATCH="2")
    calls_before = analyze_calls_ok()

    ids = [pipeline.put(f"p{i:02d}.jpg", data) for i, data in enumerate(photo_variants(24))]
    images = pipeline.wait_until(ids, lambda m: m.status != PENDING)

    assert {m.status for m in images.values()} == {READY}
    # Each image was claimed once (attempts), vision answered once per image, and each
    # worker wrote its share back.
    assert [m.analysis.attempts for m in images.values()] == [1] * len(ids)
    assert analyze_calls_ok() - calls_before == len(ids)
    done = [
        worker_metric(proc, "imagerepo_analysis_images_total", 'outcome="ready"')
        for proc in (first, second)
    ]
    assert sum(done) == len(ids)
    assert min(done) > 0, done


def test_a_killed_workers_images_are_finished_by_another_after_its_lease(pipeline: Pipeline):
    lease_ms = 4000
    ids = [pipeline.put(f"k{i:02d}.jpg", data) for i, data in enumerate(photo_variants(24))]
    # One batch of 8 at a time: three in a row, so the kill lands inside one.
    pipeline.start_worker(
        "doomed",
        ANALYSIS_BATCH="8",
        ANALYSIS_BATCHES_IN_FLIGHT="1",
        ANALYSIS_LEASE_MS=str(lease_ms),
    )

    held: dict[str, storage_pb.ImageMetadata] = {}
    deadline = time.monotonic() + 30
    while not held and time.monotonic() < deadline:
        held = {
            i: m
            for i, m in pipeline.images(ids).items()
            if m.status == PENDING and m.analysis.lease_owner == "doomed"
        }
    pipeline.kill_worker("doomed")  # mid-batch: it holds leases on images it has not finished
    killed_at_ms = time.time() * 1000
    held = {i: m for i, m in pipeline.images(list(held)).items() if m.status == PENDING}
    assert held, "the worker finished before it could be killed mid-batch"

    # The heir's own lease is the default (60 s): a lease also bounds its vision calls (0.6 x
    # the lease), and 2.4 s (from 4 s) is too short for a batch of 8 on a loaded machine; its
    # timed-out calls were retried, counting a second attempt on images never held.
    pipeline.start_worker("heir")
    first_seen_ready: dict[str, float] = {}

    def ready(image: storage_pb.ImageMetadata) -> bool:
        if image.status == READY:
            first_seen_ready.setdefault(image.id, time.time() * 1000)
        return image.status == READY

    images = pipeline.wait_until(ids, ready, timeout_s=120)

    for image_id, before in held.items():
        after = images[image_id]
        assert after.analysis.attempts == 2  # the dead worker's claim, then the heir's
        assert after.analysis.generation > before.analysis.generation
        # Not taken before the dead worker's lease had run out.
        assert first_seen_ready[image_id] >= before.analysis.lease_expires_unix_ms - 50
    again = {
        m.filename: (m.analysis.attempts, m.analysis.last_error)
        for i, m in images.items()
        if i not in held and m.analysis.attempts != 1
    }
    assert not again, f"held {sorted(held)}; analysed more than once: {again}"
    assert killed_at_ms < min(m.analysis.lease_expires_unix_ms for m in held.values()) + 1


def test_an_image_vision_refuses_is_failed_with_the_reason(pipeline: Pipeline):
    # 45 megapixels: storage keeps it (its limit is 100), vision refuses it (40) as a bomb.
    with Image.open(real_photo_paths()["camera"]) as im:
        huge = im.convert("L").resize((7500, 6000), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    huge.save(buf, "PNG")
    pipeline.start_worker("w1")

    image_id = pipeline.put("huge.png", buf.getvalue())
    image = pipeline.wait_until([image_id], lambda m: m.status != PENDING)[image_id]

    assert image.status == FAILED
    assert image.status_detail.startswith("vision cannot analyse this image: ")
    assert "pixels" in image.status_detail
    assert image.analysis.attempts == 1


def test_images_wait_pending_while_vision_is_down_and_are_analysed_when_it_returns(
    pipeline: Pipeline,
):
    pipeline.stop_vision()
    pipeline.start_worker("w1")

    ids = [pipeline.put(f"d{i}.jpg", data) for i, data in enumerate(photo_variants(3))]
    # Claimed at least twice (each claim bumps the generation). Only the first claim, made
    # before the worker knew vision was away, counts; the later ones are given back.
    waiting = pipeline.wait_until(ids, lambda m: m.analysis.generation >= 2, timeout_s=60)

    for image in waiting.values():
        assert image.status == PENDING
        assert "vision unavailable (UNAVAILABLE)" in image.analysis.last_error
        assert image.analysis.attempts <= 1, image.analysis

    pipeline.start_vision()
    images = pipeline.wait_until(ids, lambda m: m.status == READY, timeout_s=90)

    assert all(len(m.labels) == 20 for m in images.values())


def test_a_put_wakes_the_worker_through_the_change_feed(pipeline: Pipeline):
    # It polls only every 10 minutes: the feed is what tells it about the new image.
    streams = feed_streams_started()
    proc = pipeline.start_worker("w1", ANALYSIS_POLL_INTERVAL_S="600")
    # Put only once its feed stream has reached storage: the feed reads storage's head, then
    # watches from there, while its lane makes its first (empty) claim at once. A put between
    # that claim and the head read is in neither and waits for the 10-minute poll, so the
    # fixed 0.5 s pause that stood here was a race with the worker's start on a busy machine.
    deadline = time.monotonic() + 60
    while feed_streams_started() <= streams:
        assert proc.poll() is None, "the worker exited"
        assert time.monotonic() < deadline, "the worker never opened its change feed"
        time.sleep(0.05)

    image_id = pipeline.put("a.jpg", photo_variants(1)[0])
    image = pipeline.wait_until([image_id], lambda m: m.status == READY, timeout_s=60)[image_id]

    assert image.analysis.attempts == 1
    assert worker_metric(proc, "imagerepo_analysis_images_total", 'outcome="ready"') == 1


def test_the_worker_reports_its_lag_and_the_queue_on_its_metrics(pipeline: Pipeline):
    proc = pipeline.start_worker("w1")
    ids = [pipeline.put(f"m{i}.jpg", data) for i, data in enumerate(photo_variants(4))]
    pipeline.wait_until(ids, lambda m: m.status == READY)
    time.sleep(1.5)  # one stats interval

    assert worker_metric(proc, "imagerepo_consumer_lag_seqs", 'consumer="analysis"') == 0
    assert worker_metric(proc, "imagerepo_analysis_pending_images", "") == 0
    assert worker_metric(proc, "imagerepo_analysis_batch_size_sum", "") == 4


def text_pages(count: int) -> list[bytes]:
    """Large scans of the real text photos: OCR runs on each, so a batch takes a while."""
    out = []
    for i in range(count):
        with Image.open(real_photo_paths()[("page", "text")[i % 2]]) as im:
            big = im.convert("RGB").resize((im.width * 4, im.height * 4))
        buf = io.BytesIO()
        ImageEnhance.Brightness(big).enhance(0.9 + 0.01 * i).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def test_sigterm_mid_batch_gives_the_batch_back_and_exits_cleanly(pipeline: Pipeline):
    ids = [pipeline.put(f"s{i:02d}.jpg", data) for i, data in enumerate(text_pages(16))]
    # No grace at all: what is on vision at SIGTERM is given back at once, not left leased
    # for the ten minutes of its lease.
    pipeline.start_worker(
        "w1",
        ANALYSIS_GRACE_S="0",
        ANALYSIS_LEASE_MS="600000",
        ANALYSIS_BATCH="16",
        ANALYSIS_BATCHES_IN_FLIGHT="1",
    )
    deadline = time.monotonic() + 30
    while not any(m.analysis.lease_owner == "w1" for m in pipeline.images(ids).values()):
        assert time.monotonic() < deadline

    code = pipeline.stop_worker("w1")
    now_ms = time.time() * 1000
    images = pipeline.images(ids)

    assert code == 0
    still_leased = [
        i
        for i, m in images.items()
        if m.status == PENDING
        and m.analysis.lease_owner == "w1"
        and m.analysis.lease_expires_unix_ms > now_ms
    ]
    assert still_leased == []
    # Handed back at SIGTERM (CANCELLED): claimed, released, and not counted against them.
    given_back = [m for m in images.values() if m.status == PENDING and m.analysis.generation]
    assert given_back, "the batch finished before SIGTERM arrived"
    assert {m.analysis.last_error for m in given_back} == {"analysis worker w1 stopped"}
    assert [m.analysis.attempts for m in given_back] == [0] * len(given_back)


def test_two_workers_and_three_vision_replicas_share_the_calls(pipeline: Pipeline):
    """Each worker is given the three replicas as one comma-separated address: every replica
    serves a share of the Analyze calls, and each image is still analysed once."""
    replicas = []
    try:
        for _ in range(3):
            port, metrics = free_port(), free_port()
            proc = subprocess.Popen(
                [sys.executable, "-m", "vision_service"],
                cwd=REPO_ROOT,
                env=dict(
                    os.environ,
                    VISION_PORT=str(port),
                    IMAGEREPO_METRICS_PORT=str(metrics),
                    LOG_LEVEL="WARNING",
                ),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            replicas.append((proc, port, metrics))
        for proc, port, _metrics in replicas:
            deadline = time.monotonic() + 120
            while not is_serving(f"127.0.0.1:{port}", timeout_s=1.0):
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        addresses = ",".join(f"127.0.0.1:{port}" for _, port, _ in replicas)
        for name in ("w1", "w2"):
            pipeline.start_worker(name, ANALYSIS_VISION_ADDR=addresses, ANALYSIS_BATCH="4")

        ids = [pipeline.put(f"r{i:02d}.jpg", data) for i, data in enumerate(photo_variants(30))]
        images = pipeline.wait_until(ids, lambda m: m.status != PENDING)
        served = [vision_calls(metrics) for _, _, metrics in replicas]
    finally:
        for proc, _, _ in replicas:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)

    assert {m.status for m in images.values()} == {READY}
    assert [m.analysis.attempts for m in images.values()] == [1] * len(ids)
    assert sum(served) == len(ids)
    assert min(served) > 0, served


def vision_calls(metrics_port: int) -> float:
    """Analyze calls a vision process answered OK, from its /metrics."""
    import urllib.request

    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("grpc_server_handled_total{")
        and 'grpc_method="Analyze"' in line
        and 'grpc_code="OK"' in line
    )


# --- chaos: every consumer killed and restarted during an ingest ----------------------------


class ProcessStack:
    """Storage, vision, search and an analysis worker, each a real `python -m` process on its
    own port; any can be SIGKILLed and started again on the same port and data."""

    MODULES = {
        "storage": "storage_service",
        "vision": "vision_service",
        "search": "search_service",
        "analysis": "analysis_service",
    }

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.ports = {name: free_port() for name in self.MODULES}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.kills: list[str] = []
        self.channels: list[grpc.Channel] = []

    def env(self, name: str) -> dict[str, str]:
        addr = {n: f"127.0.0.1:{p}" for n, p in self.ports.items()}
        return dict(
            os.environ,
            LOG_LEVEL="WARNING",
            STORAGE_PORT=str(self.ports["storage"]),
            STORAGE_DATA_DIR=str(self.tmp / "storage"),
            VISION_PORT=str(self.ports["vision"]),
            SEARCH_PORT=str(self.ports["search"]),
            SEARCH_DATA_DIR=str(self.tmp / "search"),
            SEARCH_STORAGE_ADDR=addr["storage"],
            SEARCH_VISION_ADDR=addr["vision"],
            SEARCH_FEED_RETRY_MAX_S="1",
            ANALYSIS_PORT=str(self.ports["analysis"]),
            ANALYSIS_STORAGE_ADDR=addr["storage"],
            ANALYSIS_VISION_ADDR=addr["vision"],
            ANALYSIS_LEASE_MS="3000",
            ANALYSIS_POLL_INTERVAL_S="0.5",
            ANALYSIS_WORKER_ID=f"chaos-{len(self.kills)}",
        )

    def start(self, name: str, wait: bool = True) -> None:
        proc = subprocess.Popen(
            [sys.executable, "-m", self.MODULES[name]],
            cwd=REPO_ROOT,
            env=self.env(name),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.procs[name] = proc
        if wait:
            self.wait_serving(name)

    def wait_serving(self, name: str, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not is_serving(f"127.0.0.1:{self.ports[name]}", timeout_s=1.0):
            assert self.procs[name].poll() is None, f"{name} exited"
            assert time.monotonic() < deadline, f"{name} not serving after {timeout_s:g}s"
            time.sleep(0.1)

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        self.kills.append(name)

    def stub(self, name: str) -> Any:
        channel = grpc.insecure_channel(f"127.0.0.1:{self.ports[name]}", options=channel_options())
        self.channels.append(channel)
        if name == "storage":
            return storage_grpc.StorageServiceStub(channel)
        return search_grpc.SearchServiceStub(channel)

    def close(self) -> None:
        for channel in self.channels:
            channel.close()
        for name in ("analysis", "search", "vision", "storage"):
            proc = self.procs.pop(name, None)
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def put_over_grpc(stub: storage_grpc.StorageServiceStub, name: str, data: bytes) -> str:
    def messages() -> Iterator[storage_pb.PutImageRequest]:
        yield storage_pb.PutImageRequest(
            header=storage_pb.PutImageHeader(filename=name, owner="chaos")
        )
        yield storage_pb.PutImageRequest(chunk=data)

    return str(stub.PutImage(messages(), timeout=60).image.id)


def every_storage_image(stub: storage_grpc.StorageServiceStub) -> list[storage_pb.ImageMetadata]:
    images: list[storage_pb.ImageMetadata] = []
    token = ""
    while True:
        reply = stub.ListImages(
            storage_pb.ListImagesRequest(page_size=1000, page_token=token, owner="chaos"),
            timeout=30,
        )
        images.extend(reply.images)
        token = reply.next_page_token
        if not token:
            return images


def every_search_hit(stub: search_grpc.SearchServiceStub) -> list[str]:
    """Every image id search holds (each document carries its owner, "chaos"), in pages."""
    ids: list[str] = []
    token = ""
    while True:
        reply = stub.Search(
            search_pb.SearchRequest(
                query="chaos",
                filters=search_pb.SearchFilters(owner="chaos", include_moderated=True),
                page_size=200,
                page_token=token,
                disable_semantic=True,
            ),
            timeout=30,
        )
        ids.extend(hit.image_id for hit in reply.hits)
        token = reply.next_page_token
        if not token:
            return ids


@pytest.mark.timeout(600)
def test_killing_worker_search_and_vision_during_an_ingest_ends_with_storage_and_search_agreeing(
    tmp_path: Path,
):
    rng = random.Random(12)  # when to kill, and for how long
    deletes = random.Random(34)  # which images to delete (another thread)
    photos = photo_variants(240)
    stack = ProcessStack(tmp_path)
    try:
        for name in ("storage", "vision", "search", "analysis"):
            stack.start(name)
        storage = stack.stub("storage")
        search = stack.stub("search")
        ids: list[str] = []
        deleted: list[str] = []
        ingest_done = threading.Event()

        def ingest() -> None:
            for i, data in enumerate(photos):
                ids.append(put_over_grpc(storage, f"chaos-{i:04d}.jpg", data))
                if i % 25 == 24:  # a few deletes too, some of them while being analysed
                    victim = ids[deletes.randrange(len(ids))]
                    if victim not in deleted:
                        storage.DeleteImage(
                            storage_pb.DeleteImageRequest(image_id=victim), timeout=30
                        )
                        deleted.append(victim)
                time.sleep(0.05)
            ingest_done.set()

        putter = threading.Thread(target=ingest, daemon=True)
        putter.start()
        # Kill a consumer at a random moment, leave it dead a random while, start it again;
        # each of the three in turn, in a random order.
        victims = itertools.cycle(rng.sample(["analysis", "search", "vision"], 3))
        while not ingest_done.is_set() or len(stack.kills) < 6:
            time.sleep(rng.uniform(0.5, 2.5))
            victim = next(victims)
            stack.kill(victim)
            time.sleep(rng.uniform(0.2, 2.0))
            stack.start(victim, wait=False)
            if len(stack.kills) >= 12:
                break
        putter.join(120)
        assert ingest_done.is_set()
        for name in ("vision", "search", "analysis"):
            stack.wait_serving(name)

        # Everything analysed, and search has applied the whole feed.
        deadline = time.monotonic() + 240
        while True:
            stats = storage.GetStats(storage_pb.GetStatsRequest(), timeout=10)
            applied = search.GetStats(search_pb.GetStatsRequest(), timeout=10).applied_seq
            if stats.pending_count == 0 and applied >= stats.head_seq:
                break
            assert time.monotonic() < deadline, (stats.pending_count, applied, stats.head_seq)
            time.sleep(0.2)

        stored = every_storage_image(storage)
        in_search = every_search_hit(search)
    finally:
        stack.close()

    assert {"analysis", "search", "vision"} <= set(stack.kills)
    assert {m.status for m in stored} == {READY}
    assert len(stored) == len(photos) - len(deleted)
    assert len(in_search) == len(set(in_search))  # no duplicates
    assert set(in_search) == {m.id for m in stored}
    assert not set(in_search) & set(deleted)
