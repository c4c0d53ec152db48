"""What a failed call means for the image, and how long to pause when a service is away.

Pure decisions, no gRPC: the clients turn a failed call into `CallFailedError` (service,
status code name, message) and the worker asks `classify` what to do with the image.

    vision INVALID_ARGUMENT, FAILED_PRECONDITION   the image is the problem: FAILED, with why
    UNAVAILABLE, DEADLINE_EXCEEDED,                the service is: stays PENDING, storage backs
    RESOURCE_EXHAUSTED, CANCELLED, ...             the image off (next_attempt) and retries it
    storage NOT_FOUND                              deleted meanwhile: nothing to write back
    storage ABORTED (LEASE_LOST)                   another worker has it now: drop our result

A failure that keeps coming back for the same image (a model error, a call that always runs
out of time) is made permanent after `MAX_ATTEMPTS` claims, so nothing stays pending forever;
an outage (UNAVAILABLE) never is: the image waits for the service to come back.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

# Vision answers these when the bytes are no image it can read: retrying will not help.
PERMANENT_VISION_CODES = frozenset({"INVALID_ARGUMENT", "FAILED_PRECONDITION"})
# The service is away or overloaded: says nothing about the image.
OUTAGE_CODES = frozenset({"UNAVAILABLE", "RESOURCE_EXHAUSTED", "CANCELLED"})
MAX_ATTEMPTS = 8


class CallFailedError(Exception):
    """A call to another service failed with a gRPC status (its code's name) and message."""

    def __init__(self, service: str, code: str, details: str, reason: str = "") -> None:
        super().__init__(f"{service}: {code}: {details}")
        self.service = service
        self.code = code
        self.details = details
        # The google.rpc ErrorInfo reason, when the service sent one (LEASE_LOST, ...).
        self.reason = reason


class Kind(enum.Enum):
    PERMANENT = "permanent"  # mark FAILED with the reason
    TRANSIENT = "transient"  # leave PENDING; storage retries after a backoff
    GONE = "gone"  # the image was deleted: nothing to do


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    # One plain sentence for the image's last_error / status_detail.
    reason: str

    @property
    def permanent(self) -> bool:
        return self.kind is Kind.PERMANENT


def classify(error: CallFailedError, attempts: int = 1) -> Verdict:
    """What to do with an image whose analysis failed with `error` on its `attempts`-th claim."""
    if error.service == "storage" and error.code == "NOT_FOUND":
        return Verdict(Kind.GONE, "the image was deleted")
    if error.service == "vision" and error.code in PERMANENT_VISION_CODES:
        return Verdict(Kind.PERMANENT, f"vision cannot analyse this image: {error.details}")
    if error.code in OUTAGE_CODES:
        return Verdict(
            Kind.TRANSIENT, f"{error.service} unavailable ({error.code}): {error.details}"
        )
    if attempts >= MAX_ATTEMPTS:
        return Verdict(
            Kind.PERMANENT,
            f"{error.service} failed on this image {attempts} times "
            f"(last: {error.code}: {error.details})",
        )
    return Verdict(Kind.TRANSIENT, f"{error.service} failed ({error.code}): {error.details}")


def is_outage(error: CallFailedError) -> bool:
    """A failure that says the service is away (pause claiming), not that the image is bad."""
    return error.code in OUTAGE_CODES or error.code == "DEADLINE_EXCEEDED"


class Backoff:
    """Pause between attempts while a service is away: first_s, doubling up to max_s, back to
    nothing after a success. Not thread-safe: one per loop."""

    def __init__(self, first_s: float = 0.5, max_s: float = 30.0) -> None:
        self._first_s = first_s
        self._max_s = max_s
        self._next_s = first_s
        self.failures = 0

    def failed(self) -> float:
        """Record a failure; the pause to take before the next attempt."""
        delay = self._next_s
        self._next_s = min(self._next_s * 2, self._max_s)
        self.failures += 1
        return delay

    def succeeded(self) -> None:
        self._next_s = self._first_s
        self.failures = 0
