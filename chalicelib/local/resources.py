"""Creates (or updates) every AWS resource the app needs, in the embedded emulator.

On AWS the SAM template creates the same resources; ``tests/unit/test_template.py`` keeps the
two in step.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RELEASE_DEFINITION = ROOT / "statemachines" / "release.asl.json"
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
LOCAL_ACCOUNT = "123456789012"


def table_definition(name: str) -> dict[str, Any]:
    """The CreateTable request of the single Stagecoach table (see docs/design.md)."""
    return {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": attr, "AttributeType": "S"}
            for attr in ("pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk")
        ],
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": "gsi1",
                "KeySchema": [
                    {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                    {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            },
            {
                "IndexName": "gsi2",
                "KeySchema": [
                    {"AttributeName": "gsi2pk", "KeyType": "HASH"},
                    {"AttributeName": "gsi2sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            },
        ],
    }


def placeholders(definition: str) -> set[str]:
    """Every ``${Name}`` placeholder used in an ASL definition."""
    return set(PLACEHOLDER.findall(definition))


def render_definition(definition: str, substitutions: Mapping[str, str]) -> str:
    """Replace ``${Name}`` placeholders as Step Functions DefinitionSubstitutions does."""
    missing = placeholders(definition) - set(substitutions)
    if missing:
        raise KeyError(f"no substitution for {sorted(missing)}")
    return PLACEHOLDER.sub(lambda m: substitutions[m.group(1)], definition)


@dataclass(frozen=True)
class LocalResources:
    """Names and addresses of the emulated resources; ``environment()`` configures the app."""

    region: str
    table: str
    build_queue_url: str
    events_queue_url: str
    artifact_bucket: str
    state_machine_arn: str
    stage_queue_url: str = ""
    notifications_queue_url: str = ""
    notifications_dlq_url: str = ""

    def environment(self) -> dict[str, str]:
        """The app's environment variables for these resources."""
        return {
            "STAGECOACH_TABLE": self.table,
            "STAGECOACH_STATE_MACHINE_ARN": self.state_machine_arn,
            "STAGECOACH_BUILD_QUEUE_URL": self.build_queue_url,
            "STAGECOACH_LOCAL_EVENTS_QUEUE_URL": self.events_queue_url,
            "STAGECOACH_ARTIFACT_BUCKET": self.artifact_bucket,
            "STAGECOACH_BUILDER": "local",
            "STAGECOACH_NOTIFICATIONS_QUEUE_URL": self.notifications_queue_url,
            "STAGECOACH_NOTIFICATIONS_DLQ_URL": self.notifications_dlq_url,
        }


def substitutions(
    region: str, table: str, build_queue_url: str, artifact_bucket: str, stage_queue_url: str
) -> dict[str, str]:
    """DefinitionSubstitutions of the release state machine in the emulator."""
    return {
        "TableName": table,
        "BuildQueueUrl": build_queue_url,
        "StageQueueUrl": stage_queue_url,
        "ArtifactBucket": artifact_bucket,
        "Region": region,
    }


def ensure_resources(session: Any, prefix: str = "stagecoach") -> LocalResources:
    """Create or update the table, queues, bucket and state machine; safe to call again."""
    region = session.region_name
    ddb = session.client("dynamodb")
    table = f"{prefix}"
    if table not in ddb.list_tables()["TableNames"]:
        ddb.create_table(**table_definition(table))
        ddb.update_time_to_live(
            TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
        )
    sqs = session.client("sqs")
    build_queue_url = sqs.create_queue(QueueName=f"{prefix}-builds")["QueueUrl"]
    events_queue_url = sqs.create_queue(QueueName=f"{prefix}-build-events")["QueueUrl"]
    stage_queue_url = sqs.create_queue(
        QueueName=f"{prefix}-stages.fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
    )["QueueUrl"]
    notifications_dlq_url = sqs.create_queue(
        QueueName=f"{prefix}-notifications-dlq", Attributes={"MessageRetentionPeriod": str(14 * 24 * 3600)}
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=notifications_dlq_url, AttributeNames=["QueueArn"])["Attributes"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn["QueueArn"], "maxReceiveCount": 5})
    notifications_queue_url = sqs.create_queue(
        QueueName=f"{prefix}-notifications",
        Attributes={"MessageRetentionPeriod": str(4 * 24 * 3600), "RedrivePolicy": redrive},
    )["QueueUrl"]
    bucket = f"{prefix}-artifacts"
    s3 = session.client("s3")
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        if region == "us-east-1":
            s3.create_bucket(Bucket=bucket)
        else:
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    definition = render_definition(
        RELEASE_DEFINITION.read_text(), substitutions(region, table, build_queue_url, bucket, stage_queue_url)
    )
    role_arn = f"arn:aws:iam::{LOCAL_ACCOUNT}:role/{prefix}-state-machine"
    sfn = session.client("stepfunctions")
    name = f"{prefix}-release"
    arn = f"arn:aws:states:{region}:{LOCAL_ACCOUNT}:stateMachine:{name}"
    known = {m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]}
    if arn in known:
        sfn.update_state_machine(stateMachineArn=arn, definition=definition, roleArn=role_arn)
    else:
        arn = sfn.create_state_machine(name=name, definition=definition, roleArn=role_arn)["stateMachineArn"]
    json.loads(definition)  # the rendered definition must stay valid JSON
    return LocalResources(
        region=region,
        table=table,
        build_queue_url=build_queue_url,
        events_queue_url=events_queue_url,
        artifact_bucket=bucket,
        state_machine_arn=arn,
        stage_queue_url=stage_queue_url,
        notifications_queue_url=notifications_queue_url,
        notifications_dlq_url=notifications_dlq_url,
    )
