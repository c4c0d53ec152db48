"""What a failed call means for the image, and how long to pause when a service is away.

Pure decisions, no gRPC: the clients turn a failed call into `CallFailedError` (service,
status code name, message, and for a vision call how long it waited and how many other calls
vision answered meanwhile, a probe sent when vision had been quiet for half the deadline
included) and the worker asks `classify` what to do with the image.

    vision INVALID_ARGUMENT, FAILED_PRECONDITION   the image is the problem: FAILED, with why
    UNAVAILABLE, RESOURCE_EXHAUSTED, CANCELLED     the service is (an outage): stays PENDING,
                                                   storage backs the image off (next_attempt)
                                                   and gives the claim back, the lane pauses;
                                                   vision UNAVAILABLE given back only if vision
                                                   was known away at the call, else counted
    vision DEADLINE_EXCEEDED, vision answered      vision is away or stuck: an outage, the
      no other call while this one waited          same as vision UNAVAILABLE
    vision DEADLINE_EXCEEDED, vision answered      this image is the slow one: PENDING and
      other calls while this one waited            retried; FAILED at the MAX_ATTEMPTS-th claim
                                                   if the try before also ended this way
    INTERNAL, UNKNOWN, ... (and DEADLINE_EXCEEDED  PENDING and retried; FAILED at the
      from storage)                                MAX_ATTEMPTS-th claim
    storage NOT_FOUND                              deleted meanwhile: nothing to write back
    storage ABORTED (LEASE_LOST)                   another worker has it now: drop our result

A failure that keeps coming back for the same image (a model error, a call that runs out of
time while vision answers other images) is made permanent after `MAX_ATTEMPTS` claims, so
nothing stays pending forever; an outage never is by the worker: not UNAVAILABLE, and not a
vision so slow or stuck that it answered nothing while the call waited.

An outage verdict with `Verdict.outage` set is written back with `AnalysisFailure.outage`, and
storage gives that claim back (attempts - 1): its own cap (STORAGE_ANALYSIS_MAX_ATTEMPTS, 10,
which FAILs an image claimed that often at its next claim) and `attempts` here count only the
claims that said something about the image. A vision that went away (UNAVAILABLE, or a timeout
with no answer to anything) says something when the call went out to a vision thought present:
the image may be what crashed or froze it, so that claim counts (once; the verdict is still
TRANSIENT). Only when vision was already known away at the call (`vision_away_at_send`, which
the worker passes in) is it given back. Claims that never came back (a worker killed, a
lease run out) still count, and so did outage claims before storage knew the flag: so a
slow-image timeout makes the image FAILED only when its previous try also timed out on its
own (its last_error says so), never on its first slow try after an outage. The worker also
stops claiming once vision has answered nothing for `outage_hold_s` (worker.py), so a long
outage does not churn the queue.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

# Vision answers these when the bytes are no image it can read: retrying will not help.
PERMANENT_VISION_CODES = frozenset({"INVALID_ARGUMENT", "FAILED_PRECONDITION"})
# The service is away or overloaded: says nothing about the image.
OUTAGE_CODES = frozenset({"UNAVAILABLE", "RESOURCE_EXHAUSTED", "CANCELLED"})
MAX_ATTEMPTS = 8
# Added to the reason of a vision outage that counts: vision went away while it had the image.
COUNTED_IN_FLIGHT = " (counted: vision went away while it had this image)"
# In the reason written for a vision call that ran out of time while vision answered others;
# found again in the image's last_error on its next claim.
SLOW_ALONE = "while it answered"


class CallFailedError(Exception):
    """A call to another service failed with a gRPC status (its code's name) and message.

    A vision call also says how long it waited (`waited_s`) and how many other calls vision
    answered meanwhile (`others_answered`): None when not known."""

    def __init__(
        self,
        service: str,
        code: str,
        details: str,
        reason: str = "",
        *,
        waited_s: float | None = None,
        others_answered: int | None = None,
    ) -> None:
        super().__init__(f"{service}: {code}: {details}")
        self.service = service
        self.code = code
        self.details = details
        # The google.rpc ErrorInfo reason, when the service sent one (LEASE_LOST, ...).
        self.reason = reason
        self.waited_s = waited_s
        self.others_answered = others_answered


class Kind(enum.Enum):
    PERMANENT = "permanent"  # mark FAILED with the reason
    TRANSIENT = "transient"  # leave PENDING; storage retries after a backoff
    GONE = "gone"  # the image was deleted: nothing to do


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    # One plain sentence for the image's last_error / status_detail.
    reason: str
    # A service the analysis needs was away (unavailable, or answered nothing in time), not a
    # problem of this image: storage does not count the claim against it.
    outage: bool = False

    @property
    def permanent(self) -> bool:
        return self.kind is Kind.PERMANENT


def classify(
    error: CallFailedError,
    attempts: int = 1,
    last_error: str = "",
    *,
    vision_away_at_send: bool = False,
) -> Verdict:
    """What to do with an image whose analysis failed with `error` on its `attempts`-th claim;
    `last_error` is what the image's previous try left (from the claim).

    `vision_away_at_send`: vision was already known to answer nothing when this image's call
    went out (the worker then sends no image, only a probe, so the image never reached it).
    Only then is a vision outage given back (`Verdict.outage`); a vision that went away
    (UNAVAILABLE, or a timeout with no answer to anything) while it had the image still
    counts the claim once, since this image may be the one that took it down."""
    if error.service == "storage" and error.code == "NOT_FOUND":
        return Verdict(Kind.GONE, "the image was deleted")
    if error.service == "vision" and error.code in PERMANENT_VISION_CODES:
        return Verdict(Kind.PERMANENT, f"vision cannot analyse this image: {error.details}")
    if error.service == "vision" and error.code == "DEADLINE_EXCEEDED":
        return _vision_deadline(error, attempts, last_error, vision_away_at_send)
    if error.code in OUTAGE_CODES:
        # RESOURCE_EXHAUSTED is an answer (vision there, busy), CANCELLED the worker's own
        # give-back at shutdown: neither can come from an image taking vision down.
        went_away = error.service == "vision" and error.code == "UNAVAILABLE"
        give_back = not went_away or vision_away_at_send
        return Verdict(
            Kind.TRANSIENT,
            f"{error.service} unavailable ({error.code}): {error.details}"
            + ("" if give_back else COUNTED_IN_FLIGHT),
            outage=give_back,
        )
    if attempts >= MAX_ATTEMPTS:
        return Verdict(
            Kind.PERMANENT,
            f"{error.service} failed on this image {attempts} times "
            f"(last: {error.code}: {error.details})",
        )
    return Verdict(Kind.TRANSIENT, f"{error.service} failed ({error.code}): {error.details}")


def slow_alone(error: CallFailedError) -> bool:
    """A vision call ran out of time while vision answered other calls: the image is slow,
    not vision."""
    return (
        error.service == "vision"
        and error.code == "DEADLINE_EXCEEDED"
        and (error.others_answered or 0) > 0
    )


def _vision_deadline(
    error: CallFailedError, attempts: int, last_error: str, vision_away_at_send: bool
) -> Verdict:
    waited = "its deadline" if error.waited_s is None else f"{error.waited_s:.1f} s"
    if not slow_alone(error):
        # Vision answered nothing at all meanwhile (stopped, stuck, overloaded, away): an
        # outage; the worker never fails the image for it. Given back only if vision was
        # already known away when the call went out: frozen by this very image, it counts.
        return Verdict(
            Kind.TRANSIENT,
            f"vision unavailable (DEADLINE_EXCEEDED): it answered nothing for {waited}; "
            "waiting for it" + ("" if vision_away_at_send else COUNTED_IN_FLIGHT),
            outage=vision_away_at_send,
        )
    others = error.others_answered or 0
    slow = (
        f"it did not answer in {waited} {SLOW_ALONE} {others} other "
        f"image{'' if others == 1 else 's'}"
    )
    if attempts >= MAX_ATTEMPTS and _was_slow_alone(last_error):
        return Verdict(
            Kind.PERMANENT,
            f"vision failed on this image {attempts} times (last: DEADLINE_EXCEEDED: {slow})",
        )
    if attempts >= MAX_ATTEMPTS:
        # `attempts` may count outage claims (a storage that does not give them back, leases
        # run out during an outage): an image may reach the limit on its first slow try. It
        # fails only if the next one is slow as well.
        count = f"{attempts} attempts; failed for good if the next one is as slow"
    else:
        count = f"{attempts} of {MAX_ATTEMPTS} attempts"
    return Verdict(Kind.TRANSIENT, f"vision failed (DEADLINE_EXCEEDED): {slow} ({count})")


def _was_slow_alone(last_error: str) -> bool:
    return "DEADLINE_EXCEEDED" in last_error and SLOW_ALONE in last_error


def is_outage(error: CallFailedError) -> bool:
    """A failure that says the service is away (pause claiming), not that the image is bad."""
    if error.code == "DEADLINE_EXCEEDED":
        return not slow_alone(error)
    return error.code in OUTAGE_CODES


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
