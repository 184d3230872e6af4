"""`make run`, the real entry point: serves the API on the ports given and stops cleanly."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
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
def test_make_run_serves_and_stops_cleanly(stop_signal: signal.Signals, tmp_path: Path) -> None:
    port, aws_port = free_port(), free_port()
    process = subprocess.Popen(
        ["make", "--no-print-directory", "run", f"PORT={port}", f"AWS_PORT={aws_port}", f"STATE_DIR={tmp_path}"],
        cwd=ROOT,
        env=clean_env(),
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


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without the emulator's variables (a test process may have set them), nor those
    of a ``make test`` running this test (``make run`` is then a top-level make, as a person runs it)."""
    skip = ("AWS_", "STAGECOACH_", "MOTO_", "MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    env.update(extra)
    return env


def handlers_installed(pid: int) -> bool:
    """True once the process catches SIGINT and SIGTERM: the caught-signals mask of Linux's /proc/PID/status
    (``SigCgt``), or of ``ps -o sigcatch=`` where there is no /proc (macOS and the BSDs).

    Before that, the interpreter is still starting and the default actions apply: SIGTERM ends the
    process at once, SIGINT raises KeyboardInterrupt in whatever Python runs.
    """
    status = Path(f"/proc/{pid}/status")
    if status.parent.exists():
        mask = next(line for line in status.read_text().splitlines() if line.startswith("SigCgt:")).split()[1]
    else:
        mask = subprocess.run(["ps", "-o", "sigcatch=", "-p", str(pid)], capture_output=True, text=True).stdout
    caught = int(mask.strip() or "0", 16)
    return all(caught & (1 << (sig - 1)) for sig in (signal.SIGINT, signal.SIGTERM))


def finish_within(process: subprocess.Popen[str], seconds: float) -> tuple[str, str, float]:
    """(stdout, stderr, seconds it took) of a process that must end within ``seconds``."""
    started = time.monotonic()
    try:
        out, err = process.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        raise AssertionError(f"still running after {seconds} s: {out}{err}") from None
    return out, err, time.monotonic() - started


def listening_socket() -> socket.socket:
    """Another program on a port: a socket that listens (and never accepts)."""
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    return busy


def control_plane(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``python -m chalicelib.local.control_plane ARGS`` in its own process group."""
    return subprocess.Popen(
        [sys.executable, "-m", "chalicelib.local.control_plane", *args],
        cwd=ROOT,
        env=env or clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize("busy_setting", ["PORT", "AWS_PORT"])
def test_make_run_on_a_busy_port_says_so_in_one_line_and_exits_1(busy_setting: str, tmp_path: Path) -> None:
    with listening_socket() as busy:
        busy_port = busy.getsockname()[1]
        ports = {"PORT": free_port(), "AWS_PORT": free_port(), busy_setting: busy_port}
        process = subprocess.Popen(
            ["make", "--no-print-directory", "run", *(f"{k}={v}" for k, v in ports.items()), f"STATE_DIR={tmp_path}"],
            cwd=ROOT,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        out, err, took = finish_within(process, 10)
    assert process.returncode != 0
    ours = [line for line in err.splitlines() if line.startswith("stagecoach:")]
    what = "API" if busy_setting == "PORT" else "AWS emulator"
    assert ours == [
        f"stagecoach: {what} port {busy_port} is in use{' (another emulator?)' if busy_setting == 'AWS_PORT' else ''}; "
        f"run with {busy_setting}={busy_port + 1} or stop the other process"
    ], err
    # Besides make's own "*** [run] Error 1": nothing (no werkzeug message, no traceback).
    assert [line for line in err.splitlines() if not re.match(r"stagecoach:|make(\[\d+\])?:", line)] == [], err
    assert "Stagecoach API" not in out
    assert took < 10
    assert not port_open(ports["PORT" if busy_setting == "AWS_PORT" else "AWS_PORT"])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("state dir under a file", "cannot be written (Not a directory)"),
        ("state dir is a file", "is not a directory"),
        ("no git on PATH", "git is not installed or not on PATH"),
    ],
)
def test_start_up_failures_are_one_line_naming_the_fix(case: str, expected: str, tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory\n")
    state_dir = {"state dir under a file": a_file / "state", "state dir is a file": a_file}.get(case, tmp_path / "s")
    env = clean_env(PATH=str(tmp_path / "empty-bin")) if case == "no git on PATH" else clean_env()
    args = ["--port", str(free_port()), "--aws-port", str(free_port()), "--state-dir", str(state_dir)]
    process = control_plane(*args, env=env)
    out, err, took = finish_within(process, 10)
    assert process.returncode == 1, out + err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("stagecoach: ") and expected in err, err
    fix = "install git" if case == "no git on PATH" else "run with STATE_DIR="
    assert fix in err
    assert out == ""
    assert took < 10


def test_state_dir_setting_is_created_checked_and_left_clean(tmp_path: Path) -> None:
    from chalicelib.local.preflight import StartupError, check_state_dir

    made = check_state_dir(tmp_path / "new" / "state")
    assert made == tmp_path / "new" / "state" and made.is_dir()
    assert list(made.iterdir()) == []  # the write probe is removed
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o500)
    try:
        if os.access(read_only, os.W_OK):  # root writes anyway: only the other cases can fail here
            assert check_state_dir(read_only) == read_only
        else:
            with pytest.raises(StartupError, match="cannot be written"):
                check_state_dir(read_only)
    finally:
        read_only.chmod(0o700)


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("after_seconds", [0.0, 0.5, 1.5, 3.0])
def test_a_signal_stops_start_up_at_any_moment(
    stop_signal: signal.Signals, after_seconds: float, tmp_path: Path
) -> None:
    """From the moment the control plane's code runs: imports, the emulator, resources, the HTTP server."""
    port, aws_port = free_port(), free_port()
    process = control_plane("--port", str(port), "--aws-port", str(aws_port), "--state-dir", str(tmp_path))
    try:
        deadline = time.monotonic() + 30
        while not handlers_installed(process.pid):
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.01)
        time.sleep(after_seconds)
        os.killpg(process.pid, stop_signal)
        out, err, took = finish_within(process, 10)
    finally:
        if group_alive(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, out + err
    assert "Traceback" not in err, err
    assert out.rstrip().endswith("Stagecoach stopped."), out + err
    assert took < 10
    assert not port_open(port) and not port_open(aws_port)
