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
from gateway.reindex import IndexRebuild


@dataclass
class GatewayState:
    config: GatewayConfig
    clients: ServiceClients
    pipeline: IngestPipeline
    access: Access
    tiles: TileCache
    reconciler: Reconciler | None
    index_rebuild: IndexRebuild


def state() -> GatewayState:
    return current_app.extensions["imagerepo"]  # type: ignore[no-any-return]
