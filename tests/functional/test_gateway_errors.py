"""The control plane's HTTP server reports its own errors, not clients hanging up."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.local.control_plane import listening_http_server_class


@pytest.fixture
def server() -> Iterator[Any]:
    from chalice.local import ChaliceRequestHandler

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = listening_http_server_class(listener)(("127.0.0.1", 0), ChaliceRequestHandler)
    try:
        yield server
    finally:
        server.server_close()


@pytest.mark.parametrize("hang_up", [BrokenPipeError, ConnectionResetError, ConnectionAbortedError])
def test_a_client_hanging_up_prints_nothing(server: Any, capsys: Any, hang_up: type[Exception]) -> None:
    try:
        raise hang_up("the client went away")
    except hang_up:
        server.handle_error(None, ("127.0.0.1", 50000))
    assert capsys.readouterr().err == ""


def test_any_other_error_is_reported(server: Any, capsys: Any) -> None:
    try:
        raise ValueError("a bug in a handler")
    except ValueError:
        server.handle_error(None, ("127.0.0.1", 50000))
    err = capsys.readouterr().err
    assert "Exception occurred during processing of request from ('127.0.0.1', 50000)" in err
    assert "ValueError: a bug in a handler" in err
