"""A call its client ends early (cancelled, or out of time) is not a fault of the service: the
interceptor names it CANCELLED or DEADLINE_EXCEEDED at debug level, not UNKNOWN as a warning.
(The gateway reads the first chunk of ReadImageData for a photo's location and cancels the
rest: each image page logged a server-fault warning.) A handler that fails is still one."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from service_runtime.grpc_server import RuntimeServer, new_server
from service_runtime.security import TransportSecurity

SERVICE = "test.Streamer"


def _chunks(_request: bytes, _context: grpc.ServicerContext) -> Iterator[bytes]:
    for _ in range(500):
        yield b"chunk"
        time.sleep(0.01)


def _broken(_request: bytes, _context: grpc.ServicerContext) -> Iterator[bytes]:
    yield b"chunk"
    raise RuntimeError("the handler failed")


@pytest.fixture
def streamer() -> Iterator[grpc.Channel]:
    server: RuntimeServer = new_server(4, security=TransportSecurity(), env={})
    handlers = {
        "Chunks": grpc.unary_stream_rpc_method_handler(_chunks),
        "Broken": grpc.unary_stream_rpc_method_handler(_broken),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield channel
    channel.close()
    server.stop(None)


def _rpc_record(caplog: pytest.LogCaptureFixture, method: str) -> Any:
    """The interceptor's line for the one call of `method` (it is written when the handler's
    stream is closed, a moment after the client let go)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = [r for r in caplog.records if r.getMessage() == "rpc" and r.rpc == method]
        if lines:
            assert len(lines) == 1
            return lines[0]
        time.sleep(0.02)
    raise AssertionError(f"no rpc line for {method}")


@pytest.fixture
def rpc_lines(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="service_runtime.interceptors")
    return caplog


def test_a_stream_the_client_cancels_is_cancelled_not_a_server_fault(streamer, rpc_lines):
    call = streamer.unary_stream(f"/{SERVICE}/Chunks")(b"", timeout=10)
    assert next(call) == b"chunk"
    call.cancel()  # as the gateway does once it has the first chunk

    record = _rpc_record(rpc_lines, "Chunks")
    assert (record.code, record.levelno) == ("CANCELLED", logging.DEBUG)


def test_a_stream_past_its_deadline_is_named_so_not_a_server_fault(streamer, rpc_lines):
    with pytest.raises(grpc.RpcError) as raised:
        list(streamer.unary_stream(f"/{SERVICE}/Chunks")(b"", timeout=0.3))
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

    record = _rpc_record(rpc_lines, "Chunks")
    assert (record.code, record.levelno) == ("DEADLINE_EXCEEDED", logging.DEBUG)


def test_a_handler_that_fails_is_still_a_server_fault(streamer, rpc_lines):
    with pytest.raises(grpc.RpcError) as raised:
        list(streamer.unary_stream(f"/{SERVICE}/Broken")(b"", timeout=10))
    assert raised.value.code() == grpc.StatusCode.UNKNOWN

    record = _rpc_record(rpc_lines, "Broken")
    assert (record.code, record.levelno) == ("UNKNOWN", logging.WARNING)
