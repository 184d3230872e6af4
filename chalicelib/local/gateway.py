"""The HTTP front of the embedded control plane: ``chalice local``'s server, answering as the API does.

``chalice local`` answers an unknown route with 403 ``{"message": "Missing Authentication Token"}`` and
an HTTP method it has no handler for (TRACE, QUERY...) with an HTML 501. Here both answer in the API's
error shape: 404 for a path no route matches, 405 (with ``Allow``) for a method a route does not have,
as deploy/template.yaml's gateway responses make API Gateway answer on AWS. Bodies larger than API
Gateway's 10 MB payload limit are refused unread with 413, a malformed Content-Length with 400.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from chalice.app import Chalice
from chalice.config import Config
from chalice.local import (
    ChaliceRequestHandler,
    CustomLocalChalice,
    LocalChalice,
    LocalDevServer,
    LocalGateway,
    LocalGatewayException,
)

# API Gateway refuses larger payloads (https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html).
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024


class GatewayError(LocalGatewayException):
    """An error the gateway answers itself, in the ``{"code", "message"}`` shape."""

    def __init__(self, status: int, code: str, message: str) -> None:
        request_id = str(uuid.uuid4())
        body = json.dumps({"code": code, "message": message}).encode()
        super().__init__({"Content-Type": "application/json", "X-Request-Id": request_id}, body)
        self.CODE = status


class StagecoachGateway(LocalGateway):
    """LocalGateway whose unknown routes are 404s."""

    def _generate_lambda_event(self, method: str, path: str, headers: Any, body: bytes | None) -> Any:
        try:
            return super()._generate_lambda_event(method, path, headers, body)
        except ValueError as exc:
            shown = path.split("?", 1)[0][:200]
            raise GatewayError(404, "NotFound", f"no route matches {shown}; see GET /openapi.yaml") from exc


class StagecoachRequestHandler(ChaliceRequestHandler):
    """ChaliceRequestHandler for every HTTP method, with StagecoachGateway behind it."""

    def __init__(self, request: bytes, client_address: Any, server: Any, app_object: Chalice, config: Config) -> None:
        self.local_gateway = StagecoachGateway(app_object, config)
        super(ChaliceRequestHandler, self).__init__(request, client_address, server)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        # BaseHTTPRequestHandler dispatches to do_<METHOD>; every method goes to the gateway (405 if unknown).
        if name.startswith("do_"):
            return self._generic_handle
        raise AttributeError(name)

    def _parse_payload(self) -> tuple[Any, bytes | None]:
        raw_length = self.headers.get("content-length", "0")
        try:
            length = int(raw_length)
        except ValueError:
            self.close_connection = True
            raise GatewayError(400, "BadRequest", "the Content-Length header is not a number") from None
        if length < 0:
            self.close_connection = True
            raise GatewayError(400, "BadRequest", "the Content-Length header is negative")
        if length > MAX_PAYLOAD_BYTES:
            self.close_connection = True
            raise GatewayError(
                413, "PayloadTooLarge", f"the body is {length} bytes; the limit is {MAX_PAYLOAD_BYTES} bytes"
            )
        body = self.rfile.read(length) if length > 0 else None
        return dict(self.headers), body

    def _generic_handle(self) -> None:
        try:
            headers, body = self._parse_payload()
        except GatewayError as error:
            self._send_error_response(error)
            return
        self._handle(headers, body)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_PATCH = do_OPTIONS = _generic_handle

    def _handle(self, headers: Any, body: bytes | None) -> None:
        try:
            response = self.local_gateway.handle_request(
                method=self.command, path=self.path, headers=headers, body=body
            )
        except LocalGatewayException as error:
            self._send_error_response(error)
            return
        response_headers = response["headers"].copy()
        response_headers.update(response["multiValueHeaders"])
        response = self._handle_binary(response)
        self._send_http_response(response["statusCode"], response_headers, response["body"])


def local_server(app: Chalice, config: Config, host: str, port: int, server_cls: Any | None = None) -> LocalDevServer:
    """An HTTP server of ``app`` (made thread-local as ``chalice local`` does) with StagecoachRequestHandler.

    ``server_cls`` replaces chalice's ``ThreadedHTTPServer`` (the control plane's serves on a socket
    it bound before, with a longer listen backlog).
    """
    if not isinstance(app, LocalChalice):
        # What chalice.local.create_local_server does (once per process): current_request becomes thread-local.
        CustomLocalChalice.__bases__ = (LocalChalice, app.__class__)
        app.__class__ = CustomLocalChalice
    if server_cls is None:
        return LocalDevServer(app, config, host, port, handler_cls=StagecoachRequestHandler)
    return LocalDevServer(app, config, host, port, handler_cls=StagecoachRequestHandler, server_cls=server_cls)
