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
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect, sync_playwright

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

# `expect(...)` assertions wait up to 30 s for what they assert (Playwright's default is 5 s):
# the machines these tests run on are shared 2-core hosts where a thumbnail or a fetched page
# can take seconds under load. Only a failing assertion waits that long.
expect.set_options(timeout=30_000)


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
    with page_in(browser) as opened:
        yield opened


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


@contextmanager
def page_in(
    browser: Browser,
    viewport: dict[str, int] = DESKTOP,
    scheme: str = "light",
    scale: float | None = None,
    *,
    timeout_ms: float = 60_000,
    **extra: Any,
) -> Iterator[Page]:
    """A page in a context of its own (`new_context`'s size, colour scheme, scale and extra
    context options), waiting up to `timeout_ms` for what it is told to wait for; the context
    is closed on leaving, whatever happened."""
    context = new_context(browser, viewport, scheme, scale, **extra)
    try:
        opened = context.new_page()
        opened.set_default_timeout(timeout_ms)
        yield opened
    finally:
        context.close()


def follow(link: Locator) -> None:
    """Click a plain link (as without script) and wait until the page it points to has loaded:
    a click only starts the navigation, and what is read at once is still the old page, or no
    page at all."""
    href = link.evaluate("a => a.href")
    assert href != link.page.url, f"{href} is the page already: nothing to wait for"
    link.click()
    link.page.wait_for_url(lambda at: at == href)


# An init script for the gallery: no infinite scroll, and its next page (fetched by the viewer's
# "next" or the keys past the last photo loaded) held until `window.releaseOlder()` is called,
# so keys can be pressed while it is on its way, however fast the machine is.
HOLD_OLDER = """(() => {
    delete window.IntersectionObserver;
    const fetchNow = window.fetch.bind(window);
    let release;
    const released = new Promise((done) => { release = done; });
    window.releaseOlder = () => release();
    window.fetch = (what, ...rest) => String(what).includes("page=")
        ? released.then(() => fetchNow(what, ...rest)) : fetchNow(what, ...rest);
})()"""


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


def shoot_widths(
    browser: Browser, url: str, pages: dict[str, str], schemes: tuple[str, ...] = ("light",)
) -> None:
    """Screenshots `<name>-<width>-<scheme>` of each page (name -> path under `url`) at desktop
    (1366 px) and phone (390 px) widths in each colour scheme, each asserted to fit its width
    (no sideways scrolling)."""
    for scheme in schemes:
        for width, viewport in (("1366", DESKTOP), ("390", PHONE)):
            with page_in(browser, viewport, scheme) as shot:
                for name, path in pages.items():
                    shot.goto(url + path)
                    shoot(shot, f"{name}-{width}-{scheme}")
                    scroll_width = shot.evaluate("document.documentElement.scrollWidth")
                    assert scroll_width <= viewport["width"], (name, width, scheme)


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


def wait_searchable(url: str, query: str, ids: list[str], timeout_s: float = 120.0) -> None:
    """Wait until a search for `query` finds every one of `ids`. Search follows storage's
    change feed, and an upload is searchable only once its analysis is stored, so a photo
    uploaded a moment ago may not be found yet; a test that searches for fresh uploads waits
    here first, and fails with what was found if they never all appear.

    An upload that waited for its analysis (the default) is normally found at once: the
    gateway answers it once the image is READY and search has applied storage's head. When
    this has to wait, it says so in a warning (pytest's warnings summary) with what storage
    and search said of the missing images at first, so that a lag shows in CI's log."""
    started = time.monotonic()
    deadline = started + timeout_s
    found: set[str] = set()
    first_state = ""
    while time.monotonic() < deadline:
        reply = requests.get(f"{url}/api/search", params={"q": query, "page_size": 100}, timeout=60)
        reply.raise_for_status()
        found = {h["image"]["id"] for h in reply.json()["hits"]}
        if set(ids) <= found:
            if first_state:
                waited = time.monotonic() - started
                warnings.warn(
                    f"search for {query!r} found all {len(ids)} uploads only after "
                    f"{waited:.1f} s; at first {first_state}",
                    stacklevel=2,
                )
            return
        if not first_state:
            first_state = indexing_state(url, [i for i in ids if i not in found])
        time.sleep(0.2)
    raise AssertionError(
        f"search for {query!r} found {sorted(found)} of {sorted(ids)}; at first {first_state}; "
        f"now {indexing_state(url, [i for i in ids if i not in found])}"
    )


def indexing_state(url: str, ids: list[str]) -> str:
    """What storage and search say of images search does not find: each one's analysis status
    (or the HTTP status of its read) and the change-feed consumers' lag from /api/status
    (search: applied_seq against storage's head_seq, following; analysis: images pending)."""
    statuses: dict[str, Any] = {}
    for image_id in ids:
        reply = requests.get(f"{url}/api/images/{image_id}", timeout=60)
        statuses[image_id] = reply.json().get("status") if reply.ok else reply.status_code
    report = requests.get(f"{url}/api/status", timeout=60)
    consumers = report.json().get("consumers") if report.ok else report.status_code
    return f"{len(ids)} missing, statuses {statuses}, feed consumers {consumers}"


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
