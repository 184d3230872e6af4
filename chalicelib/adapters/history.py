"""Execution history from Step Functions, every page."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from chalicelib.domain.clock import iso

PAGE_SIZE = 1000


def _iso_times(value: Any) -> Any:
    """boto3's datetimes as Stagecoach ISO strings, anywhere in a response."""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, dict):
        return {k: _iso_times(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_iso_times(v) for v in value]
    return value


class StepFunctionsHistory:
    """ExecutionHistory port: follows ``nextToken`` until the last page."""

    def __init__(self, client: Callable[[], Any], page_size: int = PAGE_SIZE) -> None:
        self._client = client
        self._page_size = page_size

    def events(self, execution_arn: str) -> list[dict[str, Any]] | None:
        """All events in order (timestamps as ISO strings); None if the execution does not exist."""
        client = self._client()
        events: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": self._page_size}
            if token:
                kwargs["nextToken"] = token
            try:
                page = client.get_execution_history(**kwargs)
            except client.exceptions.ExecutionDoesNotExist:
                return None
            events.extend(_iso_times(e) for e in page.get("events", []))
            token = page.get("nextToken")
            if not token:
                return events
