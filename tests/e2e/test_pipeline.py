"""Whole releases, for real, in the emulator: webhook → build worker → local builder → build event
→ state machine → CloudFormation per stage, approvals through the API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.e2e.pipeline_support import awaiting, create_stack, ended, example_repo, push, release, run_until

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def pump(aws: Any) -> Iterator[Any]:
    """The event pump of the embedded mode, driven synchronously by the tests."""
    from chalicelib.local.pump import EventPump

    yield EventPump.for_app(aws)


def cfn_stacks() -> dict[str, str]:
    cfn = boto3.client("cloudformation", region_name="us-east-1")
    return {s["StackName"]: s["StackStatus"] for s in cfn.describe_stacks()["Stacks"]}


def test_push_reaches_prod_after_approval(client: Any, pump: Any, tmp_path: Path) -> None:
    repo, sha = example_repo(tmp_path)
    secret = create_stack(client, repo)
    accepted = push(client, secret, sha)
    assert accepted.status_code == 202, accepted.body
    release_id = accepted.json_body["release_id"]

    waiting = run_until(client, pump, release_id, awaiting("prod"))
    assert [s["status"] for s in waiting["stages"]] == ["SUCCEEDED", "SUCCEEDED", "AWAITING_APPROVAL"]
    assert waiting["build"]["status"] == "SUCCEEDED"
    assert waiting["build"]["resolved_sha"] == sha
    # prod's change set is made before the approval is asked for (nothing executed yet)
    assert cfn_stacks() == {
        "hello--dev": "CREATE_COMPLETE",
        "hello--test": "CREATE_COMPLETE",
        "hello--prod": "REVIEW_IN_PROGRESS",
    }
    pipeline = client.http.get("/stacks/hello").json_body
    assert [(s["name"], s["awaiting_approval"]) for s in pipeline["stages"]][2] == ("prod", release_id)

    approved = client.http.post(
        f"/releases/{release_id}/stages/prod/approve", body=json.dumps({"comment": "ship"}), headers=JSON
    )
    assert approved.status_code == 200, approved.body
    again = client.http.post(f"/releases/{release_id}/stages/prod/approve", body=b"{}", headers=JSON)
    assert again.status_code == 200, again.body  # a retry of the same decision answers it again
    assert again.json_body["at"] == approved.json_body["at"]
    reversed_ = client.http.post(f"/releases/{release_id}/stages/prod/reject", body=b"{}", headers=JSON)
    assert reversed_.status_code == 409

    done = run_until(client, pump, release_id, ended)
    assert done["status"] == "SUCCEEDED", done
    assert [s["status"] for s in done["stages"]] == ["SUCCEEDED"] * 3
    prod = done["stages"][2]
    assert prod["approval"]["decision"] == "approved"
    assert prod["approval"]["comment"] == "ship"
    assert "ReleaseParameterName" in (prod["outputs"] or {}), done["stages"]
    assert prod["change_summary"]["add"] >= 3
    ssm = boto3.client("ssm", region_name="us-east-1")
    value = ssm.get_parameter(Name=prod["outputs"]["ReleaseParameterName"])["Parameter"]["Value"]
    assert "prod" in value and sha in value
    assert cfn_stacks() == {f"hello--{s}": "CREATE_COMPLETE" for s in ("dev", "test", "prod")}

    stack = client.http.get("/stacks/hello").json_body
    for stage in stack["stages"]:
        assert stage["current_release"]["release_id"] == release_id
        assert stage["current_release"]["sha"] == sha
        assert stage["locked_by"] is None
        assert stage["awaiting_approval"] is None

    history = client.http.get(f"/releases/{release_id}/history").json_body["events"]
    assert history[0]["name"] == "MarkRunning"
    assert {e["stage"] for e in history if e["stage"]} == {"dev", "test", "prod"}
    assert all(e["outcome"] in ("succeeded", "caught") for e in history)
    raw = client.http.get(f"/releases/{release_id}/history?raw=true").json_body["events"]
    assert raw[0]["type"] == "ExecutionStarted"
    log = client.http.get(f"/releases/{release_id}/build-log").json_body
    assert "Entering phase BUILD" in log["log"]
    assert "packaged hello" in log["log"]


def test_build_failure_deploys_nothing_and_shows_cause(client: Any, pump: Any, tmp_path: Path) -> None:
    repo, sha = example_repo(tmp_path, break_build=True)
    secret = create_stack(client, repo)
    release_id = push(client, secret, sha).json_body["release_id"]
    done = run_until(client, pump, release_id, ended)
    assert done["status"] == "FAILED"
    assert done["error"] == "BuildFailed"
    assert "BUILD" in done["cause"] and "broken on purpose" in done["cause"]
    assert done["build"]["status"] == "FAILED"
    assert done["build"]["failed_phase"] == "BUILD"
    assert [s["status"] for s in done["stages"]] == ["SKIPPED"] * 3
    assert cfn_stacks() == {}
    log = client.http.get(f"/releases/{release_id}/build-log").json_body["log"]
    assert "broken on purpose" in log


def test_rejection_fails_the_release_at_that_stage(client: Any, pump: Any, tmp_path: Path) -> None:
    repo, sha = example_repo(tmp_path)
    secret = create_stack(client, repo)
    release_id = push(client, secret, sha).json_body["release_id"]
    run_until(client, pump, release_id, awaiting("prod"))
    rejected = client.http.post(
        f"/releases/{release_id}/stages/prod/reject", body=json.dumps({"comment": "not today"}), headers=JSON
    )
    assert rejected.status_code == 200
    done = run_until(client, pump, release_id, ended)
    assert done["status"] == "FAILED"
    assert done["failed_stage"] == "prod"
    assert "not today" in done["cause"]
    assert done["stages"][2]["status"] == "FAILED"
    assert "hello--prod" not in cfn_stacks()
    stages = {s["name"]: s for s in client.http.get("/stacks/hello").json_body["stages"]}
    assert stages["prod"]["locked_by"] is None


def test_manual_redeploy_of_same_sha_has_no_changes(client: Any, pump: Any, tmp_path: Path) -> None:
    repo, sha = example_repo(tmp_path)
    create_stack(client, repo, approval_on_prod=False)
    first = client.http.post("/stacks/hello/releases", body=json.dumps({"sha": sha}), headers=JSON).json_body
    assert run_until(client, pump, first["release_id"], ended)["status"] == "SUCCEEDED"
    second = client.http.post("/stacks/hello/releases", body=json.dumps({"sha": sha}), headers=JSON).json_body
    done = run_until(client, pump, second["release_id"], ended)
    assert done["status"] == "SUCCEEDED"
    # Same template, parameters and tags (stack tags carry no release id): an empty change set.
    assert [s["no_changes"] for s in done["stages"]] == [True, True, True]
    assert [s["change_summary"] for s in done["stages"]] == [{"add": 0, "modify": 0, "remove": 0, "replace": 0}] * 3
    assert release(client, first["release_id"])["status"] == "SUCCEEDED"


def test_queued_releases_take_each_stage_in_order_never_at_once(client: Any, pump: Any, tmp_path: Path) -> None:
    from chalicelib.domain.clock import parse_iso
    from tests.e2e.pipeline_support import git

    repo, first_sha = example_repo(tmp_path)
    (repo / "CHANGES.txt").write_text("second commit\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Second")
    second_sha = git(repo, "rev-parse", "HEAD")
    create_stack(client, repo, approval_on_prod=False, mode="QUEUED")
    ids = [
        client.http.post("/stacks/hello/releases", body=json.dumps({"sha": sha}), headers=JSON).json_body["release_id"]
        for sha in (first_sha, second_sha)
    ]
    results = [run_until(client, pump, release_id, ended, timeout=180) for release_id in ids]
    assert [r["status"] for r in results] == ["SUCCEEDED", "SUCCEEDED"]
    for position in range(3):
        a, b = (r["stages"][position] for r in results)
        first, second = ((parse_iso(s["started_at"]), parse_iso(s["ended_at"])) for s in (a, b))
        assert first[1] <= second[0], f"stage {a['name']}: the later release went first or overlapped"
    stages = client.http.get("/stacks/hello").json_body["stages"]
    assert all(s["locked_by"] is None for s in stages)
