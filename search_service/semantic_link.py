"""Connecting the index to the vision service for semantic expansion, at start and after.

The label embeddings come from the disk cache when the vision service reports the same labels
(or cannot be reached); otherwise they are computed once through ListLabels + EmbedText. When
the vision service is down at start, search serves keyword-only and a background thread keeps
trying, logging each failure.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import grpc

from search_service.durable_index import DurableIndex
from search_service.label_embeddings import compute_and_cache, load_cached
from search_service.vision_client import VisionClient

log = logging.getLogger(__name__)


def connect_semantic(index: DurableIndex, client: VisionClient, data_dir: Path | None) -> bool:
    """Attach semantic expansion to `index`; False (and a log line) when it is not possible."""
    cached = load_cached(data_dir) if data_dir is not None else None
    try:
        names, _model = client.list_labels()
    except grpc.RpcError as exc:
        if cached is None:
            log.warning(
                "vision service unreachable and no cached label embeddings: "
                "keyword search only for now",
                extra={"vision": client.address, "code": str(exc.code())},
            )
            return False
        log.warning(
            "vision service unreachable; using cached label embeddings "
            "(queries fall back to keywords until it answers)",
            extra={"vision": client.address},
        )
        names = cached[0]
    if cached is not None and cached[0] == names:
        embeddings = cached[1]
    else:
        try:
            embeddings = compute_and_cache(data_dir, names, client.embed)
        except grpc.RpcError as exc:
            log.warning(
                "embedding label names failed: keyword search only for now",
                extra={"vision": client.address, "code": str(exc.code())},
            )
            return False
    index.attach_semantic(names, embeddings, client.embed)
    log.info("semantic expansion ready", extra={"labels": len(names)})
    return True


def keep_trying(
    index: DurableIndex,
    client: VisionClient,
    data_dir: Path | None,
    retry_s: float,
    stop: threading.Event,
) -> threading.Thread:
    """Retry connect_semantic every `retry_s` seconds in a daemon thread until it works."""

    def run() -> None:
        while not stop.wait(retry_s):
            if connect_semantic(index, client, data_dir):
                index.warm()
                return

    thread = threading.Thread(target=run, name="semantic-link", daemon=True)
    thread.start()
    return thread
