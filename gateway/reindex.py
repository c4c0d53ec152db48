"""Rebuilding the search index from storage, which holds every image's analysis.

Search keeps its own index on disk; when that is lost (a wiped volume, a format change) the
images and their labels, vectors, OCR text and tags are all still in storage. `IndexRebuild`
streams every READY image from storage (newest first, page by page) into search's Rebuild
RPC, one rebuild at a time in a background thread, counting as it goes so the API, the CLI
and the logs can show progress. Search keeps serving the old index until the new one is whole
and keeps the writes that arrive meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from gateway.clients import ServiceClients
from gateway.errors import ServiceError
from gateway.ingest import READY, search_document, stored_analysis
from imagerepo.search.v1 import search_service_pb2 as search_pb

log = logging.getLogger(__name__)

_PROGRESS_EVERY = 1000
_PAGE_SIZE = 200
# A rebuild of a large repository streams for minutes: its deadline is generous.
REBUILD_TIMEOUT_S = 6 * 3600.0


@dataclass
class RebuildProgress:
    # "idle", "running", "done" or "failed".
    state: str = "idle"
    reason: str = ""
    # READY images in storage when the rebuild started (what the progress bar counts to).
    total: int = 0
    streamed: int = 0
    indexed: int = 0
    error: str = ""
    started_at_unix_ms: int = 0
    elapsed_s: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class IndexRebuild:
    def __init__(self, clients: ServiceClients) -> None:
        self._clients = clients
        self._lock = threading.Lock()
        self._progress = RebuildProgress()

    @property
    def progress(self) -> RebuildProgress:
        with self._lock:
            return RebuildProgress(**asdict(self._progress))

    def start(self, reason: str) -> bool:
        """Start a rebuild in the background; False when one is already running."""
        with self._lock:
            if self._progress.state == "running":
                return False
            self._progress = RebuildProgress(
                state="running", reason=reason, started_at_unix_ms=int(time.time() * 1000)
            )
            threading.Thread(target=self._run, name="index-rebuild", daemon=True).start()
        return True

    def _run(self) -> None:
        started = time.perf_counter()
        log.info("search index rebuild started", extra={"reason": self._progress.reason})
        try:
            total = self._clients.list_images(page_size=1, status=READY).total_count
            with self._lock:
                self._progress.total = total
            reply = self._clients.rebuild_index(self._documents(), REBUILD_TIMEOUT_S)
        except ServiceError as exc:
            with self._lock:
                self._progress.state = "failed"
                self._progress.error = exc.message
                self._progress.elapsed_s = round(time.perf_counter() - started, 3)
            log.error("search index rebuild failed", extra={"why": exc.message})
            return
        with self._lock:
            self._progress.state = "done"
            self._progress.indexed = int(reply.indexed_count)
            self._progress.elapsed_s = round(time.perf_counter() - started, 3)
            done = self._progress.as_json()
        log.info("search index rebuild done", extra=done)

    def _documents(self) -> Iterator[search_pb.SearchDocument]:
        for image in self._clients.iter_images(
            status=READY, page_size=_PAGE_SIZE, include_feature_vectors=True
        ):
            yield search_document(image, stored_analysis(image))
            with self._lock:
                self._progress.streamed += 1
                streamed, total = self._progress.streamed, self._progress.total
            if streamed % _PROGRESS_EVERY == 0:
                log.info("search index rebuild progress", extra={"streamed": streamed, "of": total})
