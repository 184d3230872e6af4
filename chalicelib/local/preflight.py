"""Start-up checks of ``make run``: each failure is one line that names the problem and the fix.

The checks run before anything slow (no moto import): a busy port, a state directory that cannot
be written or a missing ``git`` stop ``make run`` within a second instead of hanging.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import tempfile
from pathlib import Path

# Connections the kernel queues while every handler thread is busy accepting. 128 is what werkzeug
# (the emulator) uses; the kernel caps it at net.core.somaxconn (4096 on current Linux, 128 on macOS).
LISTEN_BACKLOG = 1024


class StartupError(Exception):
    """The control plane cannot start; ``str()`` is the one line to print."""


def reserve_port(host: str, port: int, setting: str, what: str) -> socket.socket:
    """A socket bound (not yet listening) to ``host:port``, or StartupError naming ``setting``.

    Binding early reserves the port: nothing else can take it between this check and the moment
    the server starts, and nobody can connect before the server is ready (it listens then).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # As every server does: a port left in TIME_WAIT by the previous run is free to bind again.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            hint = " (another emulator?)" if setting == "AWS_PORT" else ""
            raise StartupError(
                f"{what} port {port} is in use{hint}; run with {setting}={port + 1} or stop the other process"
            ) from None
        if exc.errno == errno.EACCES:
            raise StartupError(
                f"{what} port {port} needs privileges to bind; run with {setting}=<a port above 1023>"
            ) from None
        raise StartupError(
            f"cannot bind {what} port {host}:{port}: {exc.strerror or exc}; run with another {setting} or --host"
        ) from None
    return sock


def check_state_dir(path: Path | str) -> Path:
    """Create ``path`` if needed and prove it is writable (a file is written and removed there).

    Returns the absolute path; StartupError (one line, with the fix) if it cannot be used.
    """
    directory = Path(path).expanduser().absolute()
    fix = "run with STATE_DIR=<a writable directory> (or STAGECOACH_STATE_DIR) or fix its permissions"
    if directory.exists() and not directory.is_dir():
        raise StartupError(f"state directory {directory} is not a directory; {fix}")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        descriptor, probe = tempfile.mkstemp(prefix=".write-check-", dir=directory)
        try:
            os.write(descriptor, b"ok")
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
            os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise StartupError(f"state directory {directory} cannot be written ({reason}); {fix}") from None
    return directory


def check_git(git: str = "git") -> str:
    """The path of the ``git`` executable the local builder runs; StartupError if there is none."""
    found = shutil.which(git)
    if found is None:
        raise StartupError(
            f"{git} is not installed or not on PATH (the local builder clones with it); "
            "install git (https://git-scm.com/downloads) and run make run again"
        )
    return found
