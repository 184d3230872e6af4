"""Reading releases: one release with its stages, and a stack's releases newest first."""

from __future__ import annotations

from typing import Any

from ..domain.errors import NotFoundError, ValidationError
from ..domain.history import redact_task_tokens, release_timeline
from ..domain.releases import BRANCH, RELEASE_STATUSES, is_release_id
from ..domain.stacks import is_stack_id
from ..domain.text import matches
from .ports import ExecutionHistory, LogStore, ReleaseRepository, StackRepository
from .release_views import release_summary, release_view
from .stacks import parse_limit, parse_next_token


def parse_flag(raw: str | None, name: str) -> bool:
    """A ``true``/``false`` query parameter (absent: false)."""
    if raw is None or raw == "false":
        return False
    if raw == "true":
        return True
    raise ValidationError("must be true or false", name)


class ReleaseQueries:
    """Read side of releases."""

    def __init__(
        self, stacks: StackRepository, releases: ReleaseRepository, history: ExecutionHistory, logs: LogStore
    ) -> None:
        self._stacks = stacks
        self._releases = releases
        self._history = history
        self._logs = logs

    def _release(self, release_id: str) -> Any:
        release = self._releases.get(release_id) if is_release_id(release_id) else None
        if release is None:
            raise NotFoundError(f"release {release_id!r} does not exist")
        return release

    def history(self, release_id: str, raw_flag: str | None) -> dict[str, Any]:
        """The timeline (or, with ``raw=true``, the events) of the release's executions, one entry per state:
        a resumed release's earlier executions first (``previous_executions``), then its current one. Task
        tokens are redacted either way."""
        raw = parse_flag(raw_flag, "raw")
        release = self._release(release_id)
        arns = [*release.previous_executions, release.execution_arn]
        histories = [(arn, self._history.events(arn)) for arn in arns]
        found = [(arn, redact_task_tokens(events)) for arn, events in histories if events is not None]
        body: dict[str, Any] = {
            "release_id": release_id,
            "execution_arn": release.execution_arn,
            "started": histories[-1][1] is not None,
            "executions": [{"execution_arn": arn, "found": events is not None} for arn, events in histories],
        }
        if raw:
            return {**body, "events": [{**event, "executionArn": arn} for arn, events in found for event in events]}
        timeline = release_timeline(found, release.stages)
        return {**body, "events": [entry.to_dict() for entry in timeline]}

    def build_log(self, release_id: str) -> dict[str, Any]:
        """The build log text (local builder) or where to find it (CloudWatch Logs on AWS)."""
        release = self._release(release_id)
        build = release.build or {}
        pointer = build.get("log") or None
        text = None
        link = (pointer or {}).get("deep-link", "")
        if link.startswith("s3://"):
            text = self._logs.read(link)
        return {
            "release_id": release_id,
            "build_id": build.get("build_id"),
            "status": build.get("status"),
            "log": text,
            "pointer": None if text is not None else pointer,
        }

    def show(self, release_id: str) -> dict[str, Any]:
        """One release with its build and stages."""
        found = self._releases.get_with_runs(release_id) if is_release_id(release_id) else None
        if found is None:
            raise NotFoundError(f"release {release_id!r} does not exist")
        release, runs = found
        return release_view(release, runs)

    def list_for_stack(
        self, stack_id: str, limit: str | None, next_token: str | None, status: str | None, ref: str | None
    ) -> dict[str, Any]:
        """A page of the stack's releases, newest first; filters ``status`` and ``ref``."""
        if status is not None and status not in RELEASE_STATUSES:
            raise ValidationError(f"must be one of {', '.join(RELEASE_STATUSES)}", "status")
        if ref is not None:
            if not matches(BRANCH, ref):
                raise ValidationError("must be a branch, tag or full ref (1 to 255 characters, no spaces)", "ref")
            if not ref.startswith("refs/"):
                ref = f"refs/heads/{ref}"
        page_size = parse_limit(limit)
        token = parse_next_token(next_token)
        stack = self._stacks.get(stack_id) if is_stack_id(stack_id) else None
        if stack is None:
            raise NotFoundError(f"stack {stack_id!r} does not exist")
        page = self._releases.list_for_stack(stack_id, page_size, token, status, ref, stack.uid)
        return {"releases": [release_summary(r) for r in page.items], "next_token": page.next_token}
