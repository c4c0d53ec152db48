"""Flask app factory: the pages and the REST API over the service clients."""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

import grpc
from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway import albums as _albums  # noqa: F401 - adds the album routes to api and pages
from gateway.access import CSRF_FIELD, Access, Policy, load_or_create_secret
from gateway.api import api
from gateway.clients import RECONNECT_OPTIONS, ServiceClients
from gateway.config import GatewayConfig
from gateway.errors import ServiceError, register_error_handlers
from gateway.ingest import IngestPipeline
from gateway.mosaic_tiles import TileCache
from gateway.pages import pages
from gateway.state import GatewayState, state
from imagerepo.search.v2 import search_service_pb2_grpc as search_grpc
from imagerepo.storage.v2 import storage_service_pb2_grpc as storage_grpc
from imagerepo.vision.v2 import vision_service_pb2_grpc as vision_grpc
from service_runtime.channels import open_channel
from service_runtime.grpc_server import channel_options
from service_runtime.logs import (
    REQUEST_ID_HEADER,
    reset_request_id,
    sane_request_id,
    set_request_id,
)
from service_runtime.metrics import HTTP_LATENCY, HTTP_REQUESTS, PENDING_IMAGES

log = logging.getLogger("gateway.access")

# Pages load scripts and styles from /static only; inline styles draw the probability bars.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)


def connect_services(config: GatewayConfig) -> ServiceClients:
    """Channels to the three services with the configured TLS and service token; every call
    carries the request id of the HTTP request that made it."""
    options = [*channel_options(), *RECONNECT_OPTIONS]
    channels = {
        name: open_channel(address, options, config.security)
        for name, address in (
            ("storage", config.storage_address),
            ("vision", config.vision_address),
            ("search", config.search_address),
        )
    }
    return ServiceClients(
        storage=storage_grpc.StorageServiceStub(channels["storage"]),
        vision=vision_grpc.VisionServiceStub(channels["vision"]),
        search=search_grpc.SearchServiceStub(channels["search"]),
        channels=channels,
        timeout_s=config.rpc_timeout_s,
        analyze_timeout_s=config.analyze_timeout_s,
    )


def session_secret(config: GatewayConfig) -> str:
    """From the config, else its file, else created once in the data dir (logins survive a
    restart); random per process only when none is set (tests)."""
    if config.secret_key:
        return config.secret_key
    if config.secret_key_file is not None:
        return config.secret_key_file.read_text(encoding="utf-8").strip()
    if config.data_dir is not None:
        return load_or_create_secret(config.data_dir / "session_secret")
    return secrets.token_hex(32)


def create_app(config: GatewayConfig, clients: ServiceClients | None = None) -> Flask:
    """The gateway app: stateless, so any number can serve side by side (close its channels
    with `stop_app`)."""
    if config.private and not config.api_keys:
        raise ValueError("IMAGEREPO_PRIVATE=1 needs API keys (IMAGEREPO_API_KEYS or _FILE)")
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_upload_bytes
    app.config["SECRET_KEY"] = session_secret(config)
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.json.sort_keys = False  # type: ignore[attr-defined]

    services = clients or connect_services(config)
    pipeline = IngestPipeline(services, analysis_wait_s=config.analysis_wait_s)
    app.extensions["imagerepo"] = GatewayState(
        config=config,
        clients=services,
        pipeline=pipeline,
        access=Access(
            config.api_keys,
            app.config["SECRET_KEY"],
            admin_keys=config.admin_keys,
            private=config.private,
            login_attempts_per_minute=config.login_attempts_per_minute,
        ),
        tiles=TileCache(services, config.mosaic_max_images, config.moderation_threshold),
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
            # app.js's first wait before asking again for a thumbnail storage was busy for.
            "thumb_retry_after_s": st.config.thumbnail_retry_after_s,
        }

    @app.before_request
    def _start_timer() -> None:
        g.started = time.perf_counter()
        g.request_id = sane_request_id(request.headers.get(REQUEST_ID_HEADER))
        g.request_id_token = set_request_id(g.request_id)

    def image_owner(image_id: str) -> str | None:
        try:
            return str(state().clients.get_image(image_id).owner)
        except ServiceError as exc:
            if exc.code == grpc.StatusCode.NOT_FOUND:
                return None  # the route answers 404 (or reports it per image) itself
            raise

    policy = Policy(state_of(app).access, image_owner)
    app.before_request(policy.authorize)
    app.after_request(policy.after)

    @app.get("/metrics")
    def metrics() -> Response:
        # Consumer lag: images stored but not yet analysed (the analysis workers' queue).
        try:
            PENDING_IMAGES.set(state().clients.storage_stats().pending_count)
        except ServiceError:
            PENDING_IMAGES.set(float("nan"))
        return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)

    @app.after_request
    def _count(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        HTTP_REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        HTTP_LATENCY.labels(request.method, route).observe(elapsed)
        response.headers[REQUEST_ID_HEADER] = g.get("request_id", "")
        return response

    @app.teardown_request
    def _forget_request_id(_exc: BaseException | None) -> None:
        token = g.pop("request_id_token", None)
        if token is not None:
            reset_request_id(token)

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

    return app


def state_of(app: Flask) -> GatewayState:
    return app.extensions["imagerepo"]  # type: ignore[no-any-return]


def stop_app(app: Flask) -> None:
    """Close the service channels."""
    st: GatewayState = app.extensions["imagerepo"]
    st.clients.close()
