"""Targeted hostile inputs through the real app (chalice.test.Client) on the emulated account.

Deep nesting, huge bodies and strings, invalid UTF-8, wrong types: each a 4xx in the
``{"code", "message"}`` shape that names the field and the limit, and nothing written. A huge commit
message still becomes a release. Webhook content types are read as GitHub sends them.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any
from urllib.parse import urlencode

import boto3
import pytest

from tests.fakes import stack_body
from tests.webhook_support import github_headers, github_push, hmac_sha256

JSON = {"Content-Type": "application/json"}
DEEP = ("[" * 1000 + "]" * 1000).encode()
RELEASE = "r" + "0" * 26


def items(aws: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = boto3.client("dynamodb", region_name="us-east-1").scan(TableName=aws.table)["Items"]
    return found


def create(client: Any, **overrides: Any) -> dict[str, Any]:
    response = client.http.post("/stacks", body=json.dumps(stack_body(**overrides)), headers=JSON)
    assert response.status_code == 201, response.body
    created: dict[str, Any] = response.json_body
    return created


def assert_error(response: Any, status: int, code: str, *parts: str) -> None:
    assert response.status_code == status, response.body
    assert response.headers["Content-Type"] == "application/json"
    body = response.json_body
    assert set(body) == {"code", "message"}, body
    assert body["code"] == code, body
    for part in parts:
        assert part in body["message"], body


JSON_ROUTES = [
    ("POST", "/stacks"),
    ("PATCH", "/stacks/hello"),
    ("POST", "/stacks/hello/stages"),
    ("PATCH", "/stacks/hello/stages/dev"),
    ("DELETE", "/stacks/hello/stages/dev"),
    ("POST", "/stacks/hello/releases"),
    ("POST", f"/releases/{RELEASE}/stages/prod/approve"),
    ("POST", f"/releases/{RELEASE}/stages/prod/reject"),
]


def test_deep_nesting_is_a_400_before_parsing_and_writes_nothing(client: Any, aws: Any) -> None:
    create(client)
    before = items(aws)
    for method, path in JSON_ROUTES:
        response = getattr(client.http, method.lower())(path, body=DEEP, headers=JSON)
        assert_error(response, 400, "ValidationError", "body: nests 1000 levels deep; the limit is 32")
    assert items(aws) == before


UNREADABLE = [
    (b"\xff\xfe{}", "not UTF-8"),
    (b'{"name": "\\ud800"}', "lone UTF-16 surrogate"),
    (b'{"version": NaN}', "not valid JSON"),
    (b"{", "not valid JSON"),
]


def test_unreadable_bodies_are_400s(client: Any, aws: Any) -> None:
    create(client)
    before = items(aws)
    for method, path in JSON_ROUTES:
        for body, expected in UNREADABLE:
            response = getattr(client.http, method.lower())(path, body=body, headers=JSON)
            assert response.status_code == 400, (method, path, body, response.body)
            assert expected in response.json_body["message"], (method, path, body)
    assert items(aws) == before


def test_bodies_over_the_limit_are_413s(client: Any, aws: Any) -> None:
    create(client)
    before = items(aws)
    huge = json.dumps(stack_body(name="x" * (1024 * 1024))).encode()
    assert_error(client.http.post("/stacks", body=huge, headers=JSON), 413, "PayloadTooLarge", "limit is 1048576")
    webhook = b"{" + b" " * (5 * 1024 * 1024) + b"}"
    response = client.http.post("/webhooks/github/hello", body=webhook, headers=JSON)
    assert_error(response, 413, "PayloadTooLarge", "limit is 5242880")
    assert items(aws) == before


SIZES = [
    ({"name": "n" * 101}, "name", "100"),
    ({"branches": ["b" * 257]}, "branches[0]", "256"),
    ({"branches": ["main"] * 51}, "branches", "50"),
    ({"template_path": "t" * 513}, "template_path", "512"),
    ({"stages": [{"name": f"s{i}"} for i in range(21)]}, "stages", "20"),
    ({"stages": [{"name": "dev", "parameters": {"P": "v" * 4097}}]}, "stages[0].parameters.P", "4096"),
    ({"stages": [{"name": "dev", "parameters": {f"P{i}": "" for i in range(201)}}]}, "stages[0].parameters", "200"),
    ({"stages": [{"name": "dev", "parameters": {f"P{i}": "v" * 4000 for i in range(20)}}]}, "stages", "65536"),
]


def test_sizes_over_a_limit_name_the_field_and_the_limit(client: Any, aws: Any) -> None:
    for overrides, field, limit in SIZES:
        response = client.http.post("/stacks", body=json.dumps(stack_body(**overrides)), headers=JSON)
        assert_error(response, 400, "ValidationError", f"{field}: ", limit)
    assert items(aws) == []


WRONG_TYPES = [
    ({"name": 1}, "name"),
    ({"id": ["x"]}, "id"),
    ({"repository": "acme/hello"}, "repository"),
    ({"repository": {"provider": "github", "full_name": 1, "clone_url": "https://x"}}, "repository.full_name"),
    ({"repository": {"provider": 1, "full_name": "a/b", "clone_url": "https://x"}}, "repository.provider"),
    ({"repository": {"provider": "github", "full_name": "a/b", "clone_url": None}}, "repository.clone_url"),
    ({"branches": [None]}, "branches[0]"),
    ({"tags": "v*"}, "tags"),
    ({"template_path": {}}, "template_path"),
    ({"buildspec_path": 0}, "buildspec_path"),
    ({"stages": "dev"}, "stages"),
    ({"stages": [{"name": "dev", "approval": 1}]}, "stages[0].approval"),
    ({"stages": [{"name": "dev", "approval_timeout_seconds": "60"}]}, "stages[0].approval_timeout_seconds"),
    ({"stages": [{"name": "dev", "region": []}]}, "stages[0].region"),
    ({"stages": [{"name": "dev", "role_arn": 5}]}, "stages[0].role_arn"),
    ({"stages": [{"name": "dev", "parameters": {"A": None}}]}, "stages[0].parameters.A"),
]


def test_wrong_types_in_every_field_are_400s_naming_it(client: Any, aws: Any) -> None:
    for body, field in WRONG_TYPES:
        response = client.http.post("/stacks", body=json.dumps(stack_body(**body)), headers=JSON)
        assert_error(response, 400, "ValidationError", f"{field}: ")
    assert items(aws) == []


def test_wrong_types_on_the_other_bodies(client: Any) -> None:
    create(client)
    cases = [
        ("patch", "/stacks/hello", {"version": "1"}, "version: "),
        ("patch", "/stacks/hello", {"version": 1, "name": None}, "name: "),
        ("post", "/stacks/hello/stages", {"name": "qa", "position": "1"}, "position: "),
        ("patch", "/stacks/hello/stages/dev", {"approval": "no"}, "approval: "),
        ("delete", "/stacks/hello/stages/dev", {"version": []}, "version: "),
        ("post", "/stacks/hello/releases", {"ref": 1}, "ref: "),
        ("post", "/stacks/hello/releases", {"sha": None, "ref": "main"}, "sha: "),
        ("post", f"/releases/{RELEASE}/stages/prod/approve", {"comment": 5}, "comment: "),
        ("post", f"/releases/{RELEASE}/stages/prod/reject", ["no"], "body: "),
    ]
    for method, path, body, field in cases:
        response = getattr(client.http, method)(path, body=json.dumps(body), headers=JSON)
        assert_error(response, 400, "ValidationError", field)


def test_bad_query_parameters_and_headers_are_400s(client: Any) -> None:
    create(client)
    assert_error(client.http.get("/stacks?limit=%D9%A1"), 400, "ValidationError", "limit: ")
    assert_error(client.http.get("/stacks?next_token="), 400, "ValidationError", "next_token: ")
    other = {"pk": {"S": "STACK#x"}, "sk": {"S": "#STACK"}, "gsi1pk": {"S": "OTHER"}, "gsi1sk": {"S": "x"}}
    token = base64.urlsafe_b64encode(json.dumps(other).encode()).decode().rstrip("=")
    assert_error(client.http.get(f"/stacks?next_token={token}"), 400, "ValidationError", "another listing")
    assert_error(client.http.get("/stacks/hello/releases?ref=a%20b"), 400, "ValidationError", "ref: ")
    assert_error(client.http.get(f"/releases/{RELEASE}/history?raw=yes"), 400, "ValidationError", "raw: ")
    response = client.http.post(
        "/stacks/hello/releases", body=b'{"ref": "main"}', headers={**JSON, "Idempotency-Key": "k" * 256}
    )
    assert_error(response, 400, "ValidationError", "Idempotency-Key: ")


def test_ids_that_cannot_exist_are_404s(client: Any) -> None:
    for path in ("/stacks/" + "x" * 3000, "/stacks/Hello", f"/releases/{'r' * 3000}", "/releases/nope/history"):
        assert_error(client.http.get(path), 404, "NotFound")


def test_a_390_kb_commit_message_becomes_a_release_with_the_message_cut(client: Any, aws: Any) -> None:
    secret = create(client)["webhook"]["secret"]
    payload = github_push()
    payload["head_commit"]["message"] = "Ship it\n\n" + "é" * (195 * 1024)
    body = json.dumps(payload).encode()
    assert len(body) > 390 * 1024
    response = client.http.post("/webhooks/github/hello", body=body, headers=github_headers(secret, body))
    assert response.status_code == 202, response.body
    release = client.http.get(f"/releases/{response.json_body['release_id']}").json_body
    assert release["message"].startswith("Ship it\n\néé")
    assert len(release["message"].encode()) <= 16 * 1024
    assert "[truncated by Stagecoach: the message was" in release["message"]
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    execution = sfn.describe_execution(executionArn=release["execution_arn"])
    assert len(execution["input"].encode()) < 256 * 1024


def test_a_webhook_without_content_type_is_json(client: Any) -> None:
    secret = create(client)["webhook"]["secret"]
    body = json.dumps(github_push()).encode()
    headers = {k: v for k, v in github_headers(secret, body).items() if k != "Content-Type"}
    response = client.http.post("/webhooks/github/hello", body=body, headers=headers)
    assert response.status_code == 202, response.body


def test_a_json_body_sent_as_a_form_is_json(client: Any) -> None:
    secret = create(client)["webhook"]["secret"]
    body = json.dumps(github_push(sha="b" * 40)).encode()
    headers = {**github_headers(secret, body), "Content-Type": "application/x-www-form-urlencoded"}
    response = client.http.post("/webhooks/github/hello", body=body, headers=headers)
    assert response.status_code == 202, response.body


def test_content_type_errors_name_the_accepted_types(client: Any) -> None:
    secret = create(client)["webhook"]["secret"]
    body = b"hello"
    plain = {**github_headers(secret, body), "Content-Type": "text/plain"}
    response = client.http.post("/webhooks/github/hello", body=body, headers=plain)
    assert_error(response, 415, "UnsupportedMediaType", "application/json", "application/x-www-form-urlencoded")
    form = urlencode({"other": "x"}).encode()
    headers = {**github_headers(secret, form), "Content-Type": "application/x-www-form-urlencoded"}
    response = client.http.post("/webhooks/github/hello", body=form, headers=headers)
    assert_error(response, 400, "BadRequest", "'payload'", "application/json")
    response = client.http.post("/stacks", body=b"{}", headers={"Content-Type": "text/plain"})
    assert_error(response, 415, "UnsupportedMediaType", "'text/plain'", "accepts application/json")


def test_unexpected_errors_are_500s_in_the_error_shape(client: Any, aws: Any) -> None:
    from chalicelib import bootstrap

    def broken(*_: Any) -> Any:
        raise RuntimeError("boom")

    bootstrap.stack_service().show = broken
    response = client.http.get("/stacks/hello", headers={"X-Request-Id": "req-42"})
    assert_error(response, 500, "InternalError", "req-42")
    assert "boom" not in response.body.decode()


def test_clone_credentials_are_write_only(client: Any, aws: Any) -> None:
    token = "ghp_planted0123456789abcdefghijklmnop"
    url = f"https://stagecoach-bot:{token}@github.com/acme/private.git"
    repository = {"provider": "github", "full_name": "acme/hello", "clone_url": url}
    response = client.http.post("/stacks", body=json.dumps(stack_body(repository=repository)), headers=JSON)
    assert response.status_code == 201, response.body
    shown = "https://***@github.com/acme/private.git"
    assert response.json_body["repository"]["clone_url"] == shown
    assert client.http.get("/stacks/hello").json_body["repository"]["clone_url"] == shown
    secrets = boto3.client("secretsmanager", region_name="us-east-1")
    stored = secrets.get_secret_value(SecretId="stagecoach/clone/hello")
    assert json.loads(stored["SecretString"])["Token"] == token
    release = client.http.post("/stacks/hello/releases", body=b'{"ref": "main"}', headers=JSON).json_body
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    execution_input = sfn.describe_execution(executionArn=release["execution_arn"])["input"]
    assert shown in execution_input
    message = wait_for_build_request(aws)
    assert json.loads(message)["clone_url"] == shown
    for text in (json.dumps(items(aws)), execution_input, message, json.dumps(client.http.get("/stacks").json_body)):
        assert token not in text
    history = client.http.get(f"/releases/{release['release_id']}/history?raw=true").body.decode()
    assert token not in history
    assert json.loads(message)["task_token"] not in history
    assert '\\"task_token\\":\\"***\\"' in history

    keep = {"version": 1, "repository": {**repository, "clone_url": shown}}
    assert client.http.patch("/stacks/hello", body=json.dumps(keep), headers=JSON).status_code == 200
    assert json.loads(secrets.get_secret_value(SecretId="stagecoach/clone/hello")["SecretString"])["Token"] == token
    drop = {"version": 2, "repository": {**repository, "clone_url": "https://github.com/acme/private.git"}}
    assert client.http.patch("/stacks/hello", body=json.dumps(drop), headers=JSON).status_code == 200
    with pytest.raises(secrets.exceptions.ResourceNotFoundException):
        secrets.get_secret_value(SecretId="stagecoach/clone/hello")
    stars = {"version": 3, "repository": {**repository, "clone_url": shown}}
    response = client.http.patch("/stacks/hello", body=json.dumps(stars), headers=JSON)
    assert_error(response, 409, "Conflict", "no stored credentials")


def wait_for_build_request(aws: Any, timeout: float = 30.0) -> str:
    """The body of the build request the state machine queued (left in the queue)."""
    sqs = boto3.client("sqs", region_name="us-east-1")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sqs.receive_message(QueueUrl=aws.build_queue_url, WaitTimeSeconds=1, VisibilityTimeout=0)
        if found.get("Messages"):
            return str(found["Messages"][0]["Body"])
    raise AssertionError("the state machine queued no build request")


def test_signed_deliveries_with_invalid_utf8_or_deep_json_are_400s(client: Any) -> None:
    secret = create(client)["webhook"]["secret"]
    for body, expected in ((b"\xff\xfe\x00", "not UTF-8"), (DEEP, "nests 1000 levels deep; the limit is 32")):
        headers = {**github_headers(secret, body), "X-Hub-Signature-256": hmac_sha256(secret, body)}
        response = client.http.post("/webhooks/github/hello", body=body, headers=headers)
        assert_error(response, 400, "BadRequest", expected)
