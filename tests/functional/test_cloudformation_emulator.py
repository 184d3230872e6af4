"""The emulated CloudFormation (chalicelib.local.cloudformation) answers as AWS does, through boto3.

Every test drives the emulator's clock by hand: an operation lasts ``DELAY`` seconds of that clock, so each
state in between is observed deterministically, without sleeping.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from chalicelib.local import cloudformation
from tests.plane import running_plane

DELAY = 10.0
REGION = "us-east-1"
NO_CHANGES = "The submitted information didn't contain changes. Submit different information to create a change set."

TEMPLATE: dict[str, Any] = {
    "AWSTemplateFormatVersion": "2010-09-09",
    "Parameters": {"Sha": {"Type": "String"}, "Stage": {"Type": "String", "Default": "dev"}},
    "Resources": {
        "Version": {
            "Type": "AWS::SSM::Parameter",
            "Properties": {
                "Name": {"Fn::Sub": "/${AWS::StackName}/version"},
                "Type": "String",
                "Value": {"Ref": "Sha"},
            },
        },
    },
    "Outputs": {"VersionName": {"Value": {"Ref": "Version"}}, "Sha": {"Value": {"Ref": "Sha"}}},
}


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float = DELAY) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Iterator[Clock]:
    """Operations take DELAY seconds of a hand-driven clock; DescribeStacks is not stale."""
    fake = Clock()
    previous = cloudformation.configure(delay_seconds=DELAY, stale_seconds=0, clock=fake)
    try:
        yield fake
    finally:
        cloudformation.restore(previous)


@pytest.fixture
def cfn(clock: Clock) -> Iterator[Any]:
    """A CloudFormation client on a fresh emulated account (moto, hardened)."""
    from moto import mock_aws

    from chalicelib.local.emulator import harden_moto

    harden_moto()
    with mock_aws():
        yield boto3.client("cloudformation", region_name=REGION)


def body(template: dict[str, Any] | None = None, **changes: Any) -> str:
    document = copy.deepcopy(template or TEMPLATE)
    document.update(changes)
    return json.dumps(document)


def params(sha: str, **others: str) -> list[dict[str, str]]:
    return [{"ParameterKey": "Sha", "ParameterValue": sha}] + [
        {"ParameterKey": k, "ParameterValue": v} for k, v in others.items()
    ]


def change_set(cfn: Any, stack: str, sha: str, kind: str = "UPDATE", name: str | None = None, **kwargs: Any) -> str:
    if "TemplateURL" not in kwargs and "UsePreviousTemplate" not in kwargs:
        kwargs.setdefault("TemplateBody", body())
    response = cfn.create_change_set(
        StackName=stack,
        ChangeSetName=name or f"cs-{kind.lower()}-{sha}",
        ChangeSetType=kind,
        Parameters=params(sha),
        **kwargs,
    )
    return str(response["Id"])


def describe(cfn: Any, stack: str) -> dict[str, Any]:
    return dict(cfn.describe_stacks(StackName=stack)["Stacks"][0])


def outputs(stack: dict[str, Any]) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def parameters(stack: dict[str, Any]) -> dict[str, str]:
    return {p["ParameterKey"]: p["ParameterValue"] for p in stack.get("Parameters", [])}


def deploy(cfn: Any, clock: Clock, stack: str, sha: str, kind: str = "UPDATE", **kwargs: Any) -> dict[str, Any]:
    """Create a change set, wait for it, execute it and wait for the stack: its final description."""
    change_set_id = change_set(cfn, stack, sha, kind, **kwargs)
    clock.advance()
    assert cfn.describe_change_set(ChangeSetName=change_set_id)["Status"] == "CREATE_COMPLETE"
    cfn.execute_change_set(ChangeSetName=change_set_id)
    clock.advance()
    return describe(cfn, stack)


def error_of(call: Any, **kwargs: Any) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    error = caught.value.response
    return error["Error"]["Code"], error["Error"]["Message"], error["ResponseMetadata"]["HTTPStatusCode"]


def ssm_value(name: str) -> str | None:
    ssm = boto3.client("ssm", region_name=REGION)
    try:
        return str(ssm.get_parameter(Name=name)["Parameter"]["Value"])
    except ssm.exceptions.ParameterNotFound:
        return None


# --- 1. asynchronous change sets ------------------------------------------------------------------------


def test_change_set_is_created_asynchronously(cfn: Any, clock: Clock) -> None:
    change_set_id = change_set(cfn, "app", "1", "CREATE")
    seen = cfn.describe_change_set(ChangeSetName=change_set_id)
    assert (seen["Status"], seen["ExecutionStatus"]) == ("CREATE_PENDING", "UNAVAILABLE")
    assert describe(cfn, "app")["StackStatus"] == "REVIEW_IN_PROGRESS"
    clock.advance(DELAY / 2)
    seen = cfn.describe_change_set(ChangeSetName=change_set_id)
    assert (seen["Status"], seen["ExecutionStatus"]) == ("CREATE_IN_PROGRESS", "UNAVAILABLE")
    clock.advance(DELAY / 2)
    seen = cfn.describe_change_set(ChangeSetName=change_set_id)
    assert (seen["Status"], seen["ExecutionStatus"]) == ("CREATE_COMPLETE", "AVAILABLE")
    assert [c["ResourceChange"] for c in seen["Changes"]] == [
        {"Action": "Add", "LogicalResourceId": "Version", "ResourceType": "AWS::SSM::Parameter"}
    ]
    assert parameters(seen) == {"Sha": "1", "Stage": "dev"}


def test_change_set_without_changes_fails_with_cloudformations_reason(cfn: Any, clock: Clock) -> None:
    deploy(cfn, clock, "app", "1", "CREATE")
    change_set_id = change_set(cfn, "app", "1", name="same-again")
    assert cfn.describe_change_set(ChangeSetName=change_set_id)["Status"] == "CREATE_PENDING"
    clock.advance()
    seen = cfn.describe_change_set(ChangeSetName=change_set_id)
    assert (seen["Status"], seen["ExecutionStatus"], seen["StatusReason"]) == ("FAILED", "UNAVAILABLE", NO_CHANGES)
    assert seen["Changes"] == []


def test_changes_list_modified_resources_with_their_cause(cfn: Any, clock: Clock) -> None:
    deploy(cfn, clock, "app", "1", "CREATE")
    template = copy.deepcopy(TEMPLATE)
    template["Resources"]["Queue"] = {"Type": "AWS::SQS::Queue"}
    change_set_id = change_set(cfn, "app", "2", TemplateBody=body(template))
    clock.advance()
    changes = [c["ResourceChange"] for c in cfn.describe_change_set(ChangeSetName=change_set_id)["Changes"]]
    assert changes == [
        {
            "Action": "Modify",
            "LogicalResourceId": "Version",
            "PhysicalResourceId": "/app/version",
            "ResourceType": "AWS::SSM::Parameter",
            "Replacement": "False",
            "Scope": ["Properties"],
            "Details": [
                {
                    "Target": {"Attribute": "Properties", "Name": "Value", "RequiresRecreation": "Never"},
                    "Evaluation": "Static",
                    "ChangeSource": "ParameterReference",
                    "CausingEntity": "Sha",
                }
            ],
        },
        {"Action": "Add", "LogicalResourceId": "Queue", "ResourceType": "AWS::SQS::Queue"},
    ]


def test_new_stack_tags_change_every_taggable_resource(cfn: Any, clock: Clock) -> None:
    deploy(cfn, clock, "app", "1", "CREATE", Tags=[{"Key": "release", "Value": "r1"}])
    retag = change_set(cfn, "app", "1", name="retag", Tags=[{"Key": "release", "Value": "r2"}])
    clock.advance()
    seen = cfn.describe_change_set(ChangeSetName=retag)
    assert seen["Status"] == "CREATE_COMPLETE"
    assert [c["ResourceChange"] for c in seen["Changes"]] == [
        {
            "Action": "Modify",
            "LogicalResourceId": "Version",
            "PhysicalResourceId": "/app/version",
            "ResourceType": "AWS::SSM::Parameter",
            "Replacement": "False",
            "Scope": ["Tags"],
            "Details": [
                {
                    "Target": {"Attribute": "Tags", "RequiresRecreation": "Never"},
                    "Evaluation": "Static",
                    "ChangeSource": "DirectModification",
                }
            ],
        }
    ]
    cfn.execute_change_set(ChangeSetName=retag)
    clock.advance()
    assert describe(cfn, "app")["Tags"] == [{"Key": "release", "Value": "r2"}]
    same = change_set(cfn, "app", "1", name="same", Tags=[{"Key": "release", "Value": "r2"}])
    clock.advance()
    assert cfn.describe_change_set(ChangeSetName=same)["StatusReason"] == NO_CHANGES


def test_with_no_delay_everything_completes_at_the_first_read(cfn: Any, clock: Clock) -> None:
    cloudformation.configure(delay_seconds=0)
    change_set_id = change_set(cfn, "app", "1", "CREATE")
    assert cfn.describe_change_set(ChangeSetName=change_set_id)["Status"] == "CREATE_COMPLETE"
    cfn.execute_change_set(ChangeSetName=change_set_id)
    assert describe(cfn, "app")["StackStatus"] == "CREATE_COMPLETE"
    assert ssm_value("/app/version") == "1"


# --- 2. asynchronous stack operations ----------------------------------------------------------------------


def test_create_change_set_creates_the_stack_in_review_then_executes(cfn: Any, clock: Clock) -> None:
    first = change_set(cfn, "app", "1", "CREATE", name="first")
    stack_id = describe(cfn, "app")["StackId"]
    second = change_set(cfn, "app", "2", "CREATE", name="second")  # a REVIEW_IN_PROGRESS stack takes CREATE again
    assert cfn.describe_change_set(ChangeSetName=second)["StackId"] == stack_id
    clock.advance()
    cfn.execute_change_set(ChangeSetName=second)
    stack = describe(cfn, "app")
    assert (stack["StackStatus"], stack["StackStatusReason"]) == ("CREATE_IN_PROGRESS", "User Initiated")
    assert cfn.describe_change_set(ChangeSetName=second)["ExecutionStatus"] == "EXECUTE_IN_PROGRESS"
    assert "Outputs" not in stack and ssm_value("/app/version") is None
    clock.advance()
    stack = describe(cfn, "app")
    assert stack["StackStatus"] == "CREATE_COMPLETE" and "StackStatusReason" not in stack
    assert outputs(stack) == {"VersionName": "/app/version", "Sha": "2"}
    assert ssm_value("/app/version") == "2"
    assert cfn.describe_change_set(ChangeSetName=second)["ExecutionStatus"] == "EXECUTE_COMPLETE"
    code, message, status = error_of(cfn.describe_change_set, ChangeSetName=first)
    assert (code, message, status) == ("ChangeSetNotFound", f"ChangeSet [{first}] does not exist", 404)


def test_update_is_in_progress_for_the_delay_then_complete(cfn: Any, clock: Clock) -> None:
    deploy(cfn, clock, "app", "1", "CREATE")
    other = change_set(cfn, "app", "3", name="other")
    executed = change_set(cfn, "app", "2", name="executed")
    clock.advance()
    cfn.execute_change_set(ChangeSetName=executed)
    during = describe(cfn, "app")
    assert during["StackStatus"] == "UPDATE_IN_PROGRESS"
    started = during["LastUpdatedTime"]
    assert outputs(during)["Sha"] == "1" and ssm_value("/app/version") == "1"
    assert cfn.describe_change_set(ChangeSetName=executed)["ExecutionStatus"] == "EXECUTE_IN_PROGRESS"
    # executing a change set deletes the stack's other change sets, not the executed one
    assert error_of(cfn.describe_change_set, ChangeSetName=other)[0] == "ChangeSetNotFound"
    clock.advance(DELAY - 0.1)
    assert describe(cfn, "app")["StackStatus"] == "UPDATE_IN_PROGRESS"
    clock.advance(0.1)
    after = describe(cfn, "app")
    assert (after["StackStatus"], after["LastUpdatedTime"]) == ("UPDATE_COMPLETE", started)
    assert outputs(after)["Sha"] == "2" and parameters(after) == {"Sha": "2", "Stage": "dev"}
    assert ssm_value("/app/version") == "2"
    assert cfn.describe_change_set(ChangeSetName=executed)["ExecutionStatus"] == "EXECUTE_COMPLETE"


def test_describe_stacks_is_stale_right_after_execute(cfn: Any, clock: Clock) -> None:
    cloudformation.configure(stale_seconds=3)
    created = deploy(cfn, clock, "app", "1", "CREATE")
    change_set_id = change_set(cfn, "app", "2")
    clock.advance()
    cfn.execute_change_set(ChangeSetName=change_set_id)
    for name in ("app", created["StackId"]):
        stale = describe(cfn, name)
        assert stale["StackStatus"] == "CREATE_COMPLETE"
        assert stale["LastUpdatedTime"] == created["LastUpdatedTime"]
        assert outputs(stale)["Sha"] == "1"
    clock.advance(3)
    fresh = describe(cfn, "app")
    assert fresh["StackStatus"] == "UPDATE_IN_PROGRESS" and fresh["LastUpdatedTime"] > created["LastUpdatedTime"]


def test_stale_view_keeps_the_previous_outputs_even_when_the_deploy_is_faster(cfn: Any, clock: Clock) -> None:
    cloudformation.configure(stale_seconds=DELAY * 2)
    deploy(cfn, clock, "app", "1", "CREATE")
    clock.advance(DELAY * 2)
    change_set_id = change_set(cfn, "app", "2")
    clock.advance()
    cfn.execute_change_set(ChangeSetName=change_set_id)
    clock.advance()
    stale = describe(cfn, "app")
    assert (stale["StackStatus"], outputs(stale)["Sha"], parameters(stale)["Sha"]) == ("CREATE_COMPLETE", "1", "1")
    assert ssm_value("/app/version") == "2"  # the deploy is done, the read is not there yet
    clock.advance(DELAY)
    assert outputs(describe(cfn, "app"))["Sha"] == "2"


def test_delete_stack_is_in_progress_then_gone(cfn: Any, clock: Clock) -> None:
    stack_id = deploy(cfn, clock, "app", "1", "CREATE")["StackId"]
    leftover = change_set(cfn, "app", "2")
    cfn.delete_stack(StackName="app")
    stack = describe(cfn, "app")
    assert (stack["StackStatus"], stack["StackStatusReason"]) == ("DELETE_IN_PROGRESS", "User Initiated")
    clock.advance()
    code, message, status = error_of(cfn.describe_stacks, StackName="app")
    assert (code, message, status) == ("ValidationError", "Stack with id app does not exist", 400)
    gone = cfn.describe_stacks(StackName=stack_id)["Stacks"][0]
    assert gone["StackStatus"] == "DELETE_COMPLETE" and "DeletionTime" in gone
    assert ssm_value("/app/version") is None
    assert error_of(cfn.describe_change_set, ChangeSetName=leftover)[0] == "ChangeSetNotFound"
    cfn.delete_stack(StackName="app")  # deleting what is gone is no error, as on AWS
    cfn.delete_stack(StackName=stack_id)


def test_delete_stack_refused_while_it_updates(cfn: Any, clock: Clock) -> None:
    deploy(cfn, clock, "app", "1", "CREATE")
    change_set_id = change_set(cfn, "app", "2")
    clock.advance()
    cfn.execute_change_set(ChangeSetName=change_set_id)
    code, message, _ = error_of(cfn.delete_stack, StackName="app")
    assert (code, message) == ("ValidationError", "Stack [app] cannot be deleted while in status UPDATE_IN_PROGRESS")


# --- 3. refusals ----------------------------------------------------------------------------------------------


def test_update_change_set_of_a_missing_or_unreviewed_stack(cfn: Any, clock: Clock) -> None:
    assert error_of(cfn.create_change_set, StackName="nope", ChangeSetName="cs", TemplateBody=body()) == (
        "ValidationError",
        "Stack [nope] does not exist",
        400,
    )
    change_set(cfn, "review", "1", "CREATE")
    code, message, _ = error_of(
        cfn.create_change_set, StackName="review", ChangeSetName="cs", TemplateBody=body(), Parameters=params("2")
    )
    assert (code, message) == ("ValidationError", "Stack [review] does not exist")


@pytest.mark.parametrize(
    "status",
    [
        "ROLLBACK_COMPLETE",
        "UPDATE_IN_PROGRESS",
        "UPDATE_ROLLBACK_IN_PROGRESS",
        "UPDATE_ROLLBACK_FAILED",
        "DELETE_FAILED",
    ],
)
def test_update_change_set_refused_in_states_aws_refuses(cfn: Any, clock: Clock, status: str) -> None:
    stack_id = deploy(cfn, clock, "app", "1", "CREATE")["StackId"]
    cloudformation.set_stack_status("app", status)
    code, message, http_status = error_of(
        cfn.create_change_set, StackName="app", ChangeSetName="cs", TemplateBody=body(), Parameters=params("2")
    )
    assert (code, message, http_status) == (
        "ValidationError",
        f"Stack:{stack_id} is in {status} state and can not be updated.",
        400,
    )
    assert all(summary["ChangeSetName"] != "cs" for summary in cfn.list_change_sets(StackName="app")["Summaries"])


def test_update_failed_stack_can_be_updated(cfn: Any, clock: Clock) -> None:
    deploy(cfn, clock, "app", "1", "CREATE")
    cloudformation.set_stack_status("app", "UPDATE_FAILED")
    assert deploy(cfn, clock, "app", "2")["StackStatus"] == "UPDATE_COMPLETE"


def test_create_change_set_of_an_existing_stack(cfn: Any, clock: Clock) -> None:
    deploy(cfn, clock, "app", "1", "CREATE")
    code, message, _ = error_of(
        cfn.create_change_set,
        StackName="app",
        ChangeSetName="again",
        ChangeSetType="CREATE",
        TemplateBody=body(),
        Parameters=params("2"),
    )
    assert (code, message) == (
        "ValidationError",
        "Stack [app] already exists and cannot be created again with the changeSet [again].",
    )


def test_execute_refused_unless_available_and_the_stack_idle(cfn: Any, clock: Clock) -> None:
    deploy(cfn, clock, "app", "1", "CREATE")
    pending = change_set(cfn, "app", "2", name="pending")
    assert error_of(cfn.execute_change_set, ChangeSetName=pending) == (
        "InvalidChangeSetStatus",
        f"ChangeSet [{pending}] cannot be executed in its current execution status of [UNAVAILABLE]",
        400,
    )
    empty = change_set(cfn, "app", "1", name="empty")
    clock.advance()
    assert error_of(cfn.execute_change_set, ChangeSetName=empty)[0] == "InvalidChangeSetStatus"
    cloudformation.set_stack_status("app", "UPDATE_IN_PROGRESS")
    code, message, status = error_of(cfn.execute_change_set, ChangeSetName=pending)
    assert (code, status) == ("InvalidChangeSetStatus", 400) and "UPDATE_IN_PROGRESS" in message
    cloudformation.set_stack_status("app", "UPDATE_COMPLETE")
    cfn.execute_change_set(ChangeSetName=pending)
    clock.advance()
    assert error_of(cfn.execute_change_set, ChangeSetName=pending) == (
        "InvalidChangeSetStatus",
        f"ChangeSet [{pending}] cannot be executed in its current execution status of [EXECUTE_COMPLETE]",
        400,
    )


def test_change_set_lookups_and_deletion(cfn: Any, clock: Clock) -> None:
    assert error_of(cfn.describe_change_set, ChangeSetName="nope", StackName="app") == (
        "ChangeSetNotFound",
        "ChangeSet [nope] does not exist",
        404,
    )
    assert error_of(cfn.delete_change_set, ChangeSetName="nope")[0] == "ChangeSetNotFound"
    change_set_id = change_set(cfn, "app", "1", "CREATE")
    assert error_of(cfn.delete_change_set, ChangeSetName=change_set_id)[0] == "InvalidChangeSetStatus"
    clock.advance()
    cfn.delete_change_set(ChangeSetName=change_set_id)
    assert error_of(cfn.describe_change_set, ChangeSetName=change_set_id)[0] == "ChangeSetNotFound"


# --- 4. failures and rollbacks ---------------------------------------------------------------------------


def test_failed_update_rolls_back_to_the_previous_stack(cfn: Any, clock: Clock) -> None:
    deploy(cfn, clock, "app", "1", "CREATE")
    cloudformation.fail_next_deploy("app", "Resource handler returned message: quota exceeded")
    template = copy.deepcopy(TEMPLATE)
    template["Outputs"]["Extra"] = {"Value": "x"}
    change_set_id = change_set(cfn, "app", "2", TemplateBody=body(template))
    clock.advance()
    cfn.execute_change_set(ChangeSetName=change_set_id)
    assert describe(cfn, "app")["StackStatus"] == "UPDATE_IN_PROGRESS"
    clock.advance()
    rolling = describe(cfn, "app")
    reason = "The following resource(s) failed to update: [Version]."
    assert (rolling["StackStatus"], rolling["StackStatusReason"]) == ("UPDATE_ROLLBACK_IN_PROGRESS", reason)
    clock.advance()
    stack = describe(cfn, "app")
    assert (stack["StackStatus"], stack["StackStatusReason"]) == ("UPDATE_ROLLBACK_COMPLETE", reason)
    assert outputs(stack) == {"VersionName": "/app/version", "Sha": "1"}
    assert parameters(stack) == {"Sha": "1", "Stage": "dev"}
    template_body = cfn.get_template(StackName="app")["TemplateBody"]  # botocore decodes a JSON template
    assert (json.loads(template_body) if isinstance(template_body, str) else template_body) == TEMPLATE
    assert ssm_value("/app/version") == "1"
    assert cfn.describe_change_set(ChangeSetName=change_set_id)["ExecutionStatus"] == "EXECUTE_FAILED"
    events = cfn.describe_stack_events(StackName="app")["StackEvents"]
    failed = next(e for e in events if e["LogicalResourceId"] == "Version")
    assert (failed["ResourceStatus"], failed["ResourceStatusReason"]) == (
        "UPDATE_FAILED",
        "Resource handler returned message: quota exceeded",
    )
    # the failed change set stays (EXECUTE_FAILED), so the retry needs another name
    assert deploy(cfn, clock, "app", "2", name="retry")["StackStatus"] == "UPDATE_COMPLETE"


def test_failed_create_rolls_back_and_the_stack_must_be_deleted(cfn: Any, clock: Clock) -> None:
    cloudformation.fail_next_deploy("app", "bucket quota", final_status="ROLLBACK_COMPLETE")
    change_set_id = change_set(cfn, "app", "1", "CREATE")
    clock.advance()
    cfn.execute_change_set(ChangeSetName=change_set_id)
    assert describe(cfn, "app")["StackStatus"] == "CREATE_IN_PROGRESS"
    clock.advance()
    reason = "The following resource(s) failed to create: [Version]. Rollback requested by user."
    assert (describe(cfn, "app")["StackStatus"], describe(cfn, "app")["StackStatusReason"]) == (
        "ROLLBACK_IN_PROGRESS",
        reason,
    )
    clock.advance()
    stack = describe(cfn, "app")
    assert (stack["StackStatus"], stack["StackStatusReason"]) == ("ROLLBACK_COMPLETE", reason)
    assert "Outputs" not in stack and ssm_value("/app/version") is None
    assert error_of(
        cfn.create_change_set, StackName="app", ChangeSetName="fix", TemplateBody=body(), Parameters=params("2")
    )[1].endswith("is in ROLLBACK_COMPLETE state and can not be updated.")
    cfn.delete_stack(StackName="app")
    clock.advance()
    assert deploy(cfn, clock, "app", "2", "CREATE")["StackStatus"] == "CREATE_COMPLETE"
    assert ssm_value("/app/version") == "2"


def test_rollback_can_fail_and_block_the_stack(cfn: Any, clock: Clock) -> None:
    deploy(cfn, clock, "app", "1", "CREATE")
    cloudformation.fail_next_deploy("app", "denied", final_status="UPDATE_ROLLBACK_FAILED", resource="Version")
    stack = deploy(cfn, clock, "app", "2")
    assert stack["StackStatus"] == "UPDATE_ROLLBACK_IN_PROGRESS"
    clock.advance()
    stack = describe(cfn, "app")
    assert stack["StackStatus"] == "UPDATE_ROLLBACK_FAILED"
    assert stack["StackStatusReason"] == "The following resource(s) failed to update: [Version]."
    assert error_of(
        cfn.create_change_set, StackName="app", ChangeSetName="fix", TemplateBody=body(), Parameters=params("3")
    )[1].endswith("is in UPDATE_ROLLBACK_FAILED state and can not be updated.")


def test_fail_next_deploy_checks_the_final_status() -> None:
    with pytest.raises(ValueError, match="final_status"):
        cloudformation.fail_next_deploy("app", "x", final_status="UPDATE_COMPLETE")


def test_template_metadata_fails_the_resource_until_it_is_removed(cfn: Any, clock: Clock) -> None:
    deploy(cfn, clock, "app", "1", "CREATE")
    template = copy.deepcopy(TEMPLATE)
    template["Resources"]["Queue"] = {
        "Type": "AWS::SQS::Queue",
        "Metadata": {"Stagecoach::Emulator": {"FailDeploy": "queue limit reached"}},
    }
    deploy(cfn, clock, "app", "2", TemplateBody=body(template))
    clock.advance()
    stack = describe(cfn, "app")
    assert stack["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    assert stack["StackStatusReason"] == "The following resource(s) failed to create: [Queue]."
    events = cfn.describe_stack_events(StackName="app")["StackEvents"]
    queue = next(e for e in events if e["LogicalResourceId"] == "Queue")
    assert (queue["ResourceType"], queue["ResourceStatus"], queue["ResourceStatusReason"]) == (
        "AWS::SQS::Queue",
        "CREATE_FAILED",
        "queue limit reached",
    )
    assert boto3.client("sqs", region_name=REGION).list_queues().get("QueueUrls", []) == []
    del template["Resources"]["Queue"]["Metadata"]
    assert deploy(cfn, clock, "app", "2", name="fixed", TemplateBody=body(template))["StackStatus"] == "UPDATE_COMPLETE"


def test_a_resource_moto_cannot_deploy_rolls_back_and_the_next_deploy_works(cfn: Any, clock: Clock) -> None:
    deploy(cfn, clock, "app", "1", "CREATE")
    boto3.client("ssm", region_name=REGION).put_parameter(Name="/taken", Value="someone else's", Type="String")
    template = copy.deepcopy(TEMPLATE)
    template["Resources"]["Taken"] = {
        "Type": "AWS::SSM::Parameter",
        "Properties": {"Name": "/taken", "Type": "String", "Value": {"Ref": "Sha"}},
    }
    deploy(cfn, clock, "app", "2", TemplateBody=body(template))
    clock.advance()
    stack = describe(cfn, "app")
    assert stack["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    assert stack["StackStatusReason"] == "The following resource(s) failed to create: [Taken]."
    assert outputs(stack)["Sha"] == "1" and ssm_value("/app/version") == "1"
    assert ssm_value("/taken") == "someone else's"
    template["Resources"]["Taken"]["Properties"]["Name"] = "/mine"
    fixed = deploy(cfn, clock, "app", "3", name="fixed", TemplateBody=body(template))
    assert fixed["StackStatus"] == "UPDATE_COMPLETE" and outputs(fixed)["Sha"] == "3"
    assert (ssm_value("/app/version"), ssm_value("/mine")) == ("3", "3")


def test_an_export_taken_by_another_stack_fails_the_stack_itself(cfn: Any, clock: Clock) -> None:
    template = copy.deepcopy(TEMPLATE)
    template["Outputs"]["Sha"]["Export"] = {"Name": "shared-sha"}
    first = deploy(cfn, clock, "first", "1", "CREATE", TemplateBody=body(template))
    deploy(cfn, clock, "second", "2", "CREATE", TemplateBody=body(template))
    clock.advance()
    stack = describe(cfn, "second")
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    assert stack["StackStatusReason"] == (
        f"Export with name shared-sha is already exported by stack {first['StackId']}. Rollback requested by user."
    )
    assert ssm_value("/second/version") is None and ssm_value("/first/version") == "1"
    assert [e["Name"] for e in cfn.list_exports()["Exports"]] == ["shared-sha"]


def test_a_bad_ref_is_refused_and_the_fixed_template_deploys_at_once(cfn: Any, clock: Clock) -> None:
    """moto used to half-apply a template with a bad !Ref (500), and the next good deploy failed with a KeyError."""
    deploy(cfn, clock, "app", "1", "CREATE")
    template = copy.deepcopy(TEMPLATE)
    template["Resources"]["Extra"] = {
        "Type": "AWS::SSM::Parameter",
        "Properties": {"Name": "/extra", "Type": "String", "Value": {"Ref": "Foo"}},
    }
    assert error_of(
        cfn.create_change_set, StackName="app", ChangeSetName="bad", TemplateBody=body(template), Parameters=params("2")
    ) == (
        "ValidationError",
        "Template format error: Unresolved resource dependencies [Foo] in the Resources block of the template",
        400,
    )
    template["Resources"]["Extra"]["Properties"]["Value"] = {"Ref": "Sha"}
    stack = deploy(cfn, clock, "app", "2", TemplateBody=body(template))
    assert stack["StackStatus"] == "UPDATE_COMPLETE"
    assert (ssm_value("/app/version"), ssm_value("/extra")) == ("2", "2")


# --- 5. template errors in CloudFormation's words ---------------------------------------------------------


YAML_TEMPLATE = """\
Resources:
  Bucket:
    Type: AWS::S3::Bucket
    Properties:
      BucketName: !Nope x
"""


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (
            body(Resources={"A": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": {"Ref": "Foo"}}}}),
            "Template format error: Unresolved resource dependencies [Foo] in the Resources block of the template",
        ),
        (
            body(Resources={"A": {"Type": "AWS::Nope::Thing"}, "B": {"Type": "AWS::S3::Bucket"}}),
            "Template format error: Unrecognized resource types: [AWS::Nope::Thing]",
        ),
        (YAML_TEMPLATE, "Template format error: YAML not well-formed. (line 5, column 19)"),
        ('{\n  "Resources": {,\n}', "Template format error: JSON not well-formed. (line 2, column 17)"),
        (body(Resources={}), "Template format error: At least one Resources member must be defined."),
        (
            body(Outputs={"X": {"Value": {"Fn::GetAtt": ["Missing", "Arn"]}}}),
            "Template error: instance of Fn::GetAtt references undefined resource Missing",
        ),
        (
            body(Outputs={"X": {"Value": {"Fn::GetAtt": ["Version", "Nope"]}}}),
            "Template error: resource Version does not support attribute type Nope in Fn::GetAtt",
        ),
        (
            body(Resources={"A": {"Type": "AWS::S3::Bucket", "Propertes": {}}}),
            "Invalid template resource property 'Propertes'",
        ),
    ],
)
def test_template_errors(cfn: Any, clock: Clock, template: str, message: str) -> None:
    assert error_of(
        cfn.create_change_set,
        StackName="app",
        ChangeSetName="cs",
        ChangeSetType="CREATE",
        TemplateBody=template,
        Parameters=params("1"),
    ) == ("ValidationError", message, 400)
    assert error_of(cfn.validate_template, TemplateBody=template) == ("ValidationError", message, 400)
    assert error_of(cfn.describe_stacks, StackName="app")[0] == "ValidationError"  # nothing was created


def test_parameter_errors(cfn: Any, clock: Clock) -> None:
    def create(parameters: list[dict[str, str]]) -> tuple[str, str, int]:
        return error_of(
            cfn.create_change_set,
            StackName="app",
            ChangeSetName="cs",
            ChangeSetType="CREATE",
            TemplateBody=body(),
            Parameters=parameters,
        )

    assert create([]) == ("ValidationError", "Parameters: [Sha] must have values", 400)
    assert create(params("1", X="y")) == ("ValidationError", "Parameters: [X] do not exist in the template", 400)


def test_iam_resources_need_the_capability(cfn: Any, clock: Clock) -> None:
    role = {
        "Type": "AWS::IAM::Role",
        "Properties": {"AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": []}},
    }
    template = copy.deepcopy(TEMPLATE)
    template["Resources"]["Role"] = role
    kwargs = {"StackName": "app", "ChangeSetName": "cs", "ChangeSetType": "CREATE", "Parameters": params("1")}
    assert error_of(cfn.create_change_set, TemplateBody=body(template), **kwargs) == (
        "InsufficientCapabilitiesException",
        "Requires capabilities : [CAPABILITY_IAM]",
        400,
    )
    role["Properties"]["RoleName"] = "named"
    assert (
        error_of(cfn.create_change_set, TemplateBody=body(template), Capabilities=["CAPABILITY_IAM"], **kwargs)[1]
        == "Requires capabilities : [CAPABILITY_NAMED_IAM]"
    )
    validated = cfn.validate_template(TemplateBody=body(template))
    assert validated["Capabilities"] == ["CAPABILITY_NAMED_IAM"]
    assert validated["CapabilitiesReason"] == "The following resource(s) require capabilities: [AWS::IAM::Role]"
    cfn.create_change_set(TemplateBody=body(template), Capabilities=["CAPABILITY_NAMED_IAM"], **kwargs)


def test_template_url_tags_role_and_capabilities_reach_the_stack(cfn: Any, clock: Clock) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="artifacts")
    s3.put_object(Bucket="artifacts", Key="t.json", Body=body().encode())
    url = "https://artifacts.s3.amazonaws.com/t.json"
    role = "arn:aws:iam::123456789012:role/deploy"
    tags = [{"Key": "stagecoach:stage", "Value": "dev"}]
    kwargs = {"TemplateURL": url, "Tags": tags, "RoleARN": role, "Capabilities": ["CAPABILITY_IAM"]}
    change_set_id = change_set(cfn, "app", "1", "CREATE", **kwargs)
    clock.advance()
    seen = cfn.describe_change_set(ChangeSetName=change_set_id)
    assert (seen["Tags"], seen["Capabilities"]) == (tags, ["CAPABILITY_IAM"])
    cfn.execute_change_set(ChangeSetName=change_set_id)
    clock.advance()
    stack = describe(cfn, "app")
    assert (stack["StackStatus"], stack["Tags"], stack["RoleARN"]) == ("CREATE_COMPLETE", tags, role)
    tags = [{"Key": "stagecoach:stage", "Value": "development"}]
    stack = deploy(cfn, clock, "app", "2", **{**kwargs, "Tags": tags})
    assert (stack["StackStatus"], stack["Tags"]) == ("UPDATE_COMPLETE", tags)
    assert error_of(
        cfn.create_change_set,
        StackName="app",
        ChangeSetName="gone",
        TemplateURL="https://artifacts.s3.amazonaws.com/missing.json",
        Parameters=params("3"),
    ) == ("ValidationError", "S3 error: Access Denied", 400)


def test_use_previous_template_and_values(cfn: Any, clock: Clock) -> None:
    deploy(cfn, clock, "app", "1", "CREATE")
    response = cfn.create_change_set(
        StackName="app",
        ChangeSetName="previous",
        UsePreviousTemplate=True,
        Parameters=[
            {"ParameterKey": "Sha", "UsePreviousValue": True},
            {"ParameterKey": "Stage", "ParameterValue": "qa"},
        ],
    )
    clock.advance()
    seen = cfn.describe_change_set(ChangeSetName=response["Id"])
    assert seen["Status"] == "CREATE_COMPLETE" and parameters(seen) == {"Sha": "1", "Stage": "qa"}


# --- 6. state as plain data ----------------------------------------------------------------------------------


def test_state_round_trips_through_json(cfn: Any, clock: Clock) -> None:
    cloudformation.configure(stale_seconds=4)
    deploy(cfn, clock, "app", "1", "CREATE")
    clock.advance(4)
    pending = change_set(cfn, "app", "2", name="pending")
    clock.advance()
    cfn.execute_change_set(ChangeSetName=pending)
    waiting = change_set(cfn, "other", "1", "CREATE", name="waiting")
    cloudformation.fail_next_deploy("other", "boom", final_status="ROLLBACK_FAILED")
    clock.advance(1)
    exported = json.loads(json.dumps(cloudformation.export_state()))

    from moto.cloudformation.models import cloudformation_backends

    backend = cloudformation_backends["123456789012"][REGION]
    del backend.__dict__["_stagecoach_cfn"]  # a restart: moto's objects are back, the emulator's state is not
    clock.advance(100)
    cloudformation.import_state(exported)
    assert cloudformation.export_state() == exported  # same ages, measured from the import
    assert describe(cfn, "app")["StackStatus"] == "CREATE_COMPLETE"  # still stale for 3 s
    assert cfn.describe_change_set(ChangeSetName=waiting)["Status"] == "CREATE_PENDING"
    clock.advance(3)
    assert describe(cfn, "app")["StackStatus"] == "UPDATE_IN_PROGRESS"
    clock.advance(DELAY - 4)
    assert describe(cfn, "app")["StackStatus"] == "UPDATE_COMPLETE"
    cfn.execute_change_set(ChangeSetName=waiting)
    clock.advance(DELAY * 2)
    assert describe(cfn, "other")["StackStatus"] == "ROLLBACK_FAILED"


def test_import_refuses_an_unknown_version() -> None:
    with pytest.raises(ValueError, match="version"):
        cloudformation.import_state({"version": 99, "backends": []})


# --- configuration -----------------------------------------------------------------------------------------


def test_configuration_from_the_environment() -> None:
    previous = cloudformation.current_settings()
    try:
        settings = cloudformation.configure_from_environment(
            {cloudformation.DELAY_ENV: "2.5", cloudformation.STALE_ENV: " 1 "}
        )
        assert (settings.delay_seconds, settings.stale_seconds) == (2.5, 1.0)
        assert cloudformation.configure_from_environment({}).delay_seconds == 2.5  # unset: unchanged
        with pytest.raises(ValueError, match=cloudformation.DELAY_ENV):
            cloudformation.configure_from_environment({cloudformation.DELAY_ENV: "soon"})
        with pytest.raises(ValueError):
            cloudformation.configure(delay_seconds=-1)
    finally:
        cloudformation.restore(previous)


def test_control_plane_serves_the_emulation_over_http(monkeypatch: pytest.MonkeyPatch) -> None:
    """``make run``: the settings come from the environment, errors are 400s over real HTTP, never 500s."""
    monkeypatch.setenv(cloudformation.DELAY_ENV, "600")
    before = cloudformation.current_settings()
    with running_plane(pump=False) as plane:
        assert cloudformation.current_settings().delay_seconds == 600
        client = boto3.client("cloudformation", region_name=REGION, endpoint_url=plane.aws_url)
        change_set_id = change_set(client, "web", "1", "CREATE")
        assert client.describe_change_set(ChangeSetName=change_set_id)["Status"] == "CREATE_PENDING"
        bad = body(Resources={"A": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": {"Ref": "Foo"}}}})
        code, message, status = error_of(client.validate_template, TemplateBody=bad)
        assert (code, status) == ("ValidationError", 400) and "Unresolved resource dependencies [Foo]" in message
    assert cloudformation.current_settings() == before
