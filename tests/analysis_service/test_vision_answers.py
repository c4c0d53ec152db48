"""A vision call that runs out of time says how many other calls vision answered while it
waited, whichever lane sent them, and a probe sent when vision has been quiet for half the
deadline counts too: the worker tells a slow image from a slow vision by it.

Real gRPC on a free port; the vision servicer is a stand-in that answers at once, except for
an image whose bytes are b"slow" (or every call, once it is `stuck`), which it holds until the
test ends."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from analysis_service.clients import VisionClient
from analysis_service.failures import CallFailedError, Kind, classify
from imagerepo.vision.v2 import vision_service_pb2 as pb
from imagerepo.vision.v2 import vision_service_pb2_grpc as pb_grpc

TIMEOUT_S = 2.0
SLOW = b"slow"


class HoldsSlowImages(pb_grpc.VisionServiceServicer):
    def __init__(self) -> None:
        self.stuck = threading.Event()
        self.release = threading.Event()

    def Analyze(self, request: pb.AnalyzeRequest, context: grpc.ServicerContext):
        if request.image_data == SLOW or self.stuck.is_set():
            self.release.wait(30)
        return pb.AnalyzeResponse(width=1, height=1)


@pytest.fixture
def stand_in() -> Iterator[tuple[HoldsSlowImages, str]]:
    """The stand-in vision serving on a free port, and its address."""
    servicer = HoldsSlowImages()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    pb_grpc.add_VisionServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    servicer.release.set()
    server.stop(None).wait()


@pytest.fixture
def vision(stand_in: tuple[HoldsSlowImages, str]) -> Iterator[VisionClient]:
    """A VisionClient with a TIMEOUT_S deadline, talking to the stand-in."""
    channel = grpc.insecure_channel(stand_in[1])
    yield VisionClient(channel, TIMEOUT_S, top_k=5)
    channel.close()


def test_a_timeout_while_vision_answered_the_rest_of_the_batch_blames_the_image(vision):
    # No probe here (its own test below): on a loaded machine it could go out and add one.
    results = vision.analyse_batch([b"a", SLOW, b"b"], threading.Event(), probe_if_quiet=False)

    error = results[1]
    assert isinstance(error, CallFailedError)
    assert error.code == "DEADLINE_EXCEEDED"
    assert error.others_answered == 2
    assert error.waited_s is not None and error.waited_s >= TIMEOUT_S * 0.9
    assert classify(error, attempts=1).reason.startswith(
        "vision failed (DEADLINE_EXCEEDED): it did not answer in 2."
    )
    assert not any(isinstance(r, CallFailedError) for r in (results[0], results[2]))


def test_a_lone_slow_image_is_blamed_when_vision_answers_the_probe_meanwhile(vision):
    (error,) = vision.analyse_batch([SLOW], threading.Event())

    assert isinstance(error, CallFailedError)
    assert error.others_answered == 1
    assert "while it answered 1 other image" in classify(error, attempts=1).reason


def test_a_timeout_while_vision_answered_nothing_is_an_outage(vision, stand_in):
    stand_in[0].stuck.set()  # the probe is not answered either

    results = vision.analyse_batch([SLOW, b"a"], threading.Event())

    for error in results:
        assert isinstance(error, CallFailedError)
        assert error.code == "DEADLINE_EXCEEDED"
        assert error.others_answered == 0
        assert classify(error, attempts=100).kind is Kind.TRANSIENT
        assert classify(error).reason.startswith("vision unavailable (DEADLINE_EXCEEDED)")


def test_answers_to_another_lane_count_too(vision):
    slow_lane: list[object] = []
    lane = threading.Thread(
        target=lambda: slow_lane.extend(vision.analyse_batch([SLOW], threading.Event()))
    )
    lane.start()
    time.sleep(0.2)  # the slow call has gone out

    other = vision.analyse_batch([b"a", b"b", b"c"], threading.Event())
    lane.join(TIMEOUT_S * 10)

    assert not any(isinstance(r, CallFailedError) for r in other)
    (error,) = slow_lane
    assert isinstance(error, CallFailedError)
    assert error.others_answered == 3
