"""Release pipeline speed, in one run of the embedded control plane (issue: release pipeline).

transitions_per_stage: state transitions (StateEntered events) per stage in the no-approval happy
  path with one CloudFormation poll, counted from the execution history.
push_to_done_s: seconds from the webhook's 202 to a 4-stage release SUCCEEDED (no approvals,
  trivial buildspec), through the real HTTP API, event pump and local builder.
events_while_waiting: history events added to a release while it waits --wait seconds (default 60)
  for a stage another release holds (QUEUED stack, the holder waits for its approval); goal <= 10.
rollback_s: seconds from POST .../stages/prod/rollback to prod SUCCEEDED on the earlier build (no build,
  embedded mode); goal <= 2.
notifications_ratio: push_to_done_s of a stack with GitHub commit statuses, a Slack and a signed webhook
  target (a real local receiver) over the same stack without them, pushes interleaved; goal <= 1.1.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.pipeline_support import example_repo, git  # noqa: E402
from tests.plane import http, running_plane  # noqa: E402
from tests.receiver import Receiver, receiving  # noqa: E402
from tests.webhook_support import github_headers, github_push  # noqa: E402

STAGES = ("dev", "test", "staging", "prod")
TRIVIAL_BUILDSPEC = """version: 0.2
phases:
  build:
    commands:
      - mkdir -p dist && sed "s/__BUILD_SHA__/${CODEBUILD_RESOLVED_SOURCE_VERSION}/" template.yaml > dist/template.yaml
artifacts:
  base-directory: dist
  files:
    - template.yaml
"""


def new_commit(repo: Path, n: int) -> str:
    """A new commit; returns its sha."""
    (repo / "BENCH.txt").write_text(f"{n}\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"bench {n}")
    return git(repo, "rev-parse", "HEAD")


def push_and_wait(
    url: str, secret: str, sha: str, timeout: float = 120, stack_id: str = "bench"
) -> tuple[float, dict[str, Any]]:
    """Seconds from the 202 to SUCCEEDED, and the release."""
    body = json.dumps(github_push(sha=sha, full_name="acme/bench")).encode()
    status, accepted = http("POST", f"{url}/webhooks/github/{stack_id}", body, github_headers(secret, body))
    t0 = time.perf_counter()
    assert status == 202, accepted
    deadline = t0 + timeout
    while time.perf_counter() < deadline:
        _, release = http("GET", f"{url}/releases/{accepted['release_id']}")
        if release["status"] in ("SUCCEEDED", "FAILED"):
            elapsed = time.perf_counter() - t0
            assert release["status"] == "SUCCEEDED", release
            return elapsed, release
        time.sleep(0.02)
    raise TimeoutError(f"release {accepted['release_id']} did not end in {timeout} s")


def transitions_per_stage(aws_url: str, execution_arn: str) -> list[int]:
    """StateEntered events inside each Map iteration, in stage order."""
    import boto3

    sfn: Any = boto3.client("stepfunctions", endpoint_url=aws_url, region_name="us-east-1")
    events: list[dict[str, Any]] = []
    token = None
    while True:
        page = sfn.get_execution_history(
            executionArn=execution_arn, maxResults=1000, **({"nextToken": token} if token else {})
        )
        events += page["events"]
        token = page.get("nextToken")
        if not token:
            break
    counts: list[int] = []
    inside = False
    for event in events:
        if event["type"] == "MapIterationStarted":
            counts.append(0)
            inside = True
        elif event["type"] in ("MapIterationSucceeded", "MapIterationFailed"):
            inside = False
        elif inside and event["type"].endswith("StateEntered"):
            counts[-1] += 1
    return counts


def history_length(aws_url: str, execution_arn: str) -> int:
    """How many events the execution's history holds."""
    import boto3

    sfn: Any = boto3.client("stepfunctions", endpoint_url=aws_url, region_name="us-east-1")
    pages = sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn)
    return sum(len(page["events"]) for page in pages)


def wait_for(url: str, release_id: str, stage: str, status: str, timeout: float = 120) -> dict[str, Any]:
    """Poll the release until ``stage`` has ``status``."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        _, release = http("GET", f"{url}/releases/{release_id}")
        if any(s["name"] == stage and s["status"] == status for s in release["stages"]):
            return dict(release)
        time.sleep(0.05)
    raise TimeoutError(f"{release_id}: {stage} never became {status}")


def events_while_waiting(url: str, aws_url: str, repo: Path, seconds: float) -> tuple[int, int]:
    """(events added while parked for ``seconds``, events in all) of a release waiting for a held stage."""
    body = {
        "id": "waiting",
        "name": "waiting",
        "execution_mode": "QUEUED",
        "stages": [{"name": "prod", "parameters": {"Stage": "prod"}, "approval": True}],
        "repository": {"provider": "github", "full_name": "acme/bench", "clone_url": str(repo)},
    }
    status, created = http("POST", f"{url}/stacks", body)
    assert status == 201, created
    ids = []
    for n in range(2):
        _, accepted = http("POST", f"{url}/stacks/waiting/releases", {"sha": new_commit(repo, 100 + n)})
        ids.append(accepted["release_id"])
        wait_for(url, ids[-1], "prod", "AWAITING_APPROVAL" if n == 0 else "WAITING")
    _, parked = http("GET", f"{url}/releases/{ids[1]}")
    before = history_length(aws_url, parked["execution_arn"])
    time.sleep(seconds)  # the wait being measured
    after = history_length(aws_url, parked["execution_arn"])
    for release_id in ids:
        http("POST", f"{url}/releases/{release_id}/cancel", {})
    return after - before, after


def rollback_seconds(url: str) -> float:
    """Roll the bench stack's last stage back to the release before its current one; seconds to SUCCEEDED."""
    stage = STAGES[-1]
    t0 = time.perf_counter()
    status, answer = http("POST", f"{url}/stacks/bench/stages/{stage}/rollback", {"reason": "bench"})
    assert status == 202, answer
    deadline = t0 + 60
    while time.perf_counter() < deadline:
        _, release = http("GET", f"{url}/releases/{answer['release_id']}")
        if release["status"] not in ("PENDING", "RUNNING"):
            assert release["status"] == "SUCCEEDED", release
            elapsed = time.perf_counter() - t0
            http("DELETE", f"{url}/stacks/bench/stages/{stage}/pin")
            return elapsed
        time.sleep(0.02)
    raise TimeoutError("the rollback did not end in 60 s")


def notifications_on_off(url: str, repo: Path, receiver: Receiver, secret: str, releases: int) -> tuple[float, float]:
    """Median push_to_done_s of the bench stack (no notifications) and of its twin that notifies, interleaved."""
    body = {
        "id": "bench-notify",
        "name": "bench-notify",
        "stages": [{"name": s, "parameters": {"Stage": s}} for s in STAGES],
        "repository": {"provider": "github", "full_name": "acme/bench", "clone_url": str(repo)},
        "commit_status": {"api_url": f"{receiver.url}/github", "token": "bench-token"},
        "notifications": [
            {"type": "slack", "url": f"{receiver.url}/slack", "events": ["stage.succeeded", "release.ended"]},
            {"type": "webhook", "url": f"{receiver.url}/hook", "secret": "bench-secret-0123456789"},
        ],
    }
    status, created = http("POST", f"{url}/stacks", body)
    assert status == 201, created
    push_and_wait(url, created["webhook"]["secret"], git(repo, "rev-parse", "HEAD"), stack_id="bench-notify")
    off, on = [], []
    for n in range(releases):
        off.append(push_and_wait(url, secret, new_commit(repo, 200 + 2 * n))[0])
        sha = new_commit(repo, 201 + 2 * n)
        on.append(push_and_wait(url, created["webhook"]["secret"], sha, stack_id="bench-notify")[0])
    assert receiver.under("/github/") and receiver.under("/hook"), "the notifications reached the receiver"
    return statistics.median(off), statistics.median(on)


def main() -> int:
    """Print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--releases", type=int, default=5)
    parser.add_argument("--wait", type=float, default=60.0, help="seconds a release waits for a held stage")
    parser.add_argument("--notify-releases", type=int, default=5, help="releases timed with notifications on/off")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, receiving() as receiver, running_plane(pump=True) as plane:
        repo, _ = example_repo(Path(tmp), buildspec=TRIVIAL_BUILDSPEC)
        body = {
            "id": "bench",
            "name": "bench",
            "stages": [{"name": s, "parameters": {"Stage": s}} for s in STAGES],
            "repository": {"provider": "github", "full_name": "acme/bench", "clone_url": str(repo)},
        }
        status, created = http("POST", f"{plane.url}/stacks", body)
        assert status == 201, created
        secret = created["webhook"]["secret"]
        first_time, first = push_and_wait(plane.url, secret, git(repo, "rev-parse", "HEAD"))
        create_counts = transitions_per_stage(plane.aws_url, first["execution_arn"])
        times, update_counts = [], []
        for n in range(args.releases):
            elapsed, release = push_and_wait(plane.url, secret, new_commit(repo, n))
            times.append(elapsed)
            update_counts = transitions_per_stage(plane.aws_url, release["execution_arn"])
        rollbacks = [rollback_seconds(plane.url) for _ in range(3)]
        notify_off, notify_on = notifications_on_off(plane.url, repo, receiver, secret, args.notify_releases)
        added, total = events_while_waiting(plane.url, plane.aws_url, repo, args.wait)
    print(f"stages: {len(STAGES)}, releases timed: {args.releases} (+1 creating the stacks: {first_time:.2f} s)")
    print(f"transitions per stage, creating stacks: {create_counts}; updating: {update_counts}")
    print(f"push_to_done_s_all: {', '.join(f'{t:.2f}' for t in times)}")
    print(f"transitions_per_stage: {max(update_counts)}")
    print(f"push_to_done_s: {statistics.median(times):.2f}")
    print(f"events_while_waiting: {added} (over {args.wait:.0f} s; {total} events in that release's history)")
    print(f"rollback_s_all: {', '.join(f'{t:.2f}' for t in rollbacks)}")
    print(f"rollback_s: {statistics.median(rollbacks):.2f}")
    print(f"push_to_done_s notifications off: {notify_off:.2f}, on: {notify_on:.2f}")
    print(f"notifications_ratio: {notify_on / notify_off:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
