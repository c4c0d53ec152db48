"""The gateway holds no state of its own: two gateway processes on two ports over one stack
serve the same library (an upload through each, a login on one used on the other), uploads are
analysed by the analysis worker (not by the gateway), and the status page shows how far each
consumer of storage's change feed is behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import REPO_ROOT
from tests.support import free_ports

from .conftest import Stack, fresh_jpeg

KEY = "ann:two-gateways"


def _wait_until_up(url: str, process: subprocess.Popen, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"gateway exited with {process.returncode}"
        try:
            if requests.get(f"{url}/api/health", timeout=2).status_code < 500:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"gateway at {url} did not answer within {timeout_s} s")


@pytest.fixture(scope="module")
def two_gateways(stack: Stack, tmp_path_factory) -> Iterator[list[str]]:
    """Two `python -m gateway` processes on two ports, one data dir (where the session secret
    is created once), the same stack behind both; no secret is configured."""
    data_dir: Path = tmp_path_factory.mktemp("gateways")
    processes: list[subprocess.Popen] = []
    urls = []
    for port in free_ports(2):
        env = {
            **os.environ,
            "GATEWAY_PORT": str(port),
            "GATEWAY_STORAGE_ADDR": f"127.0.0.1:{stack.ports['storage']}",
            "GATEWAY_VISION_ADDR": f"127.0.0.1:{stack.ports['vision']}",
            "GATEWAY_SEARCH_ADDR": f"127.0.0.1:{stack.ports['search']}",
            "GATEWAY_DATA_DIR": str(data_dir),
            "GATEWAY_ANALYSIS_WAIT_S": "30",
            "IMAGEREPO_API_KEYS": KEY,
            "LOG_LEVEL": "WARNING",
        }
        for name in ("GATEWAY_SECRET_KEY", "GATEWAY_SECRET_KEY_FILE", "IMAGEREPO_BASE_PORT"):
            env.pop(name, None)
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "gateway"],
                cwd=REPO_ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        )
        urls.append(f"http://127.0.0.1:{port}")
    try:
        for url, process in zip(urls, processes, strict=True):
            _wait_until_up(url, process)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _csrf(session: requests.Session, url: str) -> str:
    page = session.get(f"{url}/login", timeout=10).text
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "the login page carries a CSRF token"
    return found.group(1)


def test_two_gateways_share_uploads_and_logins(two_gateways, photo_jpegs):
    first, second = two_gateways
    bearer = {"Authorization": f"Bearer {KEY}"}
    uploaded = {}
    for url, name in ((first, "chelsea"), (second, "coffee")):
        reply = requests.post(
            f"{url}/api/images",
            files=[("files", (f"{name}-via-{url[-5:]}.jpg", fresh_jpeg(photo_jpegs[name])))],
            headers=bearer,
            timeout=120,
        )
        assert reply.status_code == 201, reply.text
        uploaded[name] = reply.json()["results"][0]["image"]

    # A login on the first gateway is a login on the second: the session secret was created
    # once in the shared data dir, and nothing else about a session lives in a gateway.
    with requests.Session() as browser:
        token = _csrf(browser, first)
        login = browser.post(
            f"{first}/login", data={"csrf_token": token, "key": KEY}, allow_redirects=False
        )
        assert login.status_code == 303
        seen = {}
        for url in (first, second):
            listing = browser.get(f"{url}/api/images", params={"page_size": 1000}, timeout=10)
            assert listing.status_code == 200, listing.text
            seen[url] = {image["id"] for image in listing.json()["images"]}
        # A form needs the CSRF token: one issued by the first gateway is valid on the second.
        tagged = browser.post(
            f"{second}/images/{uploaded['chelsea']['id']}/tags",
            data={"csrf_token": token, "add": "seen-on-both"},
            allow_redirects=False,
        )
        assert tagged.status_code == 303, tagged.text
    with requests.Session() as stranger:
        refused = stranger.get(f"{second}/api/images", timeout=10)

    ids = {image["id"] for image in uploaded.values()}
    assert ids <= seen[first] and ids <= seen[second]
    assert refused.status_code == 401  # the library is private: a key or a login is needed
    for name, image in uploaded.items():
        # Analysed by the analysis worker, whichever gateway took the upload.
        assert image["status"] == "ready", image
        assert image["labels"], name
    again = requests.get(f"{first}/api/images/{uploaded['chelsea']['id']}", headers=bearer)
    assert "seen-on-both" in again.json()["tags"]


def test_status_shows_how_far_each_feed_consumer_is_behind(stack, gateway_url, photo_jpegs):
    reply = requests.post(
        f"{gateway_url}/api/images",
        files=[("files", ("lag.jpg", fresh_jpeg(photo_jpegs["rocket"])))],
        timeout=120,
    )
    assert reply.status_code == 201
    report = requests.get(f"{gateway_url}/api/status", timeout=30).json()
    page = requests.get(f"{gateway_url}/status", timeout=30).text

    consumers = {c["consumer"]: c for c in report["consumers"]}
    storage = report["storage"]
    assert storage["head_seq"] > 0
    assert consumers["search"]["head_seq"] == storage["head_seq"]
    # The upload answered once analysed and indexed: search had applied up to then.
    assert 0 < consumers["search"]["applied_seq"] <= storage["head_seq"]
    assert consumers["search"]["lag_seqs"] == storage["head_seq"] - report["search"]["applied_seq"]
    assert consumers["search"]["following"] is True and consumers["search"]["replaying"] is False
    assert consumers["analysis"]["pending_count"] == storage["pending_count"]
    assert "Change feed and its consumers" in page
    assert 'id="consumer-search"' in page and 'id="consumer-analysis"' in page


def test_image_page_shows_the_analysis_attempts(gateway_url, photo_jpegs):
    reply = requests.post(
        f"{gateway_url}/api/images",
        files=[("files", ("attempts.jpg", fresh_jpeg(photo_jpegs["motorcycle"])))],
        timeout=120,
    )
    image = reply.json()["results"][0]["image"]
    assert image["status"] == "ready"

    page = requests.get(f"{gateway_url}/images/{image['id']}", timeout=30).text

    assert re.search(r'id="analysis-attempts">1 attempt<', page), page


def test_an_upload_not_waited_for_says_it_is_being_analysed(gateway_url, photo_jpegs):
    reply = requests.post(
        f"{gateway_url}/api/images",
        params={"wait": "0"},
        files=[("files", ("quick.jpg", fresh_jpeg(photo_jpegs["astronaut"])))],
        timeout=120,
    )
    result = reply.json()["results"][0]
    page = requests.get(f"{gateway_url}/images/{result['image']['id']}", timeout=30).text

    assert reply.status_code == 201
    assert result["image"]["status"] == "pending"
    assert result["pending_reason"] == "being analysed"
    assert set(result["timings_ms"]) == {"storage_put"}
    # By the time the page is read the worker may be done; either way it says where it is.
    assert 'id="analysis-state"' in page


def test_a_service_address_may_list_replicas_one_of_them_down(stack, photo_jpegs):
    """GATEWAY_*_ADDR as a list of replicas: calls go to those that answer, so a replica that
    is down (nothing listens on the first address) costs nothing. (That each replica serves a
    share is tests/service_runtime/test_channels.py.)"""
    down = f"127.0.0.1:{free_ports(1)[0]}"
    spread = stack.start_gateway(
        storage_address=f"{down},127.0.0.1:{stack.ports['storage']}",
        vision_address=f"{down},127.0.0.1:{stack.ports['vision']}",
        search_address=f"{down},127.0.0.1:{stack.ports['search']}",
    )
    try:
        health = requests.get(f"{spread.url}/api/health", timeout=30).json()
        reply = requests.post(
            f"{spread.url}/api/images",
            files=[("files", ("replicas.jpg", fresh_jpeg(photo_jpegs["china"])))],
            timeout=120,
        )
        image = reply.json()["results"][0]["image"]
        found = requests.get(f"{spread.url}/api/images/{image['id']}", timeout=30)
        predicted = requests.post(
            f"{spread.url}/api/predict",
            files=[("file", ("p.jpg", photo_jpegs["coffee"]))],
            timeout=120,
        )
    finally:
        spread.stop()

    assert reply.status_code == 201 and image["status"] == "ready", reply.text
    assert found.status_code == 200
    assert predicted.status_code == 200 and predicted.json()["labels"]
    assert all(state == "SERVING" for state in health["services"].values()), health


def test_a_refused_image_shows_why_and_a_retry_queues_it_again(stack, gateway_url, photo_paths):
    """45 megapixels: storage keeps it (limit 100), vision refuses it (limit 40). The upload
    answers FAILED with the reason, the page shows it with the attempts, and a retry puts the
    image back in storage's queue from scratch, where a worker claims it again (a later
    generation) and vision refuses it again."""
    import io

    from PIL import Image

    from imagerepo.storage.v1 import storage_service_pb2 as storage_pb

    with Image.open(photo_paths["camera"]) as im:
        huge = im.convert("L").resize((7500, 6000), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    huge.save(buf, "PNG")
    reply = requests.post(
        f"{gateway_url}/api/images", files=[("files", ("huge.png", buf.getvalue()))], timeout=120
    )
    image = reply.json()["results"][0]["image"]
    page = requests.get(f"{gateway_url}/images/{image['id']}", timeout=30).text
    storage = stack.storage_stub()
    request = storage_pb.GetImageRequest(image_id=image["id"])
    before = storage.GetImage(request).image
    retried = requests.post(f"{gateway_url}/api/images/{image['id']}/retry", timeout=120)
    stored = storage.GetImage(request).image

    assert reply.status_code == 201
    assert image["status"] == "failed", image
    assert image["status_text"] == "could not analyse: the picture is too large for the analyser"
    assert re.search(r'id="analysis-attempts">1 attempt<', page), page
    assert 'id="retry-button"' in page
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "failed"
    # Claimed again (a later generation), one attempt since the retry queued it from scratch.
    assert stored.analysis.generation > before.analysis.generation, stored.analysis
    assert stored.analysis.attempts == 1 and "pixels" in stored.analysis.last_error
