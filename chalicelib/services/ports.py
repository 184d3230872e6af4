"""The ports services talk to. Adapters implement them with AWS; tests with in-memory fakes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ..domain.builds import BuildRequest, SourceCredentials
from ..domain.stacks import Stack


@dataclass(frozen=True)
class StageState:
    """What the pipeline last did to a stage (written by the state machine)."""

    name: str
    status: str = "IDLE"
    lock_owner: str | None = None
    current_release: dict[str, Any] | None = None
    outputs: list[dict[str, Any]] | None = None
    updated_at: str | None = None


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

    def stage_states(self, stack_id: str) -> dict[str, StageState]:
        """Runtime state of the stack's stages, by name."""

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
        self, stack_id: str, limit: int, next_token: str | None, status: str | None, ref: str | None
    ) -> Page:
        """A stack's releases, newest first (a query on the stack's release index)."""

    def pending_before(self, cutoff: str, limit: int) -> list[str]:
        """Ids of releases still PENDING that were received before ``cutoff``."""


class Executions(Protocol):
    """The release state machine."""

    def start(self, name: str, input_json: str) -> str:
        """Start (idempotent by name and input); returns the execution ARN."""


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

    def succeed(self, token: str, output: dict[str, Any]) -> None:
        """SendTaskSuccess; a token that already completed is not an error."""

    def fail(self, token: str, error: str, cause: str) -> None:
        """SendTaskFailure; a token that already completed is not an error."""


class BuildRecords(Protocol):
    """Where a waiting build's task token and a release's build details are kept."""

    def put_build_token(self, release_id: str, token: str, template_key: str) -> None:
        """Remember the token of the release's build task (replaces an older one)."""

    def build_token(self, release_id: str) -> tuple[str, str] | None:
        """``(task_token, template_key)`` of the release's build task, or None."""

    def record_build(self, release_id: str, build: dict[str, Any]) -> None:
        """Set the release's ``build`` details."""


class ApprovalRecords(Protocol):
    """Approval requests stored by the state machine on a release's stage run."""

    def waiting_token(self, release_id: str, stage: str) -> str | None:
        """The task token if the stage is AWAITING_APPROVAL, else None."""

    def decide(self, release_id: str, stage: str, token: str, decision: dict[str, Any]) -> bool:
        """Record the decision if the stage still waits with that token; False if someone else decided."""


class ExecutionHistory(Protocol):
    """Step Functions execution history."""

    def events(self, execution_arn: str) -> list[dict[str, Any]] | None:
        """Every event of the execution in order, or None if it does not exist (yet)."""


class LogStore(Protocol):
    """Build logs kept by the local builder."""

    def read(self, url: str) -> str | None:
        """The text at an ``s3://bucket/key`` pointer, or None."""


class ApprovalLookup(Protocol):
    """Which stages of a stack have a release waiting for approval."""

    def awaiting_approval(self, stack_id: str) -> dict[str, str]:
        """Stage name → release id."""


class Metrics(Protocol):
    """Business metrics (CloudWatch embedded metric format on AWS)."""

    def count(self, name: str, value: int = 1) -> None:
        """Add ``value`` to the counter ``name`` for this invocation."""
