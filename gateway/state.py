"""What every request handler reaches: config, service clients, uploads, access rules.

Nothing here is state a second gateway would need to share: storage holds it all."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from gateway.access import Access
from gateway.clients import ServiceClients
from gateway.config import GatewayConfig
from gateway.ingest import IngestPipeline
from gateway.mosaic_tiles import TileCache


@dataclass
class GatewayState:
    config: GatewayConfig
    clients: ServiceClients
    pipeline: IngestPipeline
    access: Access
    tiles: TileCache


def state() -> GatewayState:
    return current_app.extensions["imagerepo"]  # type: ignore[no-any-return]
