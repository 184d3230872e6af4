"""In-memory fakes of the service ports, for unit tests (no moto, no patching)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from chalicelib.domain.deploys import ChangeSetSnapshot, StackSnapshot
from chalicelib.domain.errors import ConflictError, ValidationError
from chalicelib.domain.lanes import Lane
from chalicelib.domain.releases import ACTIVE, Release, StageRun
from chalicelib.domain.stacks import Stack
from chalicelib.services.ports import ExecutionState, LaneChange, Page, StageState
from chalicelib.services.stacks import StackService


class InMemoryStackRepository:
    """StackRepository in a dict, with the same optimistic-locking rules as DynamoDB."""

    def __init__(self) -> None:
        self.stacks: dict[str, Stack] = {}
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
        self.writes += 1

    def list(self, limit: int, next_token: str | None) -> Page:
        ids = sorted(self.stacks)
        if next_token is not None and next_token not in ids:
            raise ValidationError("is not a token this API returned", "next_token")
        start = ids.index(next_token) + 1 if next_token else 0
        chunk = ids[start : start + limit]
        more = start + limit < len(ids)
        return Page([self.stacks[i] for i in chunk], chunk[-1] if more and chunk else None)

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
        self.releases: dict[str, Release] = {}
        self.keys: dict[str, str] = {}
        self.run_fields: dict[str, dict[str, dict[str, Any]]] = {}
        self.index: dict[str, str] = {}  # release id → "PENDING" | "ACTIVE" (the gsi2 index)

    def record(self, release: Any, keys: list[str]) -> str | None:
        for key in keys:
            if key in self.keys:
                return self.keys[key]
        self.releases[release.id] = release
        if release.status == "PENDING":
            self.index[release.id] = "PENDING"
        for key in keys:
            self.keys[key] = release.id
        return None

    def get(self, release_id: str) -> Any | None:
        return self.releases.get(release_id)

    def get_with_runs(self, release_id: str) -> tuple[Any, dict[str, Any]] | None:
        release = self.releases.get(release_id)
        return (release, self.runs(release_id)) if release else None

    def list_for_stack(
        self,
        stack_id: str,
        limit: int,
        next_token: str | None,
        status: str | None,
        ref: str | None,
        stack_uid: str = "",
    ) -> Page:
        items = sorted(
            (r for r in self.releases.values() if r.stack_id == stack_id and r.stack_uid == stack_uid),
            key=lambda r: (r.received_at, r.id),
            reverse=True,
        )
        items = [r for r in items if (status is None or r.status == status) and (ref is None or r.ref == ref)]
        start = next((i + 1 for i, r in enumerate(items) if r.id == next_token), 0) if next_token else 0
        chunk = items[start : start + limit]
        return Page(chunk, chunk[-1].id if start + limit < len(items) and chunk else None)

    def pending_before(self, cutoff: str, limit: int) -> list[str]:
        return [r.id for r in self.releases.values() if r.status == "PENDING" and r.received_at < cutoff][:limit]

    # --- the execution side (what the state machine writes) ---
    def start_running(self, release_id: str, now: str = "2026-11-27T12:00:01.000Z") -> None:
        """What MarkRunning does."""
        self.releases[release_id] = replace(self.releases[release_id], status="RUNNING", started_at=now)
        self.index[release_id] = "ACTIVE"

    def started(self) -> list[str]:
        return [k for k, v in self.index.items() if v == "ACTIVE"]

    def in_flight(self, stack_uid: str) -> list[Release]:
        found = [self.releases[k] for k in self.index if self.releases[k].stack_uid == stack_uid]
        return sorted(found, key=lambda r: r.order)

    def end(self, release_id: str, status: str, fields: dict[str, Any]) -> bool:
        release = self.releases.get(release_id)
        if release is None or release.status not in ACTIVE:
            return False
        known = {k: v for k, v in fields.items() if hasattr(release, k)}
        self.releases[release_id] = replace(release, status=status, **known)
        return True

    def settle(self, release_id: str) -> None:
        self.index.pop(release_id, None)

    def switch_execution(self, release_id: str, current_arn: str, moved: Release) -> bool:
        release = self.releases[release_id]
        if release.execution_arn != current_arn:
            return False
        self.releases[release_id] = replace(
            release,
            execution_name=moved.execution_name,
            execution_arn=moved.execution_arn,
            input_json=moved.input_json,
            previous_executions=moved.previous_executions,
        )
        return True

    def write_run(self, release_id: str, stage: str, fields: dict[str, Any]) -> None:
        """What a stage-run update does (None removes a field)."""
        current = self.run_fields.setdefault(release_id, {}).setdefault(stage, {})
        for key, value in fields.items():
            if value is None:
                current.pop(key, None)
            else:
                current[key] = value

    def stage_run(self, release_id: str, stage: str) -> StageRun | None:
        data = self.run_fields.get(release_id, {}).get(stage)
        if data is None:
            return None
        return StageRun(
            name=stage,
            status=data.get("status", "PENDING"),
            started_at=data.get("started_at"),
            ended_at=data.get("ended_at"),
            approval=data.get("approval"),
            changes=json.loads(data["changes_json"]) if "changes_json" in data else None,
            outputs=json.loads(data["outputs_json"]) if "outputs_json" in data else None,
            no_changes=bool(data.get("no_changes")),
            error=data.get("error"),
            cause=data.get("cause"),
            waiting_for=data.get("waiting_for"),
            superseded_by=data.get("superseded_by"),
        )

    def stage_runs(self, release_ids: Sequence[str], stage: str) -> dict[str, StageRun]:
        found = {release_id: self.stage_run(release_id, stage) for release_id in release_ids}
        return {k: v for k, v in found.items() if v is not None}

    def runs(self, release_id: str) -> dict[str, StageRun]:
        found = {stage: self.stage_run(release_id, stage) for stage in self.run_fields.get(release_id, {})}
        return {k: v for k, v in found.items() if v is not None}

    # --- approvals ---
    def waiting_token(self, release_id: str, stage: str) -> str | None:
        data = self.run_fields.get(release_id, {}).get(stage) or {}
        return data.get("task_token") if data.get("status") == "AWAITING_APPROVAL" else None

    def record_decision(self, release_id: str, stage: str, token: str, decision: dict[str, Any]) -> bool:
        data = self.run_fields.get(release_id, {}).get(stage)
        if data is None or (data.get("approval") or {}).get("decision"):
            return False
        data.pop("task_token", None)
        data["approval"] = {**(data.get("approval") or {}), **decision}
        if decision["decision"] in ("approved", "auto") and data.get("status") == "AWAITING_APPROVAL":
            data["status"] = "DEPLOYING"
        return True


class InMemoryLaneStore:
    """LaneStore in a dict; a commit checks the lane version and the stack uid like the DynamoDB one."""

    def __init__(self, stacks: InMemoryStackRepository, releases: InMemoryReleaseRepository) -> None:
        self._stacks = stacks
        self._releases = releases
        self.states_by_stack: dict[str, dict[str, StageState]] = {}
        self.commits = 0
        self.batch_reads = 0
        self.conflict_next = 0

    def lane(self, stack_id: str, stage: str) -> Lane:
        state = self.states_by_stack.get(stack_id, {}).get(stage)
        return state.lane if state else Lane(stack_id, stage)

    def states(self, stack_id: str) -> dict[str, StageState]:
        return dict(self.states_by_stack.get(stack_id, {}))

    def states_of(self, stacks: Sequence[Stack]) -> dict[str, dict[str, StageState]]:
        self.batch_reads += 1
        return {stack.id: dict(self.states_by_stack.get(stack.id, {})) for stack in stacks}

    def commit(self, change: LaneChange) -> None:
        lane = change.lane
        stack = self._stacks.get(lane.stack_id)
        if self.conflict_next > 0:
            self.conflict_next -= 1
            raise ConflictError("injected lane conflict")
        stored = self.lane(lane.stack_id, lane.stage)
        if stack is None or stack.uid != change.stack_uid or stored.version != lane.version:
            raise ConflictError(f"stage {lane.stage} changed meanwhile")
        before = self.states_by_stack.get(lane.stack_id, {}).get(lane.stage) or StageState(stored)
        self.states_by_stack.setdefault(lane.stack_id, {})[lane.stage] = StageState(
            lane=replace(lane, version=lane.version + 1),
            last_outcome=change.last_outcome if change.last_outcome is not None else before.last_outcome,
            outputs=change.outputs if change.outputs is not None else before.outputs,
            updated_at=change.now,
        )
        for run in change.runs:
            self._releases.write_run(run.release_id, run.stage, run.fields)
        self.commits += 1


class FakeCloudFormation:
    """CloudFormation port over dicts of snapshots, recording clean-ups."""

    def __init__(self) -> None:
        self.stacks: dict[str, StackSnapshot] = {}
        self.change_sets: dict[tuple[str, str], ChangeSetSnapshot] = {}
        self.deleted_change_sets: list[tuple[str, str]] = []
        self.deleted_stacks: list[str] = []

    def stack(self, name: str) -> StackSnapshot:
        return self.stacks.get(name, StackSnapshot(name, None))

    def change_set(self, stack_name: str, change_set_name: str) -> ChangeSetSnapshot | None:
        return self.change_sets.get((stack_name, change_set_name))

    def delete_change_set(self, stack_name: str, change_set_name: str) -> None:
        self.deleted_change_sets.append((stack_name, change_set_name))
        self.change_sets.pop((stack_name, change_set_name), None)

    def delete_stack(self, name: str, role_arn: str) -> None:
        self.deleted_stacks.append(name)
        if name in self.stacks:
            self.stacks[name] = replace(self.stacks[name], status="DELETE_IN_PROGRESS")


class RecordingCallbacks:
    """TaskCallbacks that record what was sent; a token completes once (as on AWS)."""

    def __init__(self) -> None:
        self.succeeded: dict[str, dict[str, Any]] = {}
        self.failed: dict[str, tuple[str, str]] = {}
        self.dead: set[str] = set()
        self.unavailable = 0

    def _take(self, token: str) -> bool:
        from chalicelib.domain.errors import UnavailableError

        if self.unavailable > 0:
            self.unavailable -= 1
            raise UnavailableError("injected Step Functions outage")
        return not (token in self.succeeded or token in self.failed or token in self.dead)

    def succeed(self, token: str, output: dict[str, Any]) -> bool:
        if not self._take(token):
            return False
        self.succeeded[token] = output
        return True

    def fail(self, token: str, error: str, cause: str) -> bool:
        if not self._take(token):
            return False
        self.failed[token] = (error, cause)
        return True


class FakeExecutions:
    """Executions with a status per ARN that tests set; records starts and stops."""

    def __init__(self) -> None:
        self.states: dict[str, ExecutionState] = {}
        self.started: dict[str, str] = {}
        self.stopped: list[tuple[str, str, str]] = []

    def start(self, name: str, input_json: str) -> str:
        arn = f"arn:aws:states:us-east-1:123456789012:execution:stagecoach-release:{name}"
        self.started[name] = input_json
        self.states[arn] = ExecutionState("RUNNING")
        return arn

    def describe(self, execution_arn: str) -> ExecutionState | None:
        return self.states.get(execution_arn)

    def stop(self, execution_arn: str, error: str, cause: str) -> None:
        self.stopped.append((execution_arn, error, cause))
        state = self.states.get(execution_arn)
        if state is not None and state.status == "RUNNING":
            self.states[execution_arn] = ExecutionState("ABORTED", error, cause, "2026-11-27T12:00:09.000Z")


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


class CountingMetrics:
    """Metrics port that keeps the counters."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def count(self, name: str, value: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + value


class InMemoryBuildRecords:
    """BuildRecords in dicts: build tokens, build details and the sha of each release."""

    def __init__(self, shas: dict[str, str] | None = None) -> None:
        self.tokens: dict[str, tuple[str, str]] = {}
        self.builds: dict[str, dict[str, Any]] = {}
        self.shas: dict[str, str] = dict(shas or {})

    def put_build_token(self, release_id: str, token: str, template_key: str) -> None:
        self.tokens[release_id] = (token, template_key)

    def build_token(self, release_id: str) -> tuple[str, str] | None:
        return self.tokens.get(release_id)

    def record_build(self, release_id: str, build: dict[str, Any], resolved_sha: str | None = None) -> None:
        self.builds[release_id] = build
        if resolved_sha and not self.shas.get(release_id):
            self.shas[release_id] = resolved_sha


def stack_service(
    stacks: InMemoryStackRepository | None = None,
    credentials: InMemoryCloneCredentials | None = None,
    lanes: InMemoryLaneStore | None = None,
    releases: InMemoryReleaseRepository | None = None,
    uid: str | None = None,
    now: str = "2026-11-27T12:00:00.000Z",
) -> StackService:
    """A StackService on in-memory fakes (``uid``: every stack gets that uid, else a new one each)."""
    stacks = stacks if stacks is not None else InMemoryStackRepository()
    releases = releases if releases is not None else InMemoryReleaseRepository()
    lanes = lanes if lanes is not None else InMemoryLaneStore(stacks, releases)
    ids = Ids()
    return StackService(
        stacks,
        InMemorySecretStore(),
        credentials if credentials is not None else InMemoryCloneCredentials(),
        lanes,
        releases,
        FixedClock(now),
        (lambda prefix: uid) if uid is not None else (lambda prefix: ids()),
    )


class RecordingPublisher:
    """EventPublisher that keeps the events (``fail`` makes publish raise, as SQS might)."""

    def __init__(self, fail: bool = False) -> None:
        self.events: list[Any] = []
        self.fail = fail

    def publish(self, events: Sequence[Any]) -> None:
        if self.fail:
            raise RuntimeError("SQS is unavailable")
        self.events.extend(events)

    def ids(self) -> list[str]:
        return [e.id for e in self.events]


class InMemoryNotificationSecrets:
    """NotificationSecrets in a dict."""

    def __init__(self) -> None:
        self.documents: dict[str, dict[str, Any]] = {}

    def read(self, stack_id: str) -> dict[str, Any]:
        return json.loads(json.dumps(self.documents.get(stack_id, {"commit_status_token": None, "webhooks": {}})))

    def write(self, stack_id: str, document: dict[str, Any]) -> None:
        if not document.get("commit_status_token") and not document.get("webhooks"):
            self.documents.pop(stack_id, None)
        else:
            self.documents[stack_id] = json.loads(json.dumps(document))

    def delete(self, stack_id: str) -> None:
        self.documents.pop(stack_id, None)


class ScriptedSender:
    """HttpSender answering from a script per URL prefix (the last answer repeats); records every request."""

    def __init__(self, answers: dict[str, list[Any]] | None = None) -> None:
        self.answers = answers or {}
        self.requests: list[Any] = []

    def send(self, request: Any) -> Any:
        from chalicelib.services.ports import HttpResult

        self.requests.append(request)
        for prefix, script in self.answers.items():
            if request.url.startswith(prefix):
                answer = script.pop(0) if len(script) > 1 else script[0]
                return answer if isinstance(answer, HttpResult) else HttpResult(answer)
        return HttpResult(200)


class RecordingNotificationQueue:
    """NotificationQueue that keeps retries (with their delay) and dead letters."""

    def __init__(self) -> None:
        self.retries: list[tuple[dict[str, Any], int]] = []
        self.dead: list[dict[str, Any]] = []

    def retry(self, message: dict[str, Any], delay_seconds: int) -> None:
        self.retries.append((message, delay_seconds))

    def dead_letter(self, message: dict[str, Any]) -> None:
        self.dead.append(message)


class InMemoryDeliveryLog:
    """DeliveryLog in a list (newest first on read)."""

    def __init__(self) -> None:
        self.attempts: list[Any] = []

    def record(self, attempt: Any) -> None:
        self.attempts.append(attempt)

    def recent(self, stack_id: str, limit: int, next_token: str | None) -> Page:
        mine = sorted((a for a in self.attempts if a.stack_id == stack_id), key=lambda a: a.at, reverse=True)
        return Page(mine[:limit], None)


class InMemoryAuditLog:
    """AuditLog in a list; append-only."""

    def __init__(self) -> None:
        self.entries: list[Any] = []

    def append(self, entry: Any) -> None:
        self.entries.append(entry)

    def for_stack(self, stack_id: str, limit: int, next_token: str | None) -> Page:
        mine = [e for e in reversed(self.entries) if e.stack_id == stack_id]
        return Page(mine[:limit], None)

    def everything(self, limit: int, next_token: str | None) -> Page:
        return Page(list(reversed(self.entries))[:limit], None)

    def actions(self) -> list[str]:
        return [e.action for e in self.entries]
