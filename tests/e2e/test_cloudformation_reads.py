"""The release reads CloudFormation the AWS way: with change sets and stacks taking time, and
DescribeStacks still showing the previous final status right after ExecuteChangeSet (the emulator's
delay and stale window), a stage is done only when its change set says so."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.e2e.pipeline_support import create_stack, ended, example_repo, git, push, run_until

pytestmark = pytest.mark.e2e
DELAY = 2.0
STALE = 1.5


@pytest.fixture
def pump(aws: Any) -> Iterator[Any]:
    from chalicelib.local.pump import EventPump

    yield EventPump.for_app(aws)


@pytest.fixture
def slow_cloudformation(aws: Any) -> Iterator[None]:
    from chalicelib.local import cloudformation

    previous = cloudformation.configure(delay_seconds=DELAY, stale_seconds=STALE)
    try:
        yield
    finally:
        cloudformation.restore(previous)


def watches(release: dict[str, Any]) -> list[int]:
    """How many times each stage looked at its change set after executing it."""
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    counts: list[int] = []
    for event in sfn.get_execution_history(executionArn=release["execution_arn"], maxResults=1000)["events"]:
        if event["type"] == "MapIterationStarted":
            counts.append(0)
        elif event["type"] == "TaskStateEntered" and event["stateEnteredEventDetails"]["name"] == "WatchDeploy":
            counts[-1] += 1
    return counts


def test_an_update_is_done_when_its_change_set_says_so_not_at_a_stale_read(
    client: Any, pump: Any, tmp_path: Path, slow_cloudformation: None
) -> None:
    repo, first = example_repo(tmp_path)
    secret = create_stack(client, repo, approval_on_prod=False)
    assert run_until(client, pump, push(client, secret, first).json_body["release_id"], ended)["status"] == "SUCCEEDED"
    (repo / "CHANGES.txt").write_text("second\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Second")
    second = git(repo, "rev-parse", "HEAD")
    done = run_until(client, pump, push(client, secret, second).json_body["release_id"], ended)
    assert done["status"] == "SUCCEEDED", (done["error"], done["cause"])
    for stage in done["stages"]:
        # the update takes DELAY seconds; a stale UPDATE_COMPLETE right after ExecuteChangeSet never ended it
        assert stage["duration_seconds"] >= DELAY, stage
        assert stage["outputs"]["ReleaseParameterName"]
    assert all(n >= 2 for n in watches(done)), watches(done)
    ssm = boto3.client("ssm", region_name="us-east-1")
    value = ssm.get_parameter(Name=done["stages"][-1]["outputs"]["ReleaseParameterName"])["Parameter"]["Value"]
    assert second in value, (value, done["stages"][-1], first, second)


def test_a_deploy_that_rolls_back_fails_the_stage_with_cloudformation_s_reason(
    client: Any, pump: Any, tmp_path: Path, slow_cloudformation: None
) -> None:
    from chalicelib.local import cloudformation

    repo, sha = example_repo(tmp_path)
    secret = create_stack(client, repo, approval_on_prod=False)
    cloudformation.fail_next_deploy("hello--test", "Resource handler returned message: quota exceeded")
    done = run_until(client, pump, push(client, secret, sha).json_body["release_id"], ended)
    assert done["status"] == "FAILED" and done["failed_stage"] == "test"
    assert done["error"] == "DeployFailed"
    assert "ROLLBACK_COMPLETE" in done["cause"] and "quota exceeded" in done["cause"]
    assert [s["status"] for s in done["stages"]] == ["SUCCEEDED", "FAILED", "SKIPPED"]
    stages = {s["name"]: s for s in client.http.get("/stacks/hello").json_body["stages"]}
    assert stages["test"]["locked_by"] is None and stages["test"]["status"] == "FAILED"
