"""The background reconciler: finishes images left PENDING while vision or search was away.

Every `interval_s` it lists PENDING images from storage (newest first) and hands each to the
ingest pipeline, and retries search removals of deleted images. A pass stops early when a
service is unavailable, since every other image would fail the same way.

Once, as soon as search answers, it also checks that search has not lost its index: an empty
index while storage holds analysed images (a wiped volume, a new index format) starts a
rebuild from storage.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import grpc

from gateway.clients import ServiceClients
from gateway.errors import ServiceError
from gateway.ingest import PENDING, READY, IngestPipeline
from gateway.reindex import IndexRebuild

log = logging.getLogger(__name__)

# Storage stamps created_at with its own clock; allow for a little skew against ours.
CLOCK_SLACK_MS = 1000


@dataclass
class ReconcilePass:
    completed: int = 0
    failed: int = 0
    still_pending: int = 0
    removals_retried: int = 0


class Reconciler:
    def __init__(
        self,
        clients: ServiceClients,
        pipeline: IngestPipeline,
        interval_s: float,
        index_rebuild: IndexRebuild | None = None,
    ) -> None:
        self._clients = clients
        self._pipeline = pipeline
        self._index_rebuild = index_rebuild
        self._index_checked = index_rebuild is None
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._storage_away = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="reconciler", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                report = self.run_once()
            except ServiceError as exc:
                if not self._storage_away:  # once per outage, not every pass
                    log.warning("reconciler waiting for storage", extra={"why": str(exc)})
                self._storage_away = True
                continue
            except Exception:  # the thread must outlive any one bad pass
                log.exception("reconciler pass crashed")
                continue
            self._storage_away = False
            if report.completed or report.failed:
                log.info("reconciler pass", extra=report.__dict__)

    def run_once(self) -> ReconcilePass:
        """One pass over pending work; ServiceError only when storage cannot list images."""
        report = ReconcilePass()
        if not self._index_checked:
            self._rebuild_a_lost_index()
        for image_id in sorted(self._pipeline.pending_removals):
            report.removals_retried += 1
            if not self._pipeline.remove_from_index(image_id):
                break
        in_flight_ms = self._pipeline.uploads_in_flight_since_ms()
        for image in list(self._clients.iter_images(status=PENDING)):
            if self._stop.is_set():
                break
            if (
                in_flight_ms is not None
                and image.created_at_unix_ms >= in_flight_ms - CLOCK_SLACK_MS
            ):
                continue  # its upload is still carrying it through
            outcome = self._pipeline.finish(image)
            if outcome.image.status == READY:
                report.completed += 1
            elif outcome.image.status == PENDING:
                report.still_pending += 1
                error = outcome.error
                if error is not None and error.code == grpc.StatusCode.UNAVAILABLE:
                    break
            else:
                report.failed += 1
        return report

    def _rebuild_a_lost_index(self) -> None:
        assert self._index_rebuild is not None
        try:
            documents = self._clients.search_stats().document_count
        except ServiceError:
            return  # search is away: look again on the next pass
        analysed = self._clients.list_images(page_size=1, status=READY).total_count
        self._index_checked = True
        if documents == 0 and analysed > 0:
            log.warning(
                "search index is empty while storage holds analysed images: rebuilding it",
                extra={"analysed_images": analysed},
            )
            self._index_rebuild.start(f"search index empty, {analysed} analysed images stored")
