"""What every request handler reaches: config, service clients, pipeline, access rules."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from gateway.access import Access
from gateway.clients import ServiceClients
from gateway.config import GatewayConfig
from gateway.ingest import IngestPipeline
from gateway.mosaic_tiles import TileCache
from gateway.reconciler import Reconciler


@dataclass
class GatewayState:
    config: GatewayConfig
    clients: ServiceClients
    pipeline: IngestPipeline
    access: Access
    tiles: TileCache
    reconciler: Reconciler | None


def state() -> GatewayState:
    return current_app.extensions["imagerepo"]  # type: ignore[no-any-return]
