"""Step Functions task callbacks (SendTaskSuccess / SendTaskFailure)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.domain.errors import UnavailableError

log = logging.getLogger(__name__)
MAX_CAUSE = 32768
ALREADY_DONE = ("TaskTimedOut", "InvalidToken", "TaskDoesNotExist")


class StepFunctionsCallbacks:
    """TaskCallbacks on Step Functions.

    A task that already completed (or whose execution ended) answers False; any other failure is an
    UnavailableError, so callers keep what they need to try again (an approval keeps its token).
    """

    def __init__(self, client: Callable[[], Any]) -> None:
        self._client_factory = client

    def _send(self, call: Callable[[], Any]) -> bool:
        try:
            call()
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in ALREADY_DONE:
                log.info("task already completed (%s)", code)
                return False
            raise UnavailableError(f"Step Functions refused the call ({code}); try again") from error
        except BotoCoreError as error:
            raise UnavailableError(
                f"Step Functions could not be reached ({type(error).__name__}); try again"
            ) from error
        return True

    def succeed(self, token: str, output: dict[str, Any]) -> bool:
        """SendTaskSuccess."""
        client = self._client_factory()
        return self._send(lambda: client.send_task_success(taskToken=token, output=json.dumps(output)))

    def fail(self, token: str, error: str, cause: str) -> bool:
        """SendTaskFailure."""
        client = self._client_factory()
        return self._send(lambda: client.send_task_failure(taskToken=token, error=error[:256], cause=cause[:MAX_CAUSE]))
