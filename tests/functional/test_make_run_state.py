"""`make run` keeps its state across restarts, real processes: a release waiting for approval resumes where it
stood, a kill -9 in the middle of traffic loses nothing that was acknowledged, RESET=1 starts empty."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.e2e.pipeline_support import example_repo
from tests.fakes import stack_body
from tests.functional.test_make_run import ROOT, clean_env, free_port, group_alive, port_open
from tests.plane import http
from tests.webhook_support import github_headers, github_push

pytestmark = pytest.mark.slow


class MakeRun:
    """``make run`` on free ports in its own process group; its output goes to a file (a pipe would fill up)."""

    def __init__(self, log: Path, *make_args: str, env: dict[str, str] | None = None) -> None:
        self.port, self.aws_port = free_port(), free_port()
        self.log = log
        with log.open("w") as out:
            self.process = subprocess.Popen(
                ["make", "--no-print-directory", "run", f"PORT={self.port}", f"AWS_PORT={self.aws_port}", *make_args],
                cwd=ROOT,
                env=env or clean_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, service: str) -> Any:
        """A boto3 client of the emulator behind it."""
        return boto3.client(
            service,
            endpoint_url=f"http://127.0.0.1:{self.aws_port}",
            region_name="us-east-1",
            aws_access_key_id="stagecoach-local",
            aws_secret_access_key="stagecoach-local",
        )

    def ready(self, timeout: float = 180) -> "MakeRun":
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.2)
        return self

    def stop(self, stop_signal: signal.Signals = signal.SIGINT) -> str:
        os.killpg(self.process.pid, stop_signal)
        self.process.wait(timeout=60)
        return self.log.read_text()

    def kill(self) -> None:
        if group_alive(self.process.pid):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


@pytest.fixture
def runs() -> Iterator[list[MakeRun]]:
    """Every ``make run`` a test starts is killed at the end, whatever happened."""
    started: list[MakeRun] = []
    yield started
    for run in started:
        run.kill()


def until(read: Callable[[], Any], done: Callable[[Any], bool], timeout: float = 240, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"{what}: {json.dumps(value)[:3000]}"
        time.sleep(0.5)


def stage(release: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in release["stages"] if s["name"] == name)


def push(url: str, stack_id: str, secret: str, sha: str) -> tuple[int, Any]:
    body = json.dumps(github_push(sha=sha, full_name="acme/hello", created=True)).encode()
    return http("POST", f"{url}/webhooks/github/{stack_id}", body, github_headers(secret, body))


def test_a_release_waiting_for_approval_resumes_where_it_stood_after_a_restart(
    tmp_path: Path, runs: list[MakeRun]
) -> None:
    state = tmp_path / "state"
    repo, sha = example_repo(tmp_path)
    # The first run finds the directory through STAGECOACH_STATE_DIR, the second through make's STATE_DIR.
    first = MakeRun(tmp_path / "first.log", env=clean_env(STAGECOACH_STATE_DIR=str(state)))
    runs.append(first)
    first.ready()
    body = stack_body(
        id="hello",
        repository={"provider": "github", "full_name": "acme/hello", "clone_url": str(repo)},
        stages=[
            {"name": "dev", "parameters": {"Stage": "dev"}},
            {"name": "prod", "parameters": {"Stage": "prod"}, "approval": True},
        ],
    )
    status, created = http("POST", f"{first.url}/stacks", body)
    assert status == 201, created
    status, accepted = push(first.url, "hello", created["webhook"]["secret"], sha)
    assert status == 202, accepted
    release_id = accepted["release_id"]

    def release(run: MakeRun) -> dict[str, Any]:
        return http("GET", f"{run.url}/releases/{release_id}")[1]

    before = until(
        lambda: release(first),
        lambda r: r["status"] not in ("PENDING", "RUNNING") or stage(r, "prod")["status"] == "AWAITING_APPROVAL",
        what="prod awaiting approval",
    )
    assert stage(before, "prod")["status"] == "AWAITING_APPROVAL", before
    assert "Stagecoach stopped." in first.stop(signal.SIGTERM)
    assert {"journal.log", "emulator.pickle", "blobs", "executions"} <= {p.name for p in state.iterdir()}

    second = MakeRun(tmp_path / "second.log", f"STATE_DIR={state}")
    runs.append(second)
    second.ready()
    assert [s["id"] for s in http("GET", f"{second.url}/stacks")[1]["stacks"]] == ["hello"]
    asked_before = stage(before, "prod")["approval"]["requested_at"]
    resumed = until(
        lambda: release(second),
        lambda r: (
            r["execution_name"].endswith("-r2")
            and stage(r, "prod")["status"] == "AWAITING_APPROVAL"
            and stage(r, "prod")["approval"]["requested_at"] > asked_before
        ),
        what="the approval asked for again",
    )
    assert resumed["status"] == "RUNNING"
    status, approved = http("POST", f"{second.url}/releases/{release_id}/stages/prod/approve", {"comment": "ship"})
    assert status == 200, approved
    done = until(lambda: release(second), lambda r: r["status"] not in ("PENDING", "RUNNING"), what="the end")
    assert done["status"] == "SUCCEEDED", done

    assert done["build"] == before["build"]  # built once
    assert stage(done, "dev") == stage(before, "dev")  # deployed once, before the restart
    assert stage(done, "prod")["approval"]["decision"] == "approved"
    cfn, ssm = second.client("cloudformation"), second.client("ssm")
    stacks = {s["StackName"]: s for s in cfn.describe_stacks()["Stacks"]}
    assert {n: s["StackStatus"] for n, s in stacks.items()} == {
        "hello--dev": "CREATE_COMPLETE",
        "hello--prod": "CREATE_COMPLETE",
    }
    for name in ("dev", "prod"):
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[f"hello--{name}"]["Outputs"]}
        assert outputs == stage(done, name)["outputs"]
        value = ssm.get_parameter(Name=outputs["ReleaseParameterName"])["Parameter"]["Value"]
        assert value == f"stage={name} sha={sha}"

    history = http("GET", f"{second.url}/releases/{release_id}/history")[1]
    lost, current = before["execution_arn"], done["execution_arn"]
    assert history["executions"] == [
        {"execution_arn": lost, "found": True},
        {"execution_arn": current, "found": True},
    ]
    names = [e["execution"] for e in history["events"]]
    split = names.index(current.rsplit(":", 1)[-1])
    assert set(names[:split]) == {lost.rsplit(":", 1)[-1]} and set(names[split:]) == {current.rsplit(":", 1)[-1]}
    assert "Build" in [e["name"] for e in history["events"][:split]]
    assert "Build" not in [e["name"] for e in history["events"][split:]]
    assert any(e["outcome"] == "interrupted" for e in history["events"][:split])
    assert "Entering phase BUILD" in http("GET", f"{second.url}/releases/{release_id}/build-log")[1]["log"]
    assert "Stagecoach stopped." in second.stop()


def all_stack_ids(url: str) -> set[str]:
    """Every stack's id, following the listing's pages."""
    ids: set[str] = set()
    query = "?limit=100"
    while True:
        status, page = http("GET", f"{url}/stacks{query}")
        assert status == 200, page
        ids |= {s["id"] for s in page["stacks"]}
        if not page.get("next_token"):
            return ids
        query = "?limit=100&next_token=" + urllib.parse.quote(page["next_token"])


def test_a_kill_9_in_the_middle_of_traffic_loses_nothing_acknowledged_and_reset_starts_empty(
    tmp_path: Path, runs: list[MakeRun]
) -> None:
    state = tmp_path / "state"
    first = MakeRun(tmp_path / "first.log", f"STATE_DIR={state}")
    runs.append(first)
    first.ready()
    status, created = http("POST", f"{first.url}/stacks", stack_body(id="hello"))
    assert status == 201, created
    secret = created["webhook"]["secret"]
    acknowledged: dict[str, list[str]] = {"releases": [], "stacks": ["hello"]}
    stop = threading.Event()

    def pushes(worker: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            sha = hashlib.sha1(f"{worker}-{n}".encode()).hexdigest()
            try:
                status, body = push(first.url, "hello", secret, sha)
            except OSError:
                return  # the control plane is gone
            if status == 202:
                acknowledged["releases"].append(body["release_id"])

    def stacks() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                status, _ = http("POST", f"{first.url}/stacks", stack_body(id=f"stack-{n}"))
            except OSError:
                return
            if status == 201:
                acknowledged["stacks"].append(f"stack-{n}")

    workers = [threading.Thread(target=pushes, args=(w,)) for w in range(3)] + [threading.Thread(target=stacks)]
    for worker in workers:
        worker.start()
    try:
        until(
            lambda: (len(acknowledged["releases"]), len(acknowledged["stacks"])),
            lambda counts: counts[0] >= 15 and counts[1] >= 4,
            timeout=180,
            what="traffic",
        )
        os.killpg(first.process.pid, signal.SIGKILL)  # in the middle of it: requests are in flight
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
    first.process.wait(timeout=30)

    second = MakeRun(tmp_path / "second.log", f"STATE_DIR={state}")
    runs.append(second)
    second.ready()
    assert set(acknowledged["stacks"]) <= all_stack_ids(second.url)
    for release_id in acknowledged["releases"]:
        status, body = http("GET", f"{second.url}/releases/{release_id}")
        assert status == 200 and body["stack_id"] == "hello", body
    # The webhook secret came back too: a new push is verified and accepted.
    status, body = push(second.url, "hello", secret, "f" * 40)
    assert status == 202, body

    # One control plane per directory: a second one says so and stops.
    other = MakeRun(tmp_path / "other.log", f"STATE_DIR={state}")
    runs.append(other)
    assert other.process.wait(timeout=60) != 0
    assert f"stagecoach: state directory {state} is in use by another make run" in other.log.read_text()

    assert "Stagecoach stopped." in second.stop()
    assert "Traceback" not in second.log.read_text()
    third = MakeRun(tmp_path / "third.log", f"STATE_DIR={state}", "RESET=1")
    runs.append(third)
    third.ready()
    assert http("GET", f"{third.url}/stacks")[1]["stacks"] == []
    assert "Stagecoach stopped." in third.stop()
