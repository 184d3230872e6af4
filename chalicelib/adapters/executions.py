"""The release state machine on AWS Step Functions."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from chalicelib.domain.clock import iso
from chalicelib.services.ports import ExecutionState


class StepFunctionsExecutions:
    """Executions port: StartExecution (idempotent by name and input), DescribeExecution, StopExecution."""

    def __init__(self, client: Callable[[], Any], state_machine_arn: str) -> None:
        self._client_factory = client
        self._arn = state_machine_arn

    @property
    def _client(self) -> Any:
        return self._client_factory()

    def start(self, name: str, input_json: str) -> str:
        """Start; an execution of that name that already ran counts as started."""
        try:
            return str(
                self._client.start_execution(stateMachineArn=self._arn, name=name, input=input_json)["executionArn"]
            )
        except self._client.exceptions.ExecutionAlreadyExists:
            prefix, _, machine = self._arn.partition(":stateMachine:")
            return f"{prefix}:execution:{machine}:{name}"

    def describe(self, execution_arn: str) -> ExecutionState | None:
        """Status, error and cause (and the output of a succeeded execution)."""
        client = self._client
        try:
            data = client.describe_execution(executionArn=execution_arn)
        except client.exceptions.ExecutionDoesNotExist:
            return None
        stopped = data.get("stopDate")
        extra: dict[str, Any] = {}
        if data.get("output"):
            try:
                extra["output"] = json.loads(data["output"])
            except ValueError:
                extra["output"] = data["output"]
        return ExecutionState(
            status=str(data["status"]),
            error=data.get("error"),
            cause=data.get("cause"),
            stopped_at=iso(stopped) if isinstance(stopped, datetime) else None,
            extra=extra,
        )

    def stop(self, execution_arn: str, error: str, cause: str) -> None:
        """StopExecution; one that already ended or does not exist is fine."""
        client = self._client
        try:
            client.stop_execution(executionArn=execution_arn, error=error[:256], cause=cause[:32768])
        except client.exceptions.ExecutionDoesNotExist:
            return
