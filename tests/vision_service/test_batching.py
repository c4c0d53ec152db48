"""Micro-batching: concurrent requests share model runs, each gets its own answer, and a lone
request or a failing one never holds the others back."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from vision_service.batching import BatcherClosedError, MicroBatcher

# Generous: the tests below would hang for this long if a batch waited when it should not.
LONG_WAIT_S = 30.0


def _doubling_batcher(max_size: int, max_wait_s: float) -> MicroBatcher[int, int]:
    return MicroBatcher(
        lambda xs: [x * 2 for x in xs], max_size=max_size, max_wait_s=max_wait_s, name="test"
    )


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer():
    batcher = _doubling_batcher(max_size=4, max_wait_s=LONG_WAIT_S)
    start = threading.Barrier(8)

    def request(x: int) -> int:
        with batcher.ticket() as ticket:
            start.wait()
            future = ticket.submit(x)
        return future.result(timeout=LONG_WAIT_S)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(request, range(8)))
    batcher.close()

    assert answers == [x * 2 for x in range(8)]
    assert sorted(batcher.batch_sizes) == [4, 4]


def test_lone_request_runs_without_waiting_for_a_batch():
    batcher = _doubling_batcher(max_size=8, max_wait_s=LONG_WAIT_S)

    with batcher.ticket() as ticket:
        future = ticket.submit(21)

    assert future.result(timeout=5) == 42
    batcher.close()


def test_request_that_fails_before_submitting_is_not_waited_for():
    batcher = _doubling_batcher(max_size=8, max_wait_s=LONG_WAIT_S)
    with pytest.raises(ValueError), batcher.ticket():
        raise ValueError("undecodable image")

    with batcher.ticket() as ticket:
        future = ticket.submit(5)

    assert future.result(timeout=5) == 10
    batcher.close()


def test_model_error_reaches_every_caller_of_the_batch_and_the_worker_goes_on():
    calls: list[list[int]] = []

    def flaky(xs: list[int]) -> list[int]:
        calls.append(xs)
        if len(calls) == 1:
            raise RuntimeError("model crashed")
        return xs

    batcher: MicroBatcher[int, int] = MicroBatcher(flaky, max_size=8, max_wait_s=0.0, name="t")

    first = batcher.submit(1)
    with pytest.raises(RuntimeError, match="model crashed"):
        first.result(timeout=5)
    assert batcher.submit(2).result(timeout=5) == 2
    batcher.close()


def test_submit_after_close_fails_clearly():
    batcher = _doubling_batcher(max_size=2, max_wait_s=0.0)
    batcher.close()

    with pytest.raises(BatcherClosedError):
        batcher.submit(1).result(timeout=5)


def test_several_workers_answer_every_request_without_empty_batches():
    seen: list[int] = []

    def record(xs: list[int]) -> list[int]:
        seen.append(len(xs))
        return [x + 1 for x in xs]

    batcher: MicroBatcher[int, int] = MicroBatcher(
        record, max_size=4, max_wait_s=0.005, name="t", workers=2
    )

    def request(x: int) -> int:
        with batcher.ticket() as ticket:
            future = ticket.submit(x)
        return future.result(timeout=LONG_WAIT_S)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(request, range(200)))
    batcher.close()

    assert answers == [x + 1 for x in range(200)]
    assert sum(seen) == 200 and min(seen) >= 1
