"""Micro-batching: concurrent requests share one model run instead of one run each.

Each request thread first takes a `Ticket` (it is on its way: decoding, preprocessing), then
submits its input and waits on a future. A worker thread takes up to `max_size` queued inputs
and runs them as one batch; with several workers (one per core, each running the model on one
thread), one batch runs while the next one forms, and the cores stay busy. A worker waits
for more inputs — at most `max_wait_s` after the first one arrived — only while other tickets
are still on their way; a lone request is never held back, so batching costs a single client
nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

from service_runtime.metrics import MODEL_BATCH_SIZE

log = logging.getLogger(__name__)

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass
class _Pending(Generic[In, Out]):
    item: In
    future: Future[Out]


class BatcherClosedError(RuntimeError):
    """The batcher was closed before the item could run."""


class MicroBatcher(Generic[In, Out]):
    def __init__(
        self,
        run_batch: Callable[[list[In]], Sequence[Out]],
        *,
        max_size: int,
        max_wait_s: float,
        name: str,
        workers: int = 1,
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self._run_batch = run_batch
        self._max_size = max_size
        self._max_wait_s = max_wait_s
        self._queue: list[_Pending[In, Out]] = []
        self._incoming = 0
        self._closed = False
        self._cond = threading.Condition()
        # Sizes of the most recent batches run, for tests, logs and benchmarks.
        self.batch_sizes: deque[int] = deque(maxlen=10_000)
        self._batch_size_metric = MODEL_BATCH_SIZE.labels(name)
        self._workers = [
            threading.Thread(target=self._loop, name=f"batcher-{name}-{i}", daemon=True)
            for i in range(workers)
        ]
        for worker in self._workers:
            worker.start()

    def ticket(self) -> Ticket[In, Out]:
        """Announce an input that will be submitted soon; use as a context manager."""
        return Ticket(self)

    def submit(self, item: In) -> Future[Out]:
        """Queue one input (without a ticket); the future holds its output."""
        return self._enqueue(item, from_ticket=False)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for worker in self._workers:
            worker.join(timeout=5)

    def _announce(self) -> None:
        with self._cond:
            self._incoming += 1

    def _withdraw(self) -> None:
        with self._cond:
            self._incoming -= 1
            self._cond.notify_all()

    def _enqueue(self, item: In, *, from_ticket: bool) -> Future[Out]:
        future: Future[Out] = Future()
        with self._cond:
            if from_ticket:
                self._incoming -= 1
            if self._closed:
                future.set_exception(BatcherClosedError("the model batcher is shut down"))
                return future
            self._queue.append(_Pending(item, future))
            self._cond.notify_all()
        return future

    def _next_batch(self) -> list[_Pending[In, Out]] | None:
        with self._cond:
            while True:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    closed = BatcherClosedError("the model batcher is shut down")
                    for pending in self._queue:
                        pending.future.set_exception(closed)
                    self._queue.clear()
                    return None
                deadline = time.monotonic() + self._max_wait_s
                while (
                    0 < len(self._queue) < self._max_size
                    and self._incoming > 0
                    and not self._closed
                ):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                if self._queue:  # another worker may have taken everything meanwhile
                    batch = self._queue[: self._max_size]
                    del self._queue[: self._max_size]
                    return batch

    def _loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                outputs = self._run_batch([p.item for p in batch])
                if len(outputs) != len(batch):
                    raise RuntimeError(f"batch of {len(batch)} gave {len(outputs)} outputs")
            except Exception as exc:  # the callers get the error; the worker lives on
                log.exception("model batch failed")
                for pending in batch:
                    pending.future.set_exception(exc)
                continue
            self.batch_sizes.append(len(batch))
            self._batch_size_metric.observe(len(batch))
            for pending, output in zip(batch, outputs, strict=True):
                pending.future.set_result(output)


class Ticket(Generic[In, Out]):
    """A request's place in line while it prepares its input."""

    def __init__(self, batcher: MicroBatcher[In, Out]) -> None:
        self._batcher = batcher
        self._open = False

    def __enter__(self) -> Ticket[In, Out]:
        self._batcher._announce()
        self._open = True
        return self

    def submit(self, item: In) -> Future[Out]:
        if not self._open:
            raise RuntimeError("ticket used outside its with-block or twice")
        self._open = False
        return self._batcher._enqueue(item, from_ticket=True)

    def __exit__(self, *exc_info: object) -> None:
        if self._open:  # the request failed before submitting: stop waiting for it
            self._open = False
            self._batcher._withdraw()
