"""Webhook speed, in one run against the emulator (issue: webhooks).

aws_calls_per_webhook: AWS API calls of one accepted push, warm, counted with botocore event hooks.
overhead_ratio: median time of the app's webhook handler (called as Lambda calls it) divided by a
  floor handler making the same AWS calls with raw boto3 and no framework.
scale_ratio: median accepted-push time with 10,000 stacks in the table divided by with 10.
persistence_overhead_ratio: median accepted-push time with the embedded state kept in a state directory (as
  ``make run`` does) divided by with nothing kept, in alternating blocks of the same run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.lambda_events import LambdaContext, apigw_event  # noqa: E402
from tests.webhook_support import github_headers, github_push  # noqa: E402

SHA_COUNTER = iter(range(1, 10**9))


def next_sha() -> str:
    """A new commit sha each call."""
    return hashlib.sha1(str(next(SHA_COUNTER)).encode()).hexdigest()


def push_event(stack_id: str, secret: str, sha: str) -> dict[str, Any]:
    """A signed GitHub push, as API Gateway hands it to the Lambda."""
    body = json.dumps(github_push(sha=sha, full_name="acme/bench"))
    headers = {k.lower(): v for k, v in github_headers(secret, body.encode()).items()}
    return apigw_event(
        "POST", "/webhooks/github/{stack_id}", f"/webhooks/github/{stack_id}", body, headers, {"stack_id": stack_id}
    )


class CallCounter:
    """Counts the API calls of every botocore client made after ``install`` (boto3's and pynamodb's)."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.counting = False

    def install(self) -> None:
        """Register a ``before-call`` hook that every new botocore session gets."""
        import botocore.handlers

        botocore.handlers.BUILTIN_HANDLERS.append(("before-call.*.*", self._count))

    def _count(self, model: Any, **_: Any) -> None:
        if self.counting:
            self.calls.append(f"{model.service_model.service_name}.{model.name}")


NOOP_DEFINITION = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})


def create_stack(app: Any, stack_id: str) -> str:
    """Create a stack through the API; returns its webhook secret."""
    body = json.dumps(
        {
            "id": stack_id,
            "name": stack_id,
            "stages": [{"name": "dev"}, {"name": "prod"}],
            "repository": {"provider": "github", "full_name": "acme/bench", "clone_url": "https://x.test/b.git"},
        }
    )
    response = app(
        apigw_event("POST", "/stacks", "/stacks", body, {"content-type": "application/json"}), LambdaContext()
    )
    assert response["statusCode"] == 201, response
    return str(json.loads(response["body"])["webhook"]["secret"])


def time_pushes(app: Any, stack_id: str, secret: str, runs: int) -> list[float]:
    """Seconds per accepted push through the app's handler."""
    times = []
    for _ in range(runs):
        event = push_event(stack_id, secret, next_sha())
        t0 = time.perf_counter()
        response = app(event, LambdaContext())
        times.append(time.perf_counter() - t0)
        assert response["statusCode"] == 202, response
    return times


def floor_handler(clients: dict[str, Any], table: str, machine_arn: str, stack_id: str, sha: str) -> None:
    """The same three AWS calls, raw boto3, no framework, no validation."""
    ddb, sfn = clients["dynamodb"], clients["stepfunctions"]
    ddb.get_item(TableName=table, Key={"pk": {"S": f"STACK#{stack_id}"}, "sk": {"S": "#STACK"}})
    release = f"r{uuid.uuid4().hex}"
    ddb.transact_write_items(
        TransactItems=[
            {
                "Put": {
                    "TableName": table,
                    "ConditionExpression": "attribute_not_exists(pk)",
                    "Item": {"pk": {"S": f"FLOOR#{release}"}, "sk": {"S": "#RELEASE"}, "sha": {"S": sha}},
                }
            },
            {
                "Put": {
                    "TableName": table,
                    "ConditionExpression": "attribute_not_exists(pk)",
                    "Item": {"pk": {"S": f"FLOORPUSH#{stack_id}#{sha}"}, "sk": {"S": "#KEY"}},
                }
            },
            {
                "Put": {
                    "TableName": table,
                    "ConditionExpression": "attribute_not_exists(pk)",
                    "Item": {"pk": {"S": f"FLOORDELIVERY#{release}"}, "sk": {"S": "#KEY"}},
                }
            },
        ]
    )
    sfn.start_execution(stateMachineArn=machine_arn, name=release, input=json.dumps({"release": {"id": release}}))


def fill_table(ddb: Any, table: str, count: int, delete: bool = False) -> None:
    """Add (or delete) ``count`` filler stack items, written directly: the bench measures pushes."""
    batch: list[dict[str, Any]] = []
    for i in range(count):
        sid = f"filler-{i:05d}"
        key = {"pk": {"S": f"STACK#{sid}"}, "sk": {"S": "#STACK"}}
        item = {**key, "gsi1pk": {"S": "STACKS"}, "gsi1sk": {"S": sid}, "id": {"S": sid}, "name": {"S": sid}}
        batch.append({"DeleteRequest": {"Key": key}} if delete else {"PutRequest": {"Item": item}})
        if len(batch) == 25:
            ddb.batch_write_item(RequestItems={table: batch})
            batch = []
    if batch:
        ddb.batch_write_item(RequestItems={table: batch})


def main() -> int:
    """Print the three figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()

    from chalicelib.local.control_plane import ControlPlane, chalice_stage_environment

    counter = CallCounter()
    counter.install()
    state_dir = tempfile.TemporaryDirectory(prefix="stagecoach-bench-")
    plane = ControlPlane("127.0.0.1", 0, 0, state_dir=Path(state_dir.name)).start(pump=False)
    try:
        os.environ.update(chalice_stage_environment("local"))
        import boto3

        from app import app
        from chalicelib import bootstrap

        # The webhook side must not depend on the pipeline: executions run a no-op machine here, so
        # hundreds of real releases waiting for builds do not slow the emulator down as the bench runs.
        sfn = boto3.session.Session().client("stepfunctions")
        machine = sfn.create_state_machine(
            name="bench-noop", definition=NOOP_DEFINITION, roleArn="arn:aws:iam::123456789012:role/bench"
        )["stateMachineArn"]
        os.environ["STAGECOACH_STATE_MACHINE_ARN"] = machine
        bootstrap.reset()
        assert plane.resources is not None
        table = plane.resources.table
        secret = create_stack(app, "bench")
        time_pushes(app, "bench", secret, 3)  # warm: clients created, secret cached

        counter.counting = True
        time_pushes(app, "bench", secret, 1)
        counter.counting = False
        calls = list(counter.calls)

        clients = {s: boto3.session.Session().client(s) for s in ("dynamodb", "stepfunctions")}
        for _ in range(3):
            floor_handler(clients, table, machine, "bench", next_sha())
        app_times, floor_times = [], []
        for _ in range(args.runs):
            app_times += time_pushes(app, "bench", secret, 1)
            t0 = time.perf_counter()
            floor_handler(clients, table, machine, "bench", next_sha())
            floor_times.append(time.perf_counter() - t0)

        # Blocks alternate (10 stacks, 10,000, 10 again, 10,000 again, ...) so that drift over the run
        # (the emulator's growing execution list, the machine) weighs on both sides alike.
        few_times: list[float] = []
        many_times: list[float] = []
        for _ in range(3):
            few_times += time_pushes(app, "bench", secret, args.runs)
            fill_table(clients["dynamodb"], table, 10_000)
            many_times += time_pushes(app, "bench", secret, args.runs)
            fill_table(clients["dynamodb"], table, 10_000, delete=True)
        few, many = statistics.median(few_times), statistics.median(many_times)

        kept_times: list[float] = []
        not_kept_times: list[float] = []
        for _ in range(3):
            kept_times += time_pushes(app, "bench", secret, args.runs)
            with plane.state.paused():
                not_kept_times += time_pushes(app, "bench", secret, args.runs)
        kept, not_kept = statistics.median(kept_times), statistics.median(not_kept_times)
        costs = plane.state.costs
    finally:
        plane.stop()
        state_dir.cleanup()
    print(f"aws_calls: {', '.join(calls)}")
    print(f"aws_calls_per_webhook: {len(calls)}")
    print(
        f"handler_median_ms: {statistics.median(app_times) * 1000:.2f}  floor_median_ms: "
        f"{statistics.median(floor_times) * 1000:.2f}"
    )
    print(f"overhead_ratio: {statistics.median(app_times) / statistics.median(floor_times):.2f}")
    print(f"push_median_ms_10_stacks: {few * 1000:.2f}  push_median_ms_10000_stacks: {many * 1000:.2f}")
    print(f"scale_ratio: {many / few:.2f}")
    print(
        f"push_median_ms_state_kept: {kept * 1000:.2f}  push_median_ms_nothing_kept: {not_kept * 1000:.2f}  "
        f"journal_records: {costs.journal_records}  snapshots: {costs.snapshots} "
        f"({costs.snapshot_seconds / max(costs.snapshots, 1) * 1000:.1f} ms each, {costs.snapshot_bytes} bytes)"
    )
    print(f"persistence_overhead_ratio: {kept / not_kept:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
