"""The release state machine (statemachines/release.asl.json) run for real in moto's Step Functions engine.

Every test starts an execution the way the service does (name = release id, input per docs/design.md), runs
the stage coordinator on the stage queue, plays the builder and the approver, and then checks the items the
state machine and the coordinator wrote.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import pytest

from chalicelib.domain import deploys
from chalicelib.domain.lanes import DEPLOYING, DRAINING
from chalicelib.local import resources as local_resources
from tests.e2e.asl_harness import SHA_1, SHA_2, AslWorld, wait_until

pytestmark = pytest.mark.e2e

# Release ids (the API refuses anything not shaped like one).
REL_1, REL_2, REL_3 = (f"r{n:026d}" for n in (1, 2, 3))

THREE = [{"name": "dev"}, {"name": "test"}, {"name": "prod", "approval": True}]
# StateEntered events of one stage (EnterStage, CreateChangeSet, DescribeChangeSet, ChangeSetReady,
# ExecuteChangeSet, WatchDeploy, DeploySettled, LeaveStage) when CloudFormation settles before the first look.
DEPLOY = 8
WITH_APPROVAL = DEPLOY + 2  # RequestApproval, Approved
NO_CHANGES = 5  # EnterStage, CreateChangeSet, DescribeChangeSet, ChangeSetReady, LeaveStage
# How an execution ends once a stage passed its deadline.
TIMED_OUT = ["DeployTimedOut", "LeaveStage", "StopRelease", "StageEnded", "ReleaseFailed"]


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def assert_lanes_free(world: AslWorld, stages: list[str]) -> None:
    """Nobody holds or waits for these stages (what every path must leave behind)."""
    for name in stages:
        lane = world.lane(name)
        assert lane.holder is None and lane.waiters == (), (name, lane)


def assert_release_failed(world: AslWorld, arn: str, release_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    execution = world.wait_execution(arn)
    assert execution["status"] == "FAILED", execution
    release = world.release(release_id)
    assert release["status"] == "FAILED"
    assert release["error"] and release["cause"]
    assert parse_time(release["ended_at"]) >= parse_time(release["started_at"])
    return execution, release


def assert_stage_failed(
    world: AslWorld, arn: str, release_id: str, stage: str, status: str = "FAILED"
) -> dict[str, Any]:
    """The release failed at ``stage``: recorded on the release and the stage run, and the execution says so."""
    execution, release = assert_release_failed(world, arn, release_id)
    assert release["failed_stage"] == stage
    run = world.stage_run(release_id, stage)
    assert run is not None
    assert run["status"] == status and run["error"] == release["error"] and run["cause"] == release["cause"]
    assert "task_token" not in run and parse_time(run["ended_at"])
    assert execution["error"] == "StageFailed"
    assert json.loads(execution["cause"]) == {
        "stage": stage,
        "status": status,
        "error": release["error"],
        "cause": release["cause"],
    }
    return release


def outputs(item: dict[str, Any]) -> dict[str, str]:
    """outputs_json holds the stack's DescribeStacks outputs: [{OutputKey, OutputValue}...]."""
    return {o["OutputKey"]: o["OutputValue"] for o in json.loads(item["outputs_json"])}


def tags(world: AslWorld, name: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in world.cfn.describe_stacks(StackName=name)["Stacks"][0]["Tags"]}


def change_set_names(world: AslWorld, stack_name: str) -> set[str]:
    return {cs.change_set_name for cs in world._cfn_backend().change_sets.values() if cs.stack_name == stack_name}


def build_queue_is_empty(world: AslWorld) -> bool:
    url = world.resources.build_queue_url
    return not world.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages")


def deploying(world: AslWorld, release_id: str, target: str) -> None:
    """Start ``release_id`` (seeded) with a deploy of ``target`` that keeps running, and wait until it runs."""
    world.stall_next_deploy(target)
    world.complete_build()
    wait_until(lambda: world.executing_change_set(target), 30, what=f"{release_id} deploying {target}")


def parked(world: AslWorld, release_id: str, stage: str, behind: str) -> dict[str, Any]:
    """Wait until ``release_id`` waits for ``stage`` behind ``behind``; returns its stage run."""

    def check() -> dict[str, Any] | None:
        run = world.stage_run(release_id, stage)
        return run if run and run.get("status") == "WAITING" else None

    run: dict[str, Any] = wait_until(check, 30, what=f"{release_id} waiting for {stage}")
    assert run["waiting_for"] == behind
    assert [w.release_id for w in world.lane(stage).waiters] == [release_id]
    return run


# --- happy paths -----------------------------------------------------------------------------------


def test_happy_path_dev_test_prod_with_approval(world: AslWorld) -> None:
    arn = world.start(world.seed(REL_1, THREE))
    request = world.complete_build()
    assert request == {
        "task_token": request["task_token"],
        "release_id": REL_1,
        "stack_id": "hello",
        "sha": SHA_1,
        "ref": "refs/heads/main",
        "clone_url": "https://example.test/acme/hello.git",
        "buildspec_path": "buildspec.yml",
        "template_path": "template.yaml",
        "artifact_bucket": "stagecoach-artifacts",
        "region": "us-east-1",
    }
    approval = world.wait_awaiting_approval(REL_1, "prod")
    # prod holds its stage with its change set made (nothing executed) while it waits for the approval.
    assert approval["task_token"] and parse_time(approval["approval"]["requested_at"])
    assert world.stage_statuses(REL_1, ["dev", "test"]) == {"dev": "SUCCEEDED", "test": "SUCCEEDED"}
    holder = world.lane("prod").holder
    assert holder is not None and holder.release_id == REL_1
    assert holder.phase == "AWAITING_APPROVAL" and holder.approval_token == approval["task_token"]
    assert world.stage_state("prod")["status"] == "AWAITING_APPROVAL"
    assert world.moto_stack("hello--prod").status == "REVIEW_IN_PROGRESS"
    decided = world.approve(REL_1, "prod")
    assert decided == {
        "release_id": REL_1,
        "stage": "prod",
        "decision": "approved",
        "by": "alice",
        "at": decided["at"],
        "comment": "ship it",
    }

    execution = world.wait_execution(arn)
    assert execution["status"] == "SUCCEEDED", execution
    assert json.loads(execution["output"]) == {"release_id": REL_1, "status": "SUCCEEDED", "build_id": f"local:{REL_1}"}

    release = world.release(REL_1)
    assert release["status"] == "SUCCEEDED"
    assert release["gsi2pk"] == "ACTIVE"  # until the end of its execution is reconciled
    assert parse_time(release["started_at"]) <= parse_time(release["ended_at"])
    assert "build" not in release  # build details are the build handler's to record, never overwritten here
    assert "error" not in release and "failed_stage" not in release

    for name in ("dev", "test", "prod"):
        run = world.stage_run(REL_1, name)
        assert run is not None
        assert run["status"] == "SUCCEEDED"
        assert run["no_changes"] is False
        assert "task_token" not in run and "waiting_for" not in run
        assert parse_time(run["started_at"]) <= parse_time(run["ended_at"])
        changes = json.loads(run["changes_json"])
        assert {(c["Action"], c["LogicalResourceId"], c["ResourceType"]) for c in changes} == {
            ("Add", "Bucket", "AWS::S3::Bucket"),
            ("Add", "Version", "AWS::SSM::Parameter"),
        }
        assert outputs(run)["VersionParameter"] == f"/hello/{name}/version"
        state = world.stage_state(name)
        assert state["status"] == "SUCCEEDED" and state["last_outcome"] == "SUCCEEDED"
        assert state["current_release"] == {
            "release_id": REL_1,
            "order": release["order"],
            "sha": SHA_1,
            "message": f"release {REL_1}",
            "deployed_at": run["ended_at"],
        }
        assert state["outputs_json"] == run["outputs_json"]
        assert world.ssm_value(f"/hello/{name}/version") == SHA_1
        assert world.moto_stack(f"hello--{name}").status == "CREATE_COMPLETE"
        assert tags(world, f"hello--{name}") == {
            "stagecoach:stack": "hello",
            "stagecoach:stage": name,
        }
    prod = world.stage_run(REL_1, "prod")
    assert prod["approval"] == {
        "requested_at": approval["approval"]["requested_at"],
        "decision": "approved",
        "by": "alice",
        "at": decided["at"],
        "comment": "ship it",
    }
    assert_lanes_free(world, ["dev", "test", "prod"])
    assert world.transitions_per_stage(arn) == [DEPLOY, DEPLOY, WITH_APPROVAL]

    # the end of the execution (EventBridge → the reconciler) takes the release out of the ACTIVE index
    assert world.reconcile(REL_1) == "SUCCEEDED: stages freed"
    release = world.release(REL_1)
    assert release["status"] == "SUCCEEDED" and "gsi2pk" not in release and "gsi2sk" not in release


def test_update_of_existing_stacks_then_redeploy_without_changes(world: AslWorld) -> None:
    two = [{"name": "dev"}, {"name": "test"}]
    first = world.start(world.seed(REL_1, two))
    world.complete_build()
    assert world.wait_execution(first)["status"] == "SUCCEEDED"
    stack_ids = {n: world.moto_stack(f"hello--{n}").stack_id for n in ("dev", "test")}

    second = world.start(world.seed(REL_2, two, sha=SHA_2))
    world.complete_build()
    assert world.wait_execution(second)["status"] == "SUCCEEDED"
    for name in ("dev", "test"):
        run = world.stage_run(REL_2, name)
        assert run["status"] == "SUCCEEDED" and run["no_changes"] is False
        assert {c["Action"] for c in json.loads(run["changes_json"])} == {"Modify"}
        assert world.ssm_value(f"/hello/{name}/version") == SHA_2
        assert world.moto_stack(f"hello--{name}").stack_id == stack_ids[name]
        assert world.moto_stack(f"hello--{name}").status == "UPDATE_COMPLETE"
        assert world.stage_state(name)["current_release"]["release_id"] == REL_2
    # the common case, an update of an existing stack that settled before the first look
    assert world.transitions_per_stage(second) == [DEPLOY, DEPLOY]

    # the same sha again: CloudFormation finds no changes; the stage still succeeds.
    third = world.start(world.seed(REL_3, two, sha=SHA_2))
    world.complete_build()
    assert world.wait_execution(third)["status"] == "SUCCEEDED"
    for name in ("dev", "test"):
        run = world.stage_run(REL_3, name)
        assert run["status"] == "SUCCEEDED"
        assert run["no_changes"] is True
        assert json.loads(run["changes_json"]) == []
        assert outputs(run)["VersionParameter"] == f"/hello/{name}/version"
        state = world.stage_state(name)
        assert state["current_release"]["release_id"] == REL_3 and state["current_release"]["sha"] == SHA_2
        # the empty change set is never executed: the coordinator deletes it
        empty, target = deploys.change_set_name(REL_3, name), f"hello--{name}"
        wait_until(lambda e=empty, t=target: e not in change_set_names(world, t), 10, what=f"{empty} deleted")
        assert world.moto_stack(f"hello--{name}").stack_id == stack_ids[name]
    assert world.release(REL_3)["status"] == "SUCCEEDED"
    assert "ExecuteChangeSet" not in world.entered_states(third)
    assert world.transitions_per_stage(third) == [NO_CHANGES, NO_CHANGES]
    assert_lanes_free(world, ["dev", "test"])


def test_a_release_that_carries_its_build_is_not_built_again(world: AslWorld) -> None:
    state_input = world.seed(REL_1, [{"name": "dev"}])
    state_input["build"] = {"build_id": "b-7", "template_url": world.upload_template("builds/hello/b-7.json")}
    arn = world.start(state_input)
    execution = world.wait_execution(arn)
    assert execution["status"] == "SUCCEEDED", execution
    assert json.loads(execution["output"]) == {"release_id": REL_1, "status": "SUCCEEDED", "build_id": "b-7"}
    assert world.entered_states(arn)[:3] == ["MarkRunning", "HasBuild", "Deploy"]
    assert "Build" not in world.entered_states(arn)
    assert build_queue_is_empty(world)
    assert world.stage_run(REL_1, "dev")["status"] == "SUCCEEDED"
    assert world.ssm_value("/hello/dev/version") == SHA_1
    assert_lanes_free(world, ["dev"])


def test_release_cancelled_before_its_execution_started_is_not_run(world: AslWorld) -> None:
    from chalicelib import bootstrap

    state_input = world.seed(REL_1, [{"name": "dev"}])
    cancelled = {"cancelled_by": "carol", "error": "Cancelled", "cause": "cancelled by carol", "ended_at": "x"}
    assert bootstrap.release_repository().end(REL_1, "CANCELLED", cancelled)
    arn = world.start(state_input)
    execution = world.wait_execution(arn)
    assert execution["status"] == "SUCCEEDED", execution
    assert world.entered_states(arn) == ["MarkRunning", "ReleaseNotRunnable"]
    release = world.release(REL_1)
    assert release["status"] == "CANCELLED" and release["cancelled_by"] == "carol"
    assert "started_at" not in release
    assert build_queue_is_empty(world)
    assert world.stage_run(REL_1, "dev") is None
    assert world.get("STACK#hello", "STAGE#dev") is None
    assert world.moto_stack("hello--dev") is None


# --- build failures --------------------------------------------------------------------------------


def test_build_failure_fails_the_release_without_deploying(world: AslWorld) -> None:
    arn = world.start(world.seed(REL_1, THREE))
    world.fail_build("BuildFailed", "phase BUILD: npm test exited with 1")
    execution, release = assert_release_failed(world, arn, REL_1)
    assert release["error"] == "BuildFailed"
    assert release["cause"] == "phase BUILD: npm test exited with 1"
    assert execution["error"] == "BuildFailed" and execution["cause"] == "phase BUILD: npm test exited with 1"
    assert "build" not in release  # the build handler's details are not overwritten
    assert "failed_stage" not in release
    assert world.stage_statuses(REL_1, ["dev", "test", "prod"]) == {
        "dev": "SKIPPED",
        "test": "SKIPPED",
        "prod": "SKIPPED",
    }
    assert world.moto_stack("hello--dev") is None
    for name in ("dev", "test", "prod"):
        assert world.get("STACK#hello", f"STAGE#{name}") is None  # no stage was ever entered
    assert world.coordinator.handled == []


def test_build_failure_without_a_cause_still_ends_the_release(world: AslWorld) -> None:
    arn = world.start(world.seed(REL_1, [{"name": "dev"}]))
    request = world.next_build_request()
    world.sfn.send_task_failure(taskToken=request["task_token"], error="BuildFailed")
    execution, release = assert_release_failed(world, arn, REL_1)
    assert release["error"] == "BuildFailed" and release["cause"] == "the release failed without a cause"
    assert execution["error"] == "BuildFailed" and execution["cause"] == release["cause"]


def test_build_timeout_fails_the_release(world: AslWorld) -> None:
    arn = world.start(world.seed(REL_1, THREE, config={"build_timeout_seconds": 1}))
    world.next_build_request()  # the builder never answers
    _, release = assert_release_failed(world, arn, REL_1)
    assert release["error"] == "BuildTimedOut"
    assert release["cause"] == "the build timed out after 1 s"
    assert "build" not in release


def test_build_result_without_template_url_fails_the_release(world: AslWorld) -> None:
    arn = world.start(world.seed(REL_1, [{"name": "dev"}]))
    request = world.next_build_request()
    world.sfn.send_task_success(taskToken=request["task_token"], output=json.dumps({"build_id": "b-1"}))
    _, release = assert_release_failed(world, arn, REL_1)
    assert release["error"] == "BuildResultInvalid"
    assert release["cause"] == "the build result has no build_id or template_url"


# --- stage failures --------------------------------------------------------------------------------


def test_change_set_failure_at_stage_two_skips_the_rest(world: AslWorld) -> None:
    stages = [{"name": "dev"}, {"name": "test", "parameters": {"Stage": "test"}}, {"name": "prod"}]  # Sha missing
    arn = world.start(world.seed(REL_1, stages))
    world.complete_build()
    release = assert_stage_failed(world, arn, REL_1, "test")
    # CloudFormation refuses the change set when it is created (the emulator as AWS).
    assert release["error"] == "ChangeSetFailed"
    assert "Parameters: [Sha] must have values" in release["cause"]
    assert world.stage_statuses(REL_1, ["dev", "test", "prod"]) == {
        "dev": "SUCCEEDED",
        "test": "FAILED",
        "prod": "SKIPPED",
    }
    assert world.stage_state("test")["status"] == "FAILED"
    assert world.stage_state("dev")["current_release"]["release_id"] == REL_1
    assert "current_release" not in world.stage_state("test")
    assert world.get("STACK#hello", "STAGE#prod") is None
    assert world.moto_stack("hello--prod") is None
    assert world.moto_stack("hello--test") is None  # refused at once: no stack was ever made
    assert_lanes_free(world, ["dev", "test", "prod"])
    # CloudFormation refuses the change set: EnterStage, CreateChangeSet → LeaveStage, StopRelease
    assert world.transitions_per_stage(arn) == [DEPLOY, 4]


def test_stack_rollback_after_execute_fails_the_stage(world: AslWorld) -> None:
    world.fail_next_deploy("hello--test", "ROLLBACK_COMPLETE")
    arn = world.start(world.seed(REL_1, [{"name": "dev"}, {"name": "test"}]))
    world.complete_build()
    release = assert_stage_failed(world, arn, REL_1, "test")
    assert release["error"] == "DeployFailed"
    assert release["cause"].startswith("stack hello--test ended in ROLLBACK_COMPLETE: ")
    assert "emulated failure" in release["cause"]  # the failed resource's own reason, from the stack events
    assert world.stage_state("test")["status"] == "FAILED" and "current_release" not in world.stage_state("test")
    assert world.stage_state("dev")["current_release"]["release_id"] == REL_1
    assert_lanes_free(world, ["dev", "test"])


def test_update_rollback_failed_after_execute_blocks_the_stage(world: AslWorld) -> None:
    first = world.start(world.seed(REL_1, [{"name": "dev"}]))
    world.complete_build()
    assert world.wait_execution(first)["status"] == "SUCCEEDED"
    world.fail_next_deploy("hello--dev", "UPDATE_ROLLBACK_FAILED")
    arn = world.start(world.seed(REL_2, [{"name": "dev"}], sha=SHA_2))
    world.complete_build()
    release = assert_stage_failed(world, arn, REL_2, "dev", status="BLOCKED")
    assert release["error"] == "StackBlocked"
    assert "UPDATE_ROLLBACK_FAILED" in release["cause"]
    state = world.stage_state("dev")
    assert state["status"] == "BLOCKED" and state["current_release"]["release_id"] == REL_1
    assert_lanes_free(world, ["dev"])


def test_approval_rejected(world: AslWorld) -> None:
    arn = world.start(world.seed(REL_1, THREE))
    world.complete_build()
    decided = world.reject(REL_1, "prod", comment="not on a Friday")
    assert decided["decision"] == "rejected" and decided["by"] == "bob"
    release = assert_stage_failed(world, arn, REL_1, "prod")
    assert release["error"] == "ApprovalRejected" and release["cause"] == "rejected by bob: not on a Friday"
    run = world.stage_run(REL_1, "prod")
    assert run["approval"]["decision"] == "rejected" and run["approval"]["comment"] == "not on a Friday"
    assert world.stage_statuses(REL_1, ["dev", "test", "prod"]) == {
        "dev": "SUCCEEDED",
        "test": "SUCCEEDED",
        "prod": "FAILED",
    }
    # the change set was never executed: it goes, with the empty stack it had created
    wait_until(lambda: world.moto_stack("hello--prod") is None, 10, what="the empty hello--prod deleted")
    state = world.stage_state("prod")
    assert state["status"] == "IDLE" and "current_release" not in state  # a rejection deployed nothing
    assert_lanes_free(world, ["dev", "test", "prod"])


def test_approval_timeout(world: AslWorld) -> None:
    stages = [{"name": "dev", "approval": True, "approval_timeout_seconds": 1}, {"name": "prod"}]
    arn = world.start(world.seed(REL_1, stages))
    world.complete_build()
    release = assert_stage_failed(world, arn, REL_1, "dev")
    assert release["error"] == "ApprovalTimedOut"
    assert release["cause"] == "approval timed out after 1 s"
    assert world.stage_statuses(REL_1, ["dev", "prod"]) == {"dev": "FAILED", "prod": "SKIPPED"}
    wait_until(lambda: world.moto_stack("hello--dev") is None, 10, what="the empty hello--dev deleted")
    assert_lanes_free(world, ["dev", "prod"])


# --- the deploy deadline ---------------------------------------------------------------------------


def test_change_set_that_never_gets_ready_times_out_and_frees_the_stage(world: AslWorld) -> None:
    first = world.start(world.seed(REL_1, [{"name": "dev"}]))
    world.complete_build()
    assert world.wait_execution(first)["status"] == "SUCCEEDED"
    world.stall_change_sets("hello--dev")
    arn = world.start(world.seed(REL_2, [{"name": "dev"}], sha=SHA_2, config={"deploy_timeout_seconds": 2}))
    world.complete_build()
    release = assert_stage_failed(world, arn, REL_2, "dev")
    assert release["error"] == "DeployTimedOut"
    assert release["cause"] == "stage dev did not finish within 2 s"
    states = world.entered_states(arn)
    assert states[-6:] == ["ChangeSetReady", *TIMED_OUT]
    assert "ExecuteChangeSet" not in states
    # nothing ran: the stage is free at once and still runs rel-1
    assert_lanes_free(world, ["dev"])
    state = world.stage_state("dev")
    assert state["status"] == "FAILED" and state["current_release"]["release_id"] == REL_1
    assert world.moto_stack("hello--dev").status == "CREATE_COMPLETE"
    assert world.ssm_value("/hello/dev/version") == SHA_1


def test_first_change_set_that_never_gets_ready_times_out_and_leaves_nothing(world: AslWorld) -> None:
    world.stall_change_sets("hello--dev")
    arn = world.start(world.seed(REL_1, [{"name": "dev"}], config={"deploy_timeout_seconds": 2}))
    world.complete_build()
    release = assert_stage_failed(world, arn, REL_1, "dev")
    assert release["error"] == "DeployTimedOut"
    assert world.entered_states(arn)[-6:] == ["ChangeSetReady", *TIMED_OUT]
    # the stack only waited for its first change set (REVIEW_IN_PROGRESS): nothing to drain, both go
    assert_lanes_free(world, ["dev"])
    assert world.stage_state("dev")["status"] == "FAILED"
    wait_until(lambda: world.moto_stack("hello--dev") is None, 10, what="the empty hello--dev deleted")


def test_deploy_that_never_settles_times_out_and_drains_the_stage(world: AslWorld) -> None:
    arn = world.start(world.seed(REL_1, [{"name": "dev"}], config={"deploy_timeout_seconds": 2}))
    deploying(world, REL_1, "hello--dev")
    release = assert_stage_failed(world, arn, REL_1, "dev")
    assert release["error"] == "DeployTimedOut"
    assert release["cause"] == "stage dev did not finish within 2 s"
    assert world.entered_states(arn)[-6:] == ["DeploySettled", *TIMED_OUT]
    # CloudFormation still changes the stack: nobody may enter until it settles
    holder = world.lane("dev").holder
    assert holder is not None and holder.release_id == REL_1 and holder.phase == DRAINING
    assert world.stage_state("dev")["status"] == DRAINING
    assert world.reconcile(REL_1) == "FAILED: a stage is still draining"
    assert world.release(REL_1)["gsi2pk"] == "ACTIVE"  # the sweeper keeps trying

    later = world.start(world.seed(REL_2, [{"name": "dev"}], sha=SHA_2))
    world.complete_build()
    parked(world, REL_2, "dev", behind=REL_1)

    world.finish_deploy("hello--dev")
    assert world.reconcile(REL_1) == "FAILED: stages freed"
    assert "gsi2pk" not in world.release(REL_1)
    run = world.stage_run(REL_1, "dev")  # the deploy did complete: the stage ran rel-1 until rel-2 came
    assert run["status"] == "SUCCEEDED" and run["cause"].endswith("the deploy completed")
    assert world.wait_execution(later)["status"] == "SUCCEEDED"
    assert world.stage_state("dev")["current_release"]["release_id"] == REL_2
    assert world.ssm_value("/hello/dev/version") == SHA_2
    assert_lanes_free(world, ["dev"])


def test_stack_busy_past_the_deadline_fails_the_stage_without_touching_it(world: AslWorld) -> None:
    world.emulate_aws_stack_rules()
    world.create_stack("hello--dev", "dev")
    world.set_stack_status("hello--dev", "UPDATE_IN_PROGRESS")
    arn = world.start(world.seed(REL_1, [{"name": "dev"}], sha=SHA_2, config={"deploy_timeout_seconds": 2}))
    world.complete_build()
    release = assert_stage_failed(world, arn, REL_1, "dev")
    assert release["error"] == "DeployTimedOut"
    assert release["cause"] == "CloudFormation stack hello--dev stayed busy for more than 2 s"
    assert "CreateChangeSet" not in world.entered_states(arn)
    assert world.moto_stack("hello--dev").status == "UPDATE_IN_PROGRESS"
    assert world.ssm_value("/hello/dev/version") == SHA_1
    assert change_set_names(world, "hello--dev") == set()
    assert_lanes_free(world, ["dev"])


# --- stack states left by someone else ------------------------------------------------------------


def test_rollback_complete_stack_is_deleted_and_created_again(world: AslWorld) -> None:
    world.emulate_aws_stack_rules()
    world.create_stack("hello--dev", "dev")
    old_id = world.moto_stack("hello--dev").stack_id
    world.set_stack_status("hello--dev", "ROLLBACK_COMPLETE")
    arn = world.start(world.seed(REL_1, [{"name": "dev"}]))
    world.complete_build()
    assert world.wait_execution(arn)["status"] == "SUCCEEDED"
    stack = world.moto_stack("hello--dev")
    assert stack.stack_id != old_id and stack.status == "CREATE_COMPLETE"
    states = world.entered_states(arn)
    assert states.count("WaitForBusyStack") == 1 and states.count("EnterStage") == 2
    assert states.count("CreateChangeSet") == 1
    assert world.transitions_per_stage(arn) == [DEPLOY + 2]
    assert world.stage_run(REL_1, "dev")["status"] == "SUCCEEDED"
    assert_lanes_free(world, ["dev"])


def test_update_rollback_failed_stack_blocks_and_is_never_deleted(world: AslWorld) -> None:
    world.emulate_aws_stack_rules()
    world.create_stack("hello--dev", "dev")
    old_id = world.moto_stack("hello--dev").stack_id
    world.set_stack_status("hello--dev", "UPDATE_ROLLBACK_FAILED")
    arn = world.start(world.seed(REL_1, [{"name": "dev"}, {"name": "prod"}]))
    world.complete_build()
    release = assert_stage_failed(world, arn, REL_1, "dev", status="BLOCKED")
    assert release["error"] == "StackBlocked"
    assert "hello--dev is UPDATE_ROLLBACK_FAILED" in release["cause"]
    assert world.stage_statuses(REL_1, ["dev", "prod"]) == {"dev": "BLOCKED", "prod": "SKIPPED"}
    stack = world.moto_stack("hello--dev")
    assert stack.stack_id == old_id and stack.status == "UPDATE_ROLLBACK_FAILED"
    assert world.entered_states(arn)[-5:] == ["Deploy", "EnterStage", "StopRelease", "StageEnded", "ReleaseFailed"]
    assert world.stage_state("dev")["status"] == "BLOCKED"
    assert_lanes_free(world, ["dev", "prod"])


@pytest.mark.parametrize("owner", [None, "other"])
def test_stack_not_created_by_stagecoach_is_never_updated(world: AslWorld, owner: str | None) -> None:
    world.create_stack("hello--dev", "dev", owner=owner)
    old_id = world.moto_stack("hello--dev").stack_id
    arn = world.start(world.seed(REL_1, [{"name": "dev"}], sha=SHA_2))
    world.complete_build()
    release = assert_stage_failed(world, arn, REL_1, "dev")
    assert release["error"] == "StackNotOwned"
    why = "carries stagecoach:stack=other" if owner else "has no stagecoach:stack tag"
    assert release["cause"].startswith(f"CloudFormation stack hello--dev {why}")
    stack = world.moto_stack("hello--dev")
    assert stack.stack_id == old_id and stack.status == "CREATE_COMPLETE"
    assert world.ssm_value("/hello/dev/version") == SHA_1
    assert change_set_names(world, "hello--dev") == set()
    assert world.transitions_per_stage(arn) == [2]  # EnterStage, StopRelease
    assert_lanes_free(world, ["dev"])


def test_stack_busy_elsewhere_is_waited_for(world: AslWorld) -> None:
    world.emulate_aws_stack_rules()
    world.create_stack("hello--dev", "dev")
    world.set_stack_status("hello--dev", "UPDATE_IN_PROGRESS")
    arn = world.start(world.seed(REL_1, [{"name": "dev"}], sha=SHA_2))
    world.complete_build()
    world.wait_entered(arn, "WaitForBusyStack")
    assert world.status(arn) == "RUNNING"
    holder = world.lane("dev").holder  # the release holds the stage while CloudFormation is busy
    assert holder is not None and holder.release_id == REL_1 and holder.phase == DEPLOYING
    assert change_set_names(world, "hello--dev") == set()
    world.set_stack_status("hello--dev", "UPDATE_COMPLETE")
    assert world.wait_execution(arn)["status"] == "SUCCEEDED"
    assert world.ssm_value("/hello/dev/version") == SHA_2
    assert_lanes_free(world, ["dev"])


# --- releases meeting at a stage -------------------------------------------------------------------


def test_stage_held_by_another_release_is_waited_for(world: AslWorld) -> None:
    first = world.start(world.seed(REL_1, [{"name": "dev"}]))
    deploying(world, REL_1, "hello--dev")
    second = world.start(world.seed(REL_2, [{"name": "dev"}], sha=SHA_2))
    world.complete_build()
    parked(world, REL_2, "dev", behind=REL_1)
    # nothing happens to the stage while rel-1 deploys it
    assert world.status(second) == "RUNNING"
    assert world.entered_states(second)[-1] == "EnterStage"
    assert deploys.change_set_name(REL_2, "dev") not in change_set_names(world, "hello--dev")
    holder = world.lane("dev").holder
    assert holder is not None and holder.release_id == REL_1 and holder.phase == DEPLOYING

    world.finish_deploy("hello--dev")
    assert world.wait_execution(first)["status"] == "SUCCEEDED"
    assert world.wait_execution(second)["status"] == "SUCCEEDED"
    ran, waited = world.stage_run(REL_1, "dev"), world.stage_run(REL_2, "dev")
    assert ran["status"] == "SUCCEEDED" and waited["status"] == "SUCCEEDED"
    assert parse_time(ran["ended_at"]) <= parse_time(waited["started_at"])
    assert "waiting_for" not in waited
    assert world.stage_state("dev")["current_release"]["release_id"] == REL_2
    assert world.ssm_value("/hello/dev/version") == SHA_2
    assert_lanes_free(world, ["dev"])


def test_a_parked_release_adds_no_history_while_it_waits(world: AslWorld) -> None:
    first = world.start(world.seed(REL_1, [{"name": "dev", "approval": True}], mode="QUEUED"))
    world.complete_build()
    world.wait_awaiting_approval(REL_1, "dev")
    second = world.start(world.seed(REL_2, [{"name": "dev", "approval": True}], sha=SHA_2, mode="QUEUED"))
    world.complete_build()
    parked(world, REL_2, "dev", behind=REL_1)
    before = [len(world.history(arn)) for arn in (first, second)]
    time.sleep(3)  # the interval being measured: three poll intervals of the definition
    after = [len(world.history(arn)) for arn in (first, second)]
    assert after == before, "a waiting release must cost no state transitions"
    assert before[1] <= 30, before

    world.approve(REL_1, "dev")
    assert world.wait_execution(first)["status"] == "SUCCEEDED"
    world.approve(REL_2, "dev")
    assert world.wait_execution(second)["status"] == "SUCCEEDED"
    assert world.stage_state("dev")["current_release"]["release_id"] == REL_2
    assert_lanes_free(world, ["dev"])


def test_stopped_waiting_release_is_cancelled_and_withdrawn(world: AslWorld) -> None:
    first = world.start(world.seed(REL_1, [{"name": "dev", "approval": True}], mode="QUEUED"))
    world.complete_build()
    world.wait_awaiting_approval(REL_1, "dev")
    second = world.start(world.seed(REL_2, [{"name": "dev"}], sha=SHA_2, mode="QUEUED"))
    world.complete_build()
    parked(world, REL_2, "dev", behind=REL_1)

    world.sfn.stop_execution(executionArn=second, error="Cancelled", cause="stopped by the test")
    assert world.reconcile(REL_2) == "CANCELLED: stages freed"
    release = world.release(REL_2)
    assert release["status"] == "CANCELLED" and release["error"] == "Cancelled"
    assert release["cause"] == "stopped by the test" and "gsi2pk" not in release
    run = world.stage_run(REL_2, "dev")
    assert run["status"] == "CANCELLED" and run["cause"] == "stopped by the test" and "task_token" not in run
    lane = world.lane("dev")
    assert lane.waiters == () and lane.holder is not None and lane.holder.release_id == REL_1

    world.approve(REL_1, "dev")
    assert world.wait_execution(first)["status"] == "SUCCEEDED"
    assert world.ssm_value("/hello/dev/version") == SHA_1
    assert world.stage_state("dev")["current_release"]["release_id"] == REL_1
    assert_lanes_free(world, ["dev"])


def test_stopped_holder_is_cancelled_and_the_next_release_enters(world: AslWorld) -> None:
    first = world.start(world.seed(REL_1, [{"name": "dev", "approval": True}], mode="QUEUED"))
    world.complete_build()
    world.wait_awaiting_approval(REL_1, "dev")
    assert world.moto_stack("hello--dev").status == "REVIEW_IN_PROGRESS"
    second = world.start(world.seed(REL_2, [{"name": "dev"}], sha=SHA_2, mode="QUEUED"))
    world.complete_build()
    parked(world, REL_2, "dev", behind=REL_1)

    world.sfn.stop_execution(executionArn=first, error="Cancelled", cause="stopped by the test")
    assert world.reconcile(REL_1) == "CANCELLED: stages freed"
    assert world.release(REL_1)["status"] == "CANCELLED"
    run = world.stage_run(REL_1, "dev")
    assert run["status"] == "CANCELLED" and "task_token" not in run
    assert world.wait_execution(second)["status"] == "SUCCEEDED"
    # rel-1's change set never ran; rel-2 created the stack afresh
    assert deploys.change_set_name(REL_1, "dev") not in change_set_names(world, "hello--dev")
    assert world.moto_stack("hello--dev").status == "CREATE_COMPLETE"
    assert world.ssm_value("/hello/dev/version") == SHA_2
    assert world.stage_state("dev")["current_release"]["release_id"] == REL_2
    assert_lanes_free(world, ["dev"])


def test_stopped_deploying_release_drains_the_stage_then_the_next_enters(world: AslWorld) -> None:
    first = world.start(world.seed(REL_1, [{"name": "dev"}]))
    deploying(world, REL_1, "hello--dev")
    second = world.start(world.seed(REL_2, [{"name": "dev"}], sha=SHA_2))
    world.complete_build()
    parked(world, REL_2, "dev", behind=REL_1)

    world.sfn.stop_execution(executionArn=first, error="Cancelled", cause="stopped by the test")
    assert world.reconcile(REL_1) == "CANCELLED: a stage is still draining"
    assert world.release(REL_1)["status"] == "CANCELLED"
    holder = world.lane("dev").holder
    assert holder is not None and holder.release_id == REL_1 and holder.phase == DRAINING
    assert world.stage_run(REL_2, "dev")["status"] == "WAITING"

    world.finish_deploy("hello--dev")
    assert world.reconcile(REL_1) == "CANCELLED: stages freed"
    run = world.stage_run(REL_1, "dev")
    assert run["status"] == "SUCCEEDED" and run["cause"] == "stopped by the test; the deploy completed"
    assert world.wait_execution(second)["status"] == "SUCCEEDED"
    assert world.stage_state("dev")["current_release"]["release_id"] == REL_2
    assert world.ssm_value("/hello/dev/version") == SHA_2
    assert_lanes_free(world, ["dev"])


def lose_and_resume(world: AslWorld, arn: str, release_id: str, sha: str) -> str:
    """The execution is lost (here: stopped without the reconciler hearing of it) after its build was recorded;
    the release resumes in a new execution, as the reconciler does for a lost one. Returns the new one's ARN."""
    from chalicelib import bootstrap

    world.sfn.stop_execution(executionArn=arn, error="Lost", cause="the emulator restarted")
    template_url = world.upload_template(f"builds/hello/{sha}/template.json")
    build = {"status": "SUCCEEDED", "build_id": f"local:{release_id}", "template_url": template_url}
    bootstrap.release_repository().record_build(release_id, build)
    release = bootstrap.release_repository().get(release_id)
    assert release is not None and release.status == "RUNNING"
    resumed = bootstrap.release_starter().resume(release)
    assert resumed.endswith(f":{release_id}-r2")
    return resumed


def test_resumed_release_skips_the_stages_it_already_deployed(world: AslWorld) -> None:
    world.create_stack("hello--test", "test")
    world.set_stack_status("hello--test", "UPDATE_IN_PROGRESS")
    first = world.start(world.seed(REL_1, [{"name": "dev"}, {"name": "test"}], sha=SHA_2))
    world.complete_build()
    world.wait_entered(first, "WaitForBusyStack")  # at test, after dev
    dev = world.stage_run(REL_1, "dev")
    assert dev is not None and dev["status"] == "SUCCEEDED"
    resumed = lose_and_resume(world, first, REL_1, SHA_2)
    world.set_stack_status("hello--test", "UPDATE_COMPLETE")

    assert world.wait_execution(resumed)["status"] == "SUCCEEDED"
    states = world.entered_states(resumed)
    assert "Build" not in states and states.count("StageAlreadyDeployed") == 1
    assert world.transitions_per_stage(resumed) == [2, DEPLOY]  # EnterStage, StageAlreadyDeployed
    assert world.stage_run(REL_1, "dev") == dev  # untouched
    assert world.stage_run(REL_1, "test")["status"] == "SUCCEEDED"
    release = world.release(REL_1)
    assert release["status"] == "SUCCEEDED" and release["previous_executions"] == [first]
    assert world.ssm_value("/hello/test/version") == SHA_2
    assert_lanes_free(world, ["dev", "test"])

    from chalicelib import bootstrap

    history = bootstrap.release_queries().history(REL_1, None)
    assert [e["execution_arn"] for e in history["executions"]] == [first, resumed]
    names = [e["execution"] for e in history["events"]]
    assert names.count(REL_1) and names == [REL_1] * names.count(REL_1) + [f"{REL_1}-r2"] * names.count(f"{REL_1}-r2")
    raw = bootstrap.release_queries().history(REL_1, "true")["events"]
    starts = [i for i, e in enumerate(raw) if e["type"] == "ExecutionStarted"]
    assert [raw[i]["executionArn"] for i in starts] == [first, resumed] and raw[-1]["type"] == "ExecutionSucceeded"
    assert {e["executionArn"] for e in raw} == {first, resumed}


def test_resumed_release_stopped_while_deploying_drains_its_new_change_set(world: AslWorld) -> None:
    world.create_stack("hello--dev", "dev")
    world.set_stack_status("hello--dev", "UPDATE_IN_PROGRESS")
    first = world.start(world.seed(REL_1, [{"name": "dev"}], sha=SHA_2))
    world.complete_build()
    world.wait_entered(first, "WaitForBusyStack")  # rel-1 holds dev
    world.stall_next_deploy("hello--dev")
    resumed = lose_and_resume(world, first, REL_1, SHA_2)
    world.set_stack_status("hello--dev", "UPDATE_COMPLETE")
    executing = wait_until(lambda: world.executing_change_set("hello--dev"), 30, what="the resumed deploy")
    assert executing.change_set_name == deploys.change_set_name(f"{REL_1}-r2", "dev")
    holder = world.lane("dev").holder
    assert holder is not None and holder.target is not None
    assert holder.target.change_set_name == executing.change_set_name  # not the first execution's

    world.sfn.stop_execution(executionArn=resumed, error="Cancelled", cause="stopped by the test")
    assert world.reconcile(REL_1) == "CANCELLED: a stage is still draining"
    holder = world.lane("dev").holder
    assert holder is not None and holder.phase == DRAINING
    world.finish_deploy("hello--dev")
    assert world.reconcile(REL_1) == "CANCELLED: stages freed"
    assert world.stage_run(REL_1, "dev")["status"] == "SUCCEEDED"
    assert world.stage_state("dev")["current_release"]["release_id"] == REL_1
    assert world.ssm_value("/hello/dev/version") == SHA_2
    assert_lanes_free(world, ["dev"])


# --- the definition itself -------------------------------------------------------------------------


def test_definition_is_the_current_render_of_its_yaml_source() -> None:
    import importlib.util

    source = local_resources.RELEASE_DEFINITION.with_name("render.py")
    spec = importlib.util.spec_from_file_location("render", source)
    assert spec is not None and spec.loader is not None
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    yaml_source = local_resources.RELEASE_DEFINITION.with_suffix(".yaml")
    assert render.render(yaml_source) == local_resources.RELEASE_DEFINITION.read_text(), (
        "statemachines/release.asl.json is stale: run .venv/bin/python statemachines/render.py"
    )


def test_every_placeholder_has_a_substitution_and_back() -> None:
    text = local_resources.RELEASE_DEFINITION.read_text()
    subs = local_resources.substitutions("us-east-1", "t", "https://q", "b", "https://s.fifo")
    assert local_resources.placeholders(text) == set(subs), (local_resources.placeholders(text), set(subs))


def _walk(states: dict[str, Any], start: str, scope: str, problems: list[str]) -> None:
    """Checks one state scope: targets exist, every state reachable, something ends, and recurses."""
    if start not in states:
        problems.append(f"{scope}: StartAt {start} missing")
    edges: dict[str, set[str]] = {}
    terminal = False
    for name, state in states.items():
        targets = set()
        if "Next" in state:
            targets.add(state["Next"])
        if "Default" in state:
            targets.add(state["Default"])
        for choice in state.get("Choices", []):
            targets.add(choice["Next"])
        for catcher in state.get("Catch", []):
            targets.add(catcher["Next"])
        for target in targets:
            if target not in states:
                problems.append(f"{scope}.{name}: Next {target} missing")
        edges[name] = targets
        kind = state["Type"]
        if kind in ("Succeed", "Fail") or state.get("End"):
            terminal = True
            if "Next" in state:
                problems.append(f"{scope}.{name}: both End and Next")
        elif kind == "Choice":
            if "Next" in state or "End" in state:
                problems.append(f"{scope}.{name}: Choice with Next/End")
        elif "Next" not in state:
            problems.append(f"{scope}.{name}: neither Next nor End")
        if kind == "Map":
            processor = state["ItemProcessor"]
            _walk(processor["States"], processor["StartAt"], f"{scope}.{name}", problems)
        if kind == "Parallel":
            for i, branch in enumerate(state["Branches"]):
                _walk(branch["States"], branch["StartAt"], f"{scope}.{name}[{i}]", problems)
    if not terminal:
        problems.append(f"{scope}: no terminal state")
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen or name not in edges:
            continue
        seen.add(name)
        todo.extend(edges[name])
    for name in set(states) - seen:
        problems.append(f"{scope}.{name}: unreachable")


def _all_states(states: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for name, state in states.items():
        out.append((name, state))
        if state["Type"] == "Map":
            out.extend(_all_states(state["ItemProcessor"]["States"]))
    return out


def test_definition_is_structurally_valid_asl() -> None:
    definition = json.loads(local_resources.RELEASE_DEFINITION.read_text())
    assert definition.get("QueryLanguage", "JSONPath") == "JSONPath"
    assert not any(key.startswith("x-") for key in definition), "YAML-only keys must not be rendered"
    problems: list[str] = []
    _walk(definition["States"], definition["StartAt"], "", problems)
    assert problems == []
    asks: dict[str, str] = {}
    for name, state in _all_states(definition["States"]):
        assert "Assign" not in state and "Arguments" not in state and "Output" not in state, name
        assert state.get("QueryLanguage", "JSONPath") == "JSONPath", name
        resource = state.get("Resource", "")
        assert "lambda" not in resource and "codebuild" not in resource and "startExecution" not in resource, name
        if resource.endswith(".waitForTaskToken"):
            assert "TimeoutSeconds" in state or "TimeoutSecondsPath" in state, name
            parameters = state["Parameters"]
            if parameters["QueueUrl"] == "${StageQueueUrl}":
                # one FIFO message group per stack: the coordinator handles a stack's requests one at a time
                assert parameters["MessageGroupId.$"] == "$.stack.id", name
                body = parameters["MessageBody"]
                assert body["token.$"] == "$$.Task.Token" and body["release_id.$"] == "$.release.id", name
                assert body["stage.$"] == "$.stage.name", name
                asks[name] = body["op"]
        if state["Type"] == "Task" and ("dynamodb" in resource):
            assert state.get("Retry"), f"{name} writes to DynamoDB without a Retry"
        for retrier in state.get("Retry", []):
            assert retrier["MaxAttempts"] >= 1
        for catcher in state.get("Catch", []):
            # aws-sdk error names differ between AWS and moto: catch everything and branch on the cause
            if "aws-sdk:cloudformation" in resource:
                assert catcher["ErrorEquals"] == ["States.ALL"], name
    assert asks == {"EnterStage": "enter", "RequestApproval": "approval", "LeaveStage": "leave"}


@pytest.mark.parametrize(("release_id", "stage_name"), [(REL_1, "dev"), ("rel_1", "a" * 32), ("r" * 80, "eu-1")])
def test_change_set_name_is_valid_for_any_stage(world: AslWorld, release_id: str, stage_name: str) -> None:
    arn = world.start(world.seed(release_id, [{"name": stage_name}]))
    world.complete_build()
    assert world.wait_execution(arn)["status"] == "SUCCEEDED"
    names = change_set_names(world, f"hello--{stage_name}")
    assert names == {deploys.change_set_name(release_id, stage_name)}
    assert all(len(n) <= 128 and n[0].isalpha() and all(c.isalnum() or c == "-" for c in n) for n in names)
