"""Step Functions task callbacks (SendTaskSuccess / SendTaskFailure)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)
MAX_CAUSE = 32768


class StepFunctionsCallbacks:
    """TaskCallbacks on Step Functions; tokens that already completed are logged, not raised."""

    def __init__(self, client: Callable[[], Any]) -> None:
        self._client_factory = client

    @property
    def _client(self) -> Any:
        return self._client_factory()

    def _already_done(self) -> tuple[type[Exception], ...]:
        errors = self._client.exceptions
        return (errors.TaskTimedOut, errors.InvalidToken, errors.TaskDoesNotExist)

    def succeed(self, token: str, output: dict[str, Any]) -> None:
        """SendTaskSuccess."""
        try:
            self._client.send_task_success(taskToken=token, output=json.dumps(output))
        except self._already_done() as exc:
            log.warning("task already completed: %s", exc)

    def fail(self, token: str, error: str, cause: str) -> None:
        """SendTaskFailure."""
        try:
            self._client.send_task_failure(taskToken=token, error=error[:256], cause=cause[:MAX_CAUSE])
        except self._already_done() as exc:
            log.warning("task already completed: %s", exc)
