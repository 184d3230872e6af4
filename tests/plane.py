"""A real local control plane (emulator + HTTP server) for tests that need real HTTP."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def running_plane(pump: bool = True) -> Iterator[Any]:
    """Start ``ControlPlane`` on free ports; restore the environment afterwards."""
    from chalicelib import bootstrap
    from chalicelib.local.control_plane import ControlPlane

    saved = dict(os.environ)
    plane = ControlPlane("127.0.0.1", 0, 0)
    try:
        plane.start(pump=pump)
        yield plane
    finally:
        plane.stop()
        os.environ.clear()
        os.environ.update(saved)
        bootstrap.reset()


def http(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None, timeout: float = 30
) -> tuple[int, Any]:
    """One HTTP call; returns (status, parsed JSON body or None)."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers=headers or {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, json.loads(raw) if raw else None
