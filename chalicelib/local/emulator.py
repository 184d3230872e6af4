"""The embedded AWS emulator: moto, made as strict as the real services where Stagecoach relies on it.

DynamoDB guarantees that a conditional write and a transaction are atomic. moto checks the
condition and then writes without a lock, so two threads (the emulator serves requests on
threads) can both pass the same ``attribute_not_exists`` check; StartExecution likewise checks
the name and then creates. ``harden_moto`` serialises both so the emulator keeps the services'
guarantees; it is idempotent.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

_WRITE_LOCK = threading.RLock()
_WRITE_METHODS = ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item")
_hardened = False


def harden_moto() -> None:
    """Make moto's DynamoDB conditional writes and transactions atomic across threads."""
    global _hardened
    if _hardened:
        return
    from moto.dynamodb.models import DynamoDBBackend

    for name in _WRITE_METHODS:
        original: Callable[..., Any] = getattr(DynamoDBBackend, name)

        @functools.wraps(original)
        def locked(self: Any, *args: Any, __original: Callable[..., Any] = original, **kwargs: Any) -> Any:
            with _WRITE_LOCK:
                return __original(self, *args, **kwargs)

        setattr(DynamoDBBackend, name, locked)
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    original_start: Callable[..., Any] = StepFunctionsParserBackend.start_execution

    @functools.wraps(original_start)
    def start_locked(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _WRITE_LOCK:
            return original_start(self, *args, **kwargs)

    StepFunctionsParserBackend.start_execution = start_locked  # type: ignore[method-assign]
    _hardened = True


def enable_state_machine_execution() -> None:
    """Let moto run state machine definitions (in-process config, shared with the server)."""
    from moto.core.config import default_user_config

    default_user_config["stepfunctions"] = {"execute_state_machine": True}
