"""The worker's calls to storage and vision: deadlines on every call, failed calls turned into
`CallFailedError`, so the worker's loop knows nothing of gRPC.

Vision's Analyze calls of a batch go out at once (gRPC futures, no thread per call), so the
service's micro-batcher sees the whole batch together and runs its models full. The vision
client counts the calls vision answered (all lanes together), so a call that ran out of time
can say whether vision answered others meanwhile: the image was the slow one, or vision was.
"""

from __future__ import annotations

import functools
import io
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import grpc
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from PIL import Image

from analysis_service.failures import OUTAGE_CODES, CallFailedError
from imagerepo.common.v2 import common_pb2
from imagerepo.storage.v2 import storage_service_pb2 as storage_pb
from imagerepo.storage.v2 import storage_service_pb2_grpc as storage_grpc
from imagerepo.vision.v2 import vision_service_pb2 as vision_pb
from imagerepo.vision.v2 import vision_service_pb2_grpc as vision_grpc

log = logging.getLogger(__name__)

PENDING = common_pb2.ANALYSIS_STATUS_PENDING
CHANGE_PUT = storage_pb.CHANGE_KIND_PUT
CHANGE_ANNOTATE = storage_pb.CHANGE_KIND_ANNOTATE


def _reason(error: grpc.RpcError) -> str:
    if not isinstance(error, grpc.Call):
        return ""
    try:
        status = rpc_status.from_call(error)
    except (ValueError, TypeError):
        return ""
    for detail in status.details if status is not None else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Is(info.DESCRIPTOR) and detail.Unpack(info):
            return str(info.reason)
    return ""


def _code_name(error: grpc.RpcError) -> str:
    code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
    return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"


def call_failed(
    service: str,
    error: grpc.RpcError,
    waited_s: float | None = None,
    others_answered: int | None = None,
) -> CallFailedError:
    details = (error.details() if isinstance(error, grpc.Call) else str(error)) or ""
    return CallFailedError(
        service,
        _code_name(error),
        details,
        _reason(error),
        waited_s=waited_s,
        others_answered=others_answered,
    )


@dataclass(frozen=True)
class Claim:
    image_id: str
    generation: int
    attempts: int
    # What the image's previous try left ("" on its first).
    last_error: str = ""


@dataclass(frozen=True)
class QueueStats:
    """What the worker reports of storage's analysis queue and change feed."""

    pending_count: int
    oldest_pending_age_s: float
    head_seq: int


@dataclass(frozen=True)
class FeedMessage:
    head_seq: int
    # (seq, whether the change may mean new work: a put, or a pending image free to claim)
    changes: list[tuple[int, bool]]


@dataclass
class _AnalyzeCall:
    """One Analyze call of a batch: when it started, vision's answer count then, and once it
    failed, how long it waited and how many calls vision answered meanwhile."""

    started_s: float
    answered_before: int
    waited_s: float | None = None
    others_answered: int | None = None


class StorageClient:
    def __init__(self, channel: grpc.Channel, timeout_s: float) -> None:
        self._stub = storage_grpc.StorageServiceStub(channel)
        self._timeout_s = timeout_s

    def claim(self, worker_id: str, max_images: int, lease_ms: int) -> list[Claim]:
        lease = Duration()
        lease.FromMilliseconds(lease_ms)
        request = storage_pb.ClaimAnalysisRequest(
            worker_id=worker_id, max_images=max_images, lease=lease
        )
        try:
            reply = self._stub.ClaimAnalysis(request, timeout=self._timeout_s)
        except grpc.RpcError as exc:
            raise call_failed("storage", exc) from None
        return [
            Claim(c.image.id, c.generation, c.image.analysis.attempts, c.image.analysis.last_error)
            for c in reply.images
        ]

    def read_image(self, image_id: str) -> bytes:
        request = storage_pb.ReadImageDataRequest(image_id=image_id)
        try:
            chunks = self._stub.ReadImageData(request, timeout=self._timeout_s)
            return b"".join(reply.chunk for reply in chunks)
        except grpc.RpcError as exc:
            raise call_failed("storage", exc) from None

    def complete(self, image_id: str, generation: int, analysis: vision_pb.AnalyzeResponse) -> None:
        # Vision's labels and colours are common.v2 messages already; a moderation score
        # vision did not compute is stored as 0, as it always was.
        result = storage_pb.AnalysisResult(
            labels=analysis.labels,
            moderation_score=analysis.moderation_score,
            ocr_text=analysis.ocr_text,
            feature_vector=analysis.feature_vector,
            colours=analysis.colours,
        )
        self._complete(
            storage_pb.CompleteAnalysisRequest(
                image_id=image_id, generation=generation, result=result
            )
        )

    def fail(
        self, image_id: str, generation: int, reason: str, permanent: bool, outage: bool = False
    ) -> None:
        failure = storage_pb.AnalysisFailure(reason=reason, permanent=permanent, outage=outage)
        self._complete(
            storage_pb.CompleteAnalysisRequest(
                image_id=image_id, generation=generation, failure=failure
            )
        )

    def _complete(self, request: storage_pb.CompleteAnalysisRequest) -> None:
        try:
            self._stub.CompleteAnalysis(request, timeout=self._timeout_s)
        except grpc.RpcError as exc:
            raise call_failed("storage", exc) from None

    def stats(self) -> QueueStats:
        try:
            reply = self._stub.GetStats(storage_pb.GetStatsRequest(), timeout=self._timeout_s)
        except grpc.RpcError as exc:
            raise call_failed("storage", exc) from None
        return QueueStats(
            reply.pending_count,
            reply.oldest_pending_age.ToMilliseconds() / 1000,
            reply.head_seq,
        )

    def watch(self, after_seq: int) -> FeedWatch:
        request = storage_pb.WatchChangesRequest(after_seq=after_seq, follow=True)
        return FeedWatch(self._stub.WatchChanges(request))


class FeedWatch:
    """One live WatchChanges stream; `cancel()` (from another thread) ends the iteration."""

    def __init__(self, call: grpc.Call) -> None:
        self._call = call

    def __iter__(self) -> Iterator[FeedMessage]:
        try:
            for reply in self._call:  # type: ignore[attr-defined]
                yield FeedMessage(reply.head_seq, [(c.seq, _may_be_work(c)) for c in reply.changes])
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.CANCELLED:  # type: ignore[attr-defined]
                return
            raise call_failed("storage", exc) from None

    def cancel(self) -> None:
        self._call.cancel()


def _may_be_work(change: storage_pb.Change) -> bool:
    if change.kind == CHANGE_PUT:
        return True
    # An image made PENDING again (a retry asked for), free to claim now.
    return (
        change.kind == CHANGE_ANNOTATE
        and change.image.status == PENDING
        and not change.image.analysis.lease_owner
        and not change.image.analysis.HasField("next_attempt_time")
    )


class VisionClient:
    def __init__(self, channel: grpc.Channel, timeout_s: float, top_k: int) -> None:
        self._stub = vision_grpc.VisionServiceStub(channel)
        self._timeout_s = timeout_s
        self._top_k = top_k
        # Calls vision answered (with a result or an error of its own: anything but a sign
        # that it is away), by every lane of this worker; only grows.
        self._answered = 0  # guarded by _answered_lock
        self._answered_lock = threading.Lock()

    @property
    def answered(self) -> int:
        with self._answered_lock:
            return self._answered

    def analyse_batch(
        self, images: Sequence[bytes], abandon: threading.Event, probe_if_quiet: bool = True
    ) -> list[vision_pb.AnalyzeResponse | CallFailedError]:
        """Analyze every image at once (labels, features, moderation, OCR where there is
        text); per image its answer or why it failed. Setting `abandon` cancels what is left
        (those fail with CANCELLED).

        When vision has answered nothing at all for half the deadline, a probe goes out
        (`probe_if_quiet`): if vision answers it while an image's call still waits, that image
        is the slow one, even when nothing else is being analysed."""
        started = time.monotonic()
        answered_before = self.answered
        remaining = threading.Semaphore(0)
        calls: list[_AnalyzeCall] = []
        futures = []
        for data in images:
            # Counted from the batch's start, not from this call's: the calls of a batch go out
            # together, and an answer to one sent just before this one (an in-process vision
            # answers within the loop) is still an answer while this image waited.
            call = _AnalyzeCall(time.monotonic(), answered_before)
            future = self._analyze(data)
            future.add_done_callback(functools.partial(self._settled, call, remaining))
            calls.append(call)
            futures.append(future)
        probe_at = started + self._timeout_s / 2 if probe_if_quiet else float("inf")
        for _ in futures:
            while True:
                if abandon.is_set():
                    for future in futures:
                        future.cancel()  # a no-op for those already answered
                if remaining.acquire(timeout=0.05):
                    break
                if time.monotonic() >= probe_at:
                    probe_at = float("inf")
                    if self.answered == answered_before:
                        # Not waited for: its answer only counts, in _settled.
                        self._analyze(_probe_picture()).add_done_callback(
                            functools.partial(
                                self._settled, _AnalyzeCall(0.0, 0), threading.Semaphore(0)
                            )
                        )
        results: list[vision_pb.AnalyzeResponse | CallFailedError] = []
        for call, future in zip(calls, futures, strict=True):
            try:
                results.append(future.result())
            except grpc.FutureCancelledError:
                results.append(CallFailedError("vision", "CANCELLED", "the worker is stopping"))
            except grpc.RpcError as exc:
                results.append(call_failed("vision", exc, call.waited_s, call.others_answered))
        return results

    def probe(self, abandon: threading.Event) -> CallFailedError | None:
        """Analyze a small grey picture with the images' own request and deadline: None when
        vision answered (with anything but a sign that it is away), else how the call failed."""
        (outcome,) = self.analyse_batch([_probe_picture()], abandon, probe_if_quiet=False)
        if isinstance(outcome, CallFailedError) and outcome.code in _NO_ANSWER_CODES:
            return outcome
        return None

    def _analyze(self, data: bytes) -> grpc.Future:
        return self._stub.Analyze.future(  # type: ignore[no-any-return]
            vision_pb.AnalyzeRequest(image_data=data, top_k=self._top_k),
            timeout=self._timeout_s,
        )

    def _settled(
        self, call: _AnalyzeCall, remaining: threading.Semaphore, future: grpc.Future
    ) -> None:
        """A call ended (on a gRPC thread): count an answer, or note how long this call
        waited in vain and how many calls vision answered meanwhile."""
        try:
            if future.cancelled():
                return
            error = future.exception()
            if error is None or _code_name(error) not in _NO_ANSWER_CODES:
                with self._answered_lock:
                    self._answered += 1
            else:
                call.waited_s = time.monotonic() - call.started_s
                call.others_answered = self.answered - call.answered_before
        finally:
            remaining.release()


@functools.cache
def _probe_picture() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (128, 128, 128)).save(out, "PNG")
    return out.getvalue()


# A call that ended with one of these got no answer from vision (an error vision raised
# itself, INTERNAL or UNKNOWN, is an answer: vision is there).
_NO_ANSWER_CODES = OUTAGE_CODES | {"DEADLINE_EXCEEDED"}
