"""Who may write, and protection of the HTML forms against cross-site request forgery.

Reads are open. Writes (upload, delete, tags, feedback) are allowed to:
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
import secrets

from flask import request, session
from itsdangerous import BadSignature, URLSafeTimedSerializer

from gateway.errors import ForbiddenError, UnauthorizedError

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
CSRF_MAX_AGE_S = 12 * 3600
LOCAL_OWNER = "local"


def owner_for_key(key: str) -> str:
    name, sep, _secret = key.partition(":")
    if sep and name:
        return name
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:8]


class Access:
    def __init__(self, api_keys: frozenset[str], secret_key: str) -> None:
        self._keys = api_keys
        self._serializer = URLSafeTimedSerializer(secret_key, salt="imagerepo-csrf")

    @property
    def keys_required(self) -> bool:
        return bool(self._keys)

    def check_key(self, key: str) -> str | None:
        """The owner of a valid key, or None."""
        for known in self._keys:
            if hmac.compare_digest(known.encode(), key.encode()):
                return owner_for_key(known)
        return None

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


def _cross_site() -> bool:
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        return True
    origin = request.headers.get("Origin", "")
    return bool(origin) and origin.rstrip("/") != request.host_url.rstrip("/")
