"""What the browser tests share: one headless Chromium per session, pages and contexts at the
desktop and phone sizes, a whole stack of a module's own, screenshots, and real photos made
into fresh uploads.

The fixtures (`browser`, `page`, `own_stack`, `url`) are registered by the integration
conftest; a test module asks for `own_stack`/`url` when it needs a gallery whose contents it
knows (its own order, deletes and duplicates), or for the session's `stack`/`gateway_url`
when it does not.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.conftest import REPO_ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO_ROOT / "tests" / "artifacts"
SHOTS = ARTIFACTS / "screenshots"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1366, "height": 900}


# --- fixtures (registered in tests/integration/conftest.py) -----------------------------------


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One headless Chromium for every browser test; each test opens its own context."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A desktop page (1366 px, light) in a context of its own."""
    context = new_context(browser)
    opened = context.new_page()
    opened.set_default_timeout(60_000)
    yield opened
    context.close()


@pytest.fixture(scope="module")
def own_stack(request: pytest.FixtureRequest, tmp_path_factory, vision_engine) -> Iterator[Any]:
    """A whole stack (storage, vision, search, analysis, gateway) of the asking module's own:
    its gallery order, deletes and duplicates are known."""
    from .conftest import build_stack

    name = request.module.__name__.rsplit(".", 1)[-1]
    built = build_stack(tmp_path_factory.mktemp(f"{name}-stack"), vision_engine)
    yield built
    built.close()


@pytest.fixture(scope="module")
def url(own_stack: Any) -> str:
    """The gateway of the module's own stack."""
    assert own_stack.gateway is not None
    return str(own_stack.gateway.url)


# --- helpers ----------------------------------------------------------------------------------


def new_context(
    browser: Browser,
    viewport: dict[str, int] = DESKTOP,
    scheme: str = "light",
    scale: float | None = None,
    **extra: Any,
) -> BrowserContext:
    """A browser context at this size and colour scheme. A phone (under 500 px) has touch and,
    unless `scale` says otherwise, a 2x screen; downloads are accepted."""
    phone = viewport["width"] < 500
    return browser.new_context(
        viewport=viewport,  # type: ignore[arg-type]
        color_scheme=scheme,  # type: ignore[arg-type]
        device_scale_factor=scale or (2 if phone else 1),
        has_touch=phone,
        accept_downloads=True,
        **extra,
    )


def shoot(page: Page, name: str, full: bool = True) -> Path:
    """A screenshot saved as tests/artifacts/screenshots/<name>.png, once the page is quiet;
    asserted not blank."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(path), full_page=full)
    with Image.open(path) as shot:
        pixels = np.asarray(shot.convert("L"), dtype=np.float32)
    assert pixels.std() > 10, f"{name} screenshot looks blank"
    return path


def fresh_photo(photo: bytes, exif: Image.Exif | None = None, quality: int = 90) -> bytes:
    """A real photo as new JPEG bytes (a unique comment, optional EXIF): stored, never an exact
    duplicate of another upload."""
    with Image.open(io.BytesIO(photo)) as im:
        out = io.BytesIO()
        extra = {"exif": exif} if exif is not None else {}
        im.convert("RGB").save(
            out, "JPEG", quality=quality, comment=uuid.uuid4().hex.encode(), **extra
        )
    return out.getvalue()


def upload(
    url: str,
    data: bytes,
    name: str = "",
    *,
    wait: bool = True,
    headers: dict[str, str] | None = None,
    statuses: tuple[int, ...] = (201,),
) -> dict[str, Any]:
    """Upload one file over the REST API; its image as the API shows it. `wait=False` answers
    before the analysis is done."""
    name = name or f"photo-{uuid.uuid4().hex[:8]}.jpg"
    reply = requests.post(
        f"{url}/api/images",
        files={"file": (name, data)},
        data={} if wait else {"wait": "0"},
        headers=headers or {},
        timeout=120,
    )
    assert reply.status_code in statuses, reply.text
    image: dict[str, Any] = reply.json()["results"][0]["image"]
    return image
