"""`make run`, the real entry point: serves the API on the ports given and stops cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.fakes import stack_body
from tests.plane import http

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_make_run_serves_and_stops_cleanly(stop_signal: signal.Signals) -> None:
    port, aws_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "STAGECOACH_", "MOTO_"))}
    process = subprocess.Popen(
        ["make", "--no-print-directory", "run", f"PORT={port}", f"AWS_PORT={aws_port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not port_open(port):
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            time.sleep(0.2)
        status, health = http("GET", f"http://127.0.0.1:{port}/health")
        assert (status, health["status"]) == (200, "ok")
        status, created = http("POST", f"http://127.0.0.1:{port}/stacks", stack_body())
        assert status == 201, created
        status, listed = http("GET", f"http://127.0.0.1:{port}/stacks")
        assert [s["id"] for s in listed["stacks"]] == ["hello"]
        assert port_open(aws_port)
        os.killpg(process.pid, stop_signal)
        output, _ = process.communicate(timeout=60)
    finally:
        if group_alive(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
    assert f"http://127.0.0.1:{port}" in output
    assert f"http://127.0.0.1:{aws_port}" in output
    assert "Stagecoach stopped." in output
    # make re-raises the signal after its child (the control plane) stopped cleanly, as a shell would.
    assert process.returncode in (0, -stop_signal), output
    assert not group_alive(process.pid)
    assert not port_open(port) and not port_open(aws_port)
    assert json.dumps(created)  # the API answered real JSON
