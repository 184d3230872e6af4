"""Drives statemachines/release.asl.json in moto: seeds items, runs the stage coordinator, plays the builder
and the approver.

Executions are started directly with StartExecution (name = release id) and the input the service builds
(``chalicelib.domain.releases.execution_input``). The stage coordinator runs for real on a background thread
that receives from the stage queue as Lambda's event source mapping does (``app.coordinate_stages``).
moto runs executions on threads too, so everything here polls with a deadline.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from chalicelib.domain.lanes import Lane
from chalicelib.local import cloudformation

ACCOUNT = "123456789012"
SHA_1 = "1" * 40
SHA_2 = "2" * 40
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/stagecoach-deploy"
OWNED_BY = "stagecoach:stack"

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


class CoordinatorThread:
    """What Lambda's event source mapping does for ``app.coordinate_stages``: one message at a time from the
    stage queue to ``StageCoordinator.handle``, deleted once handled (a failed one is redelivered)."""

    VISIBILITY_SECONDS = 10

    def __init__(self, sqs: Any, queue_url: str) -> None:
        self._sqs = sqs
        self._url = queue_url
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.handled: list[str] = []  # what the coordinator said it did, in order
        self.errors: list[str] = []  # tracebacks of messages that failed (left for redelivery)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="asl-stage-coordinator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            assert not self._thread.is_alive(), "the stage coordinator thread did not stop"

    def _run(self) -> None:
        from chalicelib import bootstrap

        while not self._stop.is_set():
            try:
                messages = self._sqs.receive_message(
                    QueueUrl=self._url,
                    MaxNumberOfMessages=1,
                    WaitTimeSeconds=1,
                    VisibilityTimeout=self.VISIBILITY_SECONDS,
                ).get("Messages", [])
            except Exception:
                if self._stop.is_set():
                    return
                self.errors.append(traceback.format_exc())
                self._stop.wait(1)
                continue
            for message in messages:
                try:
                    self.handled.append(bootstrap.stage_coordinator().handle(message["Body"]))
                except Exception:
                    self.errors.append(traceback.format_exc())
                    continue
                self._sqs.delete_message(QueueUrl=self._url, ReceiptHandle=message["ReceiptHandle"])


class AslWorld:
    """One emulated account with the Stagecoach resources, the stage coordinator running, and helpers to run
    releases in it. ``close()`` stops the coordinator and undoes the harness's moto changes."""

    def __init__(self, session: Any, resources: Any) -> None:
        self.session = session
        self.resources = resources
        self.table = resources.table
        self.ddb = session.client("dynamodb")
        self.sfn = session.client("stepfunctions")
        self.sqs = session.client("sqs")
        self.s3 = session.client("s3")
        self.cfn = session.client("cloudformation")
        self._restore: list[Callable[[], None]] = []
        self.coordinator = CoordinatorThread(self.sqs, resources.stage_queue_url)
        self.coordinator.start()

    def close(self) -> None:
        """Stop the coordinator and undo the harness's moto changes (the ``aws`` fixture stops executions)."""
        try:
            self.coordinator.stop()
        finally:
            for restore in reversed(self._restore):
                restore()

    # --- artifacts -------------------------------------------------------------------------------
    def upload_template(self, key: str = "builds/hello/template.json", body: dict[str, Any] | None = None) -> str:
        bucket = self.resources.artifact_bucket
        self.s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(body or TEMPLATE).encode())
        return f"https://{bucket}.s3.amazonaws.com/{key}"

    # --- items -----------------------------------------------------------------------------------
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
        """The stage item (the lane the coordinator writes)."""
        item = self.get(f"STACK#{stack_id}", f"STAGE#{stage}")
        assert item is not None, f"no stage item for {stack_id}/{stage}"
        return item

    def lane(self, stage: str, stack_id: str = "hello") -> Lane:
        """The stage's lane as the coordinator reads it."""
        from chalicelib import bootstrap

        return bootstrap.lane_store().lane(stack_id, stage)

    def stage_statuses(self, release_id: str, stages: list[str]) -> dict[str, str]:
        """Stage run statuses with the design's derivation: no item = PENDING while running, SKIPPED after."""
        ended = self.release(release_id)["status"] not in ("PENDING", "RUNNING")
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
        mode: str = "SUPERSEDED",
    ) -> dict[str, Any]:
        """Writes the Stack and the PENDING Release items as the adapters do; returns the state machine input.

        ``stages``: ``{"name", "approval"?, "approval_timeout_seconds"?, "parameters"?}``; parameters default
        to ``{"Stage": name, "Sha": sha}``. The stack keeps one ``uid`` per id, so releases seeded one after
        the other belong to the same stack; each release is received when it is seeded (its ``order``).
        """
        from chalicelib import bootstrap
        from chalicelib.adapters import releases_dynamo, stacks_dynamo
        from chalicelib.domain.clock import now_iso
        from chalicelib.domain.releases import PipelineConfig, Release, execution_arn, execution_input, order_key
        from chalicelib.domain.stacks import Repository, Stack, Stage

        bootstrap.stack_repository()  # binds the models to the table
        now = now_iso()
        stack = Stack(
            id=stack_id,
            name=stack_id,
            repository=Repository("github", "acme/hello", "https://example.test/acme/hello.git"),
            stages=tuple(
                Stage(
                    name=spec["name"],
                    approval=spec.get("approval", False),
                    approval_timeout_seconds=spec.get("approval_timeout_seconds", 60),
                    region="us-east-1",
                    role_arn=ROLE_ARN,
                    parameters=spec.get("parameters", {"Stage": spec["name"], "Sha": sha}),
                )
                for spec in stages
            ),
            created_at=now,
            updated_at=now,
            version=1,
            execution_mode=mode,
            uid=f"uid-{stack_id}",
        )
        stack_item = stacks_dynamo.to_model(stack)
        stack_item.version = 1
        self.ddb.put_item(TableName=self.table, Item=stack_item.serialize())
        pipeline = PipelineConfig(
            state_machine_arn=self.resources.state_machine_arn,
            default_role_arn=ROLE_ARN,
            poll_seconds=1,
            build_timeout_seconds=30,
            deploy_timeout_seconds=120,
        )
        release = Release(
            id=release_id,
            stack_id=stack_id,
            ref="refs/heads/main",
            sha=sha,
            trigger="webhook",
            received_at=now,
            execution_name=release_id,
            execution_arn=execution_arn(self.resources.state_machine_arn, release_id),
            stages=tuple(s.name for s in stack.stages),
            stack_uid=stack.uid,
            order=order_key(now, release_id),
            message=f"release {release_id}",
            author="dev",
        )
        state_input = execution_input(stack, release, pipeline)
        state_input["config"].update(config or {})
        release = replace(release, input_json=json.dumps(state_input, separators=(",", ":")))
        self.ddb.put_item(TableName=self.table, Item=releases_dynamo.to_model(release).serialize())
        return state_input

    # --- the service's side ----------------------------------------------------------------------
    def reconcile(self, release_id: str) -> str:
        """What the "Execution Status Change" event (or the sweeper) does for a release."""
        from chalicelib import bootstrap

        return bootstrap.reconciler().reconcile(release_id)

    # --- executions ------------------------------------------------------------------------------
    def start(self, state_input: dict[str, Any]) -> str:
        release_id = state_input["release"]["id"]
        arn = self.sfn.start_execution(
            stateMachineArn=self.resources.state_machine_arn,
            name=release_id,
            input=json.dumps(state_input),
        )["executionArn"]
        assert arn == self.release(release_id)["execution_arn"], (arn, "the release item points elsewhere")
        return str(arn)

    def status(self, arn: str) -> str:
        return str(self.sfn.describe_execution(executionArn=arn)["status"])

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

    def wait_entered(self, arn: str, state: str, timeout: float = 30.0) -> None:
        wait_until(lambda: state in self.entered_states(arn), timeout, what=f"{arn} to enter {state}")

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

    def _decide(self, release_id: str, stage: str, approve: bool, by: str, comment: str) -> dict[str, Any]:
        from chalicelib import bootstrap

        self.wait_awaiting_approval(release_id, stage)
        return bootstrap.approval_service().decide(release_id, stage, approve, {"comment": comment}, by)

    def approve(self, release_id: str, stage: str, by: str = "alice", comment: str = "ship it") -> dict[str, Any]:
        return self._decide(release_id, stage, True, by, comment)

    def reject(self, release_id: str, stage: str, by: str = "bob", comment: str = "not today") -> dict[str, Any]:
        return self._decide(release_id, stage, False, by, comment)

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

    def create_stack(self, name: str, stage: str, sha: str = SHA_1, owner: str | None = "hello") -> None:
        """A stack made outside the release: tagged as Stagecoach tags its stacks for ``owner`` (None: untagged)."""
        tags = [{"Key": OWNED_BY, "Value": owner}, {"Key": "stagecoach:stage", "Value": stage}] if owner else []
        self.cfn.create_stack(
            StackName=name,
            TemplateBody=json.dumps(TEMPLATE),
            Parameters=[
                {"ParameterKey": "Stage", "ParameterValue": stage},
                {"ParameterKey": "Sha", "ParameterValue": sha},
            ],
            Tags=tags,
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

    def stall_change_sets(self, target: str) -> None:
        """Change sets of stack ``target`` stay CREATE_IN_PROGRESS (a CloudFormation that takes very long)."""
        cloudformation.hold(target, "change_set")
        self._restore.append(lambda: cloudformation.let_go(target))

    def stall_next_deploy(self, target: str) -> None:
        """Deploys of stack ``target`` keep executing (EXECUTE_IN_PROGRESS, the stack ``*_IN_PROGRESS``)
        until ``finish_deploy``."""
        cloudformation.hold(target, "operation")
        self._restore.append(lambda: cloudformation.let_go(target))

    def executing_change_set(self, target: str) -> Any:
        """The change set of stack ``target`` that is executing, if any."""
        for change_set in self._cfn_backend().change_sets.values():
            if change_set.stack_name == target and change_set.execution_status == "EXECUTE_IN_PROGRESS":
                return change_set
        return None

    def finish_deploy(self, target: str) -> None:
        """The stalled deploy of stack ``target`` completes (see ``stall_next_deploy``)."""
        assert self.executing_change_set(target) is not None, f"no deploy of {target} is in progress"
        cloudformation.let_go(target)
        cloudformation.settle(ACCOUNT, self.session.region_name)

    def ssm_value(self, name: str) -> str:
        return self.session.client("ssm").get_parameter(Name=name)["Parameter"]["Value"]
