"""The ports services talk to. Adapters implement them with AWS; tests with in-memory fakes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..domain.builds import BuildRequest, SourceCredentials
from ..domain.deploys import ChangeSetSnapshot, StackSnapshot
from ..domain.lanes import Lane
from ..domain.notifications import Event, OutboundRequest
from ..domain.releases import Release
from ..domain.stacks import Stack


@dataclass(frozen=True)
class StageState:
    """A stage of a stack as the stage coordinator keeps it: its lane, its last outcome and outputs."""

    lane: Lane
    last_outcome: str | None = None
    outputs: list[dict[str, Any]] | None = None
    updated_at: str | None = None

    @property
    def status(self) -> str:
        """What the stage does now (the holder's phase), else how its last deploy ended, else IDLE."""
        return self.lane.holder.phase if self.lane.holder else (self.last_outcome or "IDLE")


@dataclass(frozen=True)
class RunUpdate:
    """Fields to set on one stage run (a None value removes the attribute)."""

    release_id: str
    stage: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class LaneChange:
    """One atomic write of the coordinator: a lane (conditional on the version it was read at) and runs."""

    stack_uid: str
    lane: Lane
    runs: tuple[RunUpdate, ...] = ()
    last_outcome: str | None = None
    outputs: list[dict[str, Any]] | None = None
    now: str = ""


@dataclass(frozen=True)
class ExecutionState:
    """What Step Functions says of an execution."""

    status: str
    error: str | None = None
    cause: str | None = None
    stopped_at: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Page:
    """One page of a listing and the token of the next one (None at the end)."""

    items: list[Any]
    next_token: str | None


class StackRepository(Protocol):
    """Stacks with their ordered stages; writes are optimistic on ``Stack.version``."""

    def get(self, stack_id: str) -> Stack | None:
        """The stack, or None."""

    def create(self, stack: Stack) -> None:
        """Store a new stack; ConflictError if the id is taken."""

    def save(self, stack: Stack, expected_version: int) -> None:
        """Replace the stack if the stored version is ``expected_version``; else ConflictError."""

    def delete(self, stack_id: str, expected_version: int) -> None:
        """Delete the stack and its stage states if the stored version matches; else ConflictError."""

    def list(self, limit: int, next_token: str | None) -> Page:
        """Stacks ordered by id; ValidationError for a token that is not ours."""

    def mark_hook_verified(self, stack_id: str, now: str) -> None:
        """Record a verified provider test delivery (does not change the version)."""


class ReleaseRepository(Protocol):
    """Releases and their dedup keys; a new release is written in one transaction with its keys."""

    def record(self, release: Any, keys: list[str]) -> str | None:
        """Write the release and its keys atomically; if a key exists, the existing release id."""

    def get(self, release_id: str) -> Any | None:
        """The release, or None."""

    def get_with_runs(self, release_id: str) -> tuple[Any, dict[str, Any]] | None:
        """The release and its stage runs by name, or None."""

    def list_for_stack(
        self,
        stack_id: str,
        limit: int,
        next_token: str | None,
        status: str | None,
        ref: str | None,
        stack_uid: str = "",
    ) -> Page:
        """A stack's releases (this incarnation of the stack id), newest first."""

    def pending_before(self, cutoff: str, limit: int) -> list[str]:
        """Ids of releases still PENDING that were received before ``cutoff``."""

    def started(self) -> list[str]:
        """Ids of releases whose execution started and was not yet seen to end (the ``ACTIVE`` index)."""

    def in_flight(self, stack_uid: str) -> list[Release]:
        """The stack's releases that are PENDING or whose execution was not yet seen to end, oldest first."""

    def end(self, release_id: str, status: str, fields: dict[str, Any]) -> bool:
        """Set a final status (and fields) if the release is still PENDING or RUNNING; False otherwise."""

    def switch_execution(self, release_id: str, current_arn: str, moved: Release) -> bool:
        """Point the release at a new execution if it is still on ``current_arn``; False otherwise."""

    def settle(self, release_id: str) -> None:
        """Take the release out of the ``ACTIVE`` index: its execution ended and it holds no stage."""

    def runs(self, release_id: str) -> dict[str, Any]:
        """The release's stage runs by name."""

    def stage_run(self, release_id: str, stage: str) -> Any | None:
        """One stage run, or None."""

    def stage_runs(self, release_ids: Sequence[str], stage: str) -> dict[str, Any]:
        """The runs of one stage of many releases, by release id (eventually consistent; absent: no run)."""


class Executions(Protocol):
    """The release state machine."""

    def start(self, name: str, input_json: str) -> str:
        """Start (idempotent by name and input); returns the execution ARN."""

    def describe(self, execution_arn: str) -> ExecutionState | None:
        """The execution's status, or None if it does not exist."""

    def stop(self, execution_arn: str, error: str, cause: str) -> None:
        """StopExecution; an execution that already ended is not an error."""


class SecretStore(Protocol):
    """Webhook secrets, never stored in the table nor logged."""

    def create(self, stack_id: str) -> str:
        """Make and store a new random secret; returns it."""

    def rotate(self, stack_id: str, grace_seconds: int) -> str:
        """Replace the secret; the previous one stays valid for ``grace_seconds``. Returns the new one."""

    def secrets(self, stack_id: str, fresh: bool = False) -> list[str]:
        """The secrets that verify now (current first). ``fresh`` bypasses any cache."""

    def delete(self, stack_id: str) -> None:
        """Forget the stack's secrets."""


class CloneCredentialStore(Protocol):
    """Clone URL credentials (the user info of ``https://user:token@host/...``), kept in the secret store only."""

    def put(self, stack_id: str, provider: str, clone_url: str, userinfo: str) -> None:
        """Store (or replace) the stack's credentials for ``clone_url`` (its public form)."""

    def get(self, stack_id: str) -> SourceCredentials | None:
        """The stack's credentials, or None if it has none."""

    def delete(self, stack_id: str) -> None:
        """Forget the stack's credentials (nothing to do if it has none)."""


class Builder(Protocol):
    """Starts builds (CodeBuild on AWS, the local builder on a laptop)."""

    def start(self, request: BuildRequest, credentials: SourceCredentials | None) -> str:
        """Start a build of ``request``, cloning with ``credentials`` if the URL needs them; returns the build id."""


class TaskCallbacks(Protocol):
    """Completes Step Functions callback tasks."""

    def succeed(self, token: str, output: dict[str, Any]) -> bool:
        """SendTaskSuccess; False if the task had already completed (or its execution ended)."""

    def fail(self, token: str, error: str, cause: str) -> bool:
        """SendTaskFailure; False if the task had already completed (or its execution ended)."""


class BuildRecords(Protocol):
    """Where a waiting build's task token and a release's build details are kept."""

    def put_build_token(self, release_id: str, token: str, template_key: str) -> None:
        """Remember the token of the release's build task (replaces an older one)."""

    def build_token(self, release_id: str) -> tuple[str, str] | None:
        """``(task_token, template_key)`` of the release's build task, or None."""

    def record_build(self, release_id: str, build: dict[str, Any], resolved_sha: str | None = None) -> None:
        """Set the release's ``build`` details, and its ``sha`` to ``resolved_sha`` if it has none yet."""


class ApprovalRecords(Protocol):
    """Approval requests stored by the stage coordinator on a release's stage run."""

    def waiting_token(self, release_id: str, stage: str) -> str | None:
        """The task token if the stage is AWAITING_APPROVAL, else None."""

    def record_decision(self, release_id: str, stage: str, token: str, decision: dict[str, Any]) -> bool:
        """After the execution resumed: record the decision and drop the token (False if already done)."""


class LaneStore(Protocol):
    """The stages' lanes (who holds, who waits, what runs), written by the stage coordinator."""

    def lane(self, stack_id: str, stage: str) -> Lane:
        """The lane (an empty one at version 0 if the stage never had a release)."""

    def states(self, stack_id: str) -> dict[str, StageState]:
        """Every stage of the stack that has a lane, by name."""

    def states_of(self, stacks: Sequence[Stack]) -> dict[str, dict[str, StageState]]:
        """The lanes of several stacks' stages (stack id → name → state), in a few batch reads."""

    def commit(self, change: LaneChange) -> None:
        """Write the lane and the runs atomically; ConflictError if the lane moved since it was read or
        the stack is no longer the one with ``stack_uid``."""


class CloudFormation(Protocol):
    """What the coordinator reads and cleans up in CloudFormation."""

    def stack(self, name: str) -> StackSnapshot:
        """The stack (status None if it does not exist)."""

    def change_set(self, stack_name: str, change_set_name: str) -> ChangeSetSnapshot | None:
        """The change set, or None if it does not exist."""

    def delete_change_set(self, stack_name: str, change_set_name: str) -> None:
        """Delete a change set that will not be executed (missing is fine)."""

    def delete_stack(self, name: str, role_arn: str) -> None:
        """Start deleting a stack (a stack that never got created)."""


class ExecutionHistory(Protocol):
    """Step Functions execution history."""

    def events(self, execution_arn: str) -> list[dict[str, Any]] | None:
        """Every event of the execution in order, or None if it does not exist (yet)."""


class LogStore(Protocol):
    """Build logs kept by the local builder."""

    def read(self, url: str) -> str | None:
        """The text at an ``s3://bucket/key`` pointer, or None."""


class Metrics(Protocol):
    """Business metrics (CloudWatch embedded metric format on AWS)."""

    def count(self, name: str, value: int = 1) -> None:
        """Add ``value`` to the counter ``name`` for this invocation."""


@dataclass(frozen=True)
class HttpResult:
    """How a target answered one request: ``status`` None when it did not answer (timeout, refused)."""

    status: int | None
    retry_after: str | None = None
    error: str | None = None
    duration_ms: int = 0
    body: str = ""  # the start of the answer (a provider's error message)


@dataclass(frozen=True)
class DeliveryAttempt:
    """One attempt to deliver one event to one target (kept a while, shown by ``GET /stacks/{id}/notifications``)."""

    stack_id: str
    delivery_id: str
    event_id: str
    event: str
    release_id: str
    stage: str | None
    target: str
    target_type: str
    attempt: int
    outcome: str  # delivered | retrying | failed | skipped
    at: str
    status_code: int | None = None
    error: str | None = None
    duration_ms: int = 0
    next_attempt_in_seconds: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "at": self.at,
            "delivery_id": self.delivery_id,
            "event_id": self.event_id,
            "event": self.event,
            "release_id": self.release_id,
            "stage": self.stage,
            "target": self.target,
            "target_type": self.target_type,
            "attempt": self.attempt,
            "outcome": self.outcome,
            "status_code": self.status_code,
            "error": self.error,
            "duration_ms": self.duration_ms,
            "next_attempt_in_seconds": self.next_attempt_in_seconds,
        }


@dataclass(frozen=True)
class AuditEntry:
    """One mutation: who did what to what (never updated or deleted by the API)."""

    at: str
    actor: str
    action: str
    target: str
    stack_id: str
    detail: dict[str, Any] = field(default_factory=dict)
    id: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "id": self.id,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "stack_id": self.stack_id,
            "detail": self.detail,
        }


class EventPublisher(Protocol):
    """Where release and stage events go once their transition is recorded (the notifications queue)."""

    def publish(self, events: Sequence[Event]) -> None:
        """Enqueue the events (best effort: the caller logs a failure, a release never waits on it)."""


class NotificationQueue(Protocol):
    """The notifications queue as the worker uses it: delayed retries and the dead-letter queue."""

    def retry(self, message: dict[str, Any], delay_seconds: int) -> None:
        """Enqueue ``message`` again, visible after ``delay_seconds`` (≤ 900)."""

    def dead_letter(self, message: dict[str, Any]) -> None:
        """Give up on ``message``: put it in the dead-letter queue."""


class NotificationSecrets(Protocol):
    """Commit-status tokens and webhook secrets of a stack, kept in the secret store only."""

    def read(self, stack_id: str) -> dict[str, Any]:
        """``{"commit_status_token": str|None, "webhooks": {target key: secret}}`` (empty if none)."""

    def write(self, stack_id: str, document: dict[str, Any]) -> None:
        """Replace the stack's document (deletes the secret when it holds nothing)."""

    def delete(self, stack_id: str) -> None:
        """Forget the stack's tokens and secrets."""


class HttpSender(Protocol):
    """Outbound HTTP with short timeouts."""

    def send(self, request: OutboundRequest) -> HttpResult:
        """Send ``request``; never raises for a network failure (``status`` None, ``error`` set)."""


class DeliveryLog(Protocol):
    """Recent delivery attempts per stack."""

    def record(self, attempt: DeliveryAttempt) -> None:
        """Keep one attempt (expires after a while)."""

    def recent(self, stack_id: str, limit: int, next_token: str | None) -> Page:
        """The stack's attempts, newest first."""


class AuditLog(Protocol):
    """The audit trail: append-only."""

    def append(self, entry: AuditEntry) -> None:
        """Add an entry."""

    def for_stack(self, stack_id: str, limit: int, next_token: str | None) -> Page:
        """A stack's entries (also after it was deleted), newest first."""

    def everything(self, limit: int, next_token: str | None) -> Page:
        """Every entry, newest first."""
