"""Drives statemachines/release.asl.json in moto: seeds items, plays the builder and the approver.

Executions are started directly with StartExecution (name = release id) and an input built the way
docs/design.md describes it. moto runs them on a thread, so everything here polls with a deadline.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from chalicelib.local import cloudformation

ACCOUNT = "123456789012"
SHA_1 = "1" * 40
SHA_2 = "2" * 40
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/stagecoach-deploy"

# A tiny stack: one bucket and one SSM parameter, driven by the Stage and Sha parameters.
TEMPLATE: dict[str, Any] = {
    "AWSTemplateFormatVersion": "2010-09-09",
    "Parameters": {"Stage": {"Type": "String"}, "Sha": {"Type": "String"}},
    "Resources": {
        "Bucket": {"Type": "AWS::S3::Bucket"},
        "Version": {
            "Type": "AWS::SSM::Parameter",
            "Properties": {
                "Name": {"Fn::Sub": "/hello/${Stage}/version"},
                "Type": "String",
                "Value": {"Ref": "Sha"},
            },
        },
    },
    "Outputs": {
        "BucketName": {"Value": {"Ref": "Bucket"}},
        "VersionParameter": {"Value": {"Ref": "Version"}},
    },
}

_deser = TypeDeserializer()
_ser = TypeSerializer()


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _deser.deserialize(v) for k, v in item.items()}


def wait_until(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2, what: str = "condition") -> Any:
    """Polls ``check`` until it returns something truthy; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class AslWorld:
    """One emulated account with the Stagecoach resources, and helpers to run releases in it."""

    def __init__(self, session: Any, resources: Any) -> None:
        self.session = session
        self.resources = resources
        self.table = resources.table
        self.ddb = session.client("dynamodb")
        self.sfn = session.client("stepfunctions")
        self.sqs = session.client("sqs")
        self.s3 = session.client("s3")
        self.cfn = session.client("cloudformation")

    def close(self) -> None:
        """Nothing to undo: the emulator's CloudFormation state goes with the ``aws`` fixture's moto reset."""

    # --- artifacts -------------------------------------------------------------------------------
    def upload_template(self, key: str = "builds/hello/template.json", body: dict[str, Any] | None = None) -> str:
        bucket = self.resources.artifact_bucket
        self.s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(body or TEMPLATE).encode())
        return f"https://{bucket}.s3.amazonaws.com/{key}"

    # --- items -----------------------------------------------------------------------------------
    def put(self, item: dict[str, Any]) -> None:
        self.ddb.put_item(TableName=self.table, Item={k: _ser.serialize(v) for k, v in item.items()})

    def get(self, pk: str, sk: str) -> dict[str, Any] | None:
        item = self.ddb.get_item(TableName=self.table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True)
        return _plain(item["Item"]) if "Item" in item else None

    def release(self, release_id: str) -> dict[str, Any]:
        item = self.get(f"RELEASE#{release_id}", "#RELEASE")
        assert item is not None
        return item

    def stage_run(self, release_id: str, stage: str) -> dict[str, Any] | None:
        return self.get(f"RELEASE#{release_id}", f"STAGE#{stage}")

    def stage_state(self, stage: str, stack_id: str = "hello") -> dict[str, Any]:
        item = self.get(f"STACK#{stack_id}", f"STAGE#{stage}")
        assert item is not None
        return item

    def stage_statuses(self, release_id: str, stages: list[str]) -> dict[str, str]:
        """Stage run statuses with the design's derivation: no item = PENDING while running, SKIPPED after."""
        ended = self.release(release_id)["status"] in ("SUCCEEDED", "FAILED")
        out = {}
        for name in stages:
            run = self.stage_run(release_id, name)
            out[name] = run["status"] if run else ("SKIPPED" if ended else "PENDING")
        return out

    def seed(
        self,
        release_id: str,
        stages: list[dict[str, Any]],
        sha: str = SHA_1,
        stack_id: str = "hello",
        config: dict[str, Any] | None = None,
        create_stage_states: bool = True,
    ) -> dict[str, Any]:
        """Writes the Stack, stage-state and PENDING Release items; returns the state machine input."""
        now = "2026-11-27T14:30:00.000Z"
        full = []
        for position, spec in enumerate(stages):
            name = spec["name"]
            full.append(
                {
                    "name": name,
                    "position": position,
                    "approval": spec.get("approval", False),
                    "approval_timeout_seconds": spec.get("approval_timeout_seconds", 60),
                    "cfn_stack_name": spec.get("cfn_stack_name", f"{stack_id}-{name}"),
                    "role_arn": ROLE_ARN,
                    "sk": f"STAGE#{name}",
                    "parameters": spec.get(
                        "parameters",
                        [
                            {"ParameterKey": "Stage", "ParameterValue": name},
                            {"ParameterKey": "Sha", "ParameterValue": sha},
                        ],
                    ),
                    "tags": [
                        {"Key": "stagecoach:stack", "Value": stack_id},
                        {"Key": "stagecoach:stage", "Value": name},
                    ],
                }
            )
        self.put(
            {
                "pk": f"STACK#{stack_id}",
                "sk": "#STACK",
                "gsi1pk": "STACKS",
                "gsi1sk": stack_id,
                "id": stack_id,
                "name": stack_id,
                "repository": {
                    "provider": "github",
                    "full_name": "acme/hello",
                    "clone_url": "https://example.test/acme/hello.git",
                },
                "branches": ["main"],
                "tags": [],
                "template_path": "template.yaml",
                "buildspec_path": "buildspec.yml",
                "stages": [
                    {
                        "name": s["name"],
                        "approval": s["approval"],
                        "approval_timeout_seconds": s["approval_timeout_seconds"],
                        "region": "us-east-1",
                        "role_arn": ROLE_ARN,
                        "parameters": {},
                    }
                    for s in full
                ],
                "created_at": now,
                "updated_at": now,
                "version": 1,
            }
        )
        if create_stage_states:
            for s in full:
                if self.get(f"STACK#{stack_id}", s["sk"]) is None:
                    self.put({"pk": f"STACK#{stack_id}", "sk": s["sk"], "status": "IDLE", "updated_at": now})
        self.put(
            {
                "pk": f"RELEASE#{release_id}",
                "sk": "#RELEASE",
                "gsi1pk": f"STACK#{stack_id}#RELEASES",
                "gsi1sk": f"{now}#{release_id}",
                "gsi2pk": "PENDING",
                "gsi2sk": now,
                "id": release_id,
                "stack_id": stack_id,
                "ref": "refs/heads/main",
                "sha": sha,
                "message": f"release {release_id}",
                "author": "dev",
                "received_at": now,
                "trigger": "push",
                "status": "PENDING",
                "execution_name": release_id,
                "stages": [s["name"] for s in full],
            }
        )
        return {
            "release": {
                "id": release_id,
                "pk": f"RELEASE#{release_id}",
                "stack_id": stack_id,
                "ref": "refs/heads/main",
                "sha": sha,
                "message": f"release {release_id}",
                "received_at": now,
            },
            "stack": {
                "id": stack_id,
                "pk": f"STACK#{stack_id}",
                "clone_url": "https://example.test/acme/hello.git",
                "full_name": "acme/hello",
                "provider": "github",
                "template_path": "template.yaml",
                "buildspec_path": "buildspec.yml",
            },
            "stages": full,
            "config": {
                "poll_seconds": 1,
                "lock_retry_seconds": 1,
                "lock_max_attempts": 100,
                "build_timeout_seconds": 30,
                "deploy_timeout_seconds": 120,
                **(config or {}),
            },
        }

    # --- executions ------------------------------------------------------------------------------
    def start(self, state_input: dict[str, Any]) -> str:
        arn = self.sfn.start_execution(
            stateMachineArn=self.resources.state_machine_arn,
            name=state_input["release"]["id"],
            input=json.dumps(state_input),
        )["executionArn"]
        return arn

    def wait_execution(self, arn: str, timeout: float = 60.0) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            d = self.sfn.describe_execution(executionArn=arn)
            return d if d["status"] != "RUNNING" else None

        return wait_until(done, timeout, what=f"execution {arn} to end")

    def history(self, arn: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"executionArn": arn, "maxResults": 1000}
        while True:
            page = self.sfn.get_execution_history(**kwargs)
            events.extend(page["events"])
            if not page.get("nextToken"):
                return events
            kwargs["nextToken"] = page["nextToken"]

    def transitions_per_stage(self, arn: str) -> list[int]:
        """StateEntered events inside each Map iteration (iterations run one at a time)."""
        counts: list[int] = []
        current: int | None = None
        for event in self.history(arn):
            kind = event["type"]
            if kind == "MapIterationStarted":
                current = event["mapIterationStartedEventDetails"]["index"]
                while len(counts) <= current:
                    counts.append(0)
            elif kind in ("MapIterationSucceeded", "MapIterationFailed", "MapIterationAborted"):
                current = None
            elif kind.endswith("StateEntered") and current is not None:
                counts[current] += 1
        return counts

    def entered_states(self, arn: str) -> list[str]:
        return [e["stateEnteredEventDetails"]["name"] for e in self.history(arn) if e["type"].endswith("StateEntered")]

    # --- the builder -----------------------------------------------------------------------------
    def next_build_request(self, timeout: float = 20.0) -> dict[str, Any]:
        url = self.resources.build_queue_url

        def receive() -> dict[str, Any] | None:
            msgs = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=0).get("Messages", [])
            if not msgs:
                return None
            self.sqs.delete_message(QueueUrl=url, ReceiptHandle=msgs[0]["ReceiptHandle"])
            return json.loads(msgs[0]["Body"])

        return wait_until(receive, timeout, what="a build request")

    def complete_build(self, template: dict[str, Any] | None = None, key: str | None = None) -> dict[str, Any]:
        request = self.next_build_request()
        key = key or f"builds/{request['stack_id']}/{request['sha']}/template.json"
        url = self.upload_template(key, template)
        result = {
            "build_id": f"local:{request['release_id']}",
            "template_url": url,
            "artifact_bucket": self.resources.artifact_bucket,
            "artifact_key": key,
            "log": "built",
        }
        self.sfn.send_task_success(taskToken=request["task_token"], output=json.dumps(result))
        return request

    def fail_build(self, error: str = "BuildFailed", cause: str = "npm test failed") -> dict[str, Any]:
        request = self.next_build_request()
        self.sfn.send_task_failure(taskToken=request["task_token"], error=error, cause=cause)
        return request

    # --- the approver (what the API does) --------------------------------------------------------
    def wait_awaiting_approval(self, release_id: str, stage: str, timeout: float = 30.0) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            run = self.stage_run(release_id, stage)
            return run if run and run.get("status") == "AWAITING_APPROVAL" else None

        return wait_until(check, timeout, what=f"{stage} awaiting approval")

    def _decide(self, release_id: str, stage: str, decision: str, by: str, comment: str) -> str:
        run = self.wait_awaiting_approval(release_id, stage)
        self.ddb.update_item(
            TableName=self.table,
            Key={"pk": {"S": f"RELEASE#{release_id}"}, "sk": {"S": f"STAGE#{stage}"}},
            UpdateExpression="SET approval.decision = :d, approval.#by = :by, approval.#at = :at, approval.#c = :c",
            ConditionExpression="#s = :awaiting AND task_token = :t",
            ExpressionAttributeNames={"#by": "by", "#at": "at", "#c": "comment", "#s": "status"},
            ExpressionAttributeValues={
                ":d": {"S": decision},
                ":by": {"S": by},
                ":at": {"S": "2026-11-27T15:00:00.000Z"},
                ":c": {"S": comment},
                ":awaiting": {"S": "AWAITING_APPROVAL"},
                ":t": {"S": run["task_token"]},
            },
        )
        return run["task_token"]

    def approve(self, release_id: str, stage: str, by: str = "alice", comment: str = "ship it") -> None:
        token = self._decide(release_id, stage, "approved", by, comment)
        self.sfn.send_task_success(
            taskToken=token, output=json.dumps({"decision": "approved", "by": by, "comment": comment})
        )

    def reject(self, release_id: str, stage: str, by: str = "bob", comment: str = "not today") -> None:
        token = self._decide(release_id, stage, "rejected", by, comment)
        self.sfn.send_task_failure(taskToken=token, error="ApprovalRejected", cause=comment)

    # --- CloudFormation in the emulator (chalicelib.local.cloudformation) ------------------------------
    def _cfn_backend(self) -> Any:
        from moto.cloudformation.models import cloudformation_backends

        return cloudformation_backends[ACCOUNT][self.session.region_name]

    def moto_stack(self, name: str) -> Any:
        """The emulator's live (not deleted) stack called ``name``, brought up to the clock first."""
        cloudformation.settle(ACCOUNT, self.session.region_name)
        for stack in self._cfn_backend().stacks.values():
            if stack.name == name:
                return stack
        return None

    def set_stack_status(self, name: str, status: str) -> None:
        """Puts an emulated stack into a state another actor left it in (rollbacks, failures, busy)."""
        cloudformation.set_stack_status(name, status, account_id=ACCOUNT, region=self.session.region_name)

    def create_stack(self, name: str, stage: str, sha: str = SHA_1) -> None:
        self.cfn.create_stack(
            StackName=name,
            TemplateBody=json.dumps(TEMPLATE),
            Parameters=[
                {"ParameterKey": "Stage", "ParameterValue": stage},
                {"ParameterKey": "Sha", "ParameterValue": sha},
            ],
        )

    def emulate_aws_stack_rules(self) -> None:
        """AWS's refusals (an UPDATE of a ROLLBACK_COMPLETE, REVIEW_IN_PROGRESS, *_IN_PROGRESS or *_FAILED
        stack but UPDATE_FAILED) are part of the emulator: make sure it is installed."""
        cloudformation.install()

    def fail_next_deploy(self, target: str, status: str) -> None:
        """The next executed change set of stack ``target`` fails and its rollback ends in ``status``."""
        cloudformation.fail_next_deploy(
            target,
            "Resource handler returned message: emulated failure",
            final_status=status,
            account_id=ACCOUNT,
            region=self.session.region_name,
        )

    def ssm_value(self, name: str) -> str:
        return self.session.client("ssm").get_parameter(Name=name)["Parameter"]["Value"]
