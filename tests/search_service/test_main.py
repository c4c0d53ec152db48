"""`python -m search_service` as a real process: loads its index, follows a real storage
service's change feed, links to vision, serves, and keeps its index across a SIGTERM restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
import pytest

from imagerepo.search.v1 import search_service_pb2 as pb
from imagerepo.search.v1 import search_service_pb2_grpc as search_grpc
from search_service.label_embeddings import CACHE_NAME
from service_runtime.probe import is_serving
from tests.conftest import REPO_ROOT
from tests.search_service.storage_support import Storage, eventually, label
from tests.support import free_port


class Service:
    def __init__(self, proc: subprocess.Popen[str], port: int, logs: list[dict]) -> None:
        self.proc, self.port, self.logs = proc, port, logs

    def messages(self) -> list[str]:
        return [line.get("message", "") for line in self.logs]


@contextmanager
def running(
    data_dir: Path, vision_address: str, storage_address: str, **extra: str
) -> Iterator[Service]:
    env = {
        **os.environ,
        **extra,
        "SEARCH_PORT": "0",
        "SEARCH_STORAGE_ADDR": storage_address,
        "SEARCH_FEED_RETRY_MAX_S": "0.5",
        "SEARCH_DATA_DIR": str(data_dir),
        "SEARCH_VISION_ADDR": vision_address,
        "SEARCH_VISION_TIMEOUT_S": "5",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "search_service"],
        cwd=REPO_ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    logs: list[dict] = []
    port = 0
    for line in proc.stderr:
        record = json.loads(line) if line.startswith("{") else {"message": line}
        logs.append(record)
        if record.get("message") == "serving":
            port = int(record["port"])
            break
    assert port, f"search service did not start: {logs}"
    # Keep draining stderr so the child never blocks on a full pipe.
    drain = threading.Thread(
        target=lambda: logs.extend(
            json.loads(x) if x.startswith("{") else {"message": x} for x in proc.stderr or []
        ),
        daemon=True,
    )
    drain.start()
    try:
        yield Service(proc, port, logs)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        drain.join(timeout=5)


def _stub(service: Service) -> tuple[grpc.Channel, search_grpc.SearchServiceStub]:
    channel = grpc.insecure_channel(f"127.0.0.1:{service.port}")
    return channel, search_grpc.SearchServiceStub(channel)


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    running_storage = Storage(tmp_path / "storage").start()
    yield running_storage
    running_storage.stop()


def _applied(stub: search_grpc.SearchServiceStub) -> int:
    return stub.GetStats(pb.GetStatsRequest(), timeout=10).applied_seq


def test_index_survives_a_sigterm_restart_with_semantic_search(
    tmp_path, vision_address, analysed_photos, photo_jpegs, storage
):
    chelsea = analysed_photos["chelsea"]
    cat = storage.put_ready(
        photo_jpegs["chelsea"],
        "IMG_0001.jpg",
        list(chelsea.labels),
        feature_vector=list(chelsea.feature_vector),
    )
    head = storage.head_seq()
    with running(tmp_path / "search", vision_address, storage.address) as first:
        assert is_serving(f"127.0.0.1:{first.port}")
        channel, stub = _stub(first)
        eventually(lambda: _applied(stub) >= head, what="the feed applied")
        channel.close()
        first.proc.send_signal(signal.SIGTERM)

        assert first.proc.wait(timeout=30) == 0

    storage.stop()  # the restarted search answers from its saved index alone
    with running(tmp_path / "search", vision_address, "127.0.0.1:9") as second:
        channel, stub = _stub(second)
        reply = stub.Search(pb.SearchRequest(query="kitten"), timeout=10)
        stats = stub.GetStats(pb.GetStatsRequest(), timeout=10)
        channel.close()

    assert [h.image_id for h in reply.hits] == [cat]
    assert stats.document_count == 1 and stats.index_disk_bytes > 0
    assert stats.applied_seq == head and not stats.following
    assert (tmp_path / "search" / CACHE_NAME).exists()
    assert "semantic expansion ready" in second.messages()


def test_serves_keyword_search_when_vision_is_down(tmp_path, photo_jpegs, storage):
    beach = storage.put_ready(photo_jpegs["coffee"], "BeachDay.jpg", [label("seashore", 0.8)])
    metrics_port = free_port()
    with running(
        tmp_path / "search",
        "127.0.0.1:9",
        storage.address,
        IMAGEREPO_METRICS_PORT=str(metrics_port),
    ) as service:
        channel, stub = _stub(service)
        eventually(lambda: _applied(stub) >= storage.head_seq(), what="the feed applied")
        reply = stub.Search(pb.SearchRequest(query="beach seashore"), timeout=10)
        channel.close()
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as page:
            metrics = page.read().decode()

    assert 'imagerepo_consumer_lag_seqs{consumer="search"} 0.0' in metrics
    assert f"imagerepo_search_applied_seq {float(storage.head_seq())}" in metrics

    assert [h.image_id for h in reply.hits] == [beach]
    assert any("keyword search only" in m for m in service.messages())


def test_a_second_service_on_the_same_data_dir_refuses_to_start(tmp_path):
    with running(tmp_path, "127.0.0.1:9", "127.0.0.1:9") as first:
        second = _start_once(str(tmp_path))
        assert first.proc.poll() is None  # the first one keeps serving

    assert second.returncode != 0
    assert f"is in use by another search process (pid {first.proc.pid})" in second.stderr
    assert "SEARCH_DATA_DIR" in second.stderr


@pytest.mark.parametrize("kept", [0.5, 0.999])
def test_starts_when_the_label_embedding_cache_is_cut_short(tmp_path, kept):
    cache = tmp_path / CACHE_NAME
    np.savez(cache, names=np.asarray(["cat", "dog"]), embeddings=np.ones((2, 4), np.float32))
    whole = cache.read_bytes()
    cache.write_bytes(whole[: int(len(whole) * kept)])

    with running(tmp_path, "127.0.0.1:9", "127.0.0.1:9") as service:
        assert is_serving(f"127.0.0.1:{service.port}")

    assert "label embedding cache unreadable, recomputing" in service.messages()


def test_a_data_dir_that_cannot_be_made_is_named_in_one_line(tmp_path):
    (tmp_path / "a-file").write_text("not a directory")
    data_dir = tmp_path / "a-file" / "search"

    result = _start_once(str(data_dir))

    assert result.returncode == 2
    assert f"search: not started: cannot open {data_dir}: " in result.stderr
    assert "SEARCH_DATA_DIR" in result.stderr
    assert "Traceback" not in result.stderr


def _start_once(data_dir: str) -> subprocess.CompletedProcess[str]:
    """`python -m search_service` on `data_dir` and any free port, expected to exit: its end."""
    return subprocess.run(
        [sys.executable, "-m", "search_service"],
        cwd=REPO_ROOT,
        env={**os.environ, "SEARCH_PORT": "0", "SEARCH_DATA_DIR": data_dir},
        capture_output=True,
        text=True,
        timeout=60,
    )
