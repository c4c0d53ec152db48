"""Every error the gateway reports, and the one place gRPC status codes become HTTP statuses.

Two kinds of failure reach a request: the gateway's own refusals (`ApiError` and its
subclasses, each carrying its HTTP status), and a service answering with a gRPC status
(`ServiceError`, raised by `ServiceClients` around every stub call). `register_error_handlers`
renders both, as JSON for `/api/...` and as an HTML page elsewhere.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import grpc
from flask import Flask, jsonify, render_template, request
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from werkzeug.exceptions import HTTPException

from gateway.sizes import size_text

log = logging.getLogger(__name__)

# What a caller of the gateway should see when a service answers with each code. A service's
# own failure (INTERNAL, UNKNOWN, DATA_LOSS) is the gateway's upstream failing: 502, not 500.
HTTP_STATUS_BY_GRPC_CODE: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 413,
    grpc.StatusCode.CANCELLED: 503,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.INTERNAL: 502,
    grpc.StatusCode.UNKNOWN: 502,
    grpc.StatusCode.DATA_LOSS: 502,
}

# Codes that say "the service is not there right now", as opposed to "this request is wrong".
TRANSIENT_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
)


# 507 Insufficient Storage: storage answered RESOURCE_EXHAUSTED (its disk is full).
INSUFFICIENT_STORAGE = 507
STORAGE_FULL_MESSAGE = (
    "storage is full: nothing was stored; free disk space on the server, then try again "
    "(viewing and downloading still work)"
)


def http_status_for(code: grpc.StatusCode, service: str = "") -> int:
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and service == "storage":
        return INSUFFICIENT_STORAGE
    return HTTP_STATUS_BY_GRPC_CODE.get(code, 502)


def error_reason(error: BaseException | None) -> str:
    """The google.rpc ErrorInfo reason a failed gRPC call carries ("" when none)."""
    if not isinstance(error, grpc.Call):
        return ""
    try:
        status = rpc_status.from_call(error)
    except (ValueError, TypeError):
        return ""
    if status is None:
        return ""
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Is(info.DESCRIPTOR) and detail.Unpack(info):
            return str(info.reason)
    return ""


class ApiError(Exception):
    """A refusal by the gateway itself; subclasses fix the HTTP status."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class BadRequestError(ApiError):
    status = 400


class UnauthorizedError(ApiError):
    status = 401


class ForbiddenError(ApiError):
    status = 403


class NotFoundError(ApiError):
    status = 404


class ConflictError(ApiError):
    status = 409


class PayloadTooLargeError(ApiError):
    status = 413


class UnsupportedMediaTypeError(ApiError):
    status = 415


class ServiceError(Exception):
    """A gRPC call to one of the services failed with a status code."""

    def __init__(self, service: str, method: str, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{service}.{method}: {code.name}: {details}")
        self.service = service
        self.method = method
        self.code = code
        self.details = details

    @property
    def status(self) -> int:
        return http_status_for(self.code, self.service)

    @property
    def reason(self) -> str:
        """The ErrorInfo reason of the failed call (STORAGE_FULL, IMAGE_TOO_LARGE, ...), read
        from the gRPC error this was raised from; "" when it carries none."""
        return error_reason(self.__cause__)

    @property
    def transient(self) -> bool:
        return self.code in TRANSIENT_CODES

    @property
    def message(self) -> str:
        if self.code == grpc.StatusCode.UNAVAILABLE:
            return f"the {self.service} service is unavailable; try again shortly"
        if self.code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return f"the {self.service} service did not answer in time"
        if self.status == INSUFFICIENT_STORAGE:
            return STORAGE_FULL_MESSAGE
        return self.details or f"{self.service} failed with {self.code.name}"


def error_body(status: int, message: str) -> dict[str, Any]:
    return {
        "error": {
            "status": status,
            "code": HTTPStatus(status).phrase.lower().replace(" ", "_")
            if status in HTTPStatus._value2member_map_
            else "error",
            "message": message,
        }
    }


def _wants_json() -> bool:
    if request.path.startswith("/api/"):
        # A page's own link or no-JS form (Download zip, a download link) is a browser
        # navigation asking for HTML first: it gets the error page, not raw JSON. Scripts,
        # curl and requests send */* (or ask for JSON) and get JSON.
        return not _navigation_wants_html()
    return request.accept_mimetypes.best == "application/json"


def _navigation_wants_html() -> bool:
    accept = request.accept_mimetypes
    return request.method == "GET" and accept["text/html"] > accept["application/json"]


def render_error(status: int, message: str) -> Any:
    if _wants_json():
        return jsonify(error_body(status, message)), status
    return render_template("error.html", status=status, message=message), status


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Any:
        response, status = render_error(exc.status, exc.message)
        if exc.status == 401 and _wants_json():
            response.headers["WWW-Authenticate"] = 'Bearer realm="imagerepo"'
        return response, status

    @app.errorhandler(ServiceError)
    def _service_error(exc: ServiceError) -> Any:
        if exc.status >= 500:
            log.warning(
                "service call failed",
                extra={"service": exc.service, "method": exc.method, "code": exc.code.name},
            )
        return render_error(exc.status, exc.message)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        status = exc.code or 500
        if status == 413:
            limit = size_text(app.config["MAX_CONTENT_LENGTH"], exact=True)
            message = f"the upload is larger than the limit of {limit}"
        else:
            message = exc.description or HTTPStatus(status).phrase
        return render_error(status, message)
