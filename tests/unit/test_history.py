"""The release timeline: built from history events, across every page of GetExecutionHistory."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.adapters.history import StepFunctionsHistory
from chalicelib.domain.history import build_timeline, redact_task_tokens, release_timeline

T0 = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)


def ev(n: int, kind: str, name: str | None = None, **details: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"id": n, "type": kind, "timestamp": (T0 + timedelta(seconds=n)).isoformat()}
    if name and kind.endswith("StateEntered"):
        event["stateEnteredEventDetails"] = {"name": name}
    if name and kind.endswith("StateExited"):
        event["stateExitedEventDetails"] = {"name": name}
    event.update(details)
    return event


def release_events() -> list[dict[str, Any]]:
    return [
        ev(1, "ExecutionStarted"),
        ev(2, "TaskStateEntered", "MarkRunning"),
        ev(3, "TaskStateExited", "MarkRunning"),
        ev(4, "MapStateEntered", "Deploy"),
        ev(5, "MapIterationStarted", mapIterationStartedEventDetails={"index": 0}),
        ev(6, "TaskStateEntered", "AcquireLock"),
        ev(7, "TaskStateExited", "AcquireLock"),
        ev(8, "MapIterationSucceeded", mapIterationSucceededEventDetails={"index": 0}),
        ev(9, "MapIterationStarted", mapIterationStartedEventDetails={"index": 1}),
        ev(10, "TaskStateEntered", "CreateChangeSet"),
        ev(11, "TaskFailed", taskFailedEventDetails={"error": "CloudFormation.X", "cause": "Stack does not exist"}),
        ev(12, "TaskStateExited", "CreateChangeSet"),
        ev(13, "TaskStateEntered", "ExecuteChangeSet"),
        ev(14, "TaskFailed", taskFailedEventDetails={"error": "Boom", "cause": "it broke"}),
        ev(15, "MapIterationFailed", mapIterationFailedEventDetails={"index": 1}),
        ev(16, "MapStateExited", "Deploy"),
        ev(17, "FailStateEntered", "ReleaseFailed"),
        ev(18, "ExecutionFailed", executionFailedEventDetails={"error": "StageFailed", "cause": "test failed"}),
    ]


def test_timeline_has_one_entry_per_state_with_stage_outcome_and_duration() -> None:
    timeline = build_timeline(release_events(), ["dev", "test", "prod"])
    rows = [(e.name, e.type, e.stage, e.outcome) for e in timeline]
    assert rows == [
        ("MarkRunning", "Task", None, "succeeded"),
        ("Deploy", "Map", None, "succeeded"),
        ("AcquireLock", "Task", "dev", "succeeded"),
        ("CreateChangeSet", "Task", "test", "caught"),
        ("ExecuteChangeSet", "Task", "test", "failed"),
        ("ReleaseFailed", "Fail", None, "failed"),
    ]
    assert timeline[0].duration_seconds == 1.0
    assert timeline[1].duration_seconds == 12.0
    failed = timeline[4]
    assert (failed.error, failed.cause, failed.ended_at) == ("Boom", "it broke", None)
    assert timeline[5].error == "StageFailed"


def test_resumed_release_timeline_shows_the_lost_execution_then_the_one_that_took_over() -> None:
    lost = [
        ev(1, "ExecutionStarted"),
        ev(2, "TaskStateEntered", "MarkRunning"),
        ev(3, "TaskStateExited", "MarkRunning"),
        ev(4, "MapStateEntered", "Deploy"),
        ev(5, "MapIterationStarted", mapIterationStartedEventDetails={"index": 0}),
        ev(6, "TaskStateEntered", "WaitForApproval"),
    ]
    resumed = [
        ev(20, "ExecutionStarted"),
        ev(21, "MapStateEntered", "Deploy"),
        ev(22, "MapIterationStarted", mapIterationStartedEventDetails={"index": 0}),
        ev(23, "TaskStateEntered", "WaitForApproval"),
    ]
    first, second = "arn:aws:states:us-east-1:1:execution:m:rel-1", "arn:aws:states:us-east-1:1:execution:m:rel-1-r2"
    timeline = release_timeline([(first, lost), (second, resumed)], ["prod"])
    rows = [(e.execution, e.name, e.stage, e.outcome) for e in timeline]
    assert rows == [
        ("rel-1", "MarkRunning", None, "succeeded"),
        ("rel-1", "Deploy", None, "interrupted"),
        ("rel-1", "WaitForApproval", "prod", "interrupted"),
        ("rel-1-r2", "Deploy", None, "running"),
        ("rel-1-r2", "WaitForApproval", "prod", "running"),
    ]
    assert timeline[0].to_dict()["execution"] == "rel-1"


class PagedClient:
    """A Step Functions client stand-in that serves history in pages of ``size`` with tokens."""

    class exceptions:
        class ExecutionDoesNotExist(Exception):
            pass

    def __init__(self, events: list[dict[str, Any]], size: int) -> None:
        self.events = events
        self.size = size
        self.calls: list[dict[str, Any]] = []

    def get_execution_history(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        if kwargs["executionArn"] == "missing":
            raise self.exceptions.ExecutionDoesNotExist()
        start = int(kwargs.get("nextToken", "0"))
        page: dict[str, Any] = {"events": self.events[start : start + self.size]}
        if start + self.size < len(self.events):
            page["nextToken"] = str(start + self.size)
        return page


def test_history_follows_every_page_and_converts_timestamps() -> None:
    raw = [{**e, "timestamp": T0 + timedelta(seconds=e["id"])} for e in release_events()]
    client = PagedClient(raw, size=5)
    events = StepFunctionsHistory(lambda: client, page_size=5).events("arn")
    assert events is not None
    assert [e["id"] for e in events] == list(range(1, 19))
    assert len(client.calls) == 4
    assert [c.get("nextToken") for c in client.calls] == [None, "5", "10", "15"]
    assert events[0]["timestamp"] == "2026-11-27T12:00:01.000Z"


def test_history_of_an_execution_that_never_started_is_none() -> None:
    assert StepFunctionsHistory(lambda: PagedClient([], 5)).events("missing") is None


TOKEN = "AQCEAAAAKgAAAAMAAAAAAAAAAf0f0FRK1pNm2x9mXoUVkLwEXAMPLEtoken"
OTHER = "AQCEAAAAKgAAAAMAAAAAAAAAAcoordinatorToken"


def test_raw_history_shows_no_task_token_wherever_it_is() -> None:

    message = json.dumps({"task_token": TOKEN, "release_id": "r1", "clone_url": "https://***@host/a.git"})
    events = [
        {
            "type": "TaskScheduled",
            "taskScheduledEventDetails": {
                "parameters": json.dumps({"QueueUrl": "q", "MessageBody": message}),
                "resource": "sendMessage.waitForTaskToken",
            },
        },
        {
            "type": "TaskScheduled",
            "taskScheduledEventDetails": {
                "parameters": json.dumps({"Item": {"task_token": {"S": TOKEN}, "status": {"S": "AWAITING_APPROVAL"}}}),
            },
        },
        {
            "type": "TaskFailed",
            "taskFailedEventDetails": {"error": "States.Timeout", "cause": f"token {TOKEN} expired"},
        },
        {"type": "TaskSubmitted", "taskSubmittedEventDetails": {"output": json.dumps({"TaskToken": TOKEN})}},
        {
            "type": "TaskScheduled",
            "taskScheduledEventDetails": {
                "parameters": json.dumps({"MessageBody": {"kind": "request_approval", "token": OTHER}}),
            },
        },
    ]
    redacted = redact_task_tokens(events)
    text = json.dumps(redacted)
    assert TOKEN not in text and OTHER not in text
    assert text.count("***") >= 5
    body = json.loads(json.loads(redacted[0]["taskScheduledEventDetails"]["parameters"])["MessageBody"])
    assert body == {"task_token": "***", "release_id": "r1", "clone_url": "https://***@host/a.git"}
    assert redacted[2]["taskFailedEventDetails"]["cause"] == "token *** expired"


def test_history_without_tokens_is_unchanged() -> None:

    events = [{"type": "ExecutionStarted", "executionStartedEventDetails": {"input": '{"a": [1, 2]}'}}]
    assert redact_task_tokens(events) == events
