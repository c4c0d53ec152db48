"""Flask app factory: the pages and the REST API over the service clients."""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

from flask import Flask, Response, g, request

from gateway.access import CSRF_FIELD, Access
from gateway.api import api
from gateway.clients import ServiceClients
from gateway.config import GatewayConfig
from gateway.errors import register_error_handlers
from gateway.ingest import IngestPipeline
from gateway.mosaic_tiles import TileCache
from gateway.pages import pages
from gateway.reconciler import Reconciler
from gateway.reindex import IndexRebuild
from gateway.state import GatewayState, state

log = logging.getLogger("gateway.access")

# Pages load scripts and styles from /static only; inline styles draw the probability bars.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)


def create_app(config: GatewayConfig, clients: ServiceClients | None = None) -> Flask:
    """The gateway app; its reconciler thread runs when config.reconcile_interval_s > 0
    (stop it with `stop_app`)."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_upload_bytes
    app.config["SECRET_KEY"] = config.secret_key or secrets.token_hex(32)
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.json.sort_keys = False  # type: ignore[attr-defined]

    services = clients or ServiceClients.connect(config)
    pipeline = IngestPipeline(services, max_attempts=config.max_analysis_attempts)
    index_rebuild = IndexRebuild(services)
    reconciler = (
        Reconciler(services, pipeline, config.reconcile_interval_s, index_rebuild)
        if config.reconcile_interval_s > 0
        else None
    )
    app.extensions["imagerepo"] = GatewayState(
        config=config,
        clients=services,
        pipeline=pipeline,
        access=Access(config.api_keys, app.config["SECRET_KEY"]),
        tiles=TileCache(services, config.mosaic_max_images, config.moderation_threshold),
        reconciler=reconciler,
        index_rebuild=index_rebuild,
    )
    app.register_blueprint(api)
    app.register_blueprint(pages)
    register_error_handlers(app)

    @app.context_processor
    def _template_globals() -> dict[str, Any]:
        st = state()
        return {
            "csrf_field": CSRF_FIELD,
            "csrf_token": st.access.csrf_token,
            "keys_required": st.access.keys_required,
        }

    @app.before_request
    def _start_timer() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _access_log(response: Response) -> Response:
        elapsed_ms = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        writes = request.method not in ("GET", "HEAD", "OPTIONS")
        level = (
            logging.WARNING
            if response.status_code >= 500
            else logging.INFO
            if writes
            else logging.DEBUG
        )
        log.log(
            level,
            "request",
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "ms": round(elapsed_ms, 1),
            },
        )
        return response

    @app.after_request
    def _security_headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if response.mimetype == "text/html":
            response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
            response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    if reconciler is not None:
        reconciler.start()
    return app


def stop_app(app: Flask) -> None:
    """Stop the reconciler and close the service channels."""
    st: GatewayState = app.extensions["imagerepo"]
    if st.reconciler is not None:
        st.reconciler.stop()
    st.clients.close()
