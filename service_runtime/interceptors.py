"""The server interceptor every imagerepo gRPC service runs: it checks the service token,
sets the request id for the call's log lines, and counts and times each RPC by status code."""

from __future__ import annotations

import contextlib
import hmac
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from service_runtime.logs import (
    REQUEST_ID_METADATA_KEY,
    reset_request_id,
    sane_request_id,
    set_request_id,
)
from service_runtime.metrics import GRPC_HANDLED, GRPC_LATENCY, GRPC_STARTED
from service_runtime.security import TOKEN_METADATA_KEY

log = logging.getLogger(__name__)

# Health checks answer without the token: probes (docker, the supervisor) learn only
# SERVING or not, and load balancers need them.
TOKEN_EXEMPT_SERVICES = frozenset({"grpc.health.v1.Health"})
# Codes that mean the service itself failed: logged as warnings (the rest at debug level).
SERVER_FAULTS = frozenset({"INTERNAL", "UNKNOWN", "DATA_LOSS"})


def _split(full_method: str) -> tuple[str, str]:
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service or "unknown", method or "unknown"


def _code_name(context: grpc.ServicerContext, failed: bool) -> str:
    code = context.code()  # type: ignore[attr-defined]
    if isinstance(code, grpc.StatusCode):
        return code.name
    if not failed:
        return "OK"
    if not context.is_active():
        # The call ended before its handler did: the client cancelled it (a reader that stops
        # after the first chunk, a follower closing its feed), its deadline passed, or the
        # server is stopping. None of them is a fault of the service: no UNKNOWN, no warning.
        left = context.time_remaining()
        return "DEADLINE_EXCEEDED" if left is not None and left <= 0 else "CANCELLED"
    return "UNKNOWN"


class ServiceInterceptor(grpc.ServerInterceptor):
    def __init__(self, service_token: str = "") -> None:
        self._token = service_token.encode()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        service, method = _split(handler_call_details.method)  # type: ignore[attr-defined]
        metadata = {
            m.key: m.value
            for m in (handler_call_details.invocation_metadata or ())  # type: ignore[attr-defined]
        }
        request_id = sane_request_id(metadata.get(REQUEST_ID_METADATA_KEY))
        if self._token and service not in TOKEN_EXEMPT_SERVICES:
            sent = metadata.get(TOKEN_METADATA_KEY, "")
            sent_bytes = sent.encode() if isinstance(sent, str) else bytes(sent)
            if not hmac.compare_digest(sent_bytes, self._token):
                log.warning(
                    "call refused: missing or wrong service token",
                    extra={"rpc": handler_call_details.method},  # type: ignore[attr-defined]
                )
                return _refusal(handler, service, method, request_id)
        return _instrumented(handler, service, method, request_id)


def _refuse(_request: Any, context: grpc.ServicerContext) -> Any:
    context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong service token")


def _refusal(
    handler: grpc.RpcMethodHandler, service: str, method: str, request_id: str
) -> grpc.RpcMethodHandler:
    def refuse_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        _refuse(request, context)
        yield from ()

    behaviours = {
        "unary_unary": _refuse,
        "stream_unary": _refuse,
        "unary_stream": refuse_stream,
        "stream_stream": refuse_stream,
    }
    return _instrumented(_with(handler, behaviours), service, method, request_id)


def _with(handler: grpc.RpcMethodHandler, behaviours: dict[str, Any]) -> grpc.RpcMethodHandler:
    kind = _kind(handler)
    return handler._replace(**{kind: behaviours[kind]})  # type: ignore[attr-defined,no-any-return]


def _kind(handler: grpc.RpcMethodHandler) -> str:
    streaming_in, streaming_out = handler.request_streaming, handler.response_streaming
    return f"{'stream' if streaming_in else 'unary'}_{'stream' if streaming_out else 'unary'}"


def _instrumented(
    handler: grpc.RpcMethodHandler, service: str, method: str, request_id: str
) -> grpc.RpcMethodHandler:
    kind = _kind(handler)
    behaviour = getattr(handler, kind)

    def finish(context: grpc.ServicerContext, started: float, failed: bool) -> None:
        code = _code_name(context, failed)
        elapsed = time.perf_counter() - started
        GRPC_HANDLED.labels(service, method, code).inc()
        GRPC_LATENCY.labels(service, method).observe(elapsed)
        log.log(
            logging.WARNING if code in SERVER_FAULTS else logging.DEBUG,
            "rpc",
            extra={"rpc": method, "code": code, "ms": round(elapsed * 1000, 1)},
        )

    def unary_response(request: Any, context: grpc.ServicerContext) -> Any:
        GRPC_STARTED.labels(service, method).inc()
        token = set_request_id(request_id)
        started, failed = time.perf_counter(), True
        try:
            response = behaviour(request, context)
            failed = False
            return response
        finally:
            finish(context, started, failed)
            reset_request_id(token)

    def stream_response(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        GRPC_STARTED.labels(service, method).inc()
        started, failed = time.perf_counter(), True
        token = set_request_id(request_id)
        try:
            yield from behaviour(request, context)
            failed = False
        finally:
            finish(context, started, failed)
            # Resumed in another context, nothing of ours to restore.
            with contextlib.suppress(ValueError):
                reset_request_id(token)

    streaming_out = handler.response_streaming
    return handler._replace(  # type: ignore[attr-defined,no-any-return]
        **{kind: stream_response if streaming_out else unary_response}
    )
