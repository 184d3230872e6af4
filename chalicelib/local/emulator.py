"""The embedded AWS emulator: moto, made as strict as the real services where Stagecoach relies on it.

DynamoDB guarantees that a conditional write and a transaction are atomic, and that a read sees an item
either before or after a write, never during it (serializable isolation between single-item operations and
transactions: https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html#transaction-isolation).
moto checks the condition and then writes without a lock, so two threads (the emulator serves requests on
threads) can both pass the same ``attribute_not_exists`` check; its reads walk an item's attributes while an
UpdateItem changes them (``RuntimeError: dictionary changed size during iteration``, a 500); StartExecution
likewise checks the name and then creates. ``harden_moto`` serialises all three so the emulator keeps the
services' guarantees; it is idempotent. It also mends moto gaps the pipeline depends on (task failure causes,
updates of Lambda functions with inline code) and installs the CloudFormation emulation of
``chalicelib.local.cloudformation`` (asynchronous change sets and stack operations, refusals, rollbacks,
template errors in CloudFormation's words).
"""

from __future__ import annotations

import copy
import datetime
import functools
import threading
from collections.abc import Callable
from typing import Any

WRITE_LOCK = threading.RLock()
_WRITE_METHODS = ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item")
_hardened = False


_MISSING = object()


class _TransactionSnapshots:
    """Stands in for the ``copy`` module inside moto's DynamoDB backend.

    moto backs up a whole table (``copy.deepcopy``) before every TransactWriteItems and swaps
    the backup in if the transaction fails: O(table size) per transaction, where DynamoDB is
    O(1). Only the items a transaction names can change, so instead the "backup" is the live
    table plus an undo log of those items, which ``harden_moto`` applies when the call raises.
    """

    def __init__(self) -> None:
        self.transact_items: list[dict[str, Any]] = []
        self.undo: list[tuple[Any, Any, Any, Any]] = []

    copy = staticmethod(copy.copy)

    def deepcopy(self, obj: Any, memo: dict[int, Any] | None = None) -> Any:
        from moto.dynamodb.models.dynamo_type import DynamoType
        from moto.dynamodb.models.table import Table

        if not isinstance(obj, Table):
            return copy.deepcopy(obj, memo)
        for entry in self.transact_items:
            op = next(iter(entry.values()))
            if op.get("TableName") != obj.name:
                continue
            key = op.get("Key") or op.get("Item") or {}
            hash_key = DynamoType(key[obj.hash_key_attr])
            range_key = DynamoType(key[obj.range_key_attr]) if obj.has_range_key else None
            if obj.has_range_key:
                before = obj.items.get(hash_key, {}).get(range_key, _MISSING)
            else:
                before = obj.items.get(hash_key, _MISSING)
            self.undo.append((obj, hash_key, range_key, before if before is _MISSING else copy.deepcopy(before)))
        return obj

    def rollback(self) -> None:
        """Put back every item the failed transaction may have changed."""
        for table, hash_key, range_key, before in reversed(self.undo):
            if range_key is None:
                if before is _MISSING:
                    table.items.pop(hash_key, None)
                else:
                    table.items[hash_key] = before
            elif before is _MISSING:
                table.items.get(hash_key, {}).pop(range_key, None)
            else:
                table.items[hash_key][range_key] = before


def harden_moto() -> None:
    """Make moto's DynamoDB conditional writes and transactions atomic across threads, and
    transactions O(items) rather than O(table)."""
    global _hardened
    if _hardened:
        return
    import moto.dynamodb.models as dynamodb_models
    from moto.dynamodb.models import DynamoDBBackend

    snapshots = _TransactionSnapshots()
    dynamodb_models.copy = snapshots  # type: ignore[assignment]
    original_transact: Callable[..., Any] = DynamoDBBackend.transact_write_items

    @functools.wraps(original_transact)
    def transact(self: Any, transact_items: list[dict[str, Any]]) -> Any:
        snapshots.transact_items, snapshots.undo = transact_items, []
        try:
            return original_transact(self, transact_items)
        except Exception:
            snapshots.rollback()
            raise
        finally:
            snapshots.transact_items, snapshots.undo = [], []

    DynamoDBBackend.transact_write_items = transact  # type: ignore[method-assign]

    for name in _WRITE_METHODS:
        original: Callable[..., Any] = getattr(DynamoDBBackend, name)

        @functools.wraps(original)
        def locked(self: Any, *args: Any, __original: Callable[..., Any] = original, **kwargs: Any) -> Any:
            with WRITE_LOCK:
                return __original(self, *args, **kwargs)

        setattr(DynamoDBBackend, name, locked)
    _isolate_dynamodb_requests()
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    original_start: Callable[..., Any] = StepFunctionsParserBackend.start_execution

    @functools.wraps(original_start)
    def start_locked(self: Any, *args: Any, **kwargs: Any) -> Any:
        with WRITE_LOCK:
            return original_start(self, *args, **kwargs)

    StepFunctionsParserBackend.start_execution = start_locked  # type: ignore[method-assign]
    _keep_send_task_failure_cause()
    _update_inline_lambda_code()
    _complete_tokens_once()
    _stop_executions_at_once()
    _aws_timestamps()
    from . import cloudformation

    cloudformation.install()
    _hardened = True


def _isolate_dynamodb_requests() -> None:
    """Each DynamoDB request, reads and the serialising of their items included, runs under the lock that
    writes take: moto hands out its live items, which a concurrent UpdateItem changes in place."""
    from moto.dynamodb.responses import DynamoHandler

    original: Callable[..., Any] = DynamoHandler.call_action

    @functools.wraps(original)
    def isolated(self: Any) -> Any:
        with WRITE_LOCK:
            return original(self)

    DynamoHandler.call_action = isolated  # type: ignore[method-assign]


def _keep_send_task_failure_cause() -> None:
    """moto 5.2.5 drops the ``cause`` of SendTaskFailure (it passes only ``error``): pass it on."""
    from moto.core.responses import EmptyResult
    from moto.stepfunctions.responses import StepFunctionResponse

    def send_task_failure(self: Any) -> Any:
        self.stepfunction_backend.send_task_failure(
            self._get_param("taskToken"), error=self._get_param("error"), cause=self._get_param("cause")
        )
        return EmptyResult()

    StepFunctionResponse.send_task_failure = send_task_failure  # type: ignore[method-assign]


def _update_inline_lambda_code() -> None:
    """moto 5.2.5 zips a function's inline ``Code.ZipFile`` when CloudFormation creates it, not when it
    updates it (a 500: "Incorrect padding"), so every redeploy of a stack with such a function failed.

    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-properties-lambda-function-code.html:
    ZipFile is the function's source code, on create and update alike.
    """
    import base64

    from moto.awslambda.models import LambdaFunction

    original: Callable[..., Any] = LambdaFunction.update_from_cloudformation_json

    def update_from_cloudformation_json(
        cls: Any,
        original_resource: Any,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> Any:
        properties = dict(cloudformation_json["Properties"])
        code = dict(properties.get("Code") or {})
        if isinstance(code.get("ZipFile"), str):
            code["ZipFile"] = base64.b64encode(LambdaFunction._create_zipfile_from_plaintext_code(code["ZipFile"]))
            properties["Code"] = code
        return original(
            original_resource=original_resource,
            new_resource_name=new_resource_name,
            cloudformation_json={**cloudformation_json, "Properties": properties},
            account_id=account_id,
            region_name=region_name,
        )

    LambdaFunction.update_from_cloudformation_json = classmethod(update_from_cloudformation_json)  # type: ignore[method-assign,assignment]


def enable_state_machine_execution() -> None:
    """Let moto run state machine definitions (in-process config, shared with the server)."""
    from moto.core.config import default_user_config

    default_user_config["stepfunctions"] = {"execute_state_machine": True}


def _complete_tokens_once() -> None:
    """A task token completes once, and only while its execution runs, as on AWS.

    moto 5.2.5 accepts SendTaskSuccess/Failure again on a token that already completed, and on tokens of
    executions that were stopped. AWS answers ``TaskTimedOut`` ("Provided task does not exist anymore")
    (https://docs.aws.amazon.com/step-functions/latest/apireference/API_SendTaskSuccess.html#API_SendTaskSuccess_Errors).
    Stagecoach relies on it: whoever completes an approval token first (the approver, or a newer release
    superseding it) wins.
    """
    from moto.stepfunctions.parser.asl.eval.callback.callback import (
        CallbackConsumerTimeout,
        CallbackNotifyConsumerError,
        CallbackPoolManager,
    )
    from moto.stepfunctions.parser.backend.execution import ExecutionStatus
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    original_notify: Callable[..., Any] = CallbackPoolManager.notify

    def notify(self: Any, callback_id: str, outcome: Any) -> bool:
        with WRITE_LOCK:
            endpoint = self.get(callback_id)
            if endpoint is not None and endpoint.get_outcome() is not None:
                raise CallbackNotifyConsumerError(callback_consumer_error=CallbackConsumerTimeout())
            return bool(original_notify(self, callback_id, outcome))

    CallbackPoolManager.notify = notify  # type: ignore[method-assign]

    def running_only(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def only_running(self: Any, *args: Any, **kwargs: Any) -> Any:
            real = self._get_executions

            def running(execution_status: Any = None) -> Any:
                return real(ExecutionStatus.RUNNING)

            self._get_executions = running
            try:
                return original(self, *args, **kwargs)
            finally:
                del self._get_executions

        return only_running

    for name in ("send_task_success", "send_task_failure", "send_task_heartbeat"):
        setattr(StepFunctionsParserBackend, name, running_only(getattr(StepFunctionsParserBackend, name)))


def _stop_executions_at_once() -> None:
    """StopExecution ends the execution before it returns, with its error and cause, as on AWS.

    moto 5.2.5 only flags the execution: it stays RUNNING (without error or cause) until its worker thread
    notices, which it does not while a task waits for a token. AWS: "Stops an execution" and
    DescribeExecution then shows ABORTED with the given error and cause
    (https://docs.aws.amazon.com/step-functions/latest/apireference/API_StopExecution.html).
    """
    import datetime

    from moto.stepfunctions.parser.backend.execution import Execution, ExecutionStatus

    original_stop: Callable[..., Any] = Execution.stop

    def stop(self: Any, stop_date: Any, error: str | None, cause: str | None) -> None:
        with WRITE_LOCK:
            if self.exec_status != ExecutionStatus.RUNNING:
                return
            original_stop(self, stop_date, error, cause)
            self.exec_status = ExecutionStatus.ABORTED
            self.stop_date = stop_date or datetime.datetime.now(tz=datetime.UTC)
            self.error, self.cause = error, cause
            worker = self.exec_worker
            if worker is not None:
                pool = worker.env.callback_pool_manager
                for endpoint in list(pool._pool.values()):
                    if endpoint.get_outcome() is None:
                        from moto.stepfunctions.parser.asl.eval.callback.callback import CallbackConsumerLeft

                        endpoint.report(CallbackConsumerLeft())
                        endpoint.interrupt_all()

    Execution.stop = stop  # type: ignore[method-assign]

    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication

    original_reflect: Callable[..., Any] = BaseExecutionWorkerCommunication._reflect_execution_status

    def reflect(self: Any) -> None:
        """A stopped execution stays ABORTED while its worker winds down: moto 5.2.5 ends a stopped Map
        iteration with ``States.Runtime`` (``AttributeError``) and would turn the execution FAILED."""
        with WRITE_LOCK:
            if self.execution.exec_status == ExecutionStatus.ABORTED:
                return
            original_reflect(self)

    BaseExecutionWorkerCommunication._reflect_execution_status = reflect  # type: ignore[method-assign]

    from moto.core.responses import ActionResult
    from moto.core.utils import utcnow
    from moto.stepfunctions.responses import StepFunctionResponse

    def stop_execution(self: Any) -> Any:
        """moto 5.2.5 drops the request's ``error`` and ``cause`` (it stops with empty ones): pass them on."""
        execution = self.stepfunction_backend.describe_execution(self._get_param("executionArn"))
        execution.stop(stop_date=utcnow(), error=self._get_param("error"), cause=self._get_param("cause"))
        return ActionResult({"stopDate": execution.stop_date})

    StepFunctionResponse.stop_execution = stop_execution  # type: ignore[method-assign]


class _AwsDatetime(datetime.datetime):
    """``isoformat()`` as Step Functions writes ``$$.State.EnteredTime``: milliseconds and ``Z``."""

    def isoformat(self, sep: str = "T", timespec: str = "auto") -> str:
        return self.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{self.microsecond // 1000:03d}Z"


def _aws_timestamps() -> None:
    """Context timestamps and timestamp comparisons as on AWS.

    moto 5.2.5 writes ``$$.State.EnteredTime`` as ``2026-11-27T14:30:00.123456+00:00`` (AWS:
    ``2026-11-27T14:30:00.123Z``, https://docs.aws.amazon.com/step-functions/latest/dg/input-output-contextobject.html)
    and its Timestamp* Choice operators only read ``%Y-%m-%dT%H:%M:%SZ``, so a comparison with fractions of
    a second or an offset is always false; AWS accepts RFC 3339 timestamps
    (https://docs.aws.amazon.com/step-functions/latest/dg/state-choice.html).
    """
    import types

    from moto.stepfunctions.parser.asl.component.state import state as state_module
    from moto.stepfunctions.parser.asl.component.state.choice.comparison.operator.implementations import (
        is_operator,
    )

    clock = types.SimpleNamespace(datetime=_AwsDatetime, timezone=datetime.timezone)
    state_module.datetime = clock  # type: ignore[assignment]

    def string_to_timestamp(string: str) -> datetime.datetime | None:
        if not isinstance(string, str) or "T" not in string:
            return None
        try:
            moment = datetime.datetime.fromisoformat(string.replace("Z", "+00:00"))
        except ValueError:
            return None
        return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)

    is_operator.IsTimestamp.string_to_timestamp = staticmethod(string_to_timestamp)  # type: ignore[method-assign]
