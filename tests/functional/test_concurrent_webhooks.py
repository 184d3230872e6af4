"""Concurrent identical deliveries over real HTTP: exactly one release and one execution."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest

from tests.fakes import stack_body
from tests.plane import http, running_plane
from tests.webhook_support import github_headers, github_push


@pytest.fixture(scope="module")
def plane() -> Iterator[Any]:
    with running_plane(pump=False) as plane:
        yield plane


def release_items(plane: Any) -> list[dict[str, Any]]:
    ddb = boto3.client("dynamodb", endpoint_url=plane.aws_url, region_name="us-east-1")
    items = ddb.scan(TableName=plane.resources.table)["Items"]
    return [i for i in items if i["pk"]["S"].startswith("RELEASE#") and i["sk"]["S"] == "#RELEASE"]


@pytest.mark.parametrize("same_delivery_id", [True, False])
def test_twenty_identical_deliveries_make_one_release(plane: Any, same_delivery_id: bool) -> None:
    stack_id = f"conc-{int(same_delivery_id)}"
    status, created = http("POST", f"{plane.url}/stacks", stack_body(id=stack_id))
    assert status == 201, created
    secret = created["webhook"]["secret"]
    body = json.dumps(github_push()).encode()

    def deliver(i: int) -> tuple[int, Any]:
        headers = github_headers(secret, body, delivery="same" if same_delivery_id else f"d-{i}")
        return http("POST", f"{plane.url}/webhooks/github/{stack_id}", body, headers)

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(deliver, range(20)))
    statuses = sorted(s for s, _ in results)
    assert statuses == [200] * 19 + [202], results
    assert len({b["release_id"] for _, b in results}) == 1
    mine = [i for i in release_items(plane) if i["stack_id"]["S"] == stack_id]
    assert len(mine) == 1
    sfn = boto3.client("stepfunctions", endpoint_url=plane.aws_url, region_name="us-east-1")
    names = [e["name"] for e in sfn.list_executions(stateMachineArn=plane.resources.state_machine_arn)["executions"]]
    assert names.count(mine[0]["execution_name"]["S"]) == 1
