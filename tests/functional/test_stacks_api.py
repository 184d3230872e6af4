"""The stacks and stages HTTP API, through chalice.test.Client against the emulated account."""

from __future__ import annotations

import json
import threading
from typing import Any

import boto3
import pytest

from tests.fakes import stack_body

JSON = {"Content-Type": "application/json"}


def call(client: Any, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    raw = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
    return getattr(client.http, method.lower())(path, body=raw, headers=headers or JSON)


def table_items(aws: Any) -> list[dict[str, Any]]:
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    return ddb.scan(TableName=aws.table)["Items"]


def create(client: Any, **overrides: Any) -> dict[str, Any]:
    response = call(client, "POST", "/stacks", stack_body(**overrides))
    assert response.status_code == 201, response.body
    return response.json_body


def test_health(client: Any) -> None:
    response = client.http.get("/health")
    assert response.status_code == 200
    assert response.json_body["status"] == "ok"
    assert len(response.headers["X-Request-Id"]) >= 16


def test_one_json_log_line_per_request(client: Any) -> None:
    import logging

    from chalicelib import bootstrap

    logger = bootstrap.logger()
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    handler.setFormatter(logger.registered_formatter)
    logging.getLogger("stagecoach").addHandler(handler)
    try:
        response = client.http.get("/stacks/nope", headers={"X-Request-Id": "req-123"})
    finally:
        logging.getLogger("stagecoach").removeHandler(handler)
    assert response.headers["X-Request-Id"] == "req-123"
    lines = [json.loads(handler.format(r)) for r in records]
    [line] = [entry for entry in lines if entry.get("message") == "request"]
    assert (line["method"], line["path"], line["status"], line["request_id"]) == ("GET", "/stacks/nope", 404, "req-123")
    assert line["correlation_id"] == "req-123"
    assert line["latency_ms"] >= 0


def test_create_get_list_delete(client: Any, aws: Any) -> None:
    created = create(client)
    assert created["id"] == "hello"
    assert [s["name"] for s in created["stages"]] == ["dev", "test", "prod"]
    assert [s["position"] for s in created["stages"]] == [0, 1, 2]
    assert created["stages"][2]["approval"] is True
    assert created["version"] == 1
    got = client.http.get("/stacks/hello").json_body
    assert got["stages"] == created["stages"]
    assert got["repository"] == {
        "provider": "github",
        "full_name": "acme/hello",
        "clone_url": "https://github.com/acme/hello.git",
    }
    listed = client.http.get("/stacks").json_body
    assert [s["id"] for s in listed["stacks"]] == ["hello"]
    assert listed["next_token"] is None
    assert client.http.delete("/stacks/hello").status_code == 204
    assert client.http.get("/stacks/hello").status_code == 404
    # only the stack's audit trail is left (it outlives the stack)
    assert [(i["pk"]["S"], i["action"]["S"]) for i in table_items(aws)] == [
        ("AUDIT#hello", "stack.create"),
        ("AUDIT#hello", "stack.delete"),
    ]


def test_pagination_uses_tokens(client: Any) -> None:
    for i in range(5):
        create(client, name=f"svc {i}")
    seen: list[str] = []
    token = None
    for _ in range(4):
        path = "/stacks?limit=2" + (f"&next_token={token}" if token else "")
        page = client.http.get(path).json_body
        seen += [s["id"] for s in page["stacks"]]
        token = page["next_token"]
        if token is None:
            break
    assert seen == [f"svc-{i}" for i in range(5)]
    bad = client.http.get("/stacks?next_token=garbage")
    assert bad.status_code == 400
    assert bad.json_body["code"] == "ValidationError"
    assert "next_token" in bad.json_body["message"]


def test_stage_add_move_update_remove(client: Any) -> None:
    create(client)
    added = call(client, "POST", "/stacks/hello/stages", {"name": "staging", "position": 2})
    assert added.status_code == 201
    assert [s["name"] for s in added.json_body["stages"]] == ["dev", "test", "staging", "prod"]
    moved = call(client, "PATCH", "/stacks/hello/stages/staging", {"position": 0, "parameters": {"Size": "l"}})
    assert moved.status_code == 200
    assert [s["name"] for s in moved.json_body["stages"]] == ["staging", "dev", "test", "prod"]
    assert moved.json_body["stages"][0]["parameters"] == {"Size": "l"}
    removed = client.http.delete("/stacks/hello/stages/dev")
    assert removed.status_code == 200
    assert [s["name"] for s in removed.json_body["stages"]] == ["staging", "test", "prod"]
    assert removed.json_body["version"] == 4


def test_last_stage_cannot_be_removed(client: Any, aws: Any) -> None:
    create(client, stages=[{"name": "prod"}])
    before = table_items(aws)
    response = client.http.delete("/stacks/hello/stages/prod")
    assert response.status_code == 409
    assert response.json_body["code"] == "Conflict"
    assert table_items(aws) == before


def test_patch_with_stale_version_is_409(client: Any) -> None:
    create(client)
    ok = call(client, "PATCH", "/stacks/hello", {"version": 1, "branches": ["main", "release/*"]})
    assert ok.status_code == 200
    assert ok.json_body["branches"] == ["main", "release/*"]
    stale = call(client, "PATCH", "/stacks/hello", {"version": 1, "name": "x"})
    assert stale.status_code == 409
    assert client.http.get("/stacks/hello").json_body["name"] == "Hello"


def test_concurrent_updates_one_wins(client: Any) -> None:
    create(client)
    results: list[int] = []
    barrier = threading.Barrier(2)

    def patch(name: str) -> None:
        barrier.wait()
        results.append(call(client, "PATCH", "/stacks/hello", {"version": 1, "name": name}).status_code)

    threads = [threading.Thread(target=patch, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200, 409]
    assert client.http.get("/stacks/hello").json_body["version"] == 2


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "code"),
    [
        ("POST", "/stacks", b"{not json", JSON, 400, "BadRequest"),
        ("POST", "/stacks", b"", JSON, 400, "BadRequest"),
        ("POST", "/stacks", {"name": "x", "stages": []}, JSON, 400, "ValidationError"),
        ("POST", "/stacks", "name=x", {"Content-Type": "text/plain"}, 415, "UnsupportedMediaType"),
        ("POST", "/stacks", b"[" + b" " * (1024 * 1024) + b"]", JSON, 413, "PayloadTooLarge"),
        ("GET", "/stacks/nope", None, JSON, 404, "NotFound"),
        ("PATCH", "/stacks/nope", {"version": 1}, JSON, 404, "NotFound"),
        ("POST", "/stacks/nope/stages", {"name": "x"}, JSON, 404, "NotFound"),
        ("GET", "/stacks?limit=0", None, JSON, 400, "ValidationError"),
    ],
)
def test_errors_are_json_and_write_nothing(
    client: Any, aws: Any, method: str, path: str, body: Any, headers: dict[str, str], status: int, code: str
) -> None:
    response = call(client, method, path, body, headers)
    assert response.status_code == status, response.body
    assert response.json_body["code"] == code
    assert response.json_body["message"]
    assert table_items(aws) == []


def test_bad_field_message_names_the_field(client: Any, aws: Any) -> None:
    body = stack_body(stages=[{"name": "dev", "approval": "sometimes"}])
    response = call(client, "POST", "/stacks", body)
    assert response.status_code == 400
    assert "stages[0].approval" in response.json_body["message"]
    assert table_items(aws) == []


def test_duplicate_stack_is_409_and_first_is_kept(client: Any) -> None:
    create(client)
    again = call(client, "POST", "/stacks", stack_body(stages=[{"name": "only"}]))
    assert again.status_code == 409
    assert [s["name"] for s in client.http.get("/stacks/hello").json_body["stages"]] == ["dev", "test", "prod"]


def put_stage_state(aws: Any, stack_id: str, stage: str, status: str, sha: str) -> None:
    """A lane as the stage coordinator writes it: a release in the stage (DEPLOYING) or the last outcome."""
    current = {"release_id": f"r-{sha[:4]}", "sha": sha, "message": "Ship it", "deployed_at": "2026-11-27T12:00:00Z"}
    item: dict[str, Any] = {
        "pk": {"S": f"STACK#{stack_id}"},
        "sk": {"S": f"STAGE#{stage}"},
        "status": {"S": status},
        "current_release": {"M": {k: {"S": v} for k, v in current.items()}},
        "updated_at": {"S": "2026-11-27T12:00:00Z"},
    }
    if status == "DEPLOYING":
        holder = {"release_id": "r-next", "order": "2026-11-27T12:00:01Z#r-next", "phase": status, "since": "x"}
        item["holder_json"] = {"S": json.dumps(holder)}
    else:
        item["last_outcome"] = {"S": status}
    boto3.client("dynamodb", region_name="us-east-1").put_item(TableName=aws.table, Item=item)


class DynamoCalls(list[str]):
    """The DynamoDB operations the app's pynamodb clients make while ``counting``."""

    counting = False

    def attach(self) -> None:
        """Listen on the one botocore client that every model of the app shares."""
        from chalicelib.adapters.models import registered_models

        clients = {id(c): c for c in (m._get_connection().connection.client for m in registered_models())}
        assert len(clients) == 1, "each model made its own DynamoDB client"
        for client in clients.values():
            client.meta.events.register("before-call.dynamodb", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        if self.counting:
            self.append(model.name)


def test_list_shows_each_stages_state_in_one_batch_read(client: Any, aws: Any) -> None:
    for i in range(40):
        create(client, id=f"svc-{i:02d}", name=f"svc {i}")
    sha = "c0ffee" + "0" * 34
    put_stage_state(aws, "svc-01", "dev", "SUCCEEDED", sha)
    put_stage_state(aws, "svc-01", "test", "DEPLOYING", sha)
    put_stage_state(aws, "svc-39", "prod", "FAILED", sha)
    put_stage_state(aws, "svc-39", "gone", "SUCCEEDED", sha)  # a stage removed since: not listed
    calls = DynamoCalls()
    assert client.http.get("/stacks?limit=1").status_code == 200  # clients made
    calls.attach()

    calls.counting = True
    listed = client.http.get("/stacks?limit=100").json_body
    calls.counting = False

    by_id = {s["id"]: {st["name"]: st for st in s["stages"]} for s in listed["stacks"]}
    assert len(by_id) == 40
    assert [by_id["svc-01"][n]["status"] for n in ("dev", "test", "prod")] == ["SUCCEEDED", "DEPLOYING", "IDLE"]
    assert by_id["svc-01"]["dev"]["current_release"]["sha"] == sha
    assert by_id["svc-01"]["prod"]["current_release"] is None
    assert [by_id["svc-39"][n]["status"] for n in ("dev", "test", "prod")] == ["IDLE", "IDLE", "FAILED"]
    assert all(st["status"] == "IDLE" for st in by_id["svc-20"].values())
    # 40 stacks × 3 stages: the index query and two BatchGetItem pages (100 keys each), not 40 queries.
    assert sorted(calls) == ["BatchGetItem", "BatchGetItem", "Query"], calls
