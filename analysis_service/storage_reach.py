"""How loudly to say that storage does not answer.

At a normal start (`make run`) the worker is often up before storage: its first claims fail
with UNAVAILABLE for a second or two. That is no problem, so while storage has never answered
since the worker started, a failure that says "not there (yet)" is logged once at INFO
("waiting for storage at <addr>"), and a WARNING comes only if storage still has not answered
after `quiet_s`. Once storage has answered, losing it warns at once (the first failure after
an answer), then at the call site's own pace.

A failure that is no outage (a refused token, an internal error) is never quietened: storage
is there and something is wrong.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from analysis_service.failures import OUTAGE_CODES, CallFailedError

log = logging.getLogger(__name__)

# Storage is not there (yet): not listening, or too slow to answer while it opens.
NOT_THERE_CODES = OUTAGE_CODES | {"DEADLINE_EXCEEDED"}


class StorageReach:
    def __init__(
        self, address: str, quiet_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._address = address
        self._quiet_s = quiet_s
        self._clock = clock
        self._started = clock()
        self._lock = threading.Lock()
        self._reached = False
        self._waiting_said = False
        self._late_warned = False
        self._loss_warned = False

    def answered(self) -> None:
        """Storage answered a call."""
        if self._reached and not self._loss_warned:
            return  # the common case, without the lock
        with self._lock:
            if self._loss_warned:
                log.info("storage answers again", extra={"storage": self._address})
            elif not self._reached and self._waiting_said:
                log.info(
                    "storage reached",
                    extra={
                        "storage": self._address,
                        "after_s": round(self._clock() - self._started, 1),
                    },
                )
            self._reached = True
            self._loss_warned = False

    def warn(self, error: CallFailedError, failures: int) -> bool:
        """Whether the call site should log a WARNING for `error`, its `failures`-th in a row
        (the site's own pace: the 1st, then every 10th). Logs the waiting INFO and the late
        WARNING itself."""
        own_pace = failures == 1 or failures % 10 == 0
        if error.code not in NOT_THERE_CODES:
            return own_pace
        with self._lock:
            if self._reached:
                if not self._loss_warned:
                    self._loss_warned = True
                    return True
                return failures % 10 == 0
            waited = self._clock() - self._started
            if waited < self._quiet_s:
                if not self._waiting_said:
                    self._waiting_said = True
                    log.info("waiting for storage at %s", self._address)
                return False
            if not self._late_warned:
                self._late_warned = True
                log.warning(
                    "storage at %s still unreachable after %.0f s",
                    self._address,
                    waited,
                    extra={"storage": self._address, "error": str(error)},
                )
                return False
            return failures % 10 == 0
