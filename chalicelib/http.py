"""HTTP edges: the one place where domain errors become HTTP responses, body limits, request logs."""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from chalice.app import Request, Response

from chalicelib.domain.errors import (
    BadRequestError,
    ConflictError,
    NotFoundError,
    PayloadTooLargeError,
    StagecoachError,
    UnauthorizedError,
    UnavailableError,
    UnsupportedMediaTypeError,
    ValidationError,
)

STATUS: dict[type[StagecoachError], int] = {
    ValidationError: 400,
    BadRequestError: 400,
    UnauthorizedError: 401,
    NotFoundError: 404,
    ConflictError: 409,
    PayloadTooLargeError: 413,
    UnsupportedMediaTypeError: 415,
    UnavailableError: 503,
}
API_BODY_LIMIT = 1024 * 1024
WEBHOOK_BODY_LIMIT = 5 * 1024 * 1024
JSON_HEADERS = {"Content-Type": "application/json"}


def json_response(body: Any, status: int = 200) -> Response:
    """A JSON response."""
    return Response(body=json.dumps(body), status_code=status, headers=dict(JSON_HEADERS))


def error_response(status: int, code: str, message: str) -> Response:
    """The error shape every route uses: ``{"code": ..., "message": ...}``."""
    return json_response({"code": code, "message": message}, status)


def status_of(error: StagecoachError) -> int:
    """HTTP status of a domain error."""
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]  # type: ignore[index]
    return 400


def maps_errors(view: Callable[..., Any]) -> Callable[..., Any]:
    """Turn domain errors raised by a view into JSON error responses."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return view(*args, **kwargs)
        except StagecoachError as error:
            return error_response(status_of(error), error.code, error.message)

    return wrapper


def parse_json(raw: bytes | None) -> Any:
    """The JSON document of a request body; BadRequestError if it is not one."""
    if not raw:
        raise BadRequestError("the request body is empty; send a JSON document")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequestError(f"the request body is not valid JSON: {exc}") from exc


def _limit_for(path: str) -> int:
    return WEBHOOK_BODY_LIMIT if path.startswith("/webhooks/") else API_BODY_LIMIT


def _normalise_framework_error(response: Response) -> Response:
    """Chalice answers some errors itself (415, 405) as ``{"Code", "Message"}``: use our shape."""
    body = response.body
    if response.status_code >= 400 and isinstance(body, dict) and "Code" in body:
        code = "UnsupportedMediaType" if response.status_code == 415 else str(body["Code"])
        return error_response(response.status_code, code, str(body.get("Message", "")))
    return response


def http_middleware(
    logger: Callable[[], Any], flush_metrics: Callable[[], None]
) -> Callable[[Request, Callable[[Request], Response]], Response]:
    """Body limits, error shape, one JSON log line and the metrics of each request."""

    def middleware(request: Request, get_response: Callable[[Request], Response]) -> Response:
        started = time.perf_counter()
        context = request.context or {}
        request_id = context.get("requestId") or request.headers.get("x-request-id") or str(uuid.uuid4())
        path = context.get("resourcePath", request.path)
        raw = request.raw_body or b""
        limit = _limit_for(request.path)
        if len(raw) > limit:
            response = error_response(
                413, "PayloadTooLarge", f"the body is {len(raw)} bytes; the limit is {limit} bytes"
            )
        else:
            response = _normalise_framework_error(get_response(request))
        response.headers["X-Request-Id"] = request_id
        log = logger()
        log.set_correlation_id(request_id)
        log.info(
            "request",
            extra={
                "method": request.method,
                "path": context.get("path") or request.path,
                "route": path,
                "status": response.status_code,
                "latency_ms": round((time.perf_counter() - started) * 1000, 2),
                "request_id": request_id,
            },
        )
        flush_metrics()
        return response

    return middleware
