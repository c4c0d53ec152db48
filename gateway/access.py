"""Who may read and write, and protection of the HTML forms against cross-site request forgery.

Reads are open when no keys are configured. With keys, the gateway is private by default
(IMAGEREPO_PRIVATE=0 opens reads again): every page and API read needs a Bearer key or a
login, except the health check, the login page and the static files. The model endpoints
(predict, similar-to-an-upload) need a key whenever keys are set. A key changes only its own
owner's images; an admin key (IMAGEREPO_ADMIN_KEYS) changes anyone's and alone may
clear every exact duplicate at once. `Policy.authorize` enforces all that before a
route runs (registered in app.py), so the routes keep only their own write checks below.
Failed logins and wrong keys are rate limited per client address.

Writes (upload, delete, tags, feedback) are allowed to:
- a client sending `Authorization: Bearer <key>` with a key from IMAGEREPO_API_KEYS;
- the gallery's own pages: their forms and scripts send a CSRF token signed with the app's
  secret and bound to the browser's session; when keys are set, the session must also have
  logged in with a key.
When no keys are set (local use), a client with neither (curl, the bulk importer) may write
too, unless the browser says the request comes from another site.

An image's owner is the name before ':' in a key of the form "name:secret", a short digest of
the key otherwise, and "local" when no keys are set.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import g, redirect, request, session, url_for
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.wrappers import Response

from gateway.errors import ApiError, ForbiddenError, UnauthorizedError

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
CSRF_MAX_AGE_S = 12 * 3600
LOCAL_OWNER = "local"


def owner_for_key(key: str) -> str:
    name, sep, _secret = key.partition(":")
    if sep and name:
        return name
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:8]


class TooManyAttemptsError(ApiError):
    status = 429


class AttemptLimiter:
    """At most `per_minute` failed attempts per client address in any sliding minute."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = per_minute
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._failures.setdefault(client, deque())
        while times and now - times[0] >= 60.0:
            times.popleft()
        return times

    def retry_after_s(self, client: str) -> int:
        """0 when `client` may try; else seconds until its oldest failure leaves the window."""
        if self._limit <= 0:
            return 0
        with self._lock:
            now = self._clock()
            times = self._recent(client, now)
            if len(times) < self._limit:
                return 0
            return max(1, int(60.0 - (now - times[0])) + 1)

    def failed(self, client: str) -> None:
        with self._lock:
            now = self._clock()
            self._recent(client, now).append(now)
            if len(self._failures) > 10_000:  # forget idle clients, keep memory bounded
                for idle in [c for c, t in self._failures.items() if not t]:
                    del self._failures[idle]


def load_or_create_secret(path: Path) -> str:
    """The session secret stored at `path`, created once (0600) if absent. Gateways started at
    the same moment on one data dir agree: the first link wins, the others read it."""
    try:
        existing = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        existing = ""
    if existing:
        return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = secrets.token_hex(32)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(fresh + "\n")
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)  # fails when another process created it first
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip()
    finally:
        tmp.unlink(missing_ok=True)
    return fresh


class Access:
    def __init__(
        self,
        api_keys: frozenset[str],
        secret_key: str,
        *,
        admin_keys: frozenset[str] = frozenset(),
        private: bool | None = None,
        login_attempts_per_minute: int = 5,
    ) -> None:
        self._keys = api_keys | admin_keys
        self._admins = frozenset(owner_for_key(k) for k in admin_keys)
        self.private = bool(self._keys) if private is None else private
        self.limiter = AttemptLimiter(login_attempts_per_minute)
        self._serializer = URLSafeTimedSerializer(secret_key, salt="imagerepo-csrf")

    @property
    def keys_required(self) -> bool:
        return bool(self._keys)

    def check_key(self, key: str) -> str | None:
        """The owner of a valid key, or None."""
        found = None
        for known in self._keys:
            if hmac.compare_digest(known.encode(), key.encode()):
                found = owner_for_key(known)
        return found

    def is_admin(self, owner: str) -> bool:
        return owner in self._admins

    def identity(self) -> str | None:
        """Who sends this request: the owner of its Bearer key, else of its session's login;
        None for nobody. A wrong key counts as a failed attempt (and is refused with 401)."""
        header = request.headers.get("Authorization", "")
        if header and self._keys:
            scheme, _, key = header.partition(" ")
            if scheme.lower() != "bearer" or not key.strip():
                raise UnauthorizedError("the Authorization header must be 'Bearer <key>'")
            self.refuse_if_rate_limited()
            owner = self.check_key(key.strip())
            if owner is None:
                self.limiter.failed(client_address())
                raise UnauthorizedError("the API key is not valid")
            return owner
        owner = session.get("owner")
        return str(owner) if owner else None

    def refuse_if_rate_limited(self) -> None:
        wait = self.limiter.retry_after_s(client_address())
        if wait:
            g.retry_after_s = wait
            raise TooManyAttemptsError(f"too many failed attempts; try again in {wait} s")

    # --- CSRF ---------------------------------------------------------------------------------

    def csrf_token(self) -> str:
        """A token for this browser session's forms (creating the session's nonce if needed)."""
        if "csrf_nonce" not in session:
            session["csrf_nonce"] = secrets.token_urlsafe(16)
        return self._serializer.dumps(session["csrf_nonce"])

    def _csrf_valid(self, token: str) -> bool:
        nonce = session.get("csrf_nonce")
        if not token or not nonce:
            return False
        try:
            value = self._serializer.loads(token, max_age=CSRF_MAX_AGE_S)
        except BadSignature:
            return False
        return isinstance(value, str) and hmac.compare_digest(value, nonce)

    def check_csrf(self) -> None:
        token = request.form.get(CSRF_FIELD, "") or request.headers.get(CSRF_HEADER, "")
        if not self._csrf_valid(token):
            raise ForbiddenError(
                "the form's security token is missing or expired; reload the page and retry"
            )

    def require_form_writer(self) -> str:
        """For HTML form posts: a valid CSRF token always, and a login when keys are set."""
        self.check_csrf()
        if not self._keys:
            return LOCAL_OWNER
        owner = session.get("owner")
        if not owner:
            raise UnauthorizedError("log in with an API key to change images")
        return str(owner)

    def require_api_writer(self) -> str:
        """For JSON API writes: a Bearer key, or a page's CSRF token, or (no keys set) a
        request that is not cross-site. Returns the owner to record."""
        header = request.headers.get("Authorization", "")
        if header:
            scheme, _, key = header.partition(" ")
            if scheme.lower() != "bearer" or not key.strip():
                raise UnauthorizedError("the Authorization header must be 'Bearer <key>'")
            if not self._keys:
                return LOCAL_OWNER
            owner = self.check_key(key.strip())
            if owner is None:
                raise UnauthorizedError("the API key is not valid")
            return owner
        if request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD):
            return self.require_form_writer()
        if self._keys:
            raise UnauthorizedError("this write needs 'Authorization: Bearer <key>'")
        if _cross_site():
            raise ForbiddenError("cross-site writes are refused")
        return LOCAL_OWNER

    def viewer(self) -> str:
        """Who is looking, for feedback's reported_by."""
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("bearer ") and self._keys:
            return self.check_key(header[7:].strip()) or "anonymous"
        return str(session.get("owner") or (LOCAL_OWNER if not self._keys else "anonymous"))


def client_address() -> str:
    return request.remote_addr or "unknown"


# --- the policy every request passes before its route ---------------------------------------------

# Reachable by anyone, even when private: probes, the login form and the files it needs.
OPEN_ENDPOINTS = frozenset(
    {
        "api.health",
        "api.openapi",
        "static",
        "pages.favicon",
        "pages.login",
        "pages.logout",
        "pages.static",
    }
)
# They run the models on the caller's picture: a key (or a login) whenever keys are set.
MODEL_ENDPOINTS = frozenset({"api.predict", "api.similar_to_upload", "pages.search_similar"})
# Change many owners' images at once: admin keys only (when keys are set).
ADMIN_ENDPOINTS = frozenset({"api.resolve_exact_duplicates", "pages.resolve_exact_duplicates"})


def _ids(values: Iterable[object]) -> list[str]:
    """Image ids as the bulk routes read them: a list, each item maybe comma-separated."""
    return [p.strip() for v in values if isinstance(v, str) for p in v.split(",") if p.strip()]


def _json_list(name: str) -> list[str]:
    body = request.get_json(silent=True)
    value = body.get(name, []) if isinstance(body, dict) else []
    return _ids(value) if isinstance(value, list) else []


# Endpoints that change existing images, and where they name them.
OWNED_IMAGES: dict[str, Callable[[], Iterable[str]]] = {
    "api.delete": lambda: [request.view_args["image_id"]] if request.view_args else [],
    "api.retry": lambda: [request.view_args["image_id"]] if request.view_args else [],
    "api.tags": lambda: [request.view_args["image_id"]] if request.view_args else [],
    "api.favourite": lambda: [request.view_args["image_id"]] if request.view_args else [],
    "api.restore": lambda: [request.view_args["image_id"]] if request.view_args else [],
    "pages.toggle_favourite": lambda: [request.view_args["image_id"]] if request.view_args else [],
    "pages.restore_image": lambda: [request.view_args["image_id"]] if request.view_args else [],
    "pages.delete_image": lambda: [request.view_args["image_id"]] if request.view_args else [],
    "pages.retry_analysis": lambda: [request.view_args["image_id"]] if request.view_args else [],
    "pages.change_tags": lambda: [request.view_args["image_id"]] if request.view_args else [],
    "api.bulk_delete": lambda: _json_list("ids"),
    "api.bulk_tags": lambda: _json_list("ids"),
    "api.resolve_duplicates": lambda: _json_list("remove"),
    "pages.bulk": lambda: _ids(request.form.getlist("ids")),
    "pages.resolve_duplicates": lambda: [
        m for m in _ids(request.form.getlist("members")) if m != request.form.get("keep", "")
    ],
}


@dataclass
class Policy:
    access: Access
    # The owner of an image; None when there is no such image (the route says 404 itself).
    image_owner: Callable[[str], str | None]

    def authorize(self) -> Response | None:
        """Run before every route: refuse (raise) or redirect what this caller may not do."""
        endpoint = request.endpoint or ""
        access = self.access
        if endpoint == "pages.login" and request.method == "POST":
            access.refuse_if_rate_limited()
        if endpoint in OPEN_ENDPOINTS or not access.keys_required:
            return None
        who = access.identity()
        if who is None:
            if access.private or endpoint in MODEL_ENDPOINTS or endpoint in ADMIN_ENDPOINTS:
                return self._login_needed(endpoint)
            return None  # a write: the route's own check answers 401/403
        if endpoint in ADMIN_ENDPOINTS and not access.is_admin(who):
            raise ForbiddenError("only an admin key may do this")
        if endpoint in OWNED_IMAGES and not access.is_admin(who):
            for image_id in dict.fromkeys(OWNED_IMAGES[endpoint]()):
                owner = self.image_owner(image_id)
                if owner is not None and owner != who:
                    raise ForbiddenError(f"image {image_id} belongs to another owner")
        return None

    def _login_needed(self, endpoint: str) -> Response:
        wants_page = (
            request.method == "GET"
            and endpoint.startswith("pages.")
            and "text/html" in request.headers.get("Accept", "text/html")
        )
        if wants_page:
            return redirect(url_for("pages.login", next=request.full_path.rstrip("?")), 303)
        raise UnauthorizedError("this needs 'Authorization: Bearer <key>' or a login")

    def after(self, response: Any) -> Any:
        """Count a failed login against the client; tell a limited client when to retry."""
        login = request.endpoint == "pages.login" and request.method == "POST"
        if login and response.status_code == 401:
            self.access.limiter.failed(client_address())
        if g.get("retry_after_s"):
            response.headers["Retry-After"] = str(g.retry_after_s)
        return response


def _cross_site() -> bool:
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        return True
    origin = request.headers.get("Origin", "")
    return bool(origin) and origin.rstrip("/") != request.host_url.rstrip("/")
