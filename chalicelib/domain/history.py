"""A readable timeline of a release's execution, built from Step Functions history events."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .releases import duration_seconds

_FAILURE_DETAILS = (
    "taskFailedEventDetails",
    "taskTimedOutEventDetails",
    "executionFailedEventDetails",
    "executionTimedOutEventDetails",
    "executionAbortedEventDetails",
    "mapRunFailedEventDetails",
    "lambdaFunctionFailedEventDetails",
    "failedEventDetails",
)


@dataclass
class TimelineEntry:
    """One state the execution went through."""

    name: str
    type: str
    stage: str | None
    started_at: str
    ended_at: str | None = None
    duration_seconds: float | None = None
    outcome: str = "running"
    error: str | None = None
    cause: str | None = None
    execution: str | None = None  # the execution's name (a resumed release ran in several)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)


def _state_type(event_type: str, suffix: str) -> str:
    return event_type[: -len(suffix)] if event_type.endswith(suffix) else event_type


def build_timeline(events: Sequence[dict[str, Any]], stage_names: Sequence[str]) -> list[TimelineEntry]:
    """One entry per state entered, in order, with the stage (Map iteration) it ran for.

    ``events`` are GetExecutionHistory events in order, with ISO ``timestamp`` strings.
    """
    entries: list[TimelineEntry] = []
    open_by_name: dict[str, list[TimelineEntry]] = {}
    stage: str | None = None
    last_open: TimelineEntry | None = None
    for event in events:
        kind = str(event.get("type", ""))
        when = str(event.get("timestamp", ""))
        if kind == "MapIterationStarted":
            index = (event.get("mapIterationStartedEventDetails") or {}).get("index", 0)
            stage = stage_names[index] if 0 <= index < len(stage_names) else f"#{index}"
        elif kind in ("MapIterationSucceeded", "MapIterationFailed", "MapIterationAborted"):
            stage = None
        if kind.endswith("StateEntered"):
            name = (event.get("stateEnteredEventDetails") or {}).get("name", "?")
            entry = TimelineEntry(name=name, type=_state_type(kind, "StateEntered"), stage=stage, started_at=when)
            entries.append(entry)
            open_by_name.setdefault(name, []).append(entry)
            last_open = entry
            continue
        if kind.endswith("StateExited"):
            name = (event.get("stateExitedEventDetails") or {}).get("name", "?")
            stack = open_by_name.get(name) or []
            if stack:
                entry = stack.pop()
                entry.ended_at = when
                entry.duration_seconds = duration_seconds(entry.started_at, when)
                if entry.outcome == "running":
                    entry.outcome = "succeeded"
                elif entry.outcome == "failed":
                    entry.outcome = "caught"  # the failure was caught and the state exited normally
            continue
        for key in _FAILURE_DETAILS:
            details = event.get(key)
            if details and last_open is not None and last_open.ended_at is None:
                last_open.outcome = "failed"
                last_open.error = details.get("error")
                last_open.cause = details.get("cause")
    return entries


def release_timeline(
    executions: Sequence[tuple[str, Sequence[dict[str, Any]]]], stage_names: Sequence[str]
) -> list[TimelineEntry]:
    """The timelines of a release's executions (``(arn, events)``, oldest first), one after the other.

    A release resumed after its execution was lost ran in several: the states an earlier execution left open
    end ``interrupted`` (the one that took over entered them again).
    """
    entries: list[TimelineEntry] = []
    for index, (arn, events) in enumerate(executions):
        earlier = index < len(executions) - 1
        for entry in build_timeline(events, stage_names):
            entry.execution = arn.rsplit(":", 1)[-1]
            if earlier and entry.outcome == "running":
                entry.outcome = "interrupted"
            entries.append(entry)
    return entries


REDACTED = "***"


TOKEN_KEYS = frozenset({"tasktoken", "token"})  # task_token, TaskToken, and the coordinator's "token"


def _is_token_key(key: object) -> bool:
    return isinstance(key, str) and key.replace("_", "").replace("-", "").lower() in TOKEN_KEYS


def _masked(value: Any, found: set[str]) -> Any:
    """Every string under a task-token key, replaced (and remembered, to find it elsewhere too)."""
    if isinstance(value, str):
        if value:
            found.add(value)
        return REDACTED
    if isinstance(value, dict):
        return {k: _masked(v, found) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, found) for v in value]
    return value


def _without_token_keys(value: Any, found: set[str]) -> Any:
    if isinstance(value, dict):
        return {k: _masked(v, found) if _is_token_key(k) else _without_token_keys(v, found) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_token_keys(v, found) for v in value]
    if isinstance(value, str) and value[:1] in ("{", "["):
        # Step Functions keeps a state's input, output and task parameters as JSON text: look inside.
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        cleaned = _without_token_keys(parsed, found)
        return value if cleaned == parsed else json.dumps(cleaned, separators=(",", ":"))
    return value


def _without_values(value: Any, secrets: Sequence[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {k: _without_values(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_values(v, secrets) for v in value]
    return value


def redact_task_tokens(events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """History events with every task token shown as ``***``.

    A token is whatever a ``task_token``/``TaskToken`` key holds (in the events or in the JSON text of a
    state's input, output or parameters); each one found is then also replaced wherever else it appears.
    Anyone holding a token could complete the task (approve a stage, fake a build), so none leaves.
    """
    found: set[str] = set()
    cleaned = [_without_token_keys(event, found) for event in events]
    if not found:
        return cleaned
    secrets = sorted(found, key=len, reverse=True)
    return [_without_values(event, secrets) for event in cleaned]
