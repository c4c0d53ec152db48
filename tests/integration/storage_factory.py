"""Builds a real storage server over a data dir, for the stack fixture."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from storage_service.columnstore.store import ColumnStore
from storage_service.server import build_server


def open_storage(address: str, data_dir: Path) -> tuple[Any, int, Any, Callable[[], None]]:
    """(server, port, health, close) of a storage service keeping its data in data_dir."""
    store = ColumnStore.open(data_dir)
    server, port, health = build_server(store, address)
    return server, port, health, store.close
