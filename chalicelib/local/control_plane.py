"""``make run``: the whole control plane on one laptop.

Starts the moto emulator in-process (state machine execution on), creates every resource the app
needs there, serves the Chalice app over HTTP in-process (no reloader child; one thread per
connection, a listen backlog of ``LISTEN_BACKLOG``), and runs the event pump that delivers queue
messages and build events to the handlers in ``app.py``. SIGINT or SIGTERM stops all of it, at
any moment of start-up too. A busy port, a state directory that cannot be written or a missing
git end start-up at once with one line on stderr that names the problem and the fix.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from .preflight import LISTEN_BACKLOG, StartupError, check_git, check_state_dir, reserve_port
from .resources import ROOT, LocalResources, ensure_resources

DEFAULT_STATE_DIR = ROOT / ".stagecoach"
REPEATED_SIGNAL_SECONDS = 2.0
STATE_DIR_VARIABLE = "STAGECOACH_STATE_DIR"

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "stagecoach-local",
    "AWS_SECRET_ACCESS_KEY": "stagecoach-local",
    "AWS_SESSION_TOKEN": "stagecoach-local",
}


def chalice_stage_environment(stage: str = "local") -> dict[str, str]:
    """Environment variables of a Chalice stage, as ``chalice local`` would set them."""
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    env = dict(config.get("environment_variables", {}))
    env.update(config.get("stages", {}).get(stage, {}).get("environment_variables", {}))
    return {k: str(v) for k, v in env.items()}


def configure_emulator_environment(aws_port: int, region: str = "us-east-1") -> None:
    """Point every AWS client of this process (boto3, pynamodb, moto's task states) at the emulator."""
    os.environ.update(FAKE_CREDENTIALS)
    os.environ["AWS_DEFAULT_REGION"] = region
    os.environ["AWS_REGION"] = region
    os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{aws_port}"
    os.environ["MOTO_PORT"] = str(aws_port)


def listening_http_server_class(listener: socket.socket) -> Any:
    """chalice.local's threaded server class, serving on ``listener`` with a backlog of ``LISTEN_BACKLOG``.

    chalice's ``ThreadedHTTPServer`` keeps socketserver's backlog of 5: a burst of connections
    (GitHub delivering several pushes at once) gets connection resets that nobody retries.
    """
    from chalice.local import ThreadedHTTPServer

    class ListeningHTTPServer(ThreadedHTTPServer):
        request_queue_size = LISTEN_BACKLOG

        def __init__(self, address: Any, handler: Any) -> None:
            super().__init__(address, handler, bind_and_activate=False)
            self.server_close()  # closes the socket socketserver made: serve on the reserved one instead
            self.socket = listener
            self.server_address = listener.getsockname()
            self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])
            self.server_activate()  # listen(LISTEN_BACKLOG)

        def handle_error(self, request: Any, client_address: Any) -> None:
            """A client that hung up (a closed browser tab, a timed-out provider) is not a server error: no
            traceback on stderr for it; anything else is reported as socketserver does."""
            if isinstance(sys.exc_info()[1], ConnectionError):  # broken pipe, reset, aborted
                return
            super().handle_error(request, client_address)

    return ListeningHTTPServer


def _emulator_server(listener: socket.socket) -> Any:
    """moto's ``ThreadedMotoServer`` serving on the already bound ``listener``.

    moto 5.2.5 binds in its server thread; on a busy port werkzeug prints its own message and
    exits that thread, and ``start()`` waits for ever. Here the port is bound before (so a busy
    port is reported at once) and a failure in the thread ends ``start()`` with the error.
    """
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    class ReservedPortMotoServer(ThreadedMotoServer):
        error: BaseException | None = None

        def _server_entry(self) -> None:
            try:
                listener.listen(LISTEN_BACKLOG)
                self._server = make_server(
                    self._ip_address,
                    self._port,
                    DomainDispatcherApplication(create_backend_app),
                    True,
                    request_handler=MotoRequestHandler,
                    fd=listener.fileno(),
                )
            except BaseException as exc:  # start() must return, and say why
                self.error = exc
                self._server_ready_event.set()
                return
            finally:
                listener.close()  # werkzeug serves on a duplicate of it
            self._server_ready_event.set()
            self._server.serve_forever()

    host, port = listener.getsockname()[:2]
    return ReservedPortMotoServer(ip_address=host, port=port, verbose=False)


@dataclass
class ControlPlane:
    """A running local control plane; ``stop()`` ends every thread and frees both ports."""

    host: str
    port: int
    aws_port: int
    state_dir: Path | None = None  # None: nothing is kept after stop()
    reset: bool = False  # start with an empty state directory
    resources: LocalResources | None = None
    state: Any = None  # the open chalicelib.local.state.StateStore, if state_dir
    _stoppers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def url(self) -> str:
        """Address of the HTTP API."""
        return f"http://{self.host}:{self.port}"

    @property
    def aws_url(self) -> str:
        """Address of the emulator."""
        return f"http://{self.host}:{self.aws_port}"

    def start(self, pump: bool = True) -> "ControlPlane":
        """Start the emulator, create resources, serve the app and (optionally) the event pump.

        Both ports are bound first: StartupError at once if one is in use (port 0: any free port). With a
        ``state_dir``, what it holds is loaded into the emulator first and every change is kept there.
        """
        api_listener = reserve_port(self.host, self.port, "PORT", "API")
        self._stoppers.append(api_listener.close)
        aws_listener = reserve_port(self.host, self.aws_port, "AWS_PORT", "AWS emulator")
        self._stoppers.append(aws_listener.close)

        from . import cloudformation
        from .emulator import enable_state_machine_execution, harden_moto

        harden_moto()
        enable_state_machine_execution()
        previous_cfn_settings = cloudformation.current_settings()
        cloudformation.configure_from_environment()  # STAGECOACH_EMULATOR_CFN_DELAY_SECONDS / _STALE_SECONDS
        self._stoppers.append(lambda: cloudformation.restore(previous_cfn_settings))
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the emulator's per-request lines
        # Every error a state catches is logged by moto too; GET /releases/{id}/history shows them.
        logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
        if self.state_dir is not None:
            from .state import StateStore

            self.state = StateStore(self.state_dir).open(reset=self.reset)
            self._stoppers.append(self.state.close)  # after the emulator stopped: nothing changes any more
        emulator = _emulator_server(aws_listener)
        emulator.start()
        if emulator.error is not None:
            raise StartupError(f"the AWS emulator could not start: {emulator.error}")
        self.aws_port = emulator.get_host_and_port()[1]
        self._stoppers.append(emulator.stop)
        configure_emulator_environment(self.aws_port)

        import boto3

        self.resources = ensure_resources(boto3.session.Session(region_name=os.environ["AWS_REGION"]))
        os.environ.update(chalice_stage_environment("local"))
        os.environ.update(self.resources.environment())

        from chalice.config import Config

        from app import app
        from chalicelib import bootstrap

        from .gateway import local_server

        bootstrap.reset()
        config = Config.create(chalice_stage="local", project_dir=str(ROOT), config_from_disk={})
        server = local_server(app, config, self.host, self.port, server_cls=listening_http_server_class(api_listener))
        self.port = server.server.server_address[1]
        server.port = self.port  # chalice prints "Serving on" with it (port 0 asked for any free port)
        os.environ.setdefault("STAGECOACH_PUBLIC_URL", self.url)  # commit statuses and messages link here
        bootstrap.reset()
        thread = threading.Thread(target=server.serve_forever, name="chalice-http", daemon=True)
        thread.start()

        def stop_http() -> None:
            server.shutdown()
            server.server.server_close()
            thread.join(timeout=5)

        self._stoppers.append(stop_http)
        if pump:
            from .pump import EventPump

            event_pump = EventPump.for_app(self.resources)
            event_pump.start()
            self._stoppers.append(event_pump.stop)
        return self

    def stop(self) -> None:
        """Stop in reverse order of start."""
        while self._stoppers:
            stopper = self._stoppers.pop()
            try:
                stopper()
            except Exception as exc:  # keep stopping the rest
                print(f"stagecoach: while stopping: {exc}", file=sys.stderr)


class StopRequested(BaseException):
    """SIGINT or SIGTERM arrived while the control plane was starting (a BaseException, like
    KeyboardInterrupt, so that no ``except Exception`` on the way swallows it)."""


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    """``--host``, ``--port`` (``$PORT``), ``--aws-port`` (``$AWS_PORT``), ``--state-dir``, ``--reset``."""
    parser = argparse.ArgumentParser(prog="stagecoach-local", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--aws-port", type=int, default=int(os.environ.get("AWS_PORT", "4566")))
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get(STATE_DIR_VARIABLE) or DEFAULT_STATE_DIR),
        help=f"where the embedded state lives (default ${STATE_DIR_VARIABLE} or {DEFAULT_STATE_DIR})",
    )
    parser.add_argument("--reset", action="store_true", help="start with an empty state directory")
    return parser.parse_args(argv)


def preflight(args: argparse.Namespace) -> Path:
    """The checks that need no emulator: state directory and git (ports are bound by ``start``).

    Returns the state directory (absolute) and exports it as ``STAGECOACH_STATE_DIR``.
    """
    state_dir = check_state_dir(args.state_dir)
    os.environ[STATE_DIR_VARIABLE] = str(state_dir)
    check_git()
    return state_dir


def main(argv: list[str] | None = None) -> int:
    """Run the local control plane until SIGINT or SIGTERM; 1 (one line on stderr) if it cannot start."""
    args = parse_arguments(argv)
    phase = "starting"
    # A plain flag, not a threading.Event: a handler runs in the main thread between any two bytecodes, also
    # while it holds an Event's lock (in Event.wait, or in the set() of a signal just before), and would
    # then wait for that lock for ever.
    stop_requested = False

    first_signal_at: float | None = None

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal phase, first_signal_at, stop_requested
        now = time.monotonic()
        if first_signal_at is None:
            first_signal_at = now
        if phase == "starting":  # interrupt whatever start-up is doing (an import, a call to the emulator)
            phase = "stopping"
            raise StopRequested(signal.Signals(signum).name)
        if phase == "running":
            phase = "stopping"
            stop_requested = True
            return
        # While stopping: the same request again (`kill` of the process group reaches make, which sends
        # its own SIGTERM) is ignored; a new one later means "now": stop, whatever still runs.
        if now - first_signal_at >= REPEATED_SIGNAL_SECONDS:
            print("Stagecoach stopped (forced).", file=sys.stderr, flush=True)
            os._exit(1)

    plane = ControlPlane(args.host, args.port, args.aws_port, reset=args.reset)
    failure: StartupError | None = None
    try:
        try:
            signal.signal(signal.SIGINT, on_signal)
            signal.signal(signal.SIGTERM, on_signal)
            plane.state_dir = preflight(args)
            plane.start()
            phase = "running"
            print(f"Stagecoach API:   {plane.url}", flush=True)
            print(f"AWS emulator:     {plane.aws_url}  (AWS_ENDPOINT_URL)", flush=True)
            print(f"State directory:  {plane.state_dir}  (make run RESET=1 starts empty)", flush=True)
            print("Press Ctrl-C to stop.", flush=True)
            while not stop_requested:
                time.sleep(0.2)
        except StartupError as exc:
            phase = "stopping"  # a signal before this line raises StopRequested, caught below
            failure = exc
        except Exception:  # a bug: stop what started, then show it
            phase = "stopping"
            plane.stop()
            raise
    except StopRequested:
        pass
    phase = "stopping"
    plane.stop()
    if failure is not None:
        print(f"stagecoach: {failure}", file=sys.stderr, flush=True)
        return 1
    print("Stagecoach stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
