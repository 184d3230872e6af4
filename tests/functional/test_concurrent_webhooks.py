"""Concurrent deliveries over real HTTP: none refused, exactly one release and execution per push."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
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


NOOP_DEFINITION = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})


@contextmanager
def noop_release_machine(plane: Any) -> Iterator[str]:
    """Releases start a no-op state machine meanwhile (as bench/webhook.py does): the test is about the
    HTTP front door, and 50 real executions would spend the emulator's CPU on builds that never come."""
    from chalicelib import bootstrap

    sfn = boto3.client("stepfunctions", endpoint_url=plane.aws_url, region_name="us-east-1")
    arn = sfn.create_state_machine(
        name=f"noop-{uuid.uuid4().hex[:8]}", definition=NOOP_DEFINITION, roleArn="arn:aws:iam::123456789012:role/noop"
    )["stateMachineArn"]
    saved = os.environ["STAGECOACH_STATE_MACHINE_ARN"]
    os.environ["STAGECOACH_STATE_MACHINE_ARN"] = arn
    bootstrap.reset()
    try:
        yield arn
    finally:
        os.environ["STAGECOACH_STATE_MACHINE_ARN"] = saved
        bootstrap.reset()


def test_a_hundred_concurrent_deliveries_are_all_accepted(plane: Any) -> None:
    """A burst of 100 connections at once (GitHub does not redeliver a refused one): no resets, all 2xx."""
    stack_id = "burst"
    status, created = http("POST", f"{plane.url}/stacks", stack_body(id=stack_id))
    assert status == 201, created
    secret = created["webhook"]["secret"]
    shas = [hashlib.sha1(f"burst-{i}".encode()).hexdigest() for i in range(50)]
    # Each push delivered twice (two delivery ids, as a provider retry would be): 100 requests, 50 pushes.
    deliveries = [(sha, f"burst-{copy}-{sha}") for copy in range(2) for sha in shas]
    start_together = threading.Barrier(len(deliveries))

    def deliver(delivery: tuple[str, str]) -> tuple[int, Any] | BaseException:
        sha, delivery_id = delivery
        body = json.dumps(github_push(sha=sha)).encode()
        headers = github_headers(secret, body, delivery=delivery_id)
        start_together.wait(timeout=60)
        try:
            return http("POST", f"{plane.url}/webhooks/github/{stack_id}", body, headers, timeout=120)
        except OSError as exc:  # connection refused or reset
            return exc

    with noop_release_machine(plane) as machine, ThreadPoolExecutor(max_workers=len(deliveries)) as pool:
        results = list(pool.map(deliver, deliveries))
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == [], f"{len(errors)} connection errors: {errors[:3]}"
    answered = [r for r in results if not isinstance(r, BaseException)]
    assert sorted(status for status, _ in answered) == [200] * 50 + [202] * 50, answered
    mine = [i for i in release_items(plane) if i["stack_id"]["S"] == stack_id]
    assert sorted(i["sha"]["S"] for i in mine) == sorted(shas)
    assert {body["release_id"] for _, body in answered} == {i["id"]["S"] for i in mine}
    sfn = boto3.client("stepfunctions", endpoint_url=plane.aws_url, region_name="us-east-1")
    started = sfn.list_executions(stateMachineArn=machine, maxResults=1000)["executions"]
    assert sorted(e["name"] for e in started) == sorted(i["execution_name"]["S"] for i in mine)


def test_each_concurrent_request_logs_its_own_correlation_id(plane: Any) -> None:
    """The local gateway serves requests on threads: a request's log line never carries another's id."""
    import logging

    from chalicelib import bootstrap

    status, _ = http("POST", f"{plane.url}/stacks", stack_body(id="logged"))
    assert status == 201
    formatter = bootstrap.logger().registered_formatter
    lines: list[dict[str, Any]] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(json.loads(formatter.format(record)))  # type: ignore[method-assign]
    logging.getLogger("stagecoach").addHandler(handler)
    start_together = threading.Barrier(30)

    def get(i: int) -> int:
        start_together.wait(timeout=60)
        request = {"Content-Type": "application/json", "X-Request-Id": f"req-{i}"}
        return http("GET", f"{plane.url}/stacks/logged?n={i}", headers=request)[0]

    try:
        with ThreadPoolExecutor(max_workers=30) as pool:
            assert list(pool.map(get, range(30))) == [200] * 30
    finally:
        logging.getLogger("stagecoach").removeHandler(handler)
    requests = [e for e in lines if e.get("message") == "request" and e.get("route") == "/stacks/{stack_id}"]
    assert len(requests) == 30
    assert all(e["correlation_id"] == e["request_id"] for e in requests), requests
