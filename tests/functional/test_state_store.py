"""The state directory brings the emulator back as it was: one emulated account is written through boto3 with a
StateStore open, moto is emptied (as a new process starts empty), and a new StateStore reads it all back."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from chalicelib.local import cloudformation
from chalicelib.local.preflight import StartupError
from chalicelib.local.resources import LocalResources, ensure_resources
from chalicelib.local.state import JOURNAL, SNAPSHOT, StateStore, frame

REGION = "us-east-1"
TEMPLATE: dict[str, Any] = {
    "Parameters": {"Sha": {"Type": "String"}},
    "Resources": {
        "Version": {
            "Type": "AWS::SSM::Parameter",
            "Properties": {
                "Name": {"Fn::Sub": "/${AWS::StackName}/version"},
                "Type": "String",
                "Value": {"Ref": "Sha"},
            },
        },
        "Bucket": {"Type": "AWS::S3::Bucket"},
    },
    "Outputs": {"BucketName": {"Value": {"Ref": "Bucket"}}, "Sha": {"Value": {"Ref": "Sha"}}},
}
PASS_MACHINE = json.dumps({"StartAt": "Hello", "States": {"Hello": {"Type": "Pass", "End": True}}})


@contextmanager
def emulator(state_dir: Path, reset: bool = False) -> Iterator[tuple[StateStore, LocalResources]]:
    """A fresh emulated account (as a new ``make run`` process has) with the state directory loaded into it."""
    from moto import mock_aws

    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        store = StateStore(state_dir).open(reset=reset)
        try:
            yield store, ensure_resources(boto3.session.Session(region_name=REGION))
        finally:
            store.close()


def client(service: str) -> Any:
    return boto3.client(service, region_name=REGION)


def wait_for(read: Any, done: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def deploy(stack: str, sha: str, kind: str) -> dict[str, Any]:
    cfn = client("cloudformation")
    name = f"cs-{sha}"
    cfn.create_change_set(
        StackName=stack,
        ChangeSetName=name,
        ChangeSetType=kind,
        TemplateBody=json.dumps(TEMPLATE),
        Parameters=[{"ParameterKey": "Sha", "ParameterValue": sha}],
        Tags=[{"Key": "stagecoach:stack", "Value": "hello"}],
    )
    wait_for(lambda: cfn.describe_change_set(StackName=stack, ChangeSetName=name)["Status"], "CREATE_COMPLETE".__eq__)
    cfn.execute_change_set(StackName=stack, ChangeSetName=name)
    return wait_for(
        lambda: cfn.describe_stacks(StackName=stack)["Stacks"][0], lambda s: "PROGRESS" not in s["StackStatus"]
    )


def items(table: str) -> list[dict[str, Any]]:
    found = client("dynamodb").scan(TableName=table)["Items"]
    return sorted(found, key=lambda i: (i["pk"]["S"], i["sk"]["S"]))


def objects(bucket: str) -> dict[str, bytes]:
    s3 = client("s3")
    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def stack_view(name: str) -> dict[str, Any]:
    cfn = client("cloudformation")
    stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
    keep = ("StackId", "StackStatus", "Parameters", "Tags", "Outputs", "CreationTime")
    return {**{k: stack.get(k) for k in keep}, "template": cfn.get_template(StackName=name)["TemplateBody"]}


def test_items_objects_secrets_stacks_and_histories_come_back(tmp_path: Path) -> None:
    big = bytes(range(256)) * 40_000  # 10 MB: boto3 uploads it in parts
    with emulator(tmp_path) as (_store, resources):
        ddb, s3, sm, sfn, sqs = (client(s) for s in ("dynamodb", "s3", "secretsmanager", "stepfunctions", "sqs"))
        table = resources.table
        for n in range(3):
            item = {"pk": {"S": f"RELEASE#{n}"}, "sk": {"S": "#RELEASE"}, "n": {"N": str(n)}}
            ddb.put_item(TableName=table, Item=item)
        ddb.update_item(
            TableName=table,
            Key={"pk": {"S": "RELEASE#1"}, "sk": {"S": "#RELEASE"}},
            UpdateExpression="SET #s = :s",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": {"S": "RUNNING"}},
        )
        ddb.delete_item(TableName=table, Key={"pk": {"S": "RELEASE#2"}, "sk": {"S": "#RELEASE"}})
        put = {"TableName": table, "ConditionExpression": "attribute_not_exists(pk)"}
        ddb.transact_write_items(
            TransactItems=[
                {"Put": {**put, "Item": {"pk": {"S": "PUSH#a"}, "sk": {"S": "#KEY"}}}},
                {"Put": {**put, "Item": {"pk": {"S": "DELIVERY#a"}, "sk": {"S": "#KEY"}}}},
            ]
        )
        with pytest.raises(ClientError):  # a failed transaction writes nothing, and nothing is journaled for it
            ddb.transact_write_items(
                TransactItems=[
                    {"Put": {**put, "Item": {"pk": {"S": "PUSH#b"}, "sk": {"S": "#KEY"}}}},
                    {"Put": {**put, "Item": {"pk": {"S": "PUSH#a"}, "sk": {"S": "#KEY"}}}},
                ]
            )
        bucket = resources.artifact_bucket
        s3.put_object(Bucket=bucket, Key="hello/r1/build.log", Body=b"Entering phase BUILD\n")
        s3.put_object(Bucket=bucket, Key="hello/r1/template.yaml", Body=b"first")
        s3.put_object(Bucket=bucket, Key="hello/r1/template.yaml", Body=b"second", ContentType="text/yaml")
        s3.put_object(Bucket=bucket, Key="gone", Body=b"deleted below")
        s3.delete_object(Bucket=bucket, Key="gone")
        s3.upload_fileobj(io.BytesIO(big), bucket, "big.zip")
        sm.create_secret(Name="stagecoach/webhook/hello", SecretString="first-secret")
        sm.put_secret_value(SecretId="stagecoach/webhook/hello", SecretString="rotated-secret")
        deployed = deploy("hello--dev", "sha1", "CREATE")
        assert deployed["StackStatus"] == "CREATE_COMPLETE"
        machine = sfn.create_state_machine(
            name="hello-pass", definition=PASS_MACHINE, roleArn="arn:aws:iam::123456789012:role/x"
        )["stateMachineArn"]
        execution = sfn.start_execution(stateMachineArn=machine, name="first", input="{}")["executionArn"]
        wait_for(lambda: sfn.describe_execution(executionArn=execution)["status"], "SUCCEEDED".__eq__)
        sqs.send_message(QueueUrl=resources.build_queue_url, MessageBody="a build request")

        before_items, before_objects = items(table), objects(bucket)
        before_stack = stack_view("hello--dev")
        before_history = sfn.get_execution_history(executionArn=execution)["events"]
        bucket_name = next(o["OutputValue"] for o in deployed["Outputs"] if o["OutputKey"] == "BucketName")

    assert (tmp_path / JOURNAL).exists() and (tmp_path / SNAPSHOT).exists()
    with emulator(tmp_path) as (store, resources):
        ddb, s3, sm, sfn, sqs, ssm = (
            client(s) for s in ("dynamodb", "s3", "secretsmanager", "stepfunctions", "sqs", "ssm")
        )
        assert items(resources.table) == before_items
        assert [i["pk"]["S"] for i in before_items] == ["DELIVERY#a", "PUSH#a", "RELEASE#0", "RELEASE#1"]
        assert objects(resources.artifact_bucket) == before_objects
        assert before_objects["big.zip"] == big and before_objects["hello/r1/template.yaml"] == b"second"
        head = s3.head_object(Bucket=resources.artifact_bucket, Key="hello/r1/template.yaml")
        assert head["ContentType"] == "text/yaml"
        assert sm.get_secret_value(SecretId="stagecoach/webhook/hello")["SecretString"] == "rotated-secret"
        previous = sm.get_secret_value(SecretId="stagecoach/webhook/hello", VersionStage="AWSPREVIOUS")
        assert previous["SecretString"] == "first-secret"
        assert stack_view("hello--dev") == before_stack
        assert ssm.get_parameter(Name="/hello--dev/version")["Parameter"]["Value"] == "sha1"
        assert bucket_name in [b["Name"] for b in s3.list_buckets()["Buckets"]]  # the resources the stack made
        # Executions are not restored (the reconciler resumes releases); their history still answers.
        with pytest.raises(ClientError, match="ExecutionDoesNotExist"):
            sfn.describe_execution(executionArn=execution)
        sfn.create_state_machine(name="hello-pass", definition=PASS_MACHINE, roleArn="arn:aws:iam::123456789012:role/x")
        assert sfn.get_execution_history(executionArn=execution)["events"] == before_history
        assert "Messages" not in sqs.receive_message(QueueUrl=resources.build_queue_url, WaitTimeSeconds=0)

        redeployed = deploy("hello--dev", "sha2", "UPDATE")  # the restored stack updates as any other
        assert redeployed["StackStatus"] == "UPDATE_COMPLETE"
        assert ssm.get_parameter(Name="/hello--dev/version")["Parameter"]["Value"] == "sha2"
        assert store.costs.restored_records >= len(before_items) + len(before_objects)


def test_a_stack_operation_in_flight_goes_on_after_the_restart(tmp_path: Path) -> None:
    now = [1000.0]
    previous = cloudformation.configure(delay_seconds=10, stale_seconds=0, clock=lambda: now[0])
    try:
        with emulator(tmp_path):
            cfn = client("cloudformation")
            cfn.create_change_set(
                StackName="hello--dev",
                ChangeSetName="cs-1",
                ChangeSetType="CREATE",
                TemplateBody=json.dumps(TEMPLATE),
                Parameters=[{"ParameterKey": "Sha", "ParameterValue": "sha1"}],
            )
            now[0] += 10
            cfn.execute_change_set(StackName="hello--dev", ChangeSetName="cs-1")
            now[0] += 4
            assert cfn.describe_stacks(StackName="hello--dev")["Stacks"][0]["StackStatus"] == "CREATE_IN_PROGRESS"
        now[0] += 1000  # the control plane was down: that time does not count
        with emulator(tmp_path):
            cfn = client("cloudformation")
            assert cfn.describe_stacks(StackName="hello--dev")["Stacks"][0]["StackStatus"] == "CREATE_IN_PROGRESS"
            now[0] += 6
            assert cfn.describe_stacks(StackName="hello--dev")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    finally:
        cloudformation.restore(previous)


def test_a_torn_journal_tail_and_a_half_written_snapshot_are_left_behind(tmp_path: Path) -> None:
    with emulator(tmp_path) as (_store, resources):
        client("dynamodb").put_item(TableName=resources.table, Item={"pk": {"S": "STACK#a"}, "sk": {"S": "#STACK"}})
    with (tmp_path / JOURNAL).open("ab") as journal:  # a kill -9 in the middle of the next record
        journal.write(frame(b"\x80\x05 a record that was being written")[:-5])
    (tmp_path / f"{SNAPSHOT}.tmp").write_bytes(b"half a snapshot")
    with emulator(tmp_path) as (_store, resources):
        assert [i["pk"]["S"] for i in items(resources.table)] == ["STACK#a"]


def test_the_directory_is_used_by_one_control_plane_reset_empties_it(tmp_path: Path) -> None:
    with emulator(tmp_path) as (_store, resources):
        client("dynamodb").put_item(TableName=resources.table, Item={"pk": {"S": "STACK#a"}, "sk": {"S": "#STACK"}})
        with pytest.raises(StartupError, match=r"is in use by another make run \(pid \d+\); stop it or run with"):
            StateStore(tmp_path).open()
    with emulator(tmp_path, reset=True) as (_store, resources):
        assert items(resources.table) == []


def test_a_directory_written_by_another_version_is_refused_with_the_fix(tmp_path: Path) -> None:
    with emulator(tmp_path):
        pass
    snapshot = tmp_path / SNAPSHOT
    snapshot.write_bytes(b"stagecoach-state 0 moto 1.0\n" + snapshot.read_bytes().partition(b"\n")[2])
    from moto import mock_aws

    with mock_aws(), pytest.raises(StartupError, match="run make run RESET=1 to start empty"):
        StateStore(tmp_path).open()
    StateStore(tmp_path).open(reset=True).close()  # the fix it names works


def test_the_journal_is_compacted_in_the_background_as_it_grows(tmp_path: Path, monkeypatch: Any) -> None:
    from chalicelib.local import state

    monkeypatch.setattr(state, "COMPACT_MIN_BYTES", 20_000)
    key = {"pk": {"S": "STACK#a"}, "sk": {"S": "#STACK"}}
    with emulator(tmp_path) as (store, resources):
        ddb = client("dynamodb")
        compacted = store.costs.compactions
        for n in range(300):  # one item written over and over: the journal grows, the live data does not
            ddb.put_item(TableName=resources.table, Item={**key, "n": {"N": str(n)}, "pad": {"S": "x" * 100}})
        assert wait_for(lambda: store.journal.size, lambda size: size < 20_000) < 20_000  # the sync thread did it
        assert store.costs.compactions > compacted
        ddb.put_item(TableName=resources.table, Item={**key, "n": {"N": "300"}})  # appended after the compaction
    with emulator(tmp_path) as (_store, resources):
        assert items(resources.table) == [{**key, "n": {"N": "300"}}]
