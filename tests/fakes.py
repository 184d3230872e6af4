"""In-memory fakes of the service ports, for unit tests (no moto, no patching)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from chalicelib.domain.errors import ConflictError, ValidationError
from chalicelib.domain.stacks import Stack
from chalicelib.services.ports import Page, StageState


class InMemoryStackRepository:
    """StackRepository in a dict, with the same optimistic-locking rules as DynamoDB."""

    def __init__(self) -> None:
        self.stacks: dict[str, Stack] = {}
        self.states: dict[str, dict[str, StageState]] = {}
        self.writes = 0

    def get(self, stack_id: str) -> Stack | None:
        return self.stacks.get(stack_id)

    def create(self, stack: Stack) -> None:
        if stack.id in self.stacks:
            raise ConflictError(f"stack {stack.id!r} already exists")
        self.stacks[stack.id] = stack
        self.writes += 1

    def save(self, stack: Stack, expected_version: int) -> None:
        stored = self.stacks.get(stack.id)
        if stored is None or stored.version != expected_version:
            raise ConflictError("stale version")
        self.stacks[stack.id] = replace(stack, version=expected_version + 1)
        self.writes += 1

    def delete(self, stack_id: str, expected_version: int) -> None:
        stored = self.stacks.get(stack_id)
        if stored is None or stored.version != expected_version:
            raise ConflictError("stale version")
        del self.stacks[stack_id]
        self.states.pop(stack_id, None)
        self.writes += 1

    def list(self, limit: int, next_token: str | None) -> Page:
        ids = sorted(self.stacks)
        if next_token is not None and next_token not in ids:
            raise ValidationError("is not a token this API returned", "next_token")
        start = ids.index(next_token) + 1 if next_token else 0
        chunk = ids[start : start + limit]
        more = start + limit < len(ids)
        return Page([self.stacks[i] for i in chunk], chunk[-1] if more and chunk else None)

    def stage_states(self, stack_id: str) -> dict[str, StageState]:
        return dict(self.states.get(stack_id, {}))

    def mark_hook_verified(self, stack_id: str, now: str) -> None:
        self.stacks[stack_id] = replace(self.stacks[stack_id], hook_verified_at=now)


class FixedClock:
    """A clock that returns the times it is given, then repeats the last."""

    def __init__(self, *times: str) -> None:
        self.times = list(times) or ["2026-11-27T12:00:00.000Z"]

    def __call__(self) -> str:
        return self.times.pop(0) if len(self.times) > 1 else self.times[0]


def stack_body(**overrides: Any) -> dict[str, Any]:
    """A valid ``POST /stacks`` body."""
    body: dict[str, Any] = {
        "name": "Hello",
        "repository": {
            "provider": "github",
            "full_name": "acme/hello",
            "clone_url": "https://github.com/acme/hello.git",
        },
        "stages": [{"name": "dev"}, {"name": "test"}, {"name": "prod", "approval": True}],
    }
    body.update(overrides)
    return body


class InMemorySecretStore:
    """SecretStore in a dict; counts reads to check caching behaviour."""

    def __init__(self) -> None:
        self.values: dict[str, list[str]] = {}
        self.counter = 0

    def create(self, stack_id: str) -> str:
        self.counter += 1
        secret = f"secret-{stack_id}-{self.counter}".ljust(64, "x")
        self.values[stack_id] = [secret]
        return secret

    def rotate(self, stack_id: str, grace_seconds: int) -> str:
        old = self.values[stack_id][0]
        new = self.create(stack_id)
        self.values[stack_id] = [new, old] if grace_seconds > 0 else [new]
        return new

    def secrets(self, stack_id: str, fresh: bool = False) -> list[str]:
        return list(self.values.get(stack_id, []))

    def delete(self, stack_id: str) -> None:
        self.values.pop(stack_id, None)
