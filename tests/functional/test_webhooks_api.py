"""Webhook routes end to end through chalice.test.Client against the emulated account."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import boto3
import pytest

from tests.fakes import stack_body
from tests.webhook_support import (
    SHA,
    bitbucket_headers,
    fixture,
    github_headers,
    github_push,
    gitlab_headers,
)

JSON = {"Content-Type": "application/json"}


def ddb_items(aws: Any, prefix: str) -> list[dict[str, Any]]:
    items = boto3.client("dynamodb", region_name="us-east-1").scan(TableName=aws.table)["Items"]
    return [i for i in items if i["pk"]["S"].startswith(prefix)]


def executions(aws: Any) -> list[dict[str, Any]]:
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    return sfn.list_executions(stateMachineArn=aws.state_machine_arn)["executions"]


def make_stack(client: Any, **overrides: Any) -> str:
    response = client.http.post("/stacks", body=json.dumps(stack_body(**overrides)), headers=JSON)
    assert response.status_code == 201, response.body
    secret: str = response.json_body["webhook"]["secret"]
    return secret


def post(client: Any, provider: str, body: bytes, headers: dict[str, str], stack: str = "hello") -> Any:
    return client.http.post(f"/webhooks/{provider}/{stack}", body=body, headers=headers)


def test_secret_shown_once_and_never_stored_in_table_or_get(client: Any, aws: Any) -> None:
    secret = make_stack(client)
    assert len(bytes.fromhex(secret)) >= 32
    assert "secret" not in client.http.get("/stacks/hello").json_body["webhook"]
    assert secret not in json.dumps(client.http.get("/stacks").json_body)
    assert secret not in json.dumps(ddb_items(aws, ""))
    stored = boto3.client("secretsmanager", region_name="us-east-1").get_secret_value(
        SecretId="stagecoach/webhooks/hello"
    )
    assert secret in stored["SecretString"]


def test_github_push_starts_one_release(client: Any, aws: Any) -> None:
    secret = make_stack(client)
    body = json.dumps(github_push()).encode()
    response = post(client, "github", body, github_headers(secret, body))
    assert response.status_code == 202, response.body
    release_id = response.json_body["release_id"]
    release = client.http.get(f"/releases/{release_id}").json_body
    assert release["ref"] == "refs/heads/main"
    assert release["sha"] == SHA
    assert release["trigger"] == "webhook"
    assert release["message"] == "Ship it"
    assert release["author"] == "Ada"
    assert [s["name"] for s in release["stages"]] == ["dev", "test", "prod"]
    assert [e["name"] for e in executions(aws)] == [release["execution_name"]]
    assert executions(aws)[0]["executionArn"] == release["execution_arn"]
    listed = client.http.get("/stacks/hello/releases").json_body
    assert [r["id"] for r in listed["releases"]] == [release_id]


def test_github_form_encoded_delivery(client: Any) -> None:
    secret = make_stack(client)
    body = urlencode({"payload": json.dumps(github_push())}).encode()
    headers = {**github_headers(secret, body), "Content-Type": "application/x-www-form-urlencoded"}
    assert post(client, "github", body, headers).status_code == 202


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("no-signature", 401),
        ("wrong-secret", 401),
        ("sha1-only", 401),
        ("unknown-stack", 404),
        ("not-json", 400),
        ("too-large", 413),
    ],
)
def test_rejected_deliveries_write_nothing(client: Any, aws: Any, case: str, status: int) -> None:
    secret = make_stack(client)
    body = json.dumps(github_push()).encode()
    headers = github_headers(secret, body)
    stack = "hello"
    if case == "no-signature":
        headers.pop("X-Hub-Signature-256")
    elif case == "wrong-secret":
        headers = github_headers("not-the-secret", body)
    elif case == "sha1-only":
        headers.pop("X-Hub-Signature-256")
        headers["X-Hub-Signature"] = "sha1=" + "0" * 40
    elif case == "unknown-stack":
        stack = "nope"
    elif case == "not-json":
        body = b"{this is not json"
        headers = github_headers(secret, body)
    elif case == "too-large":
        body = b'{"pad": "' + b"x" * (5 * 1024 * 1024) + b'"}'
        headers = github_headers(secret, body)
    response = post(client, "github", body, headers, stack=stack)
    assert response.status_code == status, response.body
    assert set(response.json_body) == {"code", "message"}
    assert ddb_items(aws, "RELEASE#") == []
    assert ddb_items(aws, "PUSH#") == []
    assert executions(aws) == []


def test_ping_marks_hook_verified(client: Any) -> None:
    secret = make_stack(client)
    body = json.dumps(fixture("github/ping.json")).encode()
    response = post(client, "github", body, github_headers(secret, body, event="ping"))
    assert response.status_code == 200
    assert client.http.get("/stacks/hello").json_body["webhook"]["verified_at"]


def test_a_signed_push_marks_hook_verified(client: Any) -> None:
    secret = make_stack(client)
    assert client.http.get("/stacks/hello").json_body["webhook"]["verified_at"] is None
    body = json.dumps(github_push()).encode()
    assert post(client, "github", body, github_headers(secret, b"tampered")).status_code == 401
    assert client.http.get("/stacks/hello").json_body["webhook"]["verified_at"] is None
    assert post(client, "github", body, github_headers(secret, body)).status_code == 202
    stack = client.http.get("/stacks/hello").json_body
    assert stack["webhook"]["verified_at"]
    assert stack["version"] == 1  # not a change of the stack


@pytest.mark.parametrize(
    ("payload", "event"),
    [
        (github_push(ref="refs/heads/feature/x"), "push"),
        (github_push(deleted=True, after="0" * 40), "push"),
        (github_push(full_name="other/repo"), "push"),
        (fixture("github/pull-request-opened.json"), "pull_request"),
        (fixture("github/delete.json"), "delete"),
        ({"zen": "x"}, "watch"),
    ],
)
def test_irrelevant_deliveries_are_202_ignored(client: Any, aws: Any, payload: dict[str, Any], event: str) -> None:
    secret = make_stack(client)
    body = json.dumps(payload).encode()
    response = post(client, "github", body, github_headers(secret, body, event=event))
    assert response.status_code == 202
    assert response.json_body["ignored"]
    assert ddb_items(aws, "RELEASE#") == []


def test_replays_answer_200_with_the_same_release(client: Any, aws: Any) -> None:
    secret = make_stack(client)
    body = json.dumps(github_push()).encode()
    first = post(client, "github", body, github_headers(secret, body, delivery="d-1"))
    same_delivery = post(client, "github", body, github_headers(secret, body, delivery="d-1"))
    new_delivery = post(client, "github", body, github_headers(secret, body, delivery="d-2"))
    assert first.status_code == 202
    assert same_delivery.status_code == new_delivery.status_code == 200
    assert {same_delivery.json_body["release_id"], new_delivery.json_body["release_id"]} == {
        first.json_body["release_id"]
    }
    assert len(ddb_items(aws, "RELEASE#")) == 1
    assert len(executions(aws)) == 1


def test_gitlab_push_and_token(client: Any, aws: Any) -> None:
    payload = fixture("gitlab/push.json")
    repo = payload["project"]["path_with_namespace"]
    secret = make_stack(
        client,
        repository={"provider": "gitlab", "full_name": repo, "clone_url": "https://gitlab.example/x.git"},
        branches=["*"],
    )
    body = json.dumps(payload).encode()
    assert post(client, "gitlab", body, gitlab_headers("wrong")).status_code == 401
    response = post(client, "gitlab", body, gitlab_headers(secret))
    assert response.status_code == 202, response.body
    assert len(ddb_items(aws, "RELEASE#")) == 1


def test_bitbucket_cloud_push(client: Any, aws: Any) -> None:
    payload = fixture("bitbucket-cloud/repo-push.json")
    repo = payload["repository"]["full_name"]
    secret = make_stack(
        client,
        repository={"provider": "bitbucket", "full_name": repo, "clone_url": "https://bitbucket.org/x.git"},
        branches=["**"],
        tags=["**"],
    )
    body = json.dumps(payload).encode()
    response = post(client, "bitbucket", body, bitbucket_headers(secret, body))
    live = [c for c in payload["push"]["changes"] if c.get("new")]
    assert response.status_code == 202, response.body
    assert len(ddb_items(aws, "RELEASE#")) == len(live)


def test_bitbucket_server_refs_changed(client: Any, aws: Any) -> None:
    payload = fixture("bitbucket-server/repo-refs-changed.json")
    repo = payload["repository"]
    full_name = f"{repo['project']['key']}/{repo['slug']}"
    secret = make_stack(
        client,
        repository={"provider": "bitbucket", "full_name": full_name, "clone_url": "https://bb.example/x.git"},
        branches=["**"],
    )
    body = json.dumps(payload).encode()
    deleted = post(client, "bitbucket", body, bitbucket_headers(secret, body, event="repo:refs_changed"))
    assert deleted.status_code == 202, deleted.body
    assert "deleted" in deleted.json_body["ignored"]  # the fixture deletes feature/wip
    assert ddb_items(aws, "RELEASE#") == []
    update = {**payload["changes"][0], "type": "UPDATE", "toHash": SHA, "fromHash": "b" * 40}
    body = json.dumps({**payload, "changes": [update]}).encode()
    response = post(client, "bitbucket", body, bitbucket_headers(secret, body, event="repo:refs_changed"))
    assert response.status_code == 202, response.body
    assert len(ddb_items(aws, "RELEASE#")) == 1


def test_rotation_keeps_previous_secret_valid_and_cache_rereads(client: Any) -> None:
    old = make_stack(client)
    body = json.dumps(github_push(sha="1" * 40)).encode()
    assert post(client, "github", body, github_headers(old, body)).status_code == 202  # warms the cache
    rotated = client.http.post("/stacks/hello/webhook/rotate", body=b"{}", headers=JSON)
    assert rotated.status_code == 200
    new = rotated.json_body["secret"]
    assert new != old
    body2 = json.dumps(github_push(sha="2" * 40)).encode()
    assert post(client, "github", body2, github_headers(new, body2)).status_code == 202
    body3 = json.dumps(github_push(sha="3" * 40)).encode()
    assert post(client, "github", body3, github_headers(old, body3)).status_code == 202
    # Rotated by another process (another Lambda instance): this one's cache must re-read once.
    boto3.client("secretsmanager", region_name="us-east-1").put_secret_value(
        SecretId="stagecoach/webhooks/hello",
        SecretString=json.dumps({"current": "f" * 64, "previous": None, "previous_expires_at": None}),
    )
    body4 = json.dumps(github_push(sha="4" * 40)).encode()
    assert post(client, "github", body4, github_headers("f" * 64, body4)).status_code == 202


def test_failed_start_is_resumed_by_next_delivery_and_by_sweeper(client: Any, aws: Any) -> None:
    from chalicelib.local.resources import ensure_resources

    secret = make_stack(client)
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    sfn.delete_state_machine(stateMachineArn=aws.state_machine_arn)  # injected failure: StartExecution fails
    body = json.dumps(github_push()).encode()
    first = post(client, "github", body, github_headers(secret, body, delivery="d-1"))
    body_b = json.dumps(github_push(sha="b" * 40)).encode()
    second = post(client, "github", body_b, github_headers(secret, body_b, delivery="d-2"))
    assert first.status_code == second.status_code == 202
    assert first.json_body["status"] == "PENDING"
    ensure_resources(boto3.session.Session(region_name="us-east-1"))  # the service is back
    replay = post(client, "github", body, github_headers(secret, body, delivery="d-1"))
    assert replay.status_code == 200
    assert replay.json_body["release_id"] == first.json_body["release_id"]
    names = {e["name"] for e in executions(aws)}
    assert names == {client.http.get(f"/releases/{first.json_body['release_id']}").json_body["execution_name"]}
    # The other release is still PENDING; a minute later the sweeper starts it, exactly once.
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    key = {"pk": {"S": f"RELEASE#{second.json_body['release_id']}"}, "sk": {"S": "#RELEASE"}}
    uid, _received, release_id = ddb.get_item(TableName=aws.table, Key=key)["Item"]["gsi2sk"]["S"].split("#")
    ddb.update_item(
        TableName=aws.table,
        Key=key,
        UpdateExpression="SET gsi2sk = :old",
        ExpressionAttributeValues={":old": {"S": f"{uid}#2000-01-01T00:00:00.000Z#{release_id}"}},
    )
    swept = client.lambda_.invoke(
        "sweep_pending_releases",
        client.events.generate_cw_event(source="aws.events", detail_type="Scheduled Event", detail={}, resources=[]),
    )
    assert swept.payload["started"] == [second.json_body["release_id"]]
    assert len(executions(aws)) == 2


def test_manual_release(client: Any, aws: Any) -> None:
    make_stack(client)
    response = client.http.post("/stacks/hello/releases", body=json.dumps({"ref": "main"}), headers=JSON)
    assert response.status_code == 202
    release = client.http.get(f"/releases/{response.json_body['release_id']}").json_body
    assert release["trigger"] == "manual"
    assert release["ref"] == "refs/heads/main"
    bad = client.http.post("/stacks/hello/releases", body=json.dumps({"sha": "zz"}), headers=JSON)
    assert bad.status_code == 400
    assert len(ddb_items(aws, "RELEASE#")) == 1


def test_recording_a_build_sets_the_sha_only_of_a_release_that_has_none(client: Any, aws: Any) -> None:
    from chalicelib import bootstrap

    make_stack(client)
    by_ref = client.http.post("/stacks/hello/releases", body=json.dumps({"ref": "main"}), headers=JSON)
    by_sha = client.http.post("/stacks/hello/releases", body=json.dumps({"sha": "ab" * 20}), headers=JSON)
    releases = bootstrap.release_repository()
    resolved = "1f" * 20
    for answer in (by_ref, by_sha):
        releases.record_build(answer.json_body["release_id"], {"status": "SUCCEEDED"}, resolved)
    stored = {i["id"]["S"]: i.get("sha", {}).get("S") for i in ddb_items(aws, "RELEASE#") if "id" in i}
    assert stored == {by_ref.json_body["release_id"]: resolved, by_sha.json_body["release_id"]: "ab" * 20}
