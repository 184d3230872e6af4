"""Promote, redeploy, rollback and unpin with in-memory fakes: what is refused, what is started."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from chalicelib.domain import lanes
from chalicelib.domain.errors import ConflictError, NotFoundError, ValidationError
from chalicelib.domain.releases import PipelineConfig, new_release
from chalicelib.domain.stacks import parse_new_stack
from chalicelib.services.deployments import DeploymentService
from chalicelib.services.ports import LaneChange
from tests.fakes import (
    CountingMetrics,
    FakeExecutions,
    FixedClock,
    Ids,
    InMemoryLaneStore,
    InMemoryReleaseRepository,
    InMemoryStackRepository,
    stack_body,
)

NOW = "2026-11-27T12:00:00.000Z"
CONFIG = PipelineConfig("arn:aws:states:us-east-1:123456789012:stateMachine:stagecoach-release", "arn:role", 1, 60)
FOREIGN = "r" + "F" * 26
BUILD = {"status": "SUCCEEDED", "build_id": "b-1", "template_url": "https://bucket/t.yaml"}


def built_id(n: int) -> str:
    """A release id like the real ones (r and 26 digits or capitals), distinct from ``Ids()``'s."""
    return f"r{'B' * 25}{n}"


class World:
    def __init__(self) -> None:
        self.stacks = InMemoryStackRepository()
        self.releases = InMemoryReleaseRepository()
        self.lanes = InMemoryLaneStore(self.stacks, self.releases)
        self.executions = FakeExecutions()
        self.stack = parse_new_stack(stack_body(), NOW, uid="s1")
        self.stacks.create(self.stack)
        self.service = DeploymentService(
            self.stacks,
            self.releases,
            self.lanes,
            self.executions,
            lambda: CONFIG,
            FixedClock(NOW),
            Ids(),
            CountingMetrics(),
        )

    def built(self, n: int, build: dict[str, str] | None = None) -> str:
        release = new_release(
            self.stack, built_id(n), f"2026-11-27T11:00:0{n}.000Z", CONFIG, sha=str(n) * 40, ref="main"
        )
        self.releases.record(replace(release, status="SUCCEEDED", build=build or BUILD), [])
        return release.id

    def runs(self, stage: str, release_id: str) -> None:
        lane = self.lanes.lane("hello", stage)
        order = self.releases.get(release_id).order
        deployed = lanes.deploy(lane, lanes.Deployed(release_id, order, "", "", NOW))
        self.lanes.commit(LaneChange("s1", deployed, now=NOW))


def test_promote_starts_a_one_stage_release_with_the_source_build() -> None:
    world = World()
    b1 = world.built(1)
    answer = world.service.promote("hello", "prod", {"release_id": b1}, "alice")
    assert answer["status"] == "PENDING" and answer["trigger"] == "promote"
    promoted = world.releases.get(answer["release_id"])
    assert (promoted.stages, promoted.source_release_id, promoted.requested_by) == (("prod",), b1, "alice")
    assert promoted.order == world.releases.get(b1).order  # the commit's order, not the request's
    started = json.loads(world.executions.started[promoted.execution_name])
    assert started["build"] == {"build_id": "b-1", "template_url": "https://bucket/t.yaml"}
    assert [s["name"] for s in started["stages"]] == ["prod"]


def test_promote_is_a_redeploy_of_what_the_stage_runs_and_refuses_older_builds() -> None:
    world = World()
    b1, b2 = world.built(1), world.built(2)
    world.runs("prod", b2)
    assert world.service.promote("hello", "prod", {"release_id": b2}, "alice")["trigger"] == "redeploy"
    with pytest.raises(ConflictError, match="rollback"):
        world.service.promote("hello", "prod", {"release_id": b1}, "alice")


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({}, ValidationError),
        ({"release_id": 7}, ValidationError),
        ({"release_id": built_id(1), "x": 1}, ValidationError),
        ({"release_id": "b1"}, ValidationError),
    ],
)
def test_promote_bodies_are_checked(body: dict[str, object], error: type[Exception]) -> None:
    world = World()
    world.built(1)
    with pytest.raises(error):
        world.service.promote("hello", "prod", body, "alice")
    assert not world.executions.started


def test_nothing_without_a_successful_build_or_of_another_stack_is_deployed() -> None:
    world = World()
    failed = world.built(1, {"status": "FAILED", "build_id": "b-1"})
    with pytest.raises(ConflictError, match="no successful build"):
        world.service.promote("hello", "prod", {"release_id": failed}, "alice")
    other = parse_new_stack(stack_body(id="other"), NOW, uid="s2")
    world.stacks.create(other)
    foreign = new_release(other, FOREIGN, NOW, CONFIG, sha="9" * 40, ref="main")
    world.releases.record(replace(foreign, build=BUILD), [])
    with pytest.raises(ConflictError, match="another stack"):
        world.service.promote("hello", "prod", {"release_id": FOREIGN}, "alice")
    with pytest.raises(NotFoundError):
        world.service.promote("hello", "nope", {"release_id": failed}, "alice")
    assert not world.executions.started


def test_rollback_pins_the_stage_on_what_it_ran_before() -> None:
    world = World()
    b1, b2 = world.built(1), world.built(2)
    world.runs("prod", b1)
    world.runs("prod", b2)
    answer = world.service.rollback("hello", "prod", {"reason": "errors"}, "alice")
    assert answer["source_release_id"] == b1 and answer["trigger"] == "rollback"
    assert answer["pin"] == {"release_id": b1, "sha": "1" * 40, "by": "alice", "at": NOW, "reason": "errors"}
    assert world.lanes.lane("hello", "prod").pin is not None
    with pytest.raises(ValidationError, match="reason"):
        world.service.rollback("hello", "prod", {}, "alice")
    with pytest.raises(ConflictError, match="already runs"):
        world.service.rollback("hello", "prod", {"release_id": b2, "reason": "x"}, "alice")


def test_a_rollback_of_a_rollback_deploys_the_original_build() -> None:
    world = World()
    b1, b2 = world.built(1), world.built(2)
    world.runs("prod", b1)
    world.runs("prod", b2)
    first = world.service.rollback("hello", "prod", {"reason": "errors"}, "alice")["release_id"]
    world.runs("prod", first)
    world.service.unpin("hello", "prod", "alice")
    world.runs("prod", b2)
    again = world.service.rollback("hello", "prod", {"release_id": first, "reason": "again"}, "bob")
    assert again["source_release_id"] == b1


def test_unpin_needs_a_pin() -> None:
    world = World()
    with pytest.raises(ConflictError, match="not pinned"):
        world.service.unpin("hello", "prod", "alice")
    world.lanes.commit(
        LaneChange("s1", lanes.pin(lanes.Lane("hello", "prod"), lanes.Pin(built_id(1), "", "a", NOW, "x")))
    )
    assert world.service.unpin("hello", "prod", "alice")["pin"] is None
    assert world.lanes.lane("hello", "prod").pin is None
