"""A real HTTP receiver on 127.0.0.1 (random port, its own thread) standing in for provider APIs, Slack and
webhooks: it records every request and answers from a per-path script (status codes, or a hang)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


class Receiver:
    """Records requests; ``answer(prefix, [500, 200])`` scripts a path (the last answer repeats);
    ``hang(prefix, seconds)`` makes it wait before answering."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._scripts: dict[str, list[int]] = {}
        self._hangs: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status, delay = receiver._record(self.command, self.path, dict(self.headers.items()), body)
                if delay:
                    receiver._stop.wait(delay)
                try:
                    self.send_response(status)
                    if status == 429:
                        self.send_header("Retry-After", "1")
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                except OSError:
                    pass  # the client gave up (its timeout)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="receiver", daemon=True)

    def _record(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, float]:
        with self._lock:
            self.requests.append(Received(method, path, headers, body, time.monotonic()))
            status = 200
            for prefix, script in self._scripts.items():
                if path.startswith(prefix):
                    status = script.pop(0) if len(script) > 1 else script[0]
            delay = next((s for p, s in self._hangs.items() if path.startswith(p)), 0.0)
        return status, delay

    def answer(self, prefix: str, statuses: list[int]) -> None:
        """Answer requests under ``prefix`` with these statuses in turn (the last one repeats)."""
        with self._lock:
            self._scripts[prefix] = list(statuses)

    def hang(self, prefix: str, seconds: float) -> None:
        """Wait ``seconds`` before answering requests under ``prefix``."""
        with self._lock:
            self._hangs[prefix] = seconds

    def under(self, prefix: str) -> list[Received]:
        """The requests received under ``prefix``, in order."""
        with self._lock:
            return [r for r in self.requests if r.path.startswith(prefix)]

    def start(self) -> None:
        """Serve."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving (hung answers are released)."""
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def receiving() -> Iterator[Receiver]:
    """A started receiver, stopped afterwards."""
    receiver = Receiver()
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


def wait_until(check: Any, timeout: float = 30.0, every: float = 0.1) -> Any:
    """Poll ``check()`` until it returns something truthy; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout} s")
        time.sleep(every)
