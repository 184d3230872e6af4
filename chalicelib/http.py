"""HTTP edges: the one place where domain errors become HTTP responses, body limits, request logs."""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
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
from chalicelib.domain.limits import check_json_depth, check_unicode, clip

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
JSON_TYPES = ["application/json"]
WEBHOOK_CONTENT_TYPES = ["application/json", "application/x-www-form-urlencoded"]
# The published contract; chalicelib/openapi.yaml links to docs/openapi.yaml so that the package has it.
OPENAPI_DOCUMENT = Path(__file__).resolve().parent / "openapi.yaml"


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


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(raw: bytes | None) -> Any:
    """The JSON document of a request body; BadRequestError (or ValidationError for limits) if it is not one.

    The nesting depth is checked before parsing, so no body can make the parser recurse past the limit.
    """
    if not raw:
        raise BadRequestError("the request body is empty; send a JSON document")
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise BadRequestError(f"the request body is not UTF-8: {exc}") from exc
    check_json_depth(text, "body")
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise BadRequestError(f"the request body is not valid JSON: {clip(str(exc), 200)}") from exc
    check_unicode(text, value, "body")
    return value


def _limit_for(path: str) -> int:
    return WEBHOOK_BODY_LIMIT if path.startswith("/webhooks/") else API_BODY_LIMIT


def _accepted_types(route: str) -> list[str]:
    return WEBHOOK_CONTENT_TYPES if route.startswith("/webhooks/") else JSON_TYPES


def _internal_error(request_id: str) -> Response:
    return error_response(500, "InternalError", f"an internal error occurred; quote request id {request_id}")


def _normalise_framework_error(response: Response, request: Request, route: str, request_id: str) -> Response:
    """Chalice answers some errors itself (415, 405, 500) as ``{"Code", "Message"}``: use our shape, keep headers."""
    body = response.body
    if response.status_code < 400 or not isinstance(body, dict) or "Code" not in body:
        return response
    if response.status_code == 415:
        given = request.headers.get("content-type", "")
        shaped = error_response(
            415,
            "UnsupportedMediaType",
            f"unsupported content type {clip(given, 100)!r}; this route accepts {', '.join(_accepted_types(route))}",
        )
    elif response.status_code >= 500:
        shaped = _internal_error(request_id)  # chalice has logged the exception with its traceback
    elif response.status_code == 405:
        allowed = (response.headers or {}).get("Allow", "")
        shaped = error_response(
            405, "MethodNotAllowed", f"{clip(request.method, 20)} is not a method of {route}; use {allowed}"
        )
    else:
        shaped = error_response(response.status_code, str(body["Code"]), str(body.get("Message", "")))
    for name, value in (response.headers or {}).items():
        if name.lower() != "content-type":
            shaped.headers[name] = value
    return shaped


@functools.cache
def openapi_document() -> str:
    """The OpenAPI document of this API (read once)."""
    return OPENAPI_DOCUMENT.read_text(encoding="utf-8")


def openapi_response() -> Response:
    """``GET /openapi.yaml``."""
    return Response(body=openapi_document(), status_code=200, headers={"Content-Type": "application/yaml"})


def _client_request_id(request: Request) -> str | None:
    """The caller's X-Request-Id if it is a sane one (1 to 128 visible ASCII characters), else None."""
    given = request.headers.get("x-request-id")
    if given and len(given) <= 128 and all("!" <= c <= "~" for c in given):
        return str(given)
    return None


def http_middleware(
    logger: Callable[[], Any], flush_metrics: Callable[[], None]
) -> Callable[[Request, Callable[[Request], Response]], Response]:
    """Body limits, error shape, one JSON log line and the metrics of each request."""

    def middleware(request: Request, get_response: Callable[[Request], Response]) -> Response:
        started = time.perf_counter()
        context = request.context or {}
        request_id = context.get("requestId") or _client_request_id(request) or str(uuid.uuid4())
        path = context.get("resourcePath", request.path)
        raw = request.raw_body or b""
        limit = _limit_for(request.path)
        log = logger()
        log.thread_safe_append_keys(correlation_id=request_id)  # the local gateway serves on threads
        if len(raw) > limit:
            response = error_response(
                413, "PayloadTooLarge", f"the body is {len(raw)} bytes; the limit is {limit} bytes"
            )
        else:
            try:
                response = _normalise_framework_error(get_response(request), request, path, request_id)
            except Exception:
                log.exception("unhandled error", extra={"route": path, "request_id": request_id})
                response = _internal_error(request_id)
        response.headers["X-Request-Id"] = request_id
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
