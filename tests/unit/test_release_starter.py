"""ReleaseStarter on in-memory fakes: one release per pushed commit, retries after failed starts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.domain.errors import NotFoundError, UnauthorizedError, ValidationError
from chalicelib.domain.releases import PipelineConfig
from chalicelib.domain.stacks import parse_new_stack
from chalicelib.services.releases import ReleaseStarter
from tests.fakes import (
    CountingMetrics,
    FixedClock,
    Ids,
    InMemoryReleaseRepository,
    InMemorySecretStore,
    InMemoryStackRepository,
    RecordingExecutions,
    RecordingPublisher,
    stack_body,
)
from tests.webhook_support import SHA, github_headers, github_push

NOW = "2026-11-27T12:00:00.000Z"
CONFIG = PipelineConfig(
    "arn:aws:states:us-east-1:123456789012:stateMachine:stagecoach-release", "arn:aws:iam::123456789012:role/cfn", 1, 60
)


class World:
    def __init__(
        self,
        fail_next: int = 0,
        clock: FixedClock | None = None,
        stacks: InMemoryStackRepository | None = None,
        **extra: Any,
    ) -> None:
        self.stacks = stacks or InMemoryStackRepository()
        self.releases = InMemoryReleaseRepository()
        self.executions = RecordingExecutions(fail_next)
        self.secrets = InMemorySecretStore()
        self.clock = clock or FixedClock(NOW)
        self.metrics = CountingMetrics()
        self.events = RecordingPublisher()
        self.starter = ReleaseStarter(
            self.stacks,
            self.releases,
            self.executions,
            self.secrets,
            lambda: CONFIG,
            self.clock,
            Ids(),
            self.metrics,
            self.events,
        )
        stack = parse_new_stack(stack_body(branches=["main", "release/**"], tags=["v*"], **extra), NOW)
        self.stacks.create(stack)
        self.secret = self.secrets.create(stack.id)

    def push(self, payload: dict[str, Any], delivery: str | None = None, secret: str | None = None) -> Any:
        body = json.dumps(payload).encode()
        headers = github_headers(secret or self.secret, body, delivery=delivery)
        return self.starter.receive("github", "hello", headers, body)


def test_push_creates_release_and_starts_execution() -> None:
    world = World()
    outcome = world.push(github_push())
    assert outcome.status == 202
    release = world.releases.get(outcome.body["release_id"])
    assert release is not None
    assert (release.ref, release.sha, release.trigger, release.status) == ("refs/heads/main", SHA, "webhook", "PENDING")
    assert release.message == "Ship it"
    assert release.author == "Ada"
    assert list(world.executions.started) == [release.execution_name]
    started = json.loads(world.executions.started[release.execution_name])
    assert [s["name"] for s in started["stages"]] == ["dev", "test", "prod"]
    assert started["stages"][2]["approval"] is True
    assert release.execution_arn.endswith(f":execution:stagecoach-release:{release.execution_name}")


def test_a_push_publishes_release_started_only_when_someone_is_told() -> None:
    quiet = World()
    assert quiet.push(github_push()).status == 202
    assert quiet.events.events == []  # no targets: the push makes no call to the notifications queue
    told = World(commit_status={"token": "tok"})
    release_id = told.push(github_push()).body["release_id"]
    assert told.events.ids() == [f"{release_id}.started"]


def test_same_delivery_or_same_commit_is_one_release() -> None:
    world = World()
    first = world.push(github_push(), delivery="d-1")
    again = world.push(github_push(), delivery="d-1")
    other_id = world.push(github_push(), delivery="d-2")
    assert first.status == 202
    assert again.status == other_id.status == 200
    assert again.body["release_id"] == other_id.body["release_id"] == first.body["release_id"]
    assert len(world.releases.releases) == 1
    assert len(world.executions.started) == 1
    assert world.metrics.counts == {"ReleaseCreated": 1, "DuplicateDelivery": 2}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (github_push(ref="refs/heads/feature/x"), "matches none"),
        (github_push(ref="refs/tags/release-1"), "matches none"),
        (github_push(full_name="someone/else"), "not this stack's"),
        (github_push(deleted=True, after="0" * 40), "deleted"),
    ],
)
def test_irrelevant_pushes_are_ignored_and_write_nothing(payload: dict[str, Any], reason: str) -> None:
    world = World()
    outcome = world.push(payload)
    assert outcome.status == 202
    assert reason in outcome.body["ignored"]
    assert world.releases.releases == {}
    assert world.executions.calls == 0
    assert world.metrics.counts == {"WebhookIgnored": 1}


def test_tags_and_nested_branches_match_globs() -> None:
    world = World()
    assert world.push(github_push(ref="refs/tags/v1.2.0", sha="c" * 40)).status == 202
    assert world.push(github_push(ref="refs/heads/release/2026/11", sha="d" * 40)).status == 202
    assert len(world.releases.releases) == 2


def test_bad_signature_is_401_and_nothing_written() -> None:
    world = World()
    with pytest.raises(UnauthorizedError):
        world.push(github_push(), secret="wrong")
    assert world.releases.releases == {}
    assert world.metrics.counts == {"WebhookUnauthorized": 1}


def test_a_signed_push_marks_the_hook_verified_once() -> None:
    world = World(clock=FixedClock(NOW, "2026-11-27T12:05:00.000Z"))
    with pytest.raises(UnauthorizedError):
        world.push(github_push(), secret="wrong")
    assert world.stacks.stacks["hello"].hook_verified_at is None

    assert world.push(github_push()).status == 202
    verified_at = world.stacks.stacks["hello"].hook_verified_at
    assert verified_at is not None
    assert world.push(github_push(sha="e" * 40)).status == 202
    assert world.stacks.stacks["hello"].hook_verified_at == verified_at  # not written again


def test_an_ignored_signed_delivery_still_proves_the_hook() -> None:
    world = World()
    assert world.push(github_push(ref="refs/heads/feature/x")).status == 202
    assert world.stacks.stacks["hello"].hook_verified_at == NOW


class StacksThatCannotMarkTheHook(InMemoryStackRepository):
    def mark_hook_verified(self, stack_id: str, now: str) -> None:
        raise RuntimeError("table unavailable")


def test_a_push_is_released_even_if_the_hook_cannot_be_marked_verified() -> None:
    world = World(stacks=StacksThatCannotMarkTheHook())
    outcome = world.push(github_push())
    assert outcome.status == 202
    assert world.releases.get(outcome.body["release_id"]) is not None


def test_unknown_stack_is_404() -> None:
    world = World()
    with pytest.raises(NotFoundError):
        world.starter.receive("github", "nope", {}, b"{}")


def test_rotated_secret_keeps_previous_valid() -> None:
    world = World()
    old = world.secret
    new = world.secrets.rotate("hello", 3600)
    assert world.push(github_push(sha="1" * 40), secret=old).status == 202
    assert world.push(github_push(sha="2" * 40), secret=new).status == 202


def test_failed_start_stays_pending_then_next_delivery_starts_it_once() -> None:
    world = World(fail_next=1)
    first = world.push(github_push(), delivery="d-1")
    assert first.status == 202
    release = world.releases.get(first.body["release_id"])
    assert release is not None and release.status == "PENDING"
    assert world.executions.started == {}
    replay = world.push(github_push(), delivery="d-1")
    assert replay.status == 200
    assert replay.body["release_id"] == release.id
    assert list(world.executions.started) == [release.execution_name]


def test_sweeper_starts_old_pending_releases_only() -> None:
    # The push reads the clock twice (the release, then the hook's first verified delivery).
    clock = FixedClock(NOW, NOW, "2026-11-27T12:00:30.000Z", "2026-11-27T12:01:30.000Z")
    world = World(fail_next=1, clock=clock)
    release_id = world.push(github_push()).body["release_id"]
    assert world.starter.sweep() == []  # 30 s old: too young
    assert world.starter.sweep() == [release_id]  # 90 s old
    assert len(world.executions.started) == 1


def test_manual_release_by_ref_or_sha() -> None:
    world = World()
    by_ref = world.starter.start_manual("hello", {"ref": "main"}, None)
    by_sha = world.starter.start_manual("hello", {"sha": "abc1234"}, None)
    assert by_ref.status == by_sha.status == 202
    a = world.releases.get(by_ref.body["release_id"])
    b = world.releases.get(by_sha.body["release_id"])
    assert a is not None and b is not None
    assert (a.ref, a.sha, a.trigger) == ("refs/heads/main", "", "manual")
    assert (b.ref, b.sha) == ("abc1234", "abc1234")
    again = world.starter.start_manual("hello", {"ref": "main"}, "key-1")
    same = world.starter.start_manual("hello", {"ref": "main"}, "key-1")
    assert same.status == 200 and same.body["release_id"] == again.body["release_id"]


@pytest.mark.parametrize("body", [{}, {"ref": "a b"}, {"sha": "xyz"}, {"ref": "main", "extra": 1}, []])
def test_manual_release_validation(body: Any) -> None:
    world = World()
    with pytest.raises(ValidationError):
        world.starter.start_manual("hello", body, None)
    assert world.releases.releases == {}
