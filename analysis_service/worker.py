"""The worker's loop: claim a batch, read it, analyse it, write the outcomes back.

    feed (WatchChanges, live) --put--> wake --+
    poll every poll_interval_s -------------->+--> ClaimAnalysis(batch, lease)
                                                   -> ReadImageData (each, concurrently)
                                                   -> vision Analyze (the batch at once)
                                                   -> CompleteAnalysis(result | failure)

Several lanes (`batches_in_flight`) run this loop at once, so one batch is read and written
while another is on vision. Once vision has answered nothing for `outage_hold_s` (every call
of a batch unavailable or out of time with no answer to any other), the lanes claim nothing
and one of them probes vision instead until it answers: claiming through a long outage would
only churn the queue (storage gives an outage's claim back, so it does not fail the photos,
but each claim would end the same way). Before that, a batch claimed while vision is known
away is not sent: a probe goes instead, and the batch is given back unless vision answers it.
So the images that go to vision go to one thought present, and if it goes away with them (an
image that crashes or freezes it) their claims count, once each. Leases live in storage: a
second worker, or a killed one's successor, needs nothing from this process. A result whose
lease was lost (another worker claimed the image after our lease ran out) is dropped: storage
refuses it by generation.

It knows nothing of gRPC: the clients raise `CallFailedError` and `failures.classify` decides.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from analysis_service import metrics
from analysis_service.clients import Claim, FeedMessage, QueueStats
from analysis_service.config import AnalysisConfig
from analysis_service.failures import Backoff, CallFailedError, Kind, classify, is_outage
from analysis_service.storage_reach import StorageReach
from vision_service.analysis_copy import bytes_for_analysis

log = logging.getLogger(__name__)

CONSUMER = "analysis"
# Between two progress lines in the log while images are being analysed.
PROGRESS_EVERY_S = 30.0


class Storage(Protocol):
    def claim(self, worker_id: str, max_images: int, lease_ms: int) -> list[Claim]: ...
    def read_image(self, image_id: str) -> bytes: ...
    def complete(self, image_id: str, generation: int, analysis: Any) -> None: ...
    def fail(
        self, image_id: str, generation: int, reason: str, permanent: bool, outage: bool = False
    ) -> None: ...
    def stats(self) -> QueueStats: ...
    def watch(self, after_seq: int) -> Any: ...


class Vision(Protocol):
    def analyse_batch(self, images: list[bytes], abandon: threading.Event) -> list[Any]: ...
    def probe(self, abandon: threading.Event) -> CallFailedError | None: ...


class Worker:
    def __init__(self, config: AnalysisConfig, storage: Storage, vision: Vision) -> None:
        self._config = config
        self._storage = storage
        self._vision = vision
        self._stopping = threading.Event()  # claim nothing more
        self._abandon = threading.Event()  # give back what is in flight
        self._wake = threading.Condition()
        self._wake_count = 0  # bumped by the feed on every change that may be work
        self._pool = ThreadPoolExecutor(
            max_workers=config.batch_size * config.batches_in_flight,
            thread_name_prefix="analysis-io",
        )
        self._threads: list[threading.Thread] = []
        self._watch: Any = None
        self._watch_lock = threading.Lock()
        self._seen_seq = 0
        self._head_seq = 0
        self._done = 0
        self._counts_lock = threading.Lock()
        # When vision last started to answer nothing (None: it answers).
        self._vision_away_since: float | None = None  # guarded by _away_lock
        self._away_lock = threading.Lock()
        # One lane probes vision at a time, with this pause between probes.
        self._probe_lock = threading.Lock()
        self._probe_backoff = Backoff(first_s=0.5, max_s=5.0)  # guarded by _probe_lock
        # Quiet while storage has never answered (a normal start): see storage_reach.py.
        self._storage_reach = StorageReach(config.storage_address, config.storage_wait_s)

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        targets: list[tuple[str, Callable[[], None]]] = [
            (f"analysis-lane-{i}", self._lane) for i in range(self._config.batches_in_flight)
        ]
        targets += [("analysis-feed", self._follow_feed), ("analysis-stats", self._watch_stats)]
        for name, target in targets:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info(
            "analysis worker started",
            extra={
                "worker_id": self._config.worker_id,
                "batch": self._config.batch_size,
                "lease_ms": self._config.lease_ms,
                "batches_in_flight": self._config.batches_in_flight,
            },
        )

    def stop(self, grace_s: float | None = None) -> None:
        """Claim nothing more; let the batches in flight finish within `grace_s`, then give
        their images back (a transient failure releases the lease at once) and return."""
        grace_s = self._config.grace_s if grace_s is None else grace_s
        self._stopping.set()
        self._wakeup()
        with self._watch_lock:
            if self._watch is not None:
                self._watch.cancel()
        deadline = time.monotonic() + grace_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self._threads):
            log.warning("batches still in flight after the grace period: giving them back")
            self._abandon.set()
            for thread in self._threads:
                thread.join(5.0)
        self._pool.shutdown(wait=False, cancel_futures=True)
        log.info("analysis worker stopped", extra={"images": self._done})

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads) and not self._stopping.is_set()

    # --- the feed: only a wake-up call --------------------------------------------------------

    def _wakeup(self) -> None:
        with self._wake:
            self._wake_count += 1
            self._wake.notify_all()

    def _follow_feed(self) -> None:
        backoff = Backoff(first_s=0.5, max_s=10.0)
        after: int | None = None
        while not self._stopping.is_set():
            try:
                if after is None:
                    # From the head: older work is found by claiming, not by replaying.
                    after = int(self._storage.stats().head_seq)
                    self._storage_reach.answered()
                    self._seen_seq = max(self._seen_seq, after)
                    # An image stored after the lanes' last claim but at or before this head
                    # is not in the feed from here: claim once more now (else it waits for the
                    # next poll: up to poll_interval_s right after a start or a reconnect).
                    self._wakeup()
                watch = self._storage.watch(after)
                with self._watch_lock:
                    if self._stopping.is_set():
                        return
                    self._watch = watch
                for message in watch:
                    backoff.succeeded()
                    self._storage_reach.answered()
                    after = self._on_feed(message, after)
            except CallFailedError as exc:
                if exc.code == "OUT_OF_RANGE":
                    after = None  # compacted past us: start again from the head
                    continue
                delay = backoff.failed()
                if self._storage_reach.warn(exc, backoff.failures):
                    log.warning(
                        "change feed unavailable; polling meanwhile",
                        extra={"error": str(exc), "retry_s": delay},
                    )
                self._stopping.wait(delay)

    def _on_feed(self, message: FeedMessage, after: int) -> int:
        work = False
        for seq, may_be_work in message.changes:
            after = max(after, seq)
            work = work or may_be_work
        self._head_seq = max(self._head_seq, message.head_seq)
        self._seen_seq = max(self._seen_seq, after)
        metrics.LAG_SEQS.labels(CONSUMER).set(max(0, self._head_seq - self._seen_seq))
        if work:
            self._wakeup()
        return after

    def _watch_stats(self) -> None:
        last_progress = time.monotonic()
        reported = 0
        while not self._stopping.wait(self._config.stats_interval_s):
            try:
                stats = self._storage.stats()
            except CallFailedError:
                continue
            self._storage_reach.answered()
            metrics.PENDING.set(stats.pending_count)
            metrics.OLDEST_PENDING_S.set(stats.oldest_pending_age_s)
            self._head_seq = max(self._head_seq, int(stats.head_seq))
            metrics.LAG_SEQS.labels(CONSUMER).set(max(0, self._head_seq - self._seen_seq))
            if time.monotonic() - last_progress >= PROGRESS_EVERY_S and self._done != reported:
                log.info(
                    "analysis progress",
                    extra={
                        "analysed": self._done - reported,
                        "pending": stats.pending_count,
                        "lag_seqs": self._head_seq - self._seen_seq,
                    },
                )
                last_progress, reported = time.monotonic(), self._done

    # --- a lane: claim, analyse, complete -------------------------------------------------

    def _lane(self) -> None:
        # At most 10 s: once vision is back, the queue moves again within seconds.
        backoff = Backoff(first_s=0.5, max_s=10.0)
        while not self._stopping.is_set():
            if self._claims_held():
                self._wait_for_vision()
                continue
            with self._wake:
                seen = self._wake_count
            try:
                claims = self._storage.claim(
                    self._config.worker_id, self._config.batch_size, self._config.lease_ms
                )
            except CallFailedError as exc:
                delay = backoff.failed()
                if self._storage_reach.warn(exc, backoff.failures):
                    log.warning(
                        "cannot claim work from storage",
                        extra={"error": str(exc), "retry_s": delay},
                    )
                self._stopping.wait(delay)
                continue
            self._storage_reach.answered()
            if not claims:
                with self._wake:
                    if self._wake_count == seen and not self._stopping.is_set():
                        self._wake.wait(self._config.poll_interval_s)
                continue
            outage = self.process(claims)
            if outage:
                # Vision (or storage) is away: its images wait in storage with a backoff;
                # claiming new ones now would only fail them too.
                self._stopping.wait(backoff.failed())
            else:
                backoff.succeeded()

    # --- vision away: hold the claims, probe it -------------------------------------------

    def _vision_answered(self, answered: bool) -> None:
        with self._away_lock:
            if answered:
                self._vision_away_since = None
            elif self._vision_away_since is None:
                self._vision_away_since = time.monotonic()
        if answered:
            metrics.CLAIMS_HELD.set(0)

    def _vision_known_away(self) -> bool:
        with self._away_lock:
            return self._vision_away_since is not None

    def _claims_held(self) -> bool:
        with self._away_lock:
            since = self._vision_away_since
        return since is not None and time.monotonic() - since >= self._config.outage_hold_s

    def _wait_for_vision(self) -> None:
        """Probe vision, one lane at a time, until it answers; the other lanes look again
        every half second."""
        if not self._probe_lock.acquire(blocking=False):
            self._stopping.wait(0.5)
            return
        try:
            if not self._claims_held():
                return
            metrics.CLAIMS_HELD.set(1)
            if self._vision.probe(self._abandon) is None:
                self._probe_backoff.succeeded()
                self._vision_answered(True)
                log.info("vision answers again: claiming again")
                self._wakeup()
                return
            delay = self._probe_backoff.failed()
            if self._probe_backoff.failures == 1 or self._probe_backoff.failures % 20 == 0:
                log.warning(
                    "vision answers nothing: claiming nothing until it does",
                    extra={"probes": self._probe_backoff.failures, "retry_s": delay},
                )
            self._stopping.wait(delay)
        finally:
            self._probe_lock.release()

    # --- one batch ----------------------------------------------------------------------------

    def process(self, claims: list[Claim]) -> bool:
        """Analyse one claimed batch and write every outcome back; True when every image
        failed because a service was away."""
        started = time.monotonic()
        metrics.BATCH_SIZE.observe(len(claims))
        read = list(self._pool.map(self._read, claims))
        readable = [(claim, data) for claim, data in zip(claims, read, strict=True) if data]
        outcomes: list[Any] = []
        away_at_send = False
        if readable and not self._abandon.is_set():
            outcomes, away_at_send = self._analyse([data for _, data in readable], started)
        elif readable:
            outcomes = [CallFailedError("vision", "CANCELLED", "the worker is stopping")] * len(
                readable
            )
        failures = [o for o in outcomes if isinstance(o, CallFailedError)]
        if outcomes and not self._abandon.is_set() and not away_at_send:
            # Vision known away: only a probe went out, and _analyse noted its answer.
            away = [f for f in failures if f.service == "vision" and is_outage(f)]
            self._vision_answered(len(away) < len(outcomes))
        list(
            self._pool.map(
                lambda pair: self._complete(pair[0], pair[1], away_at_send),
                zip([c for c, _ in readable], outcomes, strict=True),
            )
        )
        metrics.BATCH_SECONDS.observe(time.monotonic() - started)
        return bool(outcomes) and len(failures) == len(outcomes) and all(map(is_outage, failures))

    def _analyse(self, images: list[bytes], started: float) -> tuple[list[Any], bool]:
        """The batch's outcomes from vision, and whether vision was known away when they were
        decided (then no image went to it: the claims are given back, not counted).

        While vision is known away (a batch or probe got no answer, none since), a probe goes
        instead of the images: a call sent into a known outage says nothing about its image,
        but one sent to a vision that then goes away with it (a crash, a freeze) counts once,
        since any image of the batch may be what took it down. Without the probe the first
        batch after a restart would go out while vision was still "known away", and an image
        that crashes vision at once would be given back after every restart, forever."""
        if self._vision_known_away():
            failure = self._vision.probe(self._abandon)
            if failure is not None:
                return [failure] * len(images), True
            self._vision_answered(True)
            if time.monotonic() - started + self._config.call_timeout_s > (
                self._config.lease_ms / 1000
            ):
                # The probe took so long that the batch could outlive its lease: give it back
                # (claimed again at once, vision now thought present).
                late = CallFailedError("vision", "UNAVAILABLE", "vision answered again late")
                return [late] * len(images), True
        return self._vision.analyse_batch(images, self._abandon), False

    def _read(self, claim: Claim) -> bytes | None:
        try:
            return bytes_for_analysis(self._storage.read_image(claim.image_id))
        except CallFailedError as exc:
            self._settle(claim, exc)
            return None

    def _complete(self, claim: Claim, outcome: Any, away_at_send: bool) -> None:
        if isinstance(outcome, CallFailedError):
            self._settle(claim, outcome, away_at_send)
            return
        try:
            self._storage.complete(claim.image_id, claim.generation, outcome)
        except CallFailedError as exc:
            self._write_failed(claim, exc)
            return
        self._count("ready")

    def _settle(
        self, claim: Claim, error: CallFailedError, vision_away_at_send: bool = False
    ) -> None:
        """Write back why an image could not be analysed (or nothing, if it is gone)."""
        verdict = classify(
            error, claim.attempts, claim.last_error, vision_away_at_send=vision_away_at_send
        )
        metrics.FAILURES.labels(error.service, verdict.kind.value, error.code).inc()
        if verdict.kind is Kind.GONE:
            self._count("deleted")
            return
        stopping = error.code == "CANCELLED" and self._abandon.is_set()
        reason = f"analysis worker {self._config.worker_id} stopped" if stopping else verdict.reason
        try:
            # An outage known before the call (or not vision's) gives the claim back in
            # storage: it does not count against the image.
            self._storage.fail(
                claim.image_id, claim.generation, reason, verdict.permanent, verdict.outage
            )
        except CallFailedError as exc:
            self._write_failed(claim, exc)
            return
        if verdict.permanent:
            log.warning(
                "analysis failed for good", extra={"image_id": claim.image_id, "why": reason}
            )
        self._count("abandoned" if stopping else "failed" if verdict.permanent else "retry")

    def _write_failed(self, claim: Claim, error: CallFailedError) -> None:
        if error.code == "ABORTED" or error.reason == "LEASE_LOST":
            # Our lease ran out and another worker claimed the image: its result counts.
            log.debug("lease lost; result dropped", extra={"image_id": claim.image_id})
            self._count("lease_lost")
        elif error.code == "NOT_FOUND":
            self._count("deleted")
        else:
            # Storage is away: the lease runs out and the image is claimed again.
            log.warning(
                "could not write the analysis back",
                extra={"image_id": claim.image_id, "error": str(error)},
            )
            self._count("unsaved")

    def _count(self, outcome: str) -> None:
        metrics.IMAGES.labels(outcome).inc()
        if outcome == "ready":
            with self._counts_lock:
                self._done += 1
