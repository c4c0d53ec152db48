"""The load-test mix (locust): uploads, gallery pages, thumbnails, searches and similar-image
queries against a running gateway. `make loadtest` runs it headless and bounded; see
benchmarks/loadtest.py. Photos are the real ones shipped in scikit-image and scikit-learn,
each upload re-encoded so it is stored anew rather than answered as a duplicate.

LOADTEST_KEY, when set, is sent as the Bearer key (a private gateway needs it).
"""

from __future__ import annotations

import io
import os
import random
import uuid

from locust import HttpUser, between, task
from PIL import Image

from tests.support import real_photo_paths

WORDS = ("cat", "espresso", "rocket", "flower", "motorcycle", "astronaut", "text", "temple", "cup")


def _photos() -> list[bytes]:
    out = []
    for path in real_photo_paths().values():
        with Image.open(path) as im:
            rgb = im.convert("RGB")
            rgb.thumbnail((640, 640))
            buf = io.BytesIO()
            rgb.save(buf, "JPEG", quality=88)
            out.append(buf.getvalue())
    return out


PHOTOS = _photos()


def _fresh(data: bytes) -> bytes:
    """The same picture as new bytes (a unique JPEG comment)."""
    with Image.open(io.BytesIO(data)) as im:
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=88, comment=uuid.uuid4().hex.encode())
    return buf.getvalue()


class GalleryUser(HttpUser):
    wait_time = between(0.2, 1.0)

    def on_start(self) -> None:
        key = os.environ.get("LOADTEST_KEY", "")
        if key:
            self.client.headers["Authorization"] = f"Bearer {key}"
        self.ids: list[str] = []
        self._refresh_ids()
        if not self.ids:
            self.upload()

    def _refresh_ids(self) -> None:
        with self.client.get(
            "/api/images?page_size=48", name="/api/images", catch_response=True
        ) as reply:
            if reply.status_code == 200:
                self.ids = [image["id"] for image in reply.json()["images"]]
                reply.success()
            else:
                reply.failure(f"HTTP {reply.status_code}")

    @task(1)
    def upload(self) -> None:
        photo = _fresh(random.choice(PHOTOS))
        with self.client.post(
            "/api/images",
            files={"file": (f"load-{uuid.uuid4().hex[:8]}.jpg", photo, "image/jpeg")},
            name="/api/images [upload]",
            catch_response=True,
        ) as reply:
            if reply.status_code in (201, 207):
                self.ids.append(reply.json()["results"][0]["image"]["id"])
                reply.success()
            else:
                reply.failure(f"HTTP {reply.status_code}: {reply.text[:200]}")

    @task(4)
    def gallery_page(self) -> None:
        self.client.get("/", name="/ [gallery page]")

    @task(2)
    def list_api(self) -> None:
        self._refresh_ids()

    @task(4)
    def thumbnail(self) -> None:
        if self.ids:
            image_id = random.choice(self.ids)
            self.client.get(f"/api/images/{image_id}/thumbnail", name="/api/images/[id]/thumbnail")

    @task(3)
    def search(self) -> None:
        self.client.get("/api/search", params={"q": random.choice(WORDS)}, name="/api/search")

    @task(2)
    def similar(self) -> None:
        if self.ids:
            image_id = random.choice(self.ids)
            self.client.get(
                f"/api/images/{image_id}/similar", params={"k": 8}, name="/api/images/[id]/similar"
            )

    @task(1)
    def similar_to_upload(self) -> None:
        self.client.post(
            "/api/similar",
            files={"file": ("query.jpg", random.choice(PHOTOS), "image/jpeg")},
            name="/api/similar [upload]",
        )
