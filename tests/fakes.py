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


class InMemoryCloneCredentials:
    """CloneCredentialStore in a dict: stack id -> (provider, public clone URL, user info)."""

    def __init__(self) -> None:
        self.stored: dict[str, tuple[str, str, str]] = {}

    def put(self, stack_id: str, provider: str, clone_url: str, userinfo: str) -> None:
        self.stored[stack_id] = (provider, clone_url, userinfo)

    def get(self, stack_id: str) -> Any | None:
        from chalicelib.domain.builds import SourceCredentials

        found = self.stored.get(stack_id)
        if found is None:
            return None
        return SourceCredentials(userinfo=found[2], reference=f"arn:aws:secretsmanager:::secret:clone/{stack_id}")

    def delete(self, stack_id: str) -> None:
        self.stored.pop(stack_id, None)


class InMemoryReleaseRepository:
    """ReleaseRepository in dicts: a release and its keys are written together or not at all."""

    def __init__(self) -> None:
        from chalicelib.domain.releases import Release, StageRun

        self.releases: dict[str, Release] = {}
        self.keys: dict[str, str] = {}
        self.runs: dict[str, dict[str, StageRun]] = {}

    def record(self, release: Any, keys: list[str]) -> str | None:
        for key in keys:
            if key in self.keys:
                return self.keys[key]
        self.releases[release.id] = release
        for key in keys:
            self.keys[key] = release.id
        return None

    def get(self, release_id: str) -> Any | None:
        return self.releases.get(release_id)

    def get_with_runs(self, release_id: str) -> tuple[Any, dict[str, Any]] | None:
        release = self.releases.get(release_id)
        return (release, dict(self.runs.get(release_id, {}))) if release else None

    def list_for_stack(
        self, stack_id: str, limit: int, next_token: str | None, status: str | None, ref: str | None
    ) -> Page:
        items = sorted(
            (r for r in self.releases.values() if r.stack_id == stack_id),
            key=lambda r: (r.received_at, r.id),
            reverse=True,
        )
        items = [r for r in items if (status is None or r.status == status) and (ref is None or r.ref == ref)]
        start = next((i + 1 for i, r in enumerate(items) if r.id == next_token), 0) if next_token else 0
        chunk = items[start : start + limit]
        return Page(chunk, chunk[-1].id if start + limit < len(items) and chunk else None)

    def pending_before(self, cutoff: str, limit: int) -> list[str]:
        return [r.id for r in self.releases.values() if r.status == "PENDING" and r.received_at < cutoff][:limit]


class RecordingExecutions:
    """Executions that records starts and can be told to fail the next N calls."""

    def __init__(self, fail_next: int = 0) -> None:
        self.fail_next = fail_next
        self.started: dict[str, str] = {}
        self.calls = 0

    def start(self, name: str, input_json: str) -> str:
        self.calls += 1
        if self.fail_next > 0:
            self.fail_next -= 1
            raise ConnectionError("injected StartExecution failure")
        if name in self.started and self.started[name] != input_json:
            raise ValueError("ExecutionAlreadyExists with another input")
        self.started[name] = input_json
        return f"arn:aws:states:us-east-1:123456789012:execution:stagecoach-release:{name}"


class Ids:
    """Sequential ids (r0000…1, r0000…2, …) that look like real release ids."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return f"r{self.n:026d}"


class NoApprovals:
    """ApprovalLookup with nothing waiting."""

    def awaiting_approval(self, stack_id: str) -> dict[str, str]:
        return {}


class CountingMetrics:
    """Metrics port that keeps the counters."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def count(self, name: str, value: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + value
