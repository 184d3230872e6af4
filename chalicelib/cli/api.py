"""A small JSON client of the Stagecoach HTTP API (standard library only)."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from http.client import HTTPException
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 30.0
EXIT_API = 1
EXIT_CONNECTION = 2


class CliError(Exception):
    """An error shown as one line on stderr; ``exit_code`` is the process exit status.

    ``code`` names the kind of error in the JSON form (``--json``): ``{"code", "message"}``.
    """

    def __init__(self, message: str, exit_code: int = EXIT_API, code: str = "CommandFailed") -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.code = code

    def document(self) -> dict[str, Any]:
        """The error as JSON: ``{"code", "message"}``."""
        return {"code": self.code, "message": self.message}


class ApiError(CliError):
    """The API answered with an error status."""

    def __init__(self, status: int, code: str, message: str, body: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}" if message else f"{status} {code}", EXIT_API, code)
        self.status = status
        self.api_message = message
        self.body = body

    def document(self) -> dict[str, Any]:
        """The API's own ``{"code", "message"}`` and the HTTP ``status``."""
        return {"code": self.code, "message": self.api_message, "status": self.status}


class ConnectionFailed(CliError):
    """The API could not be reached or did not answer in time."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_CONNECTION, "ConnectionFailed")


def path(*segments: str) -> str:
    """A URL path from segments, each percent-encoded (``path("stacks", "a b")`` → ``/stacks/a%20b``)."""
    return "/" + "/".join(urllib.parse.quote(s, safe="") for s in segments)


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase.replace(" ", "")
    except ValueError:
        return "Error"


def error_from_response(status: int, raw: bytes, method: str = "", where: str = "") -> ApiError:
    """The ApiError for an error response (our ``{"code","message"}`` shape or anything else)."""
    text = raw.decode("utf-8", "replace").strip()
    try:
        body: Any = json.loads(text) if text else None
    except ValueError:
        body = None
    if isinstance(body, dict) and "code" in body:
        return ApiError(status, str(body["code"]), str(body.get("message", "")), body)
    if isinstance(body, dict) and "message" in body:
        message = str(body["message"])
    else:
        message = text.splitlines()[0][:200] if text else ""
    if status == 403 and message == "Missing Authentication Token":
        message = f"this server has no route {method} {where}".strip()
    return ApiError(status, _reason(status), message, body)


Opener = Callable[..., Any]


class Api:
    """JSON over HTTP to one control plane; every failure becomes a CliError."""

    def __init__(
        self, base_url: str, timeout: float = DEFAULT_TIMEOUT, opener: Opener | None = None, sign: bool | None = None
    ) -> None:
        from .sigv4 import region_from_url

        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._open: Opener = opener or urllib.request.urlopen
        # A deployed API (API Gateway, IAM authorizer) wants SigV4 from the caller's AWS credentials.
        self.sign = sign if sign is not None else region_from_url(self.base_url) is not None

    def send(
        self, method: str, where: str, data: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> tuple[int, Any]:
        """One request; ``(status, parsed JSON body or None)``; raises ApiError on 4xx/5xx."""
        url = self.base_url + where
        all_headers = dict(headers or {})
        if self.sign and not where.startswith("/webhooks/"):
            from .sigv4 import NoCredentialsError, signed_headers

            try:
                all_headers = signed_headers(method, url, data or b"", all_headers)
            except (NoCredentialsError, ValueError) as exc:
                raise CliError(
                    f"cannot sign the request for {self.base_url}: {exc}", EXIT_CONNECTION, "CannotSign"
                ) from None
        request = urllib.request.Request(url, data=data, method=method, headers=all_headers)
        try:
            with self._open(request, timeout=self.timeout) as response:
                status, raw = int(response.status), response.read()
        except urllib.error.HTTPError as exc:
            raise error_from_response(exc.code, exc.read() or b"", method, where.split("?")[0]) from None
        except urllib.error.URLError as exc:
            raise self._unreachable(exc.reason) from None
        except TimeoutError:
            raise ConnectionFailed(f"{self.base_url} did not answer within {self.timeout:g}s") from None
        except (OSError, HTTPException) as exc:
            raise self._unreachable(exc) from None
        text = raw.decode("utf-8", "replace").strip()
        if not text:
            return status, None
        try:
            return status, json.loads(text)
        except ValueError:
            raise CliError(
                f"{status}: the API answered with something that is not JSON: {text[:120]!r}", code="NotJson"
            ) from None

    def _unreachable(self, reason: Any) -> ConnectionFailed:
        if isinstance(reason, (TimeoutError, socket.timeout)):
            return ConnectionFailed(f"{self.base_url} did not answer within {self.timeout:g}s")
        if isinstance(reason, ConnectionRefusedError):
            detail = "connection refused"
        else:
            detail = str(getattr(reason, "strerror", None) or reason) or type(reason).__name__
        return ConnectionFailed(
            f"cannot reach {self.base_url}: {detail} (is the control plane running? set --url or STAGECOACH_URL)"
        )

    def call(
        self,
        method: str,
        where: str,
        body: Any = None,
        query: Mapping[str, str | int | None] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """A JSON request; returns the parsed body (None for an empty one)."""
        params = {k: str(v) for k, v in (query or {}).items() if v is not None}
        if params:
            where = f"{where}?{urllib.parse.urlencode(params)}"
        all_headers = {"Accept": "application/json", **(headers or {})}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            all_headers["Content-Type"] = "application/json"
        return self.send(method, where, data, all_headers)[1]

    def get(self, where: str, **query: str | int | None) -> Any:
        """GET with query parameters (None values are left out)."""
        return self.call("GET", where, query=query)

    def post(self, where: str, body: Any = None, headers: Mapping[str, str] | None = None) -> Any:
        """POST a JSON body."""
        return self.call("POST", where, {} if body is None else body, headers=headers)

    def patch(self, where: str, body: Any) -> Any:
        """PATCH a JSON body."""
        return self.call("PATCH", where, body)

    def delete(self, where: str, **query: str | int | None) -> Any:
        """DELETE with query parameters (None values are left out)."""
        return self.call("DELETE", where, query=query)
