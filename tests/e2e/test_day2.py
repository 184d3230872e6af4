"""Day-2 operations for real in the emulator: the change shown before approval, promote without a
build, rollback that pins a stage, HELD releases, unpin."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.e2e.pipeline_support import awaiting, ended, example_repo, git, push, run_until

pytestmark = pytest.mark.e2e
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def pump(aws: Any) -> Iterator[Any]:
    from chalicelib.local.pump import EventPump

    yield EventPump.for_app(aws)


def make_stack(client: Any, repo: Path, prod: dict[str, Any]) -> str:
    body = {
        "id": "hello",
        "name": "Hello",
        "repository": {"provider": "github", "full_name": "acme/hello", "clone_url": str(repo)},
        "stages": [
            {"name": "dev", "parameters": {"Stage": "dev"}},
            {"name": "prod", "parameters": {"Stage": "prod"}, **prod},
        ],
    }
    response = client.http.post("/stacks", body=json.dumps(body), headers=JSON)
    assert response.status_code == 201, response.body
    return str(response.json_body["webhook"]["secret"])


def commit(repo: Path, message: str, template_change: tuple[str, str] | None = None) -> str:
    if template_change:
        path = repo / "template.yaml"
        path.write_text(path.read_text().replace(*template_change))
    (repo / "CHANGES.txt").write_text(message + "\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def stage(current: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in current["stages"] if s["name"] == name)


def post(client: Any, path: str, body: Any) -> Any:
    return client.http.post(path, body=json.dumps(body), headers=JSON)


def pipeline(client: Any) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in client.http.get("/stacks/hello").json_body["stages"]}


def ssm_release(stage_name: str) -> str:
    ssm = boto3.client("ssm", region_name="us-east-1")
    return str(ssm.get_parameter(Name=f"/hello--{stage_name}/release")["Parameter"]["Value"])


def entered(release_doc: dict[str, Any]) -> list[str]:
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    events = sfn.get_execution_history(executionArn=release_doc["execution_arn"], maxResults=1000)["events"]
    return [e["stateEnteredEventDetails"]["name"] for e in events if e["type"].endswith("StateEntered")]


def test_the_change_is_shown_before_approval_and_an_empty_one_approves_itself(
    client: Any, pump: Any, tmp_path: Path
) -> None:
    repo, first = example_repo(tmp_path)
    secret = make_stack(client, repo, {"approval": True, "auto_approve_when_no_changes": True})
    r1 = push(client, secret, first).json_body["release_id"]
    waiting = run_until(client, pump, r1, awaiting("prod"))
    created = stage(waiting, "prod")["changes"]
    assert {(c["action"], c["logical_id"]) for c in created} >= {("Add", "Queue"), ("Add", "Function")}
    assert post(client, f"/releases/{r1}/stages/prod/approve", {}).status_code == 200
    assert run_until(client, pump, r1, ended)["status"] == "SUCCEEDED"

    second = commit(repo, "longer visibility", ("VisibilityTimeout: 60", "VisibilityTimeout: 90"))
    r2 = push(client, secret, second).json_body["release_id"]
    waiting = run_until(client, pump, r2, awaiting("prod"))
    changes = {c["logical_id"]: c for c in stage(waiting, "prod")["changes"]}
    queue = changes["Queue"]
    assert (queue["action"], queue["resource_type"]) == ("Modify", "AWS::SQS::Queue")
    assert {"attribute": "Properties", "name": "VisibilityTimeout"}.items() <= queue["details"][0].items()
    assert "ReleaseParameter" in changes  # the new commit is stamped into the template's Sha default
    assert post(client, f"/releases/{r2}/stages/prod/reject", {"comment": "not yet"}).status_code == 200
    assert run_until(client, pump, r2, ended)["status"] == "FAILED"
    assert pipeline(client)["prod"]["current_release"]["release_id"] == r1  # nothing deployed

    again = post(client, "/stacks/hello/releases", {"sha": first}).json_body["release_id"]  # the same build again
    done = run_until(client, pump, again, ended)
    assert done["status"] == "SUCCEEDED"
    prod = stage(done, "prod")
    assert prod["no_changes"] is True
    assert {k: prod["approval"][k] for k in ("decision", "by")} == {"decision": "auto", "by": "stagecoach"}


def test_promote_deploys_the_tested_build_without_building(client: Any, pump: Any, tmp_path: Path) -> None:
    repo, sha = example_repo(tmp_path)
    secret = make_stack(client, repo, {"approval": True})
    r1 = push(client, secret, sha).json_body["release_id"]
    run_until(client, pump, r1, awaiting("prod"))
    assert post(client, f"/releases/{r1}/stages/prod/reject", {"comment": "after lunch"}).status_code == 200
    tested = run_until(client, pump, r1, ended)
    assert pipeline(client)["dev"]["current_release"]["release_id"] == r1

    promoted = post(client, "/stacks/hello/stages/prod/deployments", {"release_id": r1})
    assert promoted.status_code == 202, promoted.body
    assert promoted.json_body["trigger"] == "promote" and promoted.json_body["source_release_id"] == r1
    p = promoted.json_body["release_id"]
    waiting = run_until(client, pump, p, awaiting("prod"))
    assert [s["name"] for s in waiting["stages"]] == ["prod"]
    assert post(client, f"/releases/{p}/stages/prod/approve", {}).status_code == 200
    done = run_until(client, pump, p, ended)
    assert done["status"] == "SUCCEEDED"
    assert done["build_id"] == tested["build_id"] and done["artifact"] == tested["artifact"]
    assert done["artifact"]["template_url"].endswith("/template.yaml")
    assert "Build" not in entered(done)  # no build: the state machine skipped it
    assert (done["trigger"], done["source_release_id"], done["sha"]) == ("promote", r1, sha)
    assert sha in ssm_release("prod")

    redeploy = post(client, "/stacks/hello/stages/prod/deployments", {"release_id": r1}).json_body
    assert redeploy["trigger"] == "redeploy"
    # a promote stands for its source (same build); a release id that exists nowhere; not a release id
    for bad, code in ((p, 202), ("r" + "0" * 26, 404), ("r-nope", 400)):
        assert post(client, "/stacks/hello/stages/dev/deployments", {"release_id": bad}).status_code == code
    failing = post(client, "/stacks/hello/stages/prod/deployments", {})
    assert failing.status_code == 400 and failing.json_body["code"] == "ValidationError"


def test_rollback_pins_the_stage_holds_later_pushes_until_unpinned(client: Any, pump: Any, tmp_path: Path) -> None:
    repo, first = example_repo(tmp_path)
    secret = make_stack(client, repo, {})
    r1 = push(client, secret, first).json_body["release_id"]
    assert run_until(client, pump, r1, ended)["status"] == "SUCCEEDED"
    second = commit(repo, "second")
    r2 = push(client, secret, second).json_body["release_id"]
    assert run_until(client, pump, r2, ended)["status"] == "SUCCEEDED"
    assert second in ssm_release("prod")

    rolled = post(client, "/stacks/hello/stages/prod/rollback", {"reason": "500s after the deploy"})
    assert rolled.status_code == 202, rolled.body
    assert rolled.json_body["source_release_id"] == r1  # default: what prod ran before r2
    assert rolled.json_body["pin"]["reason"] == "500s after the deploy"
    back = run_until(client, pump, rolled.json_body["release_id"], ended)
    assert (back["status"], back["trigger"]) == ("SUCCEEDED", "rollback")
    assert first in ssm_release("prod")
    prod = pipeline(client)["prod"]
    assert prod["current_release"]["sha"] == first
    assert prod["pin"] == {
        "release_id": r1,
        "sha": first,
        "by": "local-user",
        "at": prod["pin"]["at"],
        "reason": "500s after the deploy",
    }

    third = commit(repo, "third")
    r3 = push(client, secret, third).json_body["release_id"]
    held = run_until(client, pump, r3, ended)
    assert held["status"] == "HELD" and held["failed_stage"] == "prod"
    assert [s["status"] for s in held["stages"]] == ["SUCCEEDED", "HELD"]
    assert "held by the pin on stage prod" in held["cause"]
    assert first in ssm_release("prod") and third in ssm_release("dev")
    assert post(client, "/stacks/hello/stages/prod/rollback", {"release_id": r1}).status_code == 400  # no reason

    unpinned = client.http.delete("/stacks/hello/stages/prod/pin")
    assert unpinned.status_code == 200 and unpinned.json_body["pin"] is None
    assert client.http.delete("/stacks/hello/stages/prod/pin").status_code == 409
    forward = post(client, "/stacks/hello/stages/prod/deployments", {"release_id": r3}).json_body
    assert run_until(client, pump, forward["release_id"], ended)["status"] == "SUCCEEDED"
    assert third in ssm_release("prod")
    assert pipeline(client)["prod"]["pin"] is None
    older = post(client, "/stacks/hello/stages/prod/deployments", {"release_id": r2})
    assert older.status_code == 409 and "rollback" in older.json_body["message"]
    listed = client.http.get("/stacks/hello/releases").json_body["releases"]
    assert {r["trigger"] for r in listed} == {"webhook", "rollback", "promote"}
