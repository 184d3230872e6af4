"""Notifications with in-memory fakes: settings, provider requests, events from transitions, the worker's
fan-out and retry policy, write-only secrets and the audit trail."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from chalicelib.domain import notifications as n
from chalicelib.domain.errors import ConflictError, ValidationError
from chalicelib.domain.releases import PipelineConfig, new_release
from chalicelib.domain.stacks import parse_new_stack, patch_stack
from chalicelib.services.audit import Auditor, AuditQueries
from chalicelib.services.notifications import NotificationWorker
from chalicelib.services.ports import ExecutionState, HttpResult
from chalicelib.services.recovery import Reconciler
from chalicelib.services.releases import ReleaseStarter
from chalicelib.services.stacks import StackService
from tests.fakes import (
    CountingMetrics,
    FakeExecutions,
    FixedClock,
    Ids,
    InMemoryAuditLog,
    InMemoryCloneCredentials,
    InMemoryDeliveryLog,
    InMemoryLaneStore,
    InMemoryNotificationSecrets,
    InMemoryReleaseRepository,
    InMemorySecretStore,
    InMemoryStackRepository,
    RecordingNotificationQueue,
    RecordingPublisher,
    ScriptedSender,
    stack_body,
)
from tests.unit.test_stage_coordinator import World

NOW = "2026-11-27T12:00:00.000Z"
SHA = "4f2a9c1" + "0" * 33
CONFIG = PipelineConfig("arn:aws:states:us-east-1:123456789012:stateMachine:stagecoach-release", "arn:role", 1, 60)
HOOK = "https://ci.example.com/hooks/stagecoach"
SLACK = "https://hooks.slack.com/services/T000/B000/XXXX"
SECRET = "0123456789abcdef0123"


# ------------------------------------------------------------------ settings


def test_commit_status_defaults_to_the_repository_provider_and_its_public_api() -> None:
    config = n.parse_commit_status({"token": "ghp_x"}, "github", None)
    assert config is not None
    assert (config.provider, config.api_url, config.token) == ("github", "https://api.github.com", "ghp_x")
    assert config.to_dict() == {"provider": "github", "api_url": "https://api.github.com", "token": "***"}
    assert "ghp_x" not in repr(config)


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"provider": "bitbucket-server", "token": "t"}, "commit_status.api_url"),
        ({"api_url": "http://example.com", "token": "t"}, "commit_status.api_url"),
        ({"api_url": "https://user:pw@example.com", "token": "t"}, "commit_status.api_url"),
        ({"provider": "svn", "token": "t"}, "commit_status.provider"),
        ({}, "commit_status.token"),
        ({"token": "has space"}, "commit_status.token"),
        ({"token": "t", "extra": 1}, "commit_status.extra"),
    ],
)
def test_commit_status_refuses_bad_settings(value: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        n.parse_commit_status(value, "github", None)
    assert caught.value.field == field


def test_a_stored_token_is_kept_with_stars_and_stars_alone_stand_for_nothing() -> None:
    with pytest.raises(ConflictError):
        n.parse_commit_status({"token": "***"}, "gitlab", None)
    current = n.CommitStatus("gitlab", "https://gitlab.com/api/v4")
    kept = n.parse_commit_status({"token": "***", "api_url": "http://127.0.0.1:8080/api/v4"}, "gitlab", current)
    assert kept is not None and kept.token is None and kept.api_url == "http://127.0.0.1:8080/api/v4"


def test_notifications_validate_urls_events_and_write_only_secrets() -> None:
    targets = n.parse_notifications(
        [
            {"type": "slack", "url": SLACK},
            {"type": "webhook", "url": HOOK, "secret": SECRET, "events": ["stage.failed"]},
        ],
        (),
    )
    assert targets[0].events == n.DEFAULT_EVENTS
    assert targets[1].secret == SECRET and targets[1].to_dict()["secret"] == "***"
    assert "secret" not in targets[0].to_dict()
    for bad, field in [
        ([{"type": "webhook", "url": HOOK}], "notifications[0].secret"),
        ([{"type": "webhook", "url": HOOK, "secret": "short"}], "notifications[0].secret"),
        ([{"type": "slack", "url": SLACK, "secret": SECRET}], "notifications[0].secret"),
        ([{"type": "slack", "url": SLACK, "events": ["stage.exploded"]}], "notifications[0].events[0]"),
        ([{"type": "slack", "url": "ftp://x"}], "notifications[0].url"),
        ([{"type": "sms", "url": SLACK}], "notifications[0].type"),
        ([{"type": "slack", "url": SLACK}, {"type": "slack", "url": SLACK}], "notifications[1].url"),
    ]:
        with pytest.raises(ValidationError) as caught:
            n.parse_notifications(bad, ())
        assert caught.value.field == field, bad
    with pytest.raises(ConflictError):
        n.parse_notifications([{"type": "webhook", "url": HOOK, "secret": "***"}], ())
    kept = n.parse_notifications([{"type": "webhook", "url": HOOK, "secret": "***"}], targets)
    assert kept[0].secret is None and kept[0].key == targets[1].key


def test_stack_settings_carry_notifications_through_create_and_patch() -> None:
    body = stack_body(commit_status={"token": "ghp_x"}, notifications=[{"type": "slack", "url": SLACK}])
    stack = parse_new_stack(body, NOW, uid="s1")
    assert stack.commit_status is not None and stack.notifications[0].url == SLACK
    changed = patch_stack(stack, {"version": 1, "commit_status": None}, NOW)
    assert changed.commit_status is None and changed.notifications is stack.notifications


# ------------------------------------------------------------------ provider requests


def _context(**overrides: Any) -> n.Context:
    values: dict[str, Any] = {
        "stack_name": "Hello",
        "full_name": "acme/hello",
        "sha": SHA,
        "ref": "refs/heads/main",
        "message": "Fix the <b> tag & more\nbody",
        "author": "Ada",
        "trigger": "webhook",
        "stages": ("dev", "prod"),
        "release_url": "https://stagecoach.example.com/releases/r1",
    }
    values.update(overrides)
    return n.Context(**values)


def _stage(status: str, stage: str = "prod", **detail: str) -> n.Event:
    return n.stage_event("hello", "r1", stage, status, NOW, detail)


def test_github_gets_one_status_per_stage_context() -> None:
    config = n.CommitStatus("github", "https://api.github.com")
    (request,) = n.commit_status_requests(config, "tok", _stage("AWAITING_APPROVAL"), _context())
    assert request.url == f"https://api.github.com/repos/acme/hello/statuses/{SHA}"
    assert request.headers["Authorization"] == "Bearer tok"
    assert request.headers["Accept"] == "application/vnd.github+json"
    assert json.loads(request.body) == {
        "state": "pending",
        "target_url": "https://stagecoach.example.com/releases/r1",
        "description": "waiting for approval",
        "context": "stagecoach/prod",
    }
    superseded = n.commit_status_requests(config, "tok", _stage("SUPERSEDED", superseded_by="r2"), _context())
    assert json.loads(superseded[0].body)["state"] == "error"
    assert json.loads(superseded[0].body)["description"] == "superseded by r2"
    started = n.commit_status_requests(config, "tok", n.release_started("hello", "r1", NOW), _context())
    assert [json.loads(r.body)["context"] for r in started] == ["stagecoach/dev", "stagecoach/prod"]
    assert n.commit_status_requests(config, "tok", _stage("SUCCEEDED"), _context(sha="")) == []


@pytest.mark.parametrize(
    ("status", "github", "gitlab", "bitbucket", "server"),
    [
        ("WAITING", "pending", "pending", "INPROGRESS", "INPROGRESS"),
        ("PREPARING", "pending", "pending", "INPROGRESS", "INPROGRESS"),
        ("DEPLOYING", "pending", "running", "INPROGRESS", "INPROGRESS"),
        ("AWAITING_APPROVAL", "pending", "pending", "INPROGRESS", "INPROGRESS"),
        ("SUCCEEDED", "success", "success", "SUCCESSFUL", "SUCCESSFUL"),
        ("FAILED", "failure", "failed", "FAILED", "FAILED"),
        ("SUPERSEDED", "error", "canceled", "STOPPED", "CANCELLED"),
        ("CANCELLED", "error", "canceled", "STOPPED", "CANCELLED"),
        ("HELD", "error", "canceled", "STOPPED", "CANCELLED"),
    ],
)
def test_states_per_provider(status: str, github: str, gitlab: str, bitbucket: str, server: str) -> None:
    assert n.commit_state("github", status) == github
    assert n.commit_state("gitlab", status) == gitlab
    assert n.commit_state("bitbucket", status) == bitbucket
    assert n.commit_state("bitbucket-server", status) == server


def test_gitlab_bitbucket_cloud_and_server_shapes() -> None:
    ctx = _context(full_name="group/sub/hello")
    (gitlab,) = n.commit_status_requests(
        n.CommitStatus("gitlab", "https://gitlab.com/api/v4"), "t", _stage("FAILED"), ctx
    )
    assert gitlab.url == f"https://gitlab.com/api/v4/projects/group%2Fsub%2Fhello/statuses/{SHA}"
    assert gitlab.headers["PRIVATE-TOKEN"] == "t" and "Authorization" not in gitlab.headers
    assert json.loads(gitlab.body)["name"] == "stagecoach/prod" and json.loads(gitlab.body)["state"] == "failed"
    cloud = n.CommitStatus("bitbucket", "https://api.bitbucket.org")
    (bb,) = n.commit_status_requests(cloud, "t", _stage("SUCCEEDED"), _context())
    assert bb.url == f"https://api.bitbucket.org/2.0/repositories/acme/hello/commit/{SHA}/statuses/build"
    assert json.loads(bb.body) == {
        "key": "stagecoach-prod",
        "state": "SUCCESSFUL",
        "url": "https://stagecoach.example.com/releases/r1",
        "name": "stagecoach/prod",
        "description": "deployed",
    }
    server = n.CommitStatus("bitbucket-server", "https://git.example.com")
    (bs,) = n.commit_status_requests(server, "t", _stage("DEPLOYING"), _context(full_name="~ada/hello"))
    assert bs.url == f"https://git.example.com/rest/api/latest/projects/~ada/repos/hello/commits/{SHA}/builds"
    assert json.loads(bs.body)["state"] == "INPROGRESS"
    long_stage = "a" * 32
    (keyed,) = n.commit_status_requests(cloud, "t", _stage("SUCCEEDED", stage=long_stage), _context())
    assert len(json.loads(keyed.body)["key"]) <= 40


def test_webhooks_are_signed_and_slack_gets_text_and_blocks() -> None:
    target = n.Notification("webhook", HOOK, n.EVENT_TYPES, SECRET)
    request = n.webhook_request(target, SECRET, _stage("SUCCEEDED"), _context())
    expected = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Stagecoach-Signature-256"] == expected
    assert request.headers["X-Stagecoach-Delivery"] == n.delivery_id(_stage("SUCCEEDED"), target.key)
    payload = json.loads(request.body)
    assert {k: payload[k] for k in ("event", "stack_id", "release_id", "stage", "status", "sha", "at")} == {
        "event": "stage.succeeded",
        "stack_id": "hello",
        "release_id": "r1",
        "stage": "prod",
        "status": "SUCCEEDED",
        "sha": SHA,
        "at": NOW,
    }
    slack = json.loads(
        n.slack_request(n.Notification("slack", SLACK, n.EVENT_TYPES), _stage("FAILED"), _context()).body
    )
    assert "Hello" in slack["text"] and "prod" in slack["text"]
    fields = " ".join(f["text"] for f in slack["blocks"][1]["fields"])
    for wanted in ("Hello", "prod", "FAILED", "4f2a9c1", "Fix the &lt;b&gt; tag &amp; more", "Ada"):
        assert wanted in fields
    assert "https://stagecoach.example.com/releases/r1" in json.dumps(slack["blocks"])


def test_retry_policy_backs_off_and_honours_retry_after() -> None:
    assert [n.retry_delay(a, None, 5) for a in (1, 2, 3, 10)] == [5, 10, 20, 900]
    assert n.retry_delay(1, 42, 5) == 42 and n.retry_delay(1, 5000, 5) == 900
    assert n.retry_after_seconds("120") == 120
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    assert n.retry_after_seconds("Fri, 27 Nov 2026 12:01:00 GMT", now) == 60
    assert n.retry_after_seconds("soon") is None
    assert n.retryable(None) and n.retryable(429) and n.retryable(503) and n.retryable(408)
    assert not n.retryable(401) and not n.retryable(404) and not n.retryable(422)


# ------------------------------------------------------------------ events from transitions


def test_the_coordinator_publishes_each_stage_transition_and_the_release_end_with_deterministic_ids() -> None:
    world = World()
    publisher = RecordingPublisher()
    world.coordinator._events = publisher
    r1 = world.release(1)
    world.send("enter", r1, "dev")
    assert publisher.ids() == [f"{r1}.dev.deploying"]
    world.executed("dev")
    name = world.lanes.lane("hello", "dev").holder.target.change_set_name
    world.change_set(r1, "dev", "EXECUTE_COMPLETE")
    world.send("leave", r1, "dev", change_set_name=name, result={"kind": "executed"})
    assert publisher.events[-1].type == "stage.succeeded" and publisher.events[-1].id == f"{r1}.dev.succeeded"
    world.send("enter", r1, "prod")
    world.send("approval", r1, "prod")
    assert publisher.events[-1].type == "stage.awaiting_approval"
    r2 = world.release(2)
    world.send("enter", r2, "prod")  # a newer release supersedes r1 waiting for approval at prod
    superseded = next(e for e in publisher.events if e.type == "stage.superseded")
    assert superseded.id == f"{r1}.prod.superseded" and superseded.detail["superseded_by"] == r2
    # the release's end is published by the reconciler once the release is settled, not here
    assert "release.ended" not in {e.type for e in publisher.events}


def test_a_failing_publisher_never_fails_the_transition() -> None:
    world = World()
    world.coordinator._events = RecordingPublisher(fail=True)
    r1 = world.release(1)
    token = world.send("enter", r1, "dev")
    assert token in world.callbacks.succeeded
    assert world.run(r1, "dev").status == "DEPLOYING"


def test_the_reconciler_and_the_starter_publish_release_events() -> None:
    stacks = InMemoryStackRepository()
    releases = InMemoryReleaseRepository()
    lanes = InMemoryLaneStore(stacks, releases)
    stack = parse_new_stack(stack_body(commit_status={"token": "tok"}), NOW, uid="s1")
    stacks.create(stack)
    publisher = RecordingPublisher()
    executions = FakeExecutions()
    starter = ReleaseStarter(
        stacks,
        releases,
        executions,
        InMemorySecretStore(),
        lambda: CONFIG,
        FixedClock(NOW),
        Ids(),
        CountingMetrics(),
        publisher,
    )
    outcome = starter.start_manual("hello", {"ref": "main"}, None)
    release_id = outcome.body["release_id"]
    assert publisher.ids() == [f"{release_id}.started"]
    world = World()
    audit = InMemoryAuditLog()
    reconciler = Reconciler(
        releases,
        executions,
        world.coordinator,
        starter,
        FixedClock(NOW),
        CountingMetrics(),
        publisher,
        Auditor(audit, FixedClock(NOW), lambda p: f"{p}1"),
    )
    releases.start_running(release_id)
    reconciler.cancel(release_id, {"reason": "wrong branch"}, "alice")
    assert publisher.events[-1].type == "release.ended" and publisher.events[-1].status == "CANCELLED"
    assert [(e.actor, e.action, e.target) for e in audit.entries] == [
        ("alice", "release.cancel", f"release/{release_id}")
    ]
    del lanes


# ------------------------------------------------------------------ the worker


class Delivery:
    """The worker with fakes, a stack with GitHub statuses, a Slack and a webhook target, and a release."""

    def __init__(self, give_up_seconds: int = 3600, **answers: list[Any]) -> None:
        self.stacks = InMemoryStackRepository()
        self.releases = InMemoryReleaseRepository()
        body = stack_body(
            commit_status={"token": "ghp_x"},
            notifications=[
                {"type": "slack", "url": SLACK, "events": ["stage.failed", "release.ended"]},
                {"type": "webhook", "url": HOOK, "secret": SECRET, "events": list(n.EVENT_TYPES)},
            ],
        )
        self.stack = parse_new_stack(body, NOW, uid="s1")
        self.stacks.create(self.stack)
        self.secrets = InMemoryNotificationSecrets()
        self.secrets.write(
            "hello", {"commit_status_token": "ghp_x", "webhooks": {self.stack.notifications[1].key: SECRET}}
        )
        release = new_release(self.stack, "r" + "1" * 26, NOW, CONFIG, sha=SHA, ref="main")
        self.releases.record(release, [])
        self.release_id = release.id
        self.sender = ScriptedSender(
            {"https://api.github.com": answers.get("github", [200]), HOOK: answers.get("hook", [200])}
        )
        self.queue = RecordingNotificationQueue()
        self.log = InMemoryDeliveryLog()
        self.clock = FixedClock(NOW)
        self.worker = NotificationWorker(
            self.stacks,
            self.releases,
            self.secrets,
            self.sender,
            self.queue,
            self.log,
            self.clock,
            lambda: "https://stagecoach.example.com/",
            CountingMetrics(),
            base_delay_seconds=5,
            give_up_seconds=give_up_seconds,
        )

    def event(self, status: str = "SUCCEEDED", stage: str = "prod") -> n.Event:
        return n.stage_event("hello", self.release_id, stage, status, NOW, {})

    def handle(self, event: n.Event, **extra: Any) -> str:
        return self.worker.handle(json.dumps({"event": event.to_dict(), **extra}))


def test_an_event_goes_to_the_commit_status_and_every_target_that_wants_it() -> None:
    world = Delivery()
    world.handle(world.event("SUCCEEDED"))
    assert [r.url for r in world.sender.requests] == [f"https://api.github.com/repos/acme/hello/statuses/{SHA}", HOOK]
    assert json.loads(world.sender.requests[0].body)["target_url"].startswith(
        "https://stagecoach.example.com/releases/"
    )
    assert [a.outcome for a in world.log.attempts] == ["delivered", "delivered"]
    world.handle(world.event("FAILED"))
    assert SLACK in [r.url for r in world.sender.requests]
    assert not world.queue.retries and not world.queue.dead


def test_a_failing_target_is_retried_alone_with_backoff_then_delivered() -> None:
    world = Delivery(hook=[500, 503, 200])
    event = world.event("SUCCEEDED")
    world.handle(event)
    ((message, delay),) = world.queue.retries
    assert delay == 5 and message["attempt"] == 2 and message["target"] == world.stack.notifications[1].key
    github_posts = sum(r.url.startswith("https://api.github.com") for r in world.sender.requests)
    world.worker.handle(json.dumps(message))
    assert world.queue.retries[-1][1] == 10
    world.worker.handle(json.dumps(world.queue.retries[-1][0]))
    assert sum(r.url.startswith("https://api.github.com") for r in world.sender.requests) == github_posts
    hook = [a for a in world.log.attempts if a.target_type == "webhook"]
    assert [(a.attempt, a.outcome, a.status_code) for a in hook] == [
        (1, "retrying", 500),
        (2, "retrying", 503),
        (3, "delivered", 200),
    ]
    assert len({a.delivery_id for a in hook}) == 1
    deliveries = [r.headers["X-Stagecoach-Delivery"] for r in world.sender.requests if r.url == HOOK]
    assert len(set(deliveries)) == 1


def test_429_retry_after_is_honoured() -> None:
    world = Delivery(github=[HttpResult(429, retry_after="37")])
    world.handle(world.event("DEPLOYING"))
    assert world.queue.retries[0][1] == 37


def test_a_target_that_keeps_failing_is_given_up_into_the_dead_letter_queue() -> None:
    world = Delivery(give_up_seconds=12, hook=[HttpResult(None, error="TimeoutError: timed out")])
    world.handle(world.event())
    message, _delay = world.queue.retries[0]
    world.clock.times = ["2026-11-27T12:00:05.000Z"]  # the retry arrives 5 s later
    world.worker.handle(json.dumps(message))  # 5 + 10 > 12 s: no third try
    assert len(world.queue.retries) == 1
    (dead,) = world.queue.dead
    assert dead["target"] == world.stack.notifications[1].key and dead["error"].startswith("TimeoutError")
    assert world.log.attempts[-1].outcome == "failed" and world.log.attempts[-1].status_code is None


def test_a_refusal_is_not_retried() -> None:
    world = Delivery(github=[401])
    world.handle(world.event())
    assert not world.queue.retries and len(world.queue.dead) == 1
    assert [a.outcome for a in world.log.attempts if a.target == n.COMMIT_STATUS_KEY] == ["failed"]


def test_gitlab_refusing_a_state_the_commit_already_has_is_not_a_failure() -> None:
    refusal = 'Cannot transition status via :enqueue from :pending (Reason(s): Status cannot transition via "enqueue")'
    world = Delivery(github=[HttpResult(400, body=json.dumps({"message": refusal}))])
    world.stacks.stacks["hello"] = replace(
        world.stack, commit_status=n.CommitStatus("gitlab", "https://api.github.com")
    )
    world.handle(n.release_started("hello", world.release_id, NOW))  # pending on every stage: each refused
    attempt = next(a for a in world.log.attempts if a.target == n.COMMIT_STATUS_KEY)
    assert (attempt.outcome, attempt.status_code) == ("delivered", 400)
    assert len([r for r in world.sender.requests if "/statuses/" in r.url]) == 3  # dev, test, prod
    assert not world.queue.dead and not world.queue.retries
    world.sender.answers["https://api.github.com"] = [HttpResult(400, body='{"message": "state is invalid"}')]
    world.handle(world.event("SUCCEEDED"))
    assert len(world.queue.dead) == 1  # any other 400 is a refusal


def test_events_of_a_deleted_stack_and_messages_that_are_not_events_are_dropped() -> None:
    world = Delivery()
    assert world.worker.handle("not json").startswith("dropped")
    world.stacks.delete("hello", 1)
    assert world.handle(world.event()).startswith("skipped")
    assert not world.sender.requests


# ------------------------------------------------------------------ write-only secrets and the audit trail


def _service() -> tuple[StackService, InMemoryNotificationSecrets, InMemoryAuditLog]:
    stacks = InMemoryStackRepository()
    releases = InMemoryReleaseRepository()
    secrets = InMemoryNotificationSecrets()
    audit = InMemoryAuditLog()
    ids = Ids()
    service = StackService(
        stacks,
        InMemorySecretStore(),
        InMemoryCloneCredentials(),
        InMemoryLaneStore(stacks, releases),
        releases,
        FixedClock(NOW),
        lambda prefix: ids(),
        None,
        secrets,
        Auditor(audit, FixedClock(NOW), lambda prefix: ids()),
    )
    return service, secrets, audit


def test_tokens_and_secrets_are_stored_apart_and_never_shown() -> None:
    service, secrets, audit = _service()
    body = stack_body(
        commit_status={"token": "ghp_secret_token"},
        notifications=[{"type": "webhook", "url": HOOK, "secret": SECRET}],
    )
    created = service.create(body, "alice")
    text = json.dumps(created)
    assert "ghp_secret_token" not in text and SECRET not in text
    assert created["commit_status"]["token"] == "***" and created["notifications"][0]["secret"] == "***"
    key = n.Notification("webhook", HOOK, ()).key
    assert secrets.documents["hello"] == {"commit_status_token": "ghp_secret_token", "webhooks": {key: SECRET}}
    changed = service.patch(
        "hello", {"version": 1, "notifications": [{"type": "webhook", "url": HOOK, "secret": "***"}]}, "bob"
    )
    assert changed["notifications"][0]["secret"] == "***"
    assert secrets.documents["hello"]["webhooks"] == {key: SECRET}
    service.patch("hello", {"version": 2, "commit_status": None, "notifications": []}, "bob")
    assert "hello" not in secrets.documents
    assert [(e.actor, e.action) for e in audit.entries] == [
        ("alice", "stack.create"),
        ("bob", "stack.update"),
        ("bob", "stack.update"),
    ]
    assert audit.entries[1].detail == {"fields": ["notifications"], "version": 2}


def test_every_stack_mutation_is_audited_refusals_are_not_and_the_trail_outlives_the_stack() -> None:
    service, _, audit = _service()
    service.create(stack_body(), "alice")
    with pytest.raises(ValidationError):
        service.patch("hello", {"version": 1, "notifications": [{"type": "sms"}]}, "mallory")
    with pytest.raises(ConflictError):
        service.patch("hello", {"version": 7, "name": "x"}, "mallory")
    service.add_stage("hello", {"name": "qa"}, "alice")
    service.update_stage("hello", "qa", {"approval": True}, actor="alice")
    service.remove_stage("hello", "qa", {}, actor="alice")
    service.rotate_webhook_secret("hello", actor="alice")
    service.delete("hello", actor="alice")
    assert audit.actions() == [
        "stack.create",
        "stage.create",
        "stage.update",
        "stage.delete",
        "webhook.rotate",
        "stack.delete",
    ]
    assert {e.actor for e in audit.entries} == {"alice"}
    page = AuditQueries(audit).for_stack("hello", None, None)
    assert page["entries"][0]["action"] == "stack.delete"
    assert page["entries"][-1]["target"] == "stack/hello"


def test_release_ended_is_published_when_settled_and_again_until_it_is() -> None:
    """The reconciler publishes before it settles: a failed publish leaves the release ACTIVE for the sweeper."""
    world = World()
    r1 = world.release(1)
    executions = FakeExecutions()
    release = world.releases.get(r1)
    executions.states[release.execution_arn] = ExecutionState("SUCCEEDED", stopped_at="2026-11-27T12:00:09.000Z")
    publisher = RecordingPublisher(fail=True)
    starter = ReleaseStarter(
        world.stacks,
        world.releases,
        executions,
        InMemorySecretStore(),
        lambda: CONFIG,
        FixedClock(NOW),
        Ids(),
        CountingMetrics(),
    )
    reconciler = Reconciler(
        world.releases, executions, world.coordinator, starter, FixedClock(NOW), CountingMetrics(), publisher
    )
    assert reconciler.reconcile(r1).endswith("its end is not published yet")
    assert r1 in world.releases.started()
    publisher.fail = False
    assert reconciler.sweep()["reconciled"] == {r1: "SUCCEEDED: stages freed"}
    assert publisher.ids() == [f"{r1}.succeeded"] and r1 not in world.releases.started()


def test_redelivered_enter_and_approval_messages_publish_the_same_events_again() -> None:
    """A coordinator that died between its lane write and publishing gets its FIFO message again: same ids."""
    world = World()
    publisher = RecordingPublisher()
    world.coordinator._events = publisher
    r1 = world.release(1)
    body = {
        "op": "enter",
        "token": "T1",
        "release_id": r1,
        "stage": "prod",
        "cfn_stack_name": "hello--prod",
        "role_arn": "arn:role",
        "approval": True,
        "execution_name": f"exec-{r1}",
        "deploy_timeout_seconds": 600,
    }
    approval = {"op": "approval", "token": "T2", "release_id": r1, "stage": "prod", "cfn_stack_name": "hello--prod"}
    for message in (body, body, approval, approval):
        world.coordinator.handle(json.dumps(message))
    assert publisher.ids() == [f"{r1}.prod.preparing"] * 2 + [f"{r1}.prod.awaiting_approval"] * 2


def test_a_redelivered_leave_publishes_the_recorded_stage_outcome_again() -> None:
    world = World()
    publisher = RecordingPublisher()
    world.coordinator._events = publisher
    r1 = world.release(1)
    world.send("enter", r1, "dev")
    world.executed("dev")
    name = world.lanes.lane("hello", "dev").holder.target.change_set_name
    world.change_set(r1, "dev", "EXECUTE_COMPLETE")
    world.send("leave", r1, "dev", change_set_name=name, result={"kind": "executed"})
    world.send("leave", r1, "dev", change_set_name=name, result={"kind": "executed"})  # SQS redelivers it
    assert publisher.ids()[-2:] == [f"{r1}.dev.succeeded", f"{r1}.dev.succeeded"]


def test_day2_operations_approvals_and_manual_releases_are_audited_with_their_actor() -> None:
    from chalicelib.services.approvals import ApprovalService
    from chalicelib.services.deployments import DeploymentService
    from tests.unit.test_deployments import World as Day2

    day2 = Day2()
    audit = InMemoryAuditLog()
    auditor = Auditor(audit, FixedClock(NOW), lambda prefix: f"{prefix}1")
    publisher = RecordingPublisher()
    service = DeploymentService(
        day2.stacks,
        day2.releases,
        day2.lanes,
        day2.executions,
        lambda: CONFIG,
        FixedClock(NOW),
        Ids(),
        CountingMetrics(),
        publisher,
        auditor,
    )
    b1, b2 = day2.built(1), day2.built(2)
    day2.runs("prod", b1)
    day2.runs("prod", b2)
    promoted = service.promote("hello", "dev", {"release_id": b2}, "alice")
    with pytest.raises(ValidationError):
        service.rollback("hello", "prod", {"reason": 7}, "mallory")
    rolled = service.rollback("hello", "prod", {"reason": "bad deploy"}, "bob")
    service.unpin("hello", "prod", "bob")
    assert [(e.actor, e.action, e.target) for e in audit.entries] == [
        ("alice", "stage.promote", "stack/hello/stage/dev"),
        ("bob", "stage.rollback", "stack/hello/stage/prod"),
        ("bob", "stage.unpin", "stack/hello/stage/prod"),
    ]
    assert audit.entries[1].detail == {"release_id": rolled["release_id"], "source_release_id": b1}
    assert publisher.ids() == [f"{promoted['release_id']}.started", f"{rolled['release_id']}.started"]

    world = World()
    approvals = ApprovalService(
        world.releases, world.releases, world.callbacks, world.clock, world.lanes, publisher, auditor
    )
    r1 = world.release(1)
    world.send("enter", r1, "prod")
    world.send("approval", r1, "prod")
    approvals.decide(r1, "prod", True, {"comment": "ship"}, "carol")
    approvals.decide(r1, "prod", True, {"comment": "ship"}, "carol")  # a retry: answered again, not audited again
    assert [(e.actor, e.action, e.detail) for e in audit.entries[3:]] == [
        ("carol", "stage.approve", {"comment": "ship"})
    ]
    assert publisher.ids()[-1] == f"{r1}.prod.deploying"

    stacks = InMemoryStackRepository()
    stacks.create(parse_new_stack(stack_body(), NOW, uid="s1"))
    starter = ReleaseStarter(
        stacks,
        InMemoryReleaseRepository(),
        FakeExecutions(),
        InMemorySecretStore(),
        lambda: CONFIG,
        FixedClock(NOW),
        Ids(),
        CountingMetrics(),
        None,
        auditor,
    )
    started = starter.start_manual("hello", {"ref": "main"}, "key-1", "dave")
    again = starter.start_manual("hello", {"ref": "main"}, "key-1", "dave")
    assert again.status == 200
    assert [(e.actor, e.action, e.target) for e in audit.entries[4:]] == [
        ("dave", "release.start", f"release/{started.body['release_id']}")
    ]


def test_the_worker_hands_back_records_it_has_no_time_left_for() -> None:
    """Partial batch response: with less than a message's worst case left, the rest go back to the queue."""
    import app

    class Nearly:
        def get_remaining_time_in_millis(self) -> int:
            return app.NOTIFICATION_RESERVE_MS - 1

    records = [{"messageId": f"m{i}", "receiptHandle": f"h{i}", "body": "{}"} for i in range(3)]
    answer = app.deliver_notifications({"Records": records}, Nearly())
    assert answer == {
        "batchItemFailures": [{"itemIdentifier": "m0"}, {"itemIdentifier": "m1"}, {"itemIdentifier": "m2"}]
    }
