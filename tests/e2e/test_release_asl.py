"""The release state machine (statemachines/release.asl.json) run for real in moto's Step Functions engine.

Every test starts an execution the way the service does (name = release id, input per docs/design.md),
plays the builder and the approver, and then checks the items the state machine wrote.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import pytest

from chalicelib.local import resources as local_resources
from tests.e2e.asl_harness import SHA_1, SHA_2, AslWorld, wait_until

pytestmark = pytest.mark.e2e

THREE = [{"name": "dev"}, {"name": "test"}, {"name": "prod", "approval": True}]
MAX_TRANSITIONS_PER_STAGE = 12


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def assert_no_locks(world: AslWorld, stages: list[str]) -> None:
    for name in stages:
        state = world.stage_state(name)
        assert "lock_owner" not in state, (name, state)
        assert "lock_acquired_at" not in state, (name, state)


def assert_release_failed(world: AslWorld, arn: str, release_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    execution = world.wait_execution(arn)
    assert execution["status"] == "FAILED", execution
    release = world.release(release_id)
    assert release["status"] == "FAILED"
    assert release["error"] and release["cause"]
    assert parse_time(release["ended_at"]) >= parse_time(release["started_at"])
    return execution, release


def outputs(item: dict[str, Any]) -> dict[str, str]:
    """outputs_json holds the DescribeStacks ``$.Stacks[*].Outputs`` list: [] or [[{OutputKey, OutputValue}...]]."""
    stacks = json.loads(item["outputs_json"])
    return {o["OutputKey"]: o["OutputValue"] for o in (stacks[0] if stacks else [])}


# --- happy paths -----------------------------------------------------------------------------------


def test_happy_path_dev_test_prod_with_approval(world: AslWorld) -> None:
    arn = world.start(world.seed("rel-1", THREE))
    request = world.complete_build()
    assert request == {
        "task_token": request["task_token"],
        "release_id": "rel-1",
        "stack_id": "hello",
        "sha": SHA_1,
        "ref": "refs/heads/main",
        "clone_url": "https://example.test/acme/hello.git",
        "buildspec_path": "buildspec.yml",
        "template_path": "template.yaml",
        "artifact_bucket": "stagecoach-artifacts",
        "region": "us-east-1",
    }
    approval = world.wait_awaiting_approval("rel-1", "prod")
    # prod waits for its approval before taking the lock; dev and test are done by then.
    assert approval["task_token"] and parse_time(approval["approval"]["requested_at"])
    assert world.stage_statuses("rel-1", ["dev", "test"]) == {"dev": "SUCCEEDED", "test": "SUCCEEDED"}
    assert "lock_owner" not in world.stage_state("prod")
    assert world.moto_stack("hello-prod") is None
    world.approve("rel-1", "prod")

    execution = world.wait_execution(arn)
    assert execution["status"] == "SUCCEEDED", execution
    assert json.loads(execution["output"]) == {"release_id": "rel-1", "status": "SUCCEEDED", "build_id": "local:rel-1"}

    release = world.release("rel-1")
    assert release["status"] == "SUCCEEDED"
    assert "gsi2pk" not in release and "gsi2sk" not in release
    assert parse_time(release["started_at"]) <= parse_time(release["ended_at"])
    assert "build" not in release  # build details are the build handler's to record, never overwritten here
    assert "error" not in release and "failed_stage" not in release

    for name in ("dev", "test", "prod"):
        run = world.stage_run("rel-1", name)
        assert run is not None
        assert run["status"] == "SUCCEEDED"
        assert run["no_changes"] is False
        assert "task_token" not in run
        assert parse_time(run["started_at"]) <= parse_time(run["ended_at"])
        changes = json.loads(run["changes_json"])
        assert {(c["Action"], c["LogicalResourceId"], c["ResourceType"]) for c in changes} == {
            ("Add", "Bucket", "AWS::S3::Bucket"),
            ("Add", "Version", "AWS::SSM::Parameter"),
        }
        assert outputs(run)["VersionParameter"] == f"/hello/{name}/version"
        state = world.stage_state(name)
        assert state["status"] == "SUCCEEDED"
        assert state["current_release"] == {
            "release_id": "rel-1",
            "sha": SHA_1,
            "message": "release rel-1",
            "deployed_at": run["ended_at"],
        }
        assert state["outputs_json"] == run["outputs_json"]
        assert world.ssm_value(f"/hello/{name}/version") == SHA_1
        assert world.moto_stack(f"hello-{name}").status == "CREATE_COMPLETE"
        tags = {t["Key"]: t["Value"] for t in world.cfn.describe_stacks(StackName=f"hello-{name}")["Stacks"][0]["Tags"]}
        assert tags == {"stagecoach:stack": "hello", "stagecoach:stage": name}
    prod = world.stage_run("rel-1", "prod")
    assert prod["approval"]["decision"] == "approved" and prod["approval"]["by"] == "alice"
    assert_no_locks(world, ["dev", "test", "prod"])

    counts = world.transitions_per_stage(arn)
    # new stacks: the UPDATE change set is refused first, then CREATE; prod adds the approval wait.
    assert counts[0] <= MAX_TRANSITIONS_PER_STAGE and counts[1] <= MAX_TRANSITIONS_PER_STAGE, counts
    assert counts[2] <= MAX_TRANSITIONS_PER_STAGE + 1, counts


def test_update_of_existing_stacks_then_redeploy_without_changes(world: AslWorld) -> None:
    two = [{"name": "dev"}, {"name": "test"}]
    first = world.start(world.seed("rel-1", two))
    world.complete_build()
    assert world.wait_execution(first)["status"] == "SUCCEEDED"
    stack_ids = {n: world.moto_stack(f"hello-{n}").stack_id for n in ("dev", "test")}

    second = world.start(world.seed("rel-2", two, sha=SHA_2))
    world.complete_build()
    assert world.wait_execution(second)["status"] == "SUCCEEDED"
    for name in ("dev", "test"):
        run = world.stage_run("rel-2", name)
        assert run["status"] == "SUCCEEDED" and run["no_changes"] is False
        assert {c["Action"] for c in json.loads(run["changes_json"])} == {"Modify"}
        assert world.ssm_value(f"/hello/{name}/version") == SHA_2
        assert world.moto_stack(f"hello-{name}").stack_id == stack_ids[name]
        assert world.moto_stack(f"hello-{name}").status == "UPDATE_COMPLETE"
        assert world.stage_state(name)["current_release"]["release_id"] == "rel-2"
    # the common case, an update of an existing stack, is well under the budget.
    assert world.transitions_per_stage(second) == [9, 9]  # the stack settled before the first look: no wait

    # the same sha again: CloudFormation finds no changes; the stage still succeeds.
    third = world.start(world.seed("rel-3", two, sha=SHA_2))
    world.complete_build()
    assert world.wait_execution(third)["status"] == "SUCCEEDED"
    for name in ("dev", "test"):
        run = world.stage_run("rel-3", name)
        assert run["status"] == "SUCCEEDED"
        assert run["no_changes"] is True
        assert json.loads(run["changes_json"]) == []
        assert outputs(run)["VersionParameter"] == f"/hello/{name}/version"
        state = world.stage_state(name)
        assert state["current_release"]["release_id"] == "rel-3" and state["current_release"]["sha"] == SHA_2
    assert world.release("rel-3")["status"] == "SUCCEEDED"
    assert "DeleteEmptyChangeSet" in world.entered_states(third)
    assert world.transitions_per_stage(third) == [11, 11]
    assert_no_locks(world, ["dev", "test"])


# --- build failures --------------------------------------------------------------------------------


def test_build_failure_fails_the_release_without_deploying(world: AslWorld) -> None:
    arn = world.start(world.seed("rel-1", THREE))
    world.fail_build("BuildFailed", "phase BUILD: npm test exited with 1")
    execution, release = assert_release_failed(world, arn, "rel-1")
    assert release["error"] == "BuildFailed"
    assert release["cause"] == "phase BUILD: npm test exited with 1"
    assert execution["error"] == "BuildFailed" and execution["cause"] == "phase BUILD: npm test exited with 1"
    assert "build" not in release  # the build handler's details are not overwritten
    assert "failed_stage" not in release
    assert world.stage_statuses("rel-1", ["dev", "test", "prod"]) == {
        "dev": "SKIPPED",
        "test": "SKIPPED",
        "prod": "SKIPPED",
    }
    assert world.moto_stack("hello-dev") is None
    assert_no_locks(world, ["dev", "test", "prod"])


def test_build_failure_without_a_cause_still_ends_the_release(world: AslWorld) -> None:
    arn = world.start(world.seed("rel-1", [{"name": "dev"}]))
    request = world.next_build_request()
    world.sfn.send_task_failure(taskToken=request["task_token"], error="BuildFailed")
    _, release = assert_release_failed(world, arn, "rel-1")
    assert release["error"] == "BuildFailed" and release["cause"] == "the build failed"


def test_build_timeout_fails_the_release(world: AslWorld) -> None:
    arn = world.start(world.seed("rel-1", THREE, config={"build_timeout_seconds": 1}))
    world.next_build_request()  # the builder never answers
    _, release = assert_release_failed(world, arn, "rel-1")
    assert release["error"] == "BuildTimedOut"
    assert release["cause"] == "the build timed out after 1 s"
    assert "build" not in release


def test_build_result_without_template_url_fails_the_release(world: AslWorld) -> None:
    arn = world.start(world.seed("rel-1", [{"name": "dev"}]))
    request = world.next_build_request()
    world.sfn.send_task_success(taskToken=request["task_token"], output=json.dumps({"build_id": "b-1"}))
    _, release = assert_release_failed(world, arn, "rel-1")
    assert release["error"] == "BuildResultInvalid"


# --- stage failures --------------------------------------------------------------------------------


def test_change_set_failure_at_stage_two_skips_the_rest(world: AslWorld) -> None:
    stages = [
        {"name": "dev"},
        {"name": "test", "parameters": [{"ParameterKey": "Stage", "ParameterValue": "test"}]},  # Sha missing
        {"name": "prod"},
    ]
    arn = world.start(world.seed("rel-1", stages))
    world.complete_build()
    execution, release = assert_release_failed(world, arn, "rel-1")
    assert release["failed_stage"] == "test"
    # CloudFormation refuses the change set when it is created (the emulator as AWS).
    assert release["error"] == "ChangeSetFailed"
    assert "hello-test" in release["cause"] and "Parameters: [Sha] must have values" in release["cause"]
    assert execution["error"] == release["error"] and execution["cause"] == release["cause"]
    assert world.stage_statuses("rel-1", ["dev", "test", "prod"]) == {
        "dev": "SUCCEEDED",
        "test": "FAILED",
        "prod": "SKIPPED",
    }
    run = world.stage_run("rel-1", "test")
    assert run["error"] == release["error"] and run["cause"] == release["cause"]
    assert parse_time(run["ended_at"])
    assert world.stage_state("test")["status"] == "FAILED"
    assert world.stage_state("dev")["current_release"]["release_id"] == "rel-1"
    assert "current_release" not in world.stage_state("test")
    assert world.moto_stack("hello-prod") is None
    assert_no_locks(world, ["dev", "test", "prod"])


def test_stack_rollback_after_execute_fails_the_stage(world: AslWorld) -> None:
    world.fail_next_deploy("hello-test", "ROLLBACK_COMPLETE")
    arn = world.start(world.seed("rel-1", [{"name": "dev"}, {"name": "test"}]))
    world.complete_build()
    _, release = assert_release_failed(world, arn, "rel-1")
    assert release["failed_stage"] == "test"
    assert release["error"] == "DeployFailed"
    assert release["cause"] == (
        "stack hello-test ended in ROLLBACK_COMPLETE: "
        "The following resource(s) failed to create: [Bucket]. Rollback requested by user."
    )
    assert world.stage_run("rel-1", "test")["status"] == "FAILED"
    assert_no_locks(world, ["dev", "test"])


def test_update_rollback_failed_after_execute_blocks_the_stage(world: AslWorld) -> None:
    first = world.start(world.seed("rel-1", [{"name": "dev"}]))
    world.complete_build()
    assert world.wait_execution(first)["status"] == "SUCCEEDED"
    world.fail_next_deploy("hello-dev", "UPDATE_ROLLBACK_FAILED")
    arn = world.start(world.seed("rel-2", [{"name": "dev"}], sha=SHA_2))
    world.complete_build()
    _, release = assert_release_failed(world, arn, "rel-2")
    assert release["failed_stage"] == "dev" and release["error"] == "StackBlocked"
    assert "UPDATE_ROLLBACK_FAILED" in release["cause"]
    run = world.stage_run("rel-2", "dev")
    assert run["status"] == "BLOCKED"
    state = world.stage_state("dev")
    assert state["status"] == "BLOCKED" and state["current_release"]["release_id"] == "rel-1"
    assert_no_locks(world, ["dev"])


def test_approval_rejected(world: AslWorld) -> None:
    arn = world.start(world.seed("rel-1", THREE))
    world.complete_build()
    world.reject("rel-1", "prod", comment="not on a Friday")
    execution, release = assert_release_failed(world, arn, "rel-1")
    assert release["failed_stage"] == "prod"
    assert release["error"] == "ApprovalRejected" and release["cause"] == "not on a Friday"
    assert execution["error"] == "ApprovalRejected"
    run = world.stage_run("rel-1", "prod")
    assert run["status"] == "FAILED" and run["error"] == "ApprovalRejected" and run["cause"] == "not on a Friday"
    assert run["approval"]["decision"] == "rejected" and "task_token" not in run
    assert world.stage_statuses("rel-1", ["dev", "test", "prod"]) == {
        "dev": "SUCCEEDED",
        "test": "SUCCEEDED",
        "prod": "FAILED",
    }
    assert world.moto_stack("hello-prod") is None
    assert world.stage_state("prod")["status"] == "IDLE"  # never locked, never touched
    assert_no_locks(world, ["dev", "test", "prod"])


def test_approval_timeout(world: AslWorld) -> None:
    stages = [{"name": "dev", "approval": True, "approval_timeout_seconds": 1}, {"name": "prod"}]
    arn = world.start(world.seed("rel-1", stages))
    world.complete_build()
    _, release = assert_release_failed(world, arn, "rel-1")
    assert release["failed_stage"] == "dev"
    assert release["error"] == "ApprovalTimedOut"
    assert release["cause"] == "approval timed out after 1 s"
    run = world.stage_run("rel-1", "dev")
    assert run["status"] == "FAILED" and "task_token" not in run
    assert world.stage_statuses("rel-1", ["dev", "prod"]) == {"dev": "FAILED", "prod": "SKIPPED"}
    assert world.moto_stack("hello-dev") is None
    assert_no_locks(world, ["dev", "prod"])


# --- stack states left by someone else ------------------------------------------------------------


def test_rollback_complete_stack_is_deleted_and_created_again(world: AslWorld) -> None:
    world.emulate_aws_stack_rules()
    world.create_stack("hello-dev", "dev")
    old_id = world.moto_stack("hello-dev").stack_id
    world.set_stack_status("hello-dev", "ROLLBACK_COMPLETE")
    arn = world.start(world.seed("rel-1", [{"name": "dev"}]))
    world.complete_build()
    assert world.wait_execution(arn)["status"] == "SUCCEEDED"
    stack = world.moto_stack("hello-dev")
    assert stack.stack_id != old_id and stack.status == "CREATE_COMPLETE"
    states = world.entered_states(arn)
    assert states.count("DeleteRolledBackStack") == 1 and "CreateStackChangeSet" in states
    assert world.stage_run("rel-1", "dev")["status"] == "SUCCEEDED"
    assert_no_locks(world, ["dev"])


def test_update_rollback_failed_stack_blocks_and_is_never_deleted(world: AslWorld) -> None:
    world.emulate_aws_stack_rules()
    world.create_stack("hello-dev", "dev")
    old_id = world.moto_stack("hello-dev").stack_id
    world.set_stack_status("hello-dev", "UPDATE_ROLLBACK_FAILED")
    arn = world.start(world.seed("rel-1", [{"name": "dev"}, {"name": "prod"}]))
    world.complete_build()
    _, release = assert_release_failed(world, arn, "rel-1")
    assert release["failed_stage"] == "dev" and release["error"] == "StackBlocked"
    assert "hello-dev is UPDATE_ROLLBACK_FAILED" in release["cause"]
    assert world.stage_run("rel-1", "dev")["status"] == "BLOCKED"
    assert world.stage_statuses("rel-1", ["dev", "prod"]) == {"dev": "BLOCKED", "prod": "SKIPPED"}
    stack = world.moto_stack("hello-dev")
    assert stack.stack_id == old_id and stack.status == "UPDATE_ROLLBACK_FAILED"
    assert "DeleteRolledBackStack" not in world.entered_states(arn)
    assert_no_locks(world, ["dev", "prod"])


def test_stack_busy_elsewhere_is_waited_for(world: AslWorld) -> None:
    world.emulate_aws_stack_rules()
    world.create_stack("hello-dev", "dev")
    world.set_stack_status("hello-dev", "UPDATE_IN_PROGRESS")
    arn = world.start(world.seed("rel-1", [{"name": "dev"}], sha=SHA_2))
    world.complete_build()
    wait_until(lambda: "WaitForBusyStack" in world.entered_states(arn), 20, what="the busy-stack wait")
    assert world.sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"
    world.set_stack_status("hello-dev", "UPDATE_COMPLETE")
    assert world.wait_execution(arn)["status"] == "SUCCEEDED"
    assert world.ssm_value("/hello/dev/version") == SHA_2
    assert_no_locks(world, ["dev"])


# --- the deploy lock -------------------------------------------------------------------------------


def test_stage_lock_held_by_another_release_is_waited_for(world: AslWorld) -> None:
    state_input = world.seed("rel-2", [{"name": "dev"}])
    world.put(
        {
            "pk": "STACK#hello",
            "sk": "STAGE#dev",
            "status": "DEPLOYING",
            "lock_owner": "rel-1",
            "lock_acquired_at": "2026-11-27T14:00:00.000Z",
        }
    )
    arn = world.start(state_input)
    world.complete_build()
    wait_until(lambda: "AcquireLock" in world.entered_states(arn), 20, what="the lock attempt")
    time.sleep(2)
    # nothing happens while the other release holds the lock
    assert world.sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"
    assert world.stage_run("rel-2", "dev") is None
    assert world.moto_stack("hello-dev") is None
    assert world.stage_state("dev")["lock_owner"] == "rel-1"
    world.ddb.update_item(
        TableName=world.table,
        Key={"pk": {"S": "STACK#hello"}, "sk": {"S": "STAGE#dev"}},
        UpdateExpression="REMOVE lock_owner, lock_acquired_at",
    )
    execution = world.wait_execution(arn)
    assert execution["status"] == "SUCCEEDED"
    run = world.stage_run("rel-2", "dev")
    assert run["status"] == "SUCCEEDED"
    assert world.stage_state("dev")["current_release"]["release_id"] == "rel-2"
    assert_no_locks(world, ["dev"])


# --- the definition itself -------------------------------------------------------------------------


def test_every_placeholder_has_a_substitution_and_back() -> None:
    text = local_resources.RELEASE_DEFINITION.read_text()
    subs = local_resources.substitutions("us-east-1", "t", "https://q", "b")
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
    problems: list[str] = []
    _walk(definition["States"], definition["StartAt"], "", problems)
    assert problems == []
    for name, state in _all_states(definition["States"]):
        assert "Assign" not in state and "Arguments" not in state and "Output" not in state, name
        assert state.get("QueryLanguage", "JSONPath") == "JSONPath", name
        resource = state.get("Resource", "")
        assert "lambda" not in resource and "codebuild" not in resource and "startExecution" not in resource, name
        if resource.endswith(".waitForTaskToken"):
            assert "TimeoutSeconds" in state or "TimeoutSecondsPath" in state, name
        if state["Type"] == "Task" and ("dynamodb" in resource):
            assert state.get("Retry"), f"{name} writes to DynamoDB without a Retry"
        for retrier in state.get("Retry", []):
            assert retrier["MaxAttempts"] >= 1
        for catcher in state.get("Catch", []):
            # aws-sdk error names differ between AWS and moto: catch everything and branch on the cause
            if "aws-sdk:cloudformation" in resource:
                assert catcher["ErrorEquals"] == ["States.ALL"], name


@pytest.mark.parametrize("stage_name", ["dev", "a" * 60, "with_underscore"])
def test_change_set_name_is_valid_for_any_stage(world: AslWorld, stage_name: str) -> None:
    arn = world.start(world.seed("rel_1", [{"name": stage_name, "cfn_stack_name": "hello-x"}]))
    world.complete_build()
    assert world.wait_execution(arn)["status"] == "SUCCEEDED"
    names = [cs.change_set_name for cs in world._cfn_backend().change_sets.values()]
    assert names and all(len(n) <= 128 and n[0].isalpha() and all(c.isalnum() or c == "-" for c in n) for n in names)
