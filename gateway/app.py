"""Flask app factory: routes over the service clients."""

from __future__ import annotations

from flask import Flask, jsonify

from gateway.clients import ServiceClients
from gateway.config import GatewayConfig


def create_app(config: GatewayConfig, clients: ServiceClients | None = None) -> Flask:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_upload_bytes
    services = clients or ServiceClients.connect(config)
    app.extensions["imagerepo.clients"] = services

    @app.get("/api/health")
    def health():
        statuses = services.health()
        healthy = all(s == "SERVING" for s in statuses.values())
        return jsonify(status="ok" if healthy else "degraded", services=statuses), (
            200 if healthy else 503
        )

    @app.get("/")
    def home():
        return "<!doctype html><title>imagerepo</title><h1>imagerepo</h1>"

    return app
