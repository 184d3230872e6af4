"""Release ordering and recovery, for real in the emulator: newest wins, nothing stays held, every
release ends. Webhooks and API calls go through chalice.test.Client; the event pump runs the build
worker, the stage coordinator and the execution watcher (the reconciler) synchronously."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.e2e.pipeline_support import awaiting, create_stack, ended, example_repo, git, push, release, run_until

pytestmark = pytest.mark.e2e
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def pump(aws: Any) -> Iterator[Any]:
    from chalicelib.local.pump import EventPump

    yield EventPump.for_app(aws)


def commits(repo: Path, n: int) -> list[str]:
    """``n`` more commits on the example repo; their shas, oldest first."""
    shas = []
    for i in range(n):
        (repo / f"change-{i}.txt").write_text(f"change {i}\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"Change {i}")
        shas.append(git(repo, "rev-parse", "HEAD"))
    return shas


def drive(client: Any, pump: Any, ids: list[str], done: Callable[[dict[str, dict[str, Any]]], bool]) -> dict[str, Any]:
    """Deliver queued messages and execution ends until ``done(releases by id)``; returns the releases."""
    deadline = time.monotonic() + 180
    current: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        pump.drain()
        current = {i: release(client, i) for i in ids}
        if done(current):
            return current
        time.sleep(0.2)
    summary = {i: (r["status"], [(s["name"], s["status"]) for s in r["stages"]]) for i, r in current.items()}
    raise AssertionError(f"releases did not get there in 180 s: {summary}")


def stage(current: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in current["stages"] if s["name"] == name)


def approve(client: Any, release_id: str, stage_name: str = "prod") -> Any:
    return client.http.post(f"/releases/{release_id}/stages/{stage_name}/approve", body=b"{}", headers=JSON)


def pipeline(client: Any) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in client.http.get("/stacks/hello").json_body["stages"]}


def test_four_quick_pushes_end_on_the_newest_and_supersede_the_others(client: Any, pump: Any, tmp_path: Path) -> None:
    repo, _ = example_repo(tmp_path)
    secret = create_stack(client, repo)
    shas = commits(repo, 4)
    ids = [push(client, secret, sha).json_body["release_id"] for sha in shas]  # G1..G4 before anything runs
    g4 = ids[-1]
    waiting = drive(
        client,
        pump,
        ids,
        lambda r: all(ended(r[i]) for i in ids[:3]) and stage(r[g4], "prod")["status"] == "AWAITING_APPROVAL",
    )
    for older in ids[:3]:
        assert waiting[older]["status"] == "SUPERSEDED", waiting[older]
        assert waiting[older]["superseded_by"] in ids[1:]
        assert any(s["status"] == "SUPERSEDED" for s in waiting[older]["stages"])
    assert approve(client, g4).status_code == 200
    done = run_until(client, pump, g4, ended)
    assert done["status"] == "SUCCEEDED", (done["error"], done["cause"], done["stages"])
    for name, state in pipeline(client).items():
        assert state["current_release"]["release_id"] == g4, name
        assert state["current_release"]["sha"] == shas[-1], name
        assert state["locked_by"] is None and state["waiting"] == [], name
    listed = client.http.get("/stacks/hello/releases?status=SUPERSEDED").json_body["releases"]
    assert {r["id"] for r in listed} == set(ids[:3])


def test_of_two_releases_waiting_for_approval_the_newer_wins(client: Any, pump: Any, tmp_path: Path) -> None:
    repo, _ = example_repo(tmp_path)
    secret = create_stack(client, repo)
    sha_a, sha_b = commits(repo, 2)
    a = push(client, secret, sha_a).json_body["release_id"]
    run_until(client, pump, a, awaiting("prod"))
    b = push(client, secret, sha_b).json_body["release_id"]
    run_until(client, pump, b, awaiting("prod"))
    older = release(client, a)
    assert older["status"] == "SUPERSEDED" and older["superseded_by"] == b
    assert stage(older, "prod")["status"] == "SUPERSEDED"
    assert pipeline(client)["prod"]["awaiting_approval"] == b
    refused = approve(client, a)
    assert refused.status_code == 409
    assert f"superseded by release {b}" in refused.json_body["message"]
    assert approve(client, b).status_code == 200
    assert run_until(client, pump, b, ended)["status"] == "SUCCEEDED"
    assert pipeline(client)["prod"]["current_release"]["sha"] == sha_b
    assert approve(client, a).status_code == 409  # still refused after B deployed


def test_a_stopped_execution_is_reconciled_and_the_next_release_enters(client: Any, pump: Any, tmp_path: Path) -> None:
    repo, _ = example_repo(tmp_path)
    secret = create_stack(client, repo, mode="QUEUED")
    sha_a, sha_b = commits(repo, 2)
    a = push(client, secret, sha_a).json_body["release_id"]
    run_until(client, pump, a, awaiting("prod"))
    b = push(client, secret, sha_b).json_body["release_id"]
    parked = run_until(client, pump, b, lambda r: stage(r, "prod")["status"] == "WAITING")
    assert stage(parked, "prod")["waiting_for"] == a
    assert pipeline(client)["prod"]["waiting"] == [b]

    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    sfn.stop_execution(executionArn=release(client, a)["execution_arn"], error="Stopped", cause="stopped by hand")
    stopped = run_until(client, pump, a, ended)  # the execution watcher delivers the end; the reconciler runs
    assert (stopped["status"], stopped["cause"]) == ("CANCELLED", "stopped by hand")
    assert stage(stopped, "prod")["status"] == "CANCELLED"
    entered = run_until(client, pump, b, awaiting("prod"))
    assert stage(entered, "prod")["status"] == "AWAITING_APPROVAL"
    assert pipeline(client)["prod"]["locked_by"] == b


def test_waiting_for_a_stage_adds_no_history_events(client: Any, pump: Any, tmp_path: Path) -> None:
    repo, _ = example_repo(tmp_path)
    body = {
        "id": "hello",
        "name": "Hello",
        "execution_mode": "QUEUED",
        "repository": {"provider": "github", "full_name": "acme/hello", "clone_url": str(repo)},
        "stages": [{"name": "prod", "parameters": {"Stage": "prod"}, "approval": True}],
    }
    secret = client.http.post("/stacks", body=json.dumps(body), headers=JSON).json_body["webhook"]["secret"]
    sha_a, sha_b = commits(repo, 2)
    a = push(client, secret, sha_a).json_body["release_id"]
    run_until(client, pump, a, awaiting("prod"))
    b = push(client, secret, sha_b).json_body["release_id"]
    run_until(client, pump, b, lambda r: stage(r, "prod")["status"] == "WAITING")
    arn = release(client, b)["execution_arn"]
    sfn = boto3.client("stepfunctions", region_name="us-east-1")

    def events() -> int:
        return len(sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"])

    before = events()
    time.sleep(5)  # the wait being measured, not a guess: a polling loop would add events every second
    pump.drain()
    assert events() == before  # parked on a task token: the wait's length does not matter
    assert before < 100
    assert approve(client, a).status_code == 200
    run_until(client, pump, b, awaiting("prod"))
    assert events() < 100


def test_cancel_ends_a_release_and_frees_its_stage(client: Any, pump: Any, tmp_path: Path) -> None:
    repo, sha = example_repo(tmp_path)
    secret = create_stack(client, repo)
    a = push(client, secret, sha).json_body["release_id"]
    run_until(client, pump, a, awaiting("prod"))
    cancelled = client.http.post(f"/releases/{a}/cancel", body=json.dumps({"reason": "wrong day"}), headers=JSON)
    assert cancelled.status_code == 200, cancelled.body
    assert cancelled.json_body["status"] == "CANCELLED"
    assert cancelled.json_body["cause"] == "cancelled by local-user: wrong day"
    again = client.http.post(f"/releases/{a}/cancel", body=b"", headers=JSON)
    assert again.status_code == 200 and again.json_body == cancelled.json_body
    shown = release(client, a)
    assert shown["status"] == "CANCELLED" and stage(shown, "prod")["status"] == "CANCELLED"
    assert [s["status"] for s in shown["stages"]][:2] == ["SUCCEEDED", "SUCCEEDED"]
    prod = pipeline(client)["prod"]
    assert prod["locked_by"] is None and prod["awaiting_approval"] is None
    assert approve(client, a).status_code == 409
    assert client.http.post("/releases/r-none/cancel", body=b"", headers=JSON).status_code == 404
    cfn = boto3.client("cloudformation", region_name="us-east-1")
    assert "hello--prod" not in {s["StackName"] for s in cfn.describe_stacks()["Stacks"]}  # the empty stack went


def test_deleting_a_stack_with_releases_in_flight_needs_force(client: Any, pump: Any, tmp_path: Path) -> None:
    repo, sha = example_repo(tmp_path)
    secret = create_stack(client, repo)
    a = push(client, secret, sha).json_body["release_id"]
    run_until(client, pump, a, awaiting("prod"))
    refused = client.http.delete("/stacks/hello")
    assert refused.status_code == 409 and a in refused.json_body["message"]
    assert client.http.delete("/stacks/hello/stages/prod").status_code == 409
    assert client.http.delete("/stacks/hello?force=true").status_code == 204
    assert release(client, a)["status"] == "CANCELLED"
    assert approve(client, a).status_code == 409
    create_stack(client, repo)  # the same id again: nothing of the old stack shows
    assert client.http.get("/stacks/hello/releases").json_body["releases"] == []
    assert all(s["current_release"] is None and s["status"] == "IDLE" for s in pipeline(client).values())
    fresh = push(client, secret_of_new(client), sha)
    assert fresh.status_code == 202 and fresh.json_body["release_id"] != a  # not deduplicated against the old one


def secret_of_new(client: Any) -> str:
    return str(client.http.post("/stacks/hello/webhook/rotate").json_body["secret"])


def test_removing_a_stage_a_release_still_has_to_deploy_needs_force(client: Any, pump: Any, tmp_path: Path) -> None:
    repo, sha = example_repo(tmp_path)
    secret = create_stack(client, repo)
    a = push(client, secret, sha).json_body["release_id"]
    run_until(client, pump, a, awaiting("prod"))
    refused = client.http.delete("/stacks/hello/stages/prod")
    assert refused.status_code == 409 and a in refused.json_body["message"]
    removed = client.http.delete("/stacks/hello/stages/prod?force=true")
    assert removed.status_code == 200, removed.body
    assert [s["name"] for s in removed.json_body["stages"]] == ["dev", "test"]
    assert release(client, a)["status"] == "CANCELLED"
