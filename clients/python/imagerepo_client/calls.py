"""One way to make every call: a deadline always, typed errors, and retries only where safe.

A call is retried only when the service was unreachable (UNAVAILABLE) and repeating it cannot
change the outcome: reads, deletes by id, and uploads that the storage service deduplicates by
sha256. Nothing is retried after a deadline passes, since the first attempt may have been done.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from imagerepo_client.errors import error_from_rpc

T = TypeVar("T")

MAX_MESSAGE_BYTES = 16 * 1024 * 1024

# Reconnect quickly to a restarted service (gRPC's default backoff grows to 2 minutes).
CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep trying a safe call whose service is unavailable."""

    attempts: int = 5
    first_backoff_s: float = 0.2
    max_backoff_s: float = 2.0

    def backoff_s(self, attempt: int) -> float:
        """Pause before retry number `attempt` (1-based), with jitter."""
        ceiling = min(self.max_backoff_s, self.first_backoff_s * 2 ** (attempt - 1))
        return ceiling * (0.5 + random.random() / 2)


NO_RETRY = RetryPolicy(attempts=1)


def open_channel(address: str) -> grpc.Channel:
    return grpc.insecure_channel(address, options=CHANNEL_OPTIONS)


@dataclass
class Caller:
    """Runs calls against one service with a default deadline and a retry policy."""

    service: str
    timeout_s: float
    retry: RetryPolicy

    def call(
        self,
        method: str,
        attempt: Callable[[float], T],
        *,
        idempotent: bool,
        timeout_s: float | None = None,
    ) -> T:
        """Run attempt(deadline_s); retry UNAVAILABLE when idempotent; raise typed errors."""
        deadline_s = timeout_s if timeout_s is not None else self.timeout_s
        tries = self.retry.attempts if idempotent else 1
        for number in range(1, tries + 1):
            try:
                return attempt(deadline_s)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or number == tries:
                    raise error_from_rpc(exc, method, self.service) from exc
            time.sleep(self.retry.backoff_s(number))
        raise AssertionError("unreachable")  # pragma: no cover
