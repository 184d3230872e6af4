"""The emulator's DynamoDB keeps the service's isolation: a read never sees an item in the middle of a write."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

KEY = {"pk": {"S": "RELEASE#r1"}, "sk": {"S": "#RELEASE"}}
NAMES = {f"#a{i}": f"attribute{i}" for i in range(20)}


@pytest.fixture
def table() -> Iterator[Any]:
    from moto import mock_aws

    from chalicelib.local.emulator import harden_moto

    harden_moto()
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(
            TableName="items",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        ddb.put_item(TableName="items", Item=KEY)
        yield ddb


def test_reads_never_see_an_update_half_applied(table: Any) -> None:
    """Before: about one read in twelve failed with moto's 'dictionary changed size during iteration'."""
    writer_client = boto3.client("dynamodb", region_name="us-east-1")
    stop = threading.Event()
    writer_errors: list[BaseException] = []

    def rewrite_attributes() -> None:
        add = "SET " + ", ".join(f"#a{i} = :v" for i in range(20))
        remove = "REMOVE " + ", ".join(f"#a{i}" for i in range(20))
        try:
            while not stop.is_set():
                writer_client.update_item(
                    TableName="items",
                    Key=KEY,
                    UpdateExpression=add,
                    ExpressionAttributeNames=NAMES,
                    ExpressionAttributeValues={":v": {"S": "x" * 100}},
                )
                writer_client.update_item(
                    TableName="items", Key=KEY, UpdateExpression=remove, ExpressionAttributeNames=NAMES
                )
        except BaseException as exc:  # reported below
            writer_errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns every few bytecodes: the race shows at once when it exists
    writer = threading.Thread(target=rewrite_attributes)
    writer.start()
    try:
        for _ in range(60):
            items = table.query(
                TableName="items", KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": KEY["pk"]}
            )["Items"]
            item = table.get_item(TableName="items", Key=KEY, ConsistentRead=True)["Item"]
            # Whole writes only: all twenty attributes or none of them.
            assert len(items[0]) in (2, 22) and len(item) in (2, 22)
    finally:
        stop.set()
        writer.join()
        sys.setswitchinterval(interval)
    assert writer_errors == []
