"""Notifications through the real embedded pipeline: a release's transitions reach a real local HTTP receiver
standing in for the GitHub statuses API, Slack and a signed webhook; a failing receiver gets the event once
it recovers; a hanging one does not slow the release; the audit trail records who did what."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.pipeline_support import awaiting, ended, example_repo, git, push, run_until
from tests.plane import http, running_plane
from tests.receiver import Receiver, receiving, wait_until
from tests.webhook_support import github_headers, github_push

JSON = {"Content-Type": "application/json"}
SECRET = "webhook-secret-0123456789"
PUBLIC = "https://stagecoach.example.com"


@pytest.fixture
def pump(aws: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The event pump, driven synchronously; retries after 1 s, public URL set."""
    from chalicelib import bootstrap
    from chalicelib.local.pump import EventPump

    monkeypatch.setenv("STAGECOACH_NOTIFY_RETRY_BASE_SECONDS", "1")
    monkeypatch.setenv("STAGECOACH_PUBLIC_URL", PUBLIC)
    bootstrap.reset()
    yield EventPump.for_app(aws)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as r:
        yield r


def _stack(repo: Path, receiver: Receiver, stack_id: str = "hello", approval: bool = True) -> dict[str, Any]:
    return {
        "id": stack_id,
        "name": "Hello",
        "repository": {"provider": "github", "full_name": "acme/hello", "clone_url": str(repo)},
        "stages": [
            {"name": "dev", "parameters": {"Stage": "dev"}},
            {"name": "prod", "parameters": {"Stage": "prod"}, "approval": approval},
        ],
        "commit_status": {"api_url": f"{receiver.url}/github", "token": "ghp_test_token"},
        "notifications": [
            {"type": "slack", "url": f"{receiver.url}/slack", "events": ["stage.awaiting_approval", "release.ended"]},
            {
                "type": "webhook",
                "url": f"{receiver.url}/hook",
                "secret": SECRET,
                "events": [
                    "release.started",
                    "stage.awaiting_approval",
                    "stage.succeeded",
                    "stage.failed",
                    "release.ended",
                ],
            },
        ],
    }


def _statuses(receiver: Receiver, sha: str) -> dict[str, list[tuple[str, str]]]:
    """GitHub statuses by context: [(state, description)] in order."""
    out: dict[str, list[tuple[str, str]]] = {}
    for request in receiver.under("/github/"):
        assert request.path == f"/github/repos/acme/hello/statuses/{sha}"
        body = request.json()
        out.setdefault(body["context"], []).append((body["state"], body["description"]))
    return out


def test_a_release_reaches_the_commit_status_slack_and_a_signed_webhook(
    client: Any, pump: Any, receiver: Receiver, tmp_path: Path
) -> None:
    receiver.answer("/hook", [500, 200])  # the webhook fails once, then recovers
    repo, sha = example_repo(tmp_path)
    created = client.http.post("/stacks", body=json.dumps(_stack(repo, receiver)), headers=JSON)
    assert created.status_code == 201, created.body
    shown = json.dumps(created.json_body)
    assert "ghp_test_token" not in shown and SECRET not in shown
    assert created.json_body["commit_status"]["token"] == "***"
    accepted = push(client, created.json_body["webhook"]["secret"], sha)
    release_id = accepted.json_body["release_id"]
    run_until(client, pump, release_id, awaiting("prod"))
    approved = client.http.post(f"/releases/{release_id}/stages/prod/approve", body=b'{"comment": "ok"}', headers=JSON)
    assert approved.status_code == 200, approved.body
    assert run_until(client, pump, release_id, ended)["status"] == "SUCCEEDED"

    def all_delivered() -> bool:
        pump.drain()
        statuses = _statuses(receiver, sha)
        hooks = [r.json()["event"] for r in receiver.under("/hook") if r.json()["event"] == "release.ended"]
        return statuses.get("stagecoach/prod", [("", "")])[-1][0] == "success" and len(hooks) >= 1

    wait_until(all_delivered, timeout=60, every=0.2)

    statuses = _statuses(receiver, sha)
    assert statuses["stagecoach/dev"][0] == ("pending", "queued")
    assert statuses["stagecoach/dev"][-1] == ("success", "deployed")
    assert ("pending", "waiting for approval") in statuses["stagecoach/prod"]
    github = receiver.under("/github/")[0]
    assert github.headers["Authorization"] == "Bearer ghp_test_token"
    assert github.headers["Accept"] == "application/vnd.github+json"
    assert github.json()["target_url"] == f"{PUBLIC}/releases/{release_id}"

    hooks = receiver.under("/hook")
    for request in hooks:
        signature = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
        assert request.headers["X-Stagecoach-Signature-256"] == signature
        assert request.headers["Content-Type"] == "application/json"
    events = [r.json() for r in hooks]
    first = events[0]
    assert first["event"] == "release.started" and first["sha"] == sha and first["release_id"] == release_id
    # the first delivery got a 500 and was delivered again (same delivery id) once the receiver recovered
    assert hooks[0].body == hooks[1].body
    assert hooks[0].headers["X-Stagecoach-Delivery"] == hooks[1].headers["X-Stagecoach-Delivery"]
    kinds = [(e["event"], e["stage"], e["status"]) for e in events[1:]]
    for wanted in [
        ("stage.succeeded", "dev", "SUCCEEDED"),
        ("stage.awaiting_approval", "prod", "AWAITING_APPROVAL"),
        ("stage.succeeded", "prod", "SUCCEEDED"),
        ("release.ended", None, "SUCCEEDED"),
    ]:
        assert wanted in kinds

    slack = [r.json() for r in receiver.under("/slack")]
    assert [m["blocks"][1]["fields"][2]["text"] for m in slack] == [
        "*Status*\nAWAITING_APPROVAL",
        "*Status*\nSUCCEEDED",
    ]
    assert all("text" in m and m["blocks"][0]["type"] == "section" for m in slack)

    listed = client.http.get("/stacks/hello/notifications?limit=100").json_body["deliveries"]
    retried = [d for d in listed if d["target_type"] == "webhook" and d["event"] == "release.started"]
    assert [(d["attempt"], d["outcome"], d["status_code"]) for d in reversed(retried)] == [
        (1, "retrying", 500),
        (2, "delivered", 200),
    ]
    assert listed == sorted(listed, key=lambda d: d["at"], reverse=True)

    audit = client.http.get("/stacks/hello/audit").json_body["entries"]
    assert [(e["action"], e["actor"]) for e in audit] == [
        ("stage.approve", "local-user"),
        ("stack.create", "local-user"),
    ]
    assert audit[0]["target"] == f"release/{release_id}/stage/prod" and audit[0]["detail"] == {"comment": "ok"}


def test_audit_trail_of_mutations_survives_the_stack_and_refusals_write_nothing(client: Any, tmp_path: Path) -> None:
    repo, _ = example_repo(tmp_path)
    body = {
        "id": "audited",
        "name": "Audited",
        "repository": {"provider": "github", "full_name": "acme/hello", "clone_url": str(repo)},
        "stages": [{"name": "dev"}],
    }
    assert client.http.post("/stacks", body=json.dumps(body), headers=JSON).status_code == 201
    refused = client.http.patch("/stacks/audited", body=json.dumps({"version": 1, "notifications": "x"}), headers=JSON)
    assert refused.status_code == 400
    changed = client.http.patch("/stacks/audited", body=json.dumps({"version": 1, "name": "Renamed"}), headers=JSON)
    assert changed.status_code == 200
    assert client.http.post("/stacks/audited/webhook/rotate").status_code == 200
    assert client.http.delete("/stacks/audited").status_code == 204
    entries = client.http.get("/stacks/audited/audit").json_body["entries"]
    assert [e["action"] for e in entries] == ["stack.delete", "webhook.rotate", "stack.update", "stack.create"]
    assert entries[2]["detail"] == {"fields": ["name"], "version": 2}
    everything = client.http.get("/audit?limit=2").json_body
    assert [e["action"] for e in everything["entries"]] == ["stack.delete", "webhook.rotate"]
    assert everything["next_token"]
    rest = client.http.get(f"/audit?limit=100&next_token={everything['next_token']}").json_body["entries"]
    assert [e["action"] for e in rest] == ["stack.update", "stack.create"]
    assert client.http.get("/stacks/audited/notifications").status_code == 404


def _release_seconds(url: str, stack_id: str, secret: str, sha: str) -> float:
    body = json.dumps(github_push(sha=sha, full_name="acme/hello")).encode()
    status, accepted = http("POST", f"{url}/webhooks/github/{stack_id}", body, github_headers(secret, body))
    assert status == 202, accepted
    started = time.perf_counter()

    def done() -> Any:
        _, current = http("GET", f"{url}/releases/{accepted['release_id']}")
        return current if current["status"] not in ("PENDING", "RUNNING") else None

    final = wait_until(done, timeout=120, every=0.05)
    assert final["status"] == "SUCCEEDED", final
    return time.perf_counter() - started


def test_a_hanging_receiver_does_not_slow_the_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two identical stacks, one notifying a receiver that never answers in time: both releases take as long."""
    monkeypatch.setenv("STAGECOACH_NOTIFY_TIMEOUT_SECONDS", "2")
    with receiving() as receiver, running_plane(pump=True) as plane:
        receiver.hang("/", 30)
        repo, sha = example_repo(tmp_path)
        secrets = {}
        for stack_id, notify in (("quiet", False), ("noisy", True)):
            body = _stack(repo, receiver, stack_id, approval=False)
            if not notify:
                del body["commit_status"], body["notifications"]
            status, created = http("POST", f"{plane.url}/stacks", body)
            assert status == 201, created
            secrets[stack_id] = created["webhook"]["secret"]
        quiet = _release_seconds(plane.url, "quiet", secrets["quiet"], sha)
        (repo / "NOTE.txt").write_text("again\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "again")
        noisy = _release_seconds(plane.url, "noisy", secrets["noisy"], git(repo, "rev-parse", "HEAD"))
        print(f"\nrelease without notifications: {quiet:.2f} s; with a receiver that hangs: {noisy:.2f} s")
        assert receiver.under("/github/"), "the hanging receiver was called"
        assert noisy <= quiet * 1.5 + 2.0
        # an attempt is recorded once the receiver's timeout (2 s) ran out
        attempts = wait_until(lambda: http("GET", f"{plane.url}/stacks/noisy/notifications")[1]["deliveries"])
        assert attempts and all(a["status_code"] is None and a["outcome"] == "retrying" for a in attempts)
        assert all(a["duration_ms"] < 5000 for a in attempts)
