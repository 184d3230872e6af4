"""``make run``: the whole control plane on one laptop.

Starts the moto emulator in-process (state machine execution on), creates every resource the app
needs there, serves the Chalice app over HTTP in-process (no reloader child), and runs the event
pump that delivers queue messages and build events to the handlers in ``app.py``. SIGINT or
SIGTERM stops all of it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

from .resources import ROOT, LocalResources, ensure_resources

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


@dataclass
class ControlPlane:
    """A running local control plane; ``stop()`` ends every thread and frees both ports."""

    host: str
    port: int
    aws_port: int
    resources: LocalResources | None = None
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
        """Start the emulator, create resources, serve the app and (optionally) the event pump."""
        from moto.server import ThreadedMotoServer

        from .emulator import enable_state_machine_execution, harden_moto

        harden_moto()
        enable_state_machine_execution()
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the emulator's per-request lines
        # Every error a state catches is logged by moto too; GET /releases/{id}/history shows them.
        logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
        emulator = ThreadedMotoServer(ip_address=self.host, port=self.aws_port, verbose=False)
        emulator.start()
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
        server = local_server(app, config, self.host, self.port)
        self.port = server.server.server_address[1]
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


def main(argv: list[str] | None = None) -> int:
    """Run the local control plane until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(prog="stagecoach-local", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--aws-port", type=int, default=int(os.environ.get("AWS_PORT", "4566")))
    args = parser.parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    plane = ControlPlane(args.host, args.port, args.aws_port)
    try:
        plane.start()
        print(f"Stagecoach API:   {plane.url}", flush=True)
        print(f"AWS emulator:     {plane.aws_url}  (AWS_ENDPOINT_URL)", flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        plane.stop()
        print("Stagecoach stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
