"""The audit trail: every mutation appends who did what to what; entries are never changed or deleted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..domain.errors import NotFoundError
from ..domain.stacks import is_stack_id
from .ports import AuditEntry, AuditLog
from .stacks import parse_limit, parse_next_token


class Auditor:
    """Appends audit entries; services call ``record`` after a mutation succeeded (refused requests write none)."""

    def __init__(self, log: AuditLog, clock: Callable[[], str], new_id: Callable[[str], str]) -> None:
        self._log = log
        self._clock = clock
        self._new_id = new_id

    def record(self, actor: str, action: str, target: str, stack_id: str, **detail: Any) -> None:
        """Append ``{at, actor, action, target, detail}`` for the stack ``stack_id``."""
        self._log.append(
            AuditEntry(
                at=self._clock(),
                actor=actor or "unknown",
                action=action,
                target=target,
                stack_id=stack_id,
                detail={k: v for k, v in detail.items() if v is not None},
                id=self._new_id("a"),
            )
        )


def audit(auditor: Auditor | None, actor: str, action: str, target: str, stack_id: str, **detail: Any) -> None:
    """``auditor.record(...)`` when there is an auditor (services built without one record nothing)."""
    if auditor is not None:
        auditor.record(actor, action, target, stack_id, **detail)


class AuditQueries:
    """Read the audit trail (newest first)."""

    def __init__(self, log: AuditLog) -> None:
        self._log = log

    def for_stack(self, stack_id: str, limit: str | None, next_token: str | None) -> dict[str, Any]:
        """A page of a stack's entries; they outlive the stack."""
        size, token = parse_limit(limit), parse_next_token(next_token)
        if not is_stack_id(stack_id):
            raise NotFoundError(f"stack {stack_id!r} does not exist")
        page = self._log.for_stack(stack_id, size, token)
        return {"entries": [e.to_dict() for e in page.items], "next_token": page.next_token}

    def everything(self, limit: str | None, next_token: str | None) -> dict[str, Any]:
        """A page of every entry."""
        page = self._log.everything(parse_limit(limit), parse_next_token(next_token))
        return {"entries": [e.to_dict() for e in page.items], "next_token": page.next_token}
