"""StackRepository on DynamoDB (pynamodb)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pynamodb.exceptions import DeleteError, PutError

from chalicelib.domain.errors import ConflictError
from chalicelib.domain.notifications import commit_status_from, notifications_from
from chalicelib.domain.stacks import Repository, Stack, Stage
from chalicelib.services.ports import Page

from .models import LaneModel, StackModel, plain
from .pagination import decode_token, encode_token

STACK_SK = "#STACK"


def stack_pk(stack_id: str) -> str:
    """Partition key of a stack and its stage states."""
    return f"STACK#{stack_id}"


@contextmanager
def _conflict_on_condition(message: str) -> Iterator[None]:
    """Turn a failed DynamoDB condition into a ConflictError with ``message``."""
    try:
        yield
    except (PutError, DeleteError) as exc:
        if getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException":
            raise ConflictError(message) from exc
        raise


def to_model(stack: Stack) -> StackModel:
    """The item of a stack (version is the stored one; pynamodb increments it on save)."""
    return StackModel(
        pk=stack_pk(stack.id),
        sk=STACK_SK,
        gsi1pk="STACKS",
        gsi1sk=stack.id,
        id=stack.id,
        name=stack.name,
        repository=stack.repository.to_dict(),
        branches=list(stack.branches),
        tags=list(stack.tags),
        template_path=stack.template_path,
        buildspec_path=stack.buildspec_path,
        stages=[s.to_dict() for s in stack.stages],
        hook_verified_at=stack.hook_verified_at,
        created_at=stack.created_at,
        updated_at=stack.updated_at,
        execution_mode=stack.execution_mode,
        uid=stack.uid or None,
        commit_status=stack.commit_status.stored() if stack.commit_status else None,
        notifications_json=json.dumps([t.stored() for t in stack.notifications]) if stack.notifications else None,
    )


def from_model(item: StackModel) -> Stack:
    """The domain stack of an item."""
    repo: dict[str, Any] = plain(item.repository)
    stages = tuple(
        Stage(
            name=s.name,
            approval=bool(s.approval),
            approval_timeout_seconds=int(s.approval_timeout_seconds),
            auto_approve_when_no_changes=bool(s.auto_approve_when_no_changes),
            region=s.region,
            role_arn=s.role_arn,
            parameters=plain(s.parameters) or {},
        )
        for s in item.stages
    )
    return Stack(
        id=item.id,
        name=item.name,
        repository=Repository(repo["provider"], repo["full_name"], repo["clone_url"]),
        stages=stages,
        branches=tuple(item.branches or ()),
        tags=tuple(item.tags or ()),
        template_path=item.template_path,
        buildspec_path=item.buildspec_path,
        created_at=item.created_at,
        updated_at=item.updated_at,
        version=int(item.version or 0),
        hook_verified_at=item.hook_verified_at,
        execution_mode=item.execution_mode or "SUPERSEDED",
        uid=item.uid or "",
        commit_status=commit_status_from(plain(item.commit_status) if item.commit_status else None),
        notifications=notifications_from(json.loads(item.notifications_json) if item.notifications_json else None),
    )


class DynamoStackRepository:
    """Stacks in the single table; optimistic locking through pynamodb's VersionAttribute."""

    def get(self, stack_id: str) -> Stack | None:
        """The stack, or None."""
        try:
            return from_model(StackModel.get(stack_pk(stack_id), STACK_SK))
        except StackModel.DoesNotExist:
            return None

    def create(self, stack: Stack) -> None:
        """Store a new stack; ConflictError if the id is taken."""
        item = to_model(stack)
        with _conflict_on_condition(f"stack {stack.id!r} already exists"):
            item.save(condition=StackModel.pk.does_not_exist())

    def save(self, stack: Stack, expected_version: int) -> None:
        """Replace the stack if it is still at ``expected_version``."""
        item = to_model(stack)
        item.version = expected_version
        with _conflict_on_condition(f"stack {stack.id!r} was changed by someone else; read it again and retry"):
            item.save()

    def delete(self, stack_id: str, expected_version: int) -> None:
        """Delete the stack (version-checked) and then its lanes (a late coordinator write then fails its
        check of the stack's uid, so nothing of this stack comes back)."""
        item = StackModel(pk=stack_pk(stack_id), sk=STACK_SK)
        item.version = expected_version
        with _conflict_on_condition(f"stack {stack_id!r} was changed by someone else; read it again and retry"):
            item.delete()
        with LaneModel.batch_write() as batch:
            for lane in LaneModel.query(stack_pk(stack_id), LaneModel.sk.startswith("STAGE#")):
                batch.delete(lane)

    def list(self, limit: int, next_token: str | None) -> Page:
        """Stacks by id through the ``gsi1`` index (never a scan)."""
        start = decode_token(next_token, {"pk", "sk", "gsi1pk", "gsi1sk"}, {"gsi1pk": "STACKS", "sk": STACK_SK})
        result = StackModel.by_kind.query("STACKS", limit=limit, last_evaluated_key=start)
        items = [from_model(i) for i in result]
        return Page(items, encode_token(result.last_evaluated_key))

    def mark_hook_verified(self, stack_id: str, now: str) -> None:
        """Set ``hook_verified_at`` without touching the version."""
        item = StackModel(pk=stack_pk(stack_id), sk=STACK_SK)
        item.update(
            actions=[StackModel.hook_verified_at.set(now)],
            condition=StackModel.pk.exists(),
            add_version_condition=False,
        )
