"""The local event pump: what Lambda's event source mappings and EventBridge do on AWS.

It long-polls the build queue and the local build-events queue in the emulator and calls the
handlers defined in ``app.py`` (the same objects Lambda would call) with Lambda-shaped events.
A message is deleted only after its handler returned; a failing handler leaves it for redelivery.
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


def lambda_context(function_name: str) -> Any:
    """A Lambda context object like the one chalice local passes."""
    from chalice.local import LambdaContext

    return LambdaContext(function_name, memory_size=512, max_runtime_ms=900_000)


class EventPump:
    """One polling thread per route; ``stop()`` ends them all."""

    def __init__(self, routes: list[Route], client: Any) -> None:
        self._routes = routes
        self._sqs = client
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @classmethod
    def for_app(cls, resources: LocalResources) -> "EventPump":
        """Routes of the Stagecoach app: build requests → worker, build events → handler."""
        import boto3

        import app as app_module

        routes = [
            Route("build_worker", resources.build_queue_url, app_module.build_worker, sqs_event),
            Route("build_state_changed", resources.events_queue_url, app_module.build_state_changed, eventbridge_event),
        ]
        return cls(routes, boto3.session.Session().client("sqs"))

    def start(self) -> None:
        """Start polling."""
        for route in self._routes:
            thread = threading.Thread(target=self._run, args=(route,), name=f"pump-{route.name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop polling and wait for the threads (a handler in progress finishes first)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def drain(self, max_rounds: int = 50) -> int:
        """Deliver what is queued now, synchronously (tests); returns how many messages were handled."""
        handled = 0
        for _ in range(max_rounds):
            round_count = sum(self._poll_once(route, wait_seconds=0) for route in self._routes)
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
        arn = self._queue_arn(route.queue_url)
        for message in messages:
            try:
                route.handler(route.shape(message, arn), lambda_context(route.name))
            except Exception:
                traceback.print_exc(file=sys.stderr)
                continue
            self._sqs.delete_message(QueueUrl=route.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return len(messages)

    def _queue_arn(self, queue_url: str) -> str:
        attrs = self._sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        return str(attrs["Attributes"]["QueueArn"])
