"""The local event pump: what Lambda's event source mappings, EventBridge and schedules do on AWS.

It long-polls the build queue, the stage coordinator's FIFO queue and the local build-events queue in
the emulator and calls the handlers defined in ``app.py`` (the same objects Lambda would call) with
Lambda-shaped events. A message is deleted only after its handler returned; a failing handler leaves it
for redelivery. It also watches the release executions and delivers a Step Functions "Execution Status
Change" event when one ends (EventBridge does that on AWS), and runs the scheduled sweeper.
"""

from __future__ import annotations

import json
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .resources import LocalResources

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass(frozen=True)
class Route:
    """Messages of ``queue_url`` go to ``handler`` as events made by ``shape``."""

    name: str
    queue_url: str
    handler: Handler
    shape: Callable[[dict[str, Any], str], dict[str, Any]]


def sqs_event(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """A Lambda SQS event holding one message."""
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message.get("Attributes", {}),
                "messageAttributes": message.get("MessageAttributes", {}),
                "md5OfBody": message.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": queue_arn.split(":")[3] if queue_arn.count(":") >= 3 else "us-east-1",
            }
        ]
    }


def eventbridge_event(message: dict[str, Any], _queue_arn: str) -> dict[str, Any]:
    """The EventBridge event carried in the message body."""
    event: dict[str, Any] = json.loads(message["Body"])
    return event


def scheduled_event(region: str) -> dict[str, Any]:
    """The EventBridge event a Rate schedule sends."""
    return {
        "version": "0",
        "id": "local-schedule",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "",
        "region": region,
        "resources": [],
        "detail": {},
    }


def lambda_context(function_name: str) -> Any:
    """A Lambda context object like the one chalice local passes."""
    from chalice.local import LambdaContext

    return LambdaContext(function_name, memory_size=512, max_runtime_ms=900_000)


def execution_event(execution: dict[str, Any], region: str) -> dict[str, Any]:
    """The EventBridge "Step Functions Execution Status Change" event of a DescribeExecution result."""

    def when(value: Any) -> Any:
        return int(value.timestamp() * 1000) if hasattr(value, "timestamp") else value

    detail = {
        "executionArn": execution["executionArn"],
        "stateMachineArn": execution["stateMachineArn"],
        "name": execution["name"],
        "status": execution["status"],
        "startDate": when(execution.get("startDate")),
        "stopDate": when(execution.get("stopDate")),
        "input": execution.get("input"),
        "output": execution.get("output"),
        "error": execution.get("error"),
        "cause": execution.get("cause"),
    }
    return {
        "version": "0",
        "id": f"local-{execution['name']}-{execution['status']}",
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": execution["executionArn"].split(":")[4],
        "time": "",
        "region": region,
        "resources": [execution["executionArn"]],
        "detail": detail,
    }


def _reported_failure(answer: Any, message_id: str) -> bool:
    """The handler answered with a partial batch response naming this message."""
    if not isinstance(answer, dict):
        return False
    failures = answer.get("batchItemFailures") or []
    return any(isinstance(f, dict) and f.get("itemIdentifier") == message_id for f in failures)


class ExecutionWatcher:
    """Notices executions of the state machine that stopped running and reports each once."""

    def __init__(self, client: Any, state_machine_arn: str, handler: Handler, region: str) -> None:
        self._sfn = client
        self._arn = state_machine_arn
        self._handler = handler
        self._region = region
        self._running: set[str] = set()

    def check(self) -> int:
        """Deliver an event for every execution that was running at the last check and is not now."""
        pages = self._sfn.get_paginator("list_executions").paginate(stateMachineArn=self._arn, statusFilter="RUNNING")
        running = {e["executionArn"] for page in pages for e in page["executions"]}
        ended = self._running - running
        self._running = running
        for arn in sorted(ended):
            execution = self._sfn.describe_execution(executionArn=arn)
            self._handler(execution_event(execution, self._region), lambda_context("execution_status_changed"))
        return len(ended)


@dataclass(frozen=True)
class Ticker:
    """``action`` every ``seconds`` on its own thread, the first time ``first_after`` seconds after start
    (default: ``seconds``)."""

    name: str
    seconds: float
    action: Callable[[], Any]
    first_after: float | None = None


class EventPump:
    """One polling thread per route and per ticker; ``stop()`` ends them all."""

    def __init__(
        self,
        routes: list[Route],
        client: Any,
        tickers: list[Ticker] | None = None,
        watcher: ExecutionWatcher | None = None,
    ) -> None:
        self._routes = routes
        self._sqs = client
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watcher = watcher
        self._arns: dict[str, str] = {}
        self._tickers = list(tickers or [])
        if watcher is not None:
            self._tickers.append(Ticker("executions", 0.5, watcher.check))

    @classmethod
    def for_app(
        cls, resources: LocalResources, sweep_seconds: float = 10.0, tap: Callable[[dict[str, Any]], None] | None = None
    ) -> "EventPump":
        """Routes of the Stagecoach app: build requests → worker, stage requests → coordinator, build
        events → handler; execution ends → reconciler; the sweeper at once (after a restart, releases that
        were running resume now) and then every ``sweep_seconds``. ``tap`` sees every event before its
        handler does (to record what travelled)."""
        import boto3

        import app as app_module

        def tapped(handler: Handler) -> Handler:
            if tap is None:
                return handler

            def deliver(event: dict[str, Any], context: Any) -> Any:
                tap(event)
                return handler(event, context)

            return deliver

        routes = [
            Route("build_worker", resources.build_queue_url, tapped(app_module.build_worker), sqs_event),
            Route("coordinate_stages", resources.stage_queue_url, tapped(app_module.coordinate_stages), sqs_event),
            Route(
                "build_state_changed",
                resources.events_queue_url,
                tapped(app_module.build_state_changed),
                eventbridge_event,
            ),
        ]
        if resources.notifications_queue_url:
            worker = app_module.deliver_notifications
            routes.append(Route("deliver_notifications", resources.notifications_queue_url, worker, sqs_event))
        session = boto3.session.Session()
        watcher = ExecutionWatcher(
            session.client("stepfunctions"),
            resources.state_machine_arn,
            tapped(app_module.execution_status_changed),
            resources.region,
        )

        def sweep() -> Any:
            return app_module.sweep_pending_releases(scheduled_event(resources.region), lambda_context("sweep"))

        return cls(routes, session.client("sqs"), [Ticker("sweeper", sweep_seconds, sweep, first_after=0)], watcher)

    def start(self) -> None:
        """Start polling."""
        for route in self._routes:
            thread = threading.Thread(target=self._run, args=(route,), name=f"pump-{route.name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        for ticker in self._tickers:
            thread = threading.Thread(target=self._tick, args=(ticker,), name=f"pump-{ticker.name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _tick(self, ticker: Ticker) -> None:
        wait = ticker.seconds if ticker.first_after is None else ticker.first_after
        while not self._stop.wait(wait):
            wait = ticker.seconds
            try:
                ticker.action()
            except Exception:
                if self._stop.is_set():
                    return
                traceback.print_exc(file=sys.stderr)

    def stop(self) -> None:
        """Stop polling and wait for the threads (a handler in progress finishes first)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def drain(self, max_rounds: int = 50) -> int:
        """Deliver what is queued now and the ends of executions, synchronously (tests); returns how many
        messages and events were handled."""
        handled = 0
        for _ in range(max_rounds):
            round_count = sum(self._poll_once(route, wait_seconds=0) for route in self._routes)
            if self._watcher is not None:
                round_count += self._watcher.check()
            handled += round_count
            if not round_count:
                break
        return handled

    def _run(self, route: Route) -> None:
        while not self._stop.is_set():
            try:
                self._poll_once(route, wait_seconds=1)
            except Exception:
                if self._stop.is_set():
                    return
                traceback.print_exc(file=sys.stderr)
                self._stop.wait(1)

    def _poll_once(self, route: Route, wait_seconds: int) -> int:
        response = self._sqs.receive_message(
            QueueUrl=route.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=wait_seconds,
            VisibilityTimeout=60,
            AttributeNames=["All"],
        )
        messages = response.get("Messages", [])
        if not messages:
            return 0
        arn = self._queue_arn(route.queue_url)
        failed_groups: set[str] = set()
        for message in messages:
            group = message.get("Attributes", {}).get("MessageGroupId")
            if group is not None and group in failed_groups:
                continue  # FIFO: what follows a failed message of its group waits for its redelivery, as on AWS
            try:
                answer = route.handler(route.shape(message, arn), lambda_context(route.name))
                if _reported_failure(answer, message["MessageId"]):
                    continue  # partial batch response: Lambda leaves the message for redelivery
            except Exception:
                traceback.print_exc(file=sys.stderr)
                if group is not None:
                    failed_groups.add(group)
                continue
            self._sqs.delete_message(QueueUrl=route.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return len(messages)

    def _queue_arn(self, queue_url: str) -> str:
        if queue_url not in self._arns:
            attrs = self._sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
            self._arns[queue_url] = str(attrs["Attributes"]["QueueArn"])
        return self._arns[queue_url]
