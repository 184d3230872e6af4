"""The release state machine on AWS Step Functions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class StepFunctionsExecutions:
    """Executions ports: StartExecution, idempotent by name and input."""

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
