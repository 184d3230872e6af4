"""The stage coordinator with in-memory fakes: messages in, lanes, stage runs, releases and tokens out."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from chalicelib.domain.deploys import ChangeSetSnapshot, StackSnapshot
from chalicelib.domain.releases import PipelineConfig, new_release
from chalicelib.domain.stacks import parse_new_stack
from chalicelib.services.ports import ExecutionState
from chalicelib.services.recovery import Reconciler
from chalicelib.services.releases import ReleaseStarter
from chalicelib.services.stages import StageCoordinator
from tests.fakes import (
    CountingMetrics,
    FakeCloudFormation,
    FakeExecutions,
    FixedClock,
    InMemoryLaneStore,
    InMemoryReleaseRepository,
    InMemorySecretStore,
    InMemoryStackRepository,
    RecordingCallbacks,
    stack_body,
)

NOW = "2026-11-27T12:00:00.000Z"
CONFIG = PipelineConfig("arn:aws:states:us-east-1:123456789012:stateMachine:stagecoach-release", "arn:role", 1, 60)
OWNED = {"stagecoach:stack": "hello", "stagecoach:stage": "prod"}


class World:
    """A stack with dev → prod (approval), the coordinator and its fakes."""

    def __init__(self, mode: str = "SUPERSEDED") -> None:
        self.stacks = InMemoryStackRepository()
        self.releases = InMemoryReleaseRepository()
        self.lanes = InMemoryLaneStore(self.stacks, self.releases)
        self.cfn = FakeCloudFormation()
        self.callbacks = RecordingCallbacks()
        self.clock = FixedClock(NOW)
        self.metrics = CountingMetrics()
        body = stack_body(stages=[{"name": "dev"}, {"name": "prod", "approval": True}], execution_mode=mode)
        self.stack = parse_new_stack(body, NOW, uid="s1")
        self.stacks.create(self.stack)
        self.coordinator = StageCoordinator(
            self.lanes, self.releases, self.stacks, self.cfn, self.callbacks, self.clock, self.metrics
        )
        self.tokens = 0

    def release(self, n: int) -> str:
        """Release r0…0<n> of commit n (received in order of n), RUNNING."""
        received = f"2026-11-27T11:00:0{n}.000Z"
        release = new_release(self.stack, f"r{n:026d}", received, CONFIG, sha=str(n) * 40, ref="main")
        self.releases.record(release, [])
        self.releases.start_running(release.id)
        return release.id

    def send(self, op: str, release_id: str, stage: str, **extra: Any) -> str:
        """A message of the state machine; returns its task token."""
        self.tokens += 1
        token = f"{op}-{release_id}-{stage}-{self.tokens}"
        body = {
            "op": op,
            "token": token,
            "release_id": release_id,
            "stage": stage,
            "cfn_stack_name": f"hello--{stage}",
            "role_arn": "arn:role",
            "approval": stage == "prod",
            "execution_name": f"exec-{release_id}",
            "deploy_timeout_seconds": 600,
            **extra,
        }
        self.coordinator.handle(json.dumps(body))
        return token

    def executed(self, stage: str, status: str = "UPDATE_COMPLETE") -> None:
        """CloudFormation finished this stage's deploy."""
        tags = {"stagecoach:stack": "hello", "stagecoach:stage": stage}
        self.cfn.stacks[f"hello--{stage}"] = StackSnapshot(
            f"hello--{stage}", status, tags=tags, outputs=[{"OutputKey": "Url", "OutputValue": f"https://{stage}"}]
        )

    def change_set(self, release_id: str, stage: str, execution: str, changes: int = 1) -> None:
        from chalicelib.domain.deploys import change_set_name

        name = change_set_name(f"exec-{release_id}", stage)
        changed = [{"Action": "Modify", "LogicalResourceId": "Fn", "ResourceType": "AWS::Lambda::Function"}] * changes
        self.cfn.change_sets[(f"hello--{stage}", name)] = ChangeSetSnapshot(
            name, "CREATE_COMPLETE", execution, "", changed
        )

    def run(self, release_id: str, stage: str) -> Any:
        return self.releases.stage_run(release_id, stage)

    def status(self, release_id: str) -> str:
        return str(self.releases.get(release_id).status)


def test_a_release_enters_a_free_stage_with_its_change_set_plan() -> None:
    world = World()
    r1 = world.release(1)
    token = world.send("enter", r1, "dev")
    answer = world.callbacks.succeeded[token]
    assert answer["change_set_type"] == "CREATE"
    assert answer["change_set_name"].startswith("stagecoach-")
    assert answer["deadline"] == "2026-11-27T12:10:00.000Z"
    assert world.run(r1, "dev").status == "DEPLOYING"
    assert world.lanes.lane("hello", "dev").holder.release_id == r1


def test_an_existing_owned_stack_is_updated_and_an_unowned_one_never_touched() -> None:
    world = World()
    world.executed("dev")
    r1 = world.release(1)
    assert world.callbacks.succeeded[world.send("enter", r1, "dev")]["change_set_type"] == "UPDATE"
    world.cfn.stacks["hello--prod"] = StackSnapshot("hello--prod", "UPDATE_COMPLETE", tags={"team": "other"})
    r2 = world.release(2)
    token = world.send("enter", r2, "prod")
    error, cause = world.callbacks.failed[token]
    assert error == "StageFailed"
    assert json.loads(cause)["error"] == "StackNotOwned"
    assert world.status(r2) == "FAILED" and world.releases.get(r2).failed_stage == "prod"
    assert world.lanes.lane("hello", "prod").holder is None


def test_a_waiting_release_parks_and_enters_when_the_holder_leaves() -> None:
    world = World()
    r1, r2 = world.release(1), world.release(2)
    world.send("enter", r1, "dev")
    parked = world.send("enter", r2, "dev")
    assert parked not in world.callbacks.succeeded and parked not in world.callbacks.failed
    run = world.run(r2, "dev")
    assert run.status == "WAITING" and run.waiting_for == r1
    world.executed("dev")
    world.change_set(r1, "dev", "EXECUTE_COMPLETE")
    left = world.send(
        "leave",
        r1,
        "dev",
        change_set_name=world.lanes.lane("hello", "dev").holder.target.change_set_name,
        result={"kind": "executed", "execution_status": "EXECUTE_COMPLETE"},
    )
    assert world.callbacks.succeeded[left]["status"] == "SUCCEEDED"
    assert world.run(r1, "dev").status == "SUCCEEDED"
    assert json.loads(world.releases.run_fields[r1]["dev"]["outputs_json"])[0]["OutputValue"] == "https://dev"
    assert world.callbacks.succeeded[parked]["change_set_type"] == "UPDATE"  # r2 was let in
    lane = world.lanes.lane("hello", "dev")
    assert lane.holder.release_id == r2 and lane.deployed.release_id == r1
    assert world.lanes.states("hello")["dev"].last_outcome == "SUCCEEDED"


def test_an_older_release_never_moves_a_stage_back() -> None:
    world = World()
    r1, r2 = world.release(1), world.release(2)
    world.send("enter", r2, "dev")
    world.executed("dev")
    world.change_set(r2, "dev", "EXECUTE_COMPLETE")
    world.send(
        "leave",
        r2,
        "dev",
        change_set_name=world.lanes.lane("hello", "dev").holder.target.change_set_name,
        result={"kind": "executed"},
    )
    late = world.send("enter", r1, "dev")
    assert world.callbacks.failed[late][0] == "Superseded"
    assert world.status(r1) == "SUPERSEDED" and world.releases.get(r1).superseded_by == r2
    assert world.run(r1, "dev").status == "SUPERSEDED"


def test_a_newer_release_supersedes_one_waiting_for_approval_and_the_approval_then_conflicts() -> None:
    from chalicelib.services.approvals import ApprovalService

    world = World()
    r1, r2 = world.release(1), world.release(2)
    world.send("enter", r1, "prod")
    approval_1 = world.send("approval", r1, "prod")
    assert world.run(r1, "prod").status == "AWAITING_APPROVAL"
    entry_2 = world.send("enter", r2, "prod")
    assert world.callbacks.failed[approval_1][0] == "Superseded"
    assert world.status(r1) == "SUPERSEDED" and world.releases.get(r1).superseded_by == r2
    assert world.callbacks.succeeded[entry_2]["change_set_type"] == "CREATE"
    approvals = ApprovalService(world.releases, world.releases, world.callbacks, world.clock, world.lanes)
    from chalicelib.domain.errors import ConflictError

    with pytest.raises(ConflictError, match=f"superseded by release {r2}"):
        approvals.decide(r1, "prod", True, {}, "alice")


def test_an_approval_given_first_wins_over_a_newer_release() -> None:
    from chalicelib.services.approvals import ApprovalService

    world = World()
    r1, r2 = world.release(1), world.release(2)
    world.send("enter", r1, "prod")
    world.send("approval", r1, "prod")
    approvals = ApprovalService(world.releases, world.releases, world.callbacks, world.clock, world.lanes)
    decided = approvals.decide(r1, "prod", True, {"comment": "ship"}, "alice")
    assert decided["decision"] == "approved"
    assert world.lanes.lane("hello", "prod").holder.phase == "DEPLOYING"
    entry_2 = world.send("enter", r2, "prod")
    assert entry_2 not in world.callbacks.succeeded
    assert world.run(r2, "prod").status == "WAITING"
    assert world.status(r1) == "RUNNING"


def test_an_approval_retried_after_an_outage_is_not_lost() -> None:
    from chalicelib.domain.errors import UnavailableError
    from chalicelib.services.approvals import ApprovalService

    world = World()
    r1 = world.release(1)
    world.send("enter", r1, "prod")
    token = world.send("approval", r1, "prod")
    approvals = ApprovalService(world.releases, world.releases, world.callbacks, world.clock, world.lanes)
    world.callbacks.unavailable = 1
    with pytest.raises(UnavailableError):
        approvals.decide(r1, "prod", True, {}, "alice")
    assert world.releases.waiting_token(r1, "prod") == token  # nothing recorded, the token kept
    assert approvals.decide(r1, "prod", True, {}, "alice")["decision"] == "approved"
    assert token in world.callbacks.succeeded
    assert approvals.decide(r1, "prod", True, {}, "alice")["decision"] == "approved"  # a retry answers again


def test_queued_mode_waits_for_an_older_release_still_building() -> None:
    world = World(mode="QUEUED")
    r1, r2 = world.release(1), world.release(2)
    entry_2 = world.send("enter", r2, "dev")
    assert world.run(r2, "dev").waiting_for == r1
    entry_1 = world.send("enter", r1, "dev")
    assert entry_1 in world.callbacks.succeeded
    world.executed("dev")
    name = world.lanes.lane("hello", "dev").holder.target.change_set_name
    world.change_set(r1, "dev", "EXECUTE_COMPLETE")
    world.send("leave", r1, "dev", change_set_name=name, result={"kind": "executed"})
    assert entry_2 in world.callbacks.succeeded


def test_queued_mode_lets_the_next_in_when_an_older_release_ends_before_the_stage() -> None:
    world = World(mode="QUEUED")
    r1, r2 = world.release(1), world.release(2)
    entry_2 = world.send("enter", r2, "dev")
    assert entry_2 not in world.callbacks.succeeded
    world.releases.end(r1, "FAILED", {"error": "BuildFailed", "cause": "tests failed"})
    world.coordinator.release_ended(world.releases.get(r1), ["dev", "prod"])
    assert entry_2 in world.callbacks.succeeded


def test_a_busy_stack_is_waited_for_then_times_out() -> None:
    world = World()
    world.cfn.stacks["hello--dev"] = StackSnapshot(
        "hello--dev", "UPDATE_IN_PROGRESS", tags=OWNED | {"stagecoach:stage": "dev"}
    )
    r1 = world.release(1)
    busy = world.send("enter", r1, "dev")
    assert world.callbacks.failed[busy][0] == "StackBusy"
    assert world.lanes.lane("hello", "dev").holder.release_id == r1  # it keeps the stage while it waits
    world.clock.times = ["2026-11-27T12:11:00.000Z"]
    late = world.send("enter", r1, "dev")
    error, cause = world.callbacks.failed[late]
    assert error == "StageFailed" and json.loads(cause)["error"] == "DeployTimedOut"
    assert world.lanes.lane("hello", "dev").holder is None


def test_a_rolled_back_creation_is_deleted_before_the_stage_is_created_again() -> None:
    world = World()
    world.cfn.stacks["hello--dev"] = StackSnapshot(
        "hello--dev", "ROLLBACK_COMPLETE", tags=OWNED | {"stagecoach:stage": "dev"}
    )
    r1 = world.release(1)
    token = world.send("enter", r1, "dev")
    assert world.callbacks.failed[token][0] == "StackBusy"
    assert world.cfn.deleted_stacks == ["hello--dev"]


def test_a_failed_deploy_fails_the_release_with_the_stack_s_reason() -> None:
    world = World()
    r1 = world.release(1)
    world.send("enter", r1, "dev")
    name = world.lanes.lane("hello", "dev").holder.target.change_set_name
    world.cfn.stacks["hello--dev"] = StackSnapshot(
        "hello--dev", "UPDATE_ROLLBACK_COMPLETE", failure_reason="Fn: Runtime python2.7 is not supported"
    )
    world.change_set(r1, "dev", "EXECUTE_FAILED")
    token = world.send("leave", r1, "dev", change_set_name=name, result={"kind": "executed"})
    failure = json.loads(world.callbacks.failed[token][1])
    assert failure["error"] == "DeployFailed" and "python2.7" in failure["cause"]
    release = world.releases.get(r1)
    assert release.status == "FAILED" and release.failed_stage == "dev" and "python2.7" in (release.cause or "")
    assert world.lanes.lane("hello", "dev").deployed is None


def test_an_empty_change_set_succeeds_without_changes() -> None:
    world = World()
    world.executed("dev")
    r1 = world.release(1)
    world.send("enter", r1, "dev")
    name = world.lanes.lane("hello", "dev").holder.target.change_set_name
    world.cfn.change_sets[("hello--dev", name)] = ChangeSetSnapshot(
        name, "FAILED", "UNAVAILABLE", "The submitted information didn't contain changes."
    )
    token = world.send("leave", r1, "dev", change_set_name=name, result={"kind": "prepared", "status": "FAILED"})
    assert world.callbacks.succeeded[token]["no_changes"] is True
    assert world.run(r1, "dev").no_changes is True
    assert ("hello--dev", name) in world.cfn.deleted_change_sets
    assert world.lanes.lane("hello", "dev").deployed.release_id == r1


def test_a_rejected_approval_discards_the_change_set_and_the_empty_stack() -> None:
    world = World()
    r1 = world.release(1)
    world.send("enter", r1, "prod")
    world.send("approval", r1, "prod")
    name = world.lanes.lane("hello", "prod").holder.target.change_set_name
    world.cfn.stacks["hello--prod"] = StackSnapshot("hello--prod", "REVIEW_IN_PROGRESS", tags=OWNED)
    world.change_set(r1, "prod", "AVAILABLE")
    token = world.send(
        "leave", r1, "prod", change_set_name=name, result={"Error": "ApprovalRejected", "Cause": "rejected by bob"}
    )
    assert json.loads(world.callbacks.failed[token][1])["error"] == "ApprovalRejected"
    assert world.cfn.deleted_change_sets == [("hello--prod", name)]
    assert world.cfn.deleted_stacks == ["hello--prod"]


def test_a_redelivered_message_is_answered_as_recorded() -> None:
    world = World()
    r1 = world.release(1)
    world.send("enter", r1, "dev")
    name = world.lanes.lane("hello", "dev").holder.target.change_set_name
    world.executed("dev")
    world.change_set(r1, "dev", "EXECUTE_COMPLETE")
    world.send("leave", r1, "dev", change_set_name=name, result={"kind": "executed"})
    commits = world.lanes.commits
    again = world.send("leave", r1, "dev", change_set_name=name, result={"kind": "executed"})
    assert again in world.callbacks.succeeded
    assert world.lanes.commits == commits
    world.releases.releases[r1] = replace(world.releases.get(r1), previous_executions=("arn:lost",))
    resumed = world.send("enter", r1, "dev")  # a resumed execution entering a stage it deployed
    assert world.callbacks.failed[resumed][0] == "StageDone"


def test_a_lost_race_is_retried_from_a_fresh_read() -> None:
    world = World()
    r1 = world.release(1)
    world.lanes.conflict_next = 2
    token = world.send("enter", r1, "dev")
    assert token in world.callbacks.succeeded
    assert world.metrics.counts["LaneConflict"] == 2


def test_messages_of_ended_or_deleted_releases_are_refused() -> None:
    world = World()
    r1 = world.release(1)
    world.releases.end(r1, "CANCELLED", {})
    token = world.send("enter", r1, "dev")
    assert world.callbacks.failed[token][0] == "ReleaseEnded"
    r2 = world.release(2)
    world.stacks.stacks["hello"] = replace(world.stack, uid="s2")  # deleted and created again
    token = world.send("enter", r2, "dev")
    assert world.callbacks.failed[token][0] == "ReleaseEnded"
    assert world.status(r2) == "CANCELLED"


# --- the reconciler ---------------------------------------------------------------------------------


def reconciler(world: World) -> tuple[Reconciler, FakeExecutions]:
    executions = FakeExecutions()
    starter = ReleaseStarter(
        world.stacks,
        world.releases,
        executions,
        InMemorySecretStore(),
        lambda: CONFIG,
        world.clock,
        lambda: "rX",
        world.metrics,
    )
    return Reconciler(world.releases, executions, world.coordinator, starter, world.clock, world.metrics), executions


def test_a_stopped_execution_ends_its_release_cancelled_and_frees_its_stage() -> None:
    world = World()
    recon, executions = reconciler(world)
    r1, r2 = world.release(1), world.release(2)
    world.send("enter", r1, "dev")
    waiting = world.send("enter", r2, "dev")
    arn = world.releases.get(r1).execution_arn
    executions.states[arn] = ExecutionState(
        "ABORTED", "Stopped", "stopped from the console", "2026-11-27T12:05:00.000Z"
    )
    assert recon.reconcile(r1) == "CANCELLED: stages freed"
    release = world.releases.get(r1)
    assert release.status == "CANCELLED" and release.cause == "stopped from the console"
    assert world.run(r1, "dev").status == "CANCELLED"
    assert waiting in world.callbacks.succeeded  # the next release entered
    assert r1 not in world.releases.started()
    assert recon.reconcile(r1) == "CANCELLED: stages freed"  # twice is harmless


def test_a_runtime_error_fails_the_release_with_the_execution_s_cause() -> None:
    world = World()
    recon, executions = reconciler(world)
    r1 = world.release(1)
    arn = world.releases.get(r1).execution_arn
    executions.states[arn] = ExecutionState("FAILED", "States.Runtime", "JSONPath '$.x' could not be found")
    recon.reconcile(r1)
    release = world.releases.get(r1)
    assert (release.status, release.error) == ("FAILED", "States.Runtime")


def test_a_deploying_stage_of_a_cancelled_release_drains_until_cloudformation_settles() -> None:
    world = World()
    recon, executions = reconciler(world)
    r1, r2 = world.release(1), world.release(2)
    world.send("enter", r1, "dev")
    world.change_set(r1, "dev", "EXECUTE_IN_PROGRESS")
    world.executed("dev", "UPDATE_IN_PROGRESS")
    waiting = world.send("enter", r2, "dev")
    executions.states[world.releases.get(r1).execution_arn] = ExecutionState("RUNNING")
    result = recon.cancel(r1, {"reason": "wrong commit"}, "alice")
    assert result["status"] == "CANCELLED" and result["cancelled_by"] == "alice"
    assert world.lanes.lane("hello", "dev").holder.phase == "DRAINING"
    assert waiting not in world.callbacks.succeeded
    assert r1 in world.releases.started()  # kept for the sweeper
    world.change_set(r1, "dev", "EXECUTE_COMPLETE")
    world.executed("dev", "UPDATE_COMPLETE")
    assert recon.sweep()["reconciled"][r1] == "CANCELLED: stages freed"
    assert world.lanes.lane("hello", "dev").deployed.release_id == r1  # CloudFormation finished it
    assert world.run(r1, "dev").status == "SUCCEEDED"
    assert waiting in world.callbacks.succeeded


def test_cancel_is_idempotent_and_refuses_ended_releases() -> None:
    from chalicelib.domain.errors import ConflictError, NotFoundError

    world = World()
    recon, _executions = reconciler(world)
    r1 = world.release(1)
    first = recon.cancel(r1, {}, "alice")
    assert recon.cancel(r1, {}, "bob") == first
    r2 = world.release(2)
    world.releases.end(r2, "SUCCEEDED", {})
    with pytest.raises(ConflictError):
        recon.cancel(r2, {}, "alice")
    with pytest.raises(NotFoundError):
        recon.cancel("nope", {}, "alice")


def test_a_release_whose_execution_was_lost_resumes_in_a_new_execution() -> None:
    world = World()
    recon, executions = reconciler(world)
    r1 = world.release(1)
    world.releases.releases[r1] = replace(
        world.releases.get(r1), build={"status": "SUCCEEDED", "build_id": "b1", "template_url": "https://t"}
    )
    assert recon.reconcile(r1) == "resumed: its execution was lost"
    moved = world.releases.get(r1)
    assert moved.execution_name.endswith("-r2") and moved.previous_executions
    started = json.loads(executions.started[moved.execution_name])
    assert started["build"] == {"build_id": "b1", "template_url": "https://t"}


def test_a_failed_change_set_is_not_put_up_for_approval() -> None:
    world = World()
    r1 = world.release(1)
    world.send("enter", r1, "prod")
    name = world.lanes.lane("hello", "prod").holder.target.change_set_name
    world.cfn.change_sets[("hello--prod", name)] = ChangeSetSnapshot(
        name, "FAILED", "UNAVAILABLE", "Template format error: Unresolved resource dependencies [Nope]"
    )
    token = world.send("approval", r1, "prod", change_set_name=name)
    error, cause = world.callbacks.failed[token]
    assert error == "ChangeSetFailed" and "Unresolved resource dependencies [Nope]" in cause
    assert world.run(r1, "prod") is None or world.run(r1, "prod").status != "AWAITING_APPROVAL"


def test_a_rejection_is_recorded_even_when_the_stage_was_closed_first() -> None:
    """The state machine can leave the stage before the API records the decision (rejection → LeaveStage)."""
    from chalicelib.services.approvals import ApprovalService

    world = World()
    r1 = world.release(1)
    world.send("enter", r1, "prod")
    world.send("approval", r1, "prod")
    name = world.lanes.lane("hello", "prod").holder.target.change_set_name
    world.cfn.stacks["hello--prod"] = StackSnapshot("hello--prod", "REVIEW_IN_PROGRESS", tags=OWNED)
    world.change_set(r1, "prod", "AVAILABLE")

    class FastStateMachine(RecordingCallbacks):
        def fail(self, token: str, error: str, cause: str) -> bool:
            done = super().fail(token, error, cause)
            if error == "ApprovalRejected":  # the execution leaves the stage before decide() goes on
                result = {"Error": error, "Cause": cause}
                world.send("leave", r1, "prod", change_set_name=name, result=result)
            return done

    callbacks = FastStateMachine()
    world.coordinator._callbacks = callbacks
    approvals = ApprovalService(world.releases, world.releases, callbacks, world.clock, world.lanes)
    decided = approvals.decide(r1, "prod", False, {"comment": "not today"}, "bob")
    run = world.run(r1, "prod")
    assert run.status == "FAILED" and run.error == "ApprovalRejected"
    assert run.approval["decision"] == "rejected" and run.approval["by"] == "bob"
    assert approvals.decide(r1, "prod", False, {"comment": "not today"}, "bob") == decided  # a retry answers again
    assert world.lanes.states("hello")["prod"].last_outcome is None  # a rejection deployed nothing


def test_an_approved_change_set_that_can_no_longer_run_is_stale_and_deploys_nothing() -> None:
    from chalicelib.services.approvals import ApprovalService

    world = World()
    world.executed("prod")
    r1 = world.release(1)
    world.send("enter", r1, "prod")
    world.send("approval", r1, "prod")
    approvals = ApprovalService(world.releases, world.releases, world.callbacks, world.clock, world.lanes)
    approvals.decide(r1, "prod", True, {}, "alice")
    name = world.lanes.lane("hello", "prod").holder.target.change_set_name
    # someone updated the stack meanwhile: CloudFormation deleted this change set
    error = {"Error": "CloudFormation.ChangeSetNotFoundException", "Cause": f"ChangeSet [{name}] does not exist"}
    token = world.send("leave", r1, "prod", change_set_name=name, result=error)
    failure = json.loads(world.callbacks.failed[token][1])
    assert failure["error"] == "ChangeSetStale" and "nothing was deployed" in failure["cause"]
    assert world.lanes.lane("hello", "prod").deployed is None
