"""Every release ends and no stage stays held: reconciling executions that ended, sweeping, cancelling.

Step Functions ends an execution in ways the definition cannot catch (StopExecution, ``States.Runtime``,
the 25,000-event history limit, the execution time limit). The "Execution Status Change" event
(EventBridge on AWS; the local event pump in ``make run``) and the periodic sweeper both call
``reconcile``: a release whose execution is no longer running gets its final status with the cause, its
stage runs are closed, the stages it held or waited for are freed (conditionally on it being the
holder, so reconciling twice is harmless) and the next release enters. A release stays in the ACTIVE
index until that is done, so the sweeper keeps trying after a failure.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from ..domain import notifications as notify
from ..domain.errors import ConflictError, NotFoundError, ValidationError
from ..domain.releases import EXECUTION_END, Release, is_release_id
from .audit import Auditor, audit
from .notifications import emit
from .ports import EventPublisher, Executions, ExecutionState, Metrics, ReleaseRepository
from .releases import ReleaseStarter
from .stages import StageCoordinator

log = logging.getLogger(__name__)
MAX_REASON = 2000


def parse_cancel(body: Any) -> str:
    """The optional ``reason`` of a cancel body (``{}`` when the request had none)."""
    if not isinstance(body, dict):
        raise ValidationError("must be an object", "body")
    unknown = set(body) - {"reason"}
    if unknown:
        raise ValidationError("unknown field", sorted(unknown)[0])
    reason = body.get("reason", "")
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise ValidationError(f"must be a string of at most {MAX_REASON} characters", "reason")
    return reason


def release_id_of(detail: dict[str, Any]) -> str | None:
    """The release an "Execution Status Change" event is about (from the execution input)."""
    try:
        data = json.loads(detail.get("input") or "{}")
        return str(data["release"]["id"])
    except (ValueError, KeyError, TypeError):
        return None


class Reconciler:
    """Brings releases whose execution ended (or was lost) to their final state, and cancels releases."""

    def __init__(
        self,
        releases: ReleaseRepository,
        executions: Executions,
        coordinator: StageCoordinator,
        starter: ReleaseStarter,
        clock: Callable[[], str],
        metrics: Metrics,
        events: EventPublisher | None = None,
        auditor: Auditor | None = None,
    ) -> None:
        self._events = events
        self._auditor = auditor
        self._releases = releases
        self._executions = executions
        self._coordinator = coordinator
        self._starter = starter
        self._clock = clock
        self._metrics = metrics

    def execution_changed(self, detail: dict[str, Any]) -> str:
        """Handle a Step Functions "Execution Status Change" event."""
        if detail.get("status") == "RUNNING":
            return "ignored: still running"
        release_id = release_id_of(detail)
        if release_id is None:
            return "ignored: not a Stagecoach execution"
        return self.reconcile(release_id, str(detail.get("executionArn") or ""))

    def reconcile(self, release_id: str, execution_arn: str = "") -> str:
        """Bring one release in line with its execution; returns what was done."""
        release = self._releases.get(release_id)
        if release is None:
            return "ignored: unknown release"
        if execution_arn and execution_arn != release.execution_arn:
            return "ignored: an earlier execution of the release"
        if release.status == "PENDING":
            return "pending: the sweeper starts it"
        state = self._executions.describe(release.execution_arn)
        if state is None:
            if release.terminal:
                return self._free(release)
            self._starter.resume(release)
            self._metrics.count("ReleaseResumed")
            return "resumed: its execution was lost"
        if state.status == "RUNNING":
            if not release.terminal:
                return "running"
            self._executions.stop(release.execution_arn, "ReleaseEnded", f"release {release.id} is {release.status}")
            state = self._executions.describe(release.execution_arn) or ExecutionState("ABORTED")
            if state.status == "RUNNING":
                return "stopping"
        if not release.terminal:
            status, fields = self._final(release, state)
            if self._releases.end(release.id, status, fields):
                self._metrics.count("ReleaseReconciled")
            release = self._releases.get(release.id) or release
        return self._free(release)

    def _final(self, release: Release, state: ExecutionState) -> tuple[str, dict[str, Any]]:
        status = EXECUTION_END.get(state.status, "FAILED")
        output = state.extra.get("output")
        if state.status == "SUCCEEDED" and isinstance(output, dict) and output.get("status"):
            status = str(output["status"])  # e.g. the execution ended the release SUPERSEDED
        if status == "SUCCEEDED":
            return status, {"ended_at": state.stopped_at or self._clock()}
        error = state.error or {"CANCELLED": "Cancelled", "TIMED_OUT": "ExecutionTimedOut"}.get(
            status, "ExecutionFailed"
        )
        cause = state.cause or f"the execution ended {state.status}"
        return status, {"error": error, "cause": cause, "ended_at": state.stopped_at or self._clock()}

    def _free(self, release: Release) -> str:
        if self._coordinator.release_ended(release, list(release.stages)):
            if not self._ended(release):  # not settled: the sweeper reconciles (and publishes) it again
                return f"{release.status}: stages freed; its end is not published yet"
            self._releases.settle(release.id)
            return f"{release.status}: stages freed"
        return f"{release.status}: a stage is still draining"

    def sweep(self) -> dict[str, Any]:
        """Start releases stuck PENDING and reconcile every release whose execution may have ended."""
        started = self._starter.sweep()
        reconciled: dict[str, str] = {}
        for release_id in self._releases.started():
            try:
                outcome = self.reconcile(release_id)
            except Exception:  # one bad release must not stop the sweep of the others
                log.exception("could not reconcile release %s", release_id)
                continue
            if outcome != "running":
                reconciled[release_id] = outcome
        return {"started": started, "reconciled": reconciled}

    def cancel(self, release_id: str, body: Any, actor: str) -> dict[str, Any]:
        """Stop a release: it ends CANCELLED; a change set already executing finishes as CloudFormation ends it."""
        reason = parse_cancel(body)
        release = self._releases.get(release_id) if is_release_id(release_id) else None
        if release is None:
            raise NotFoundError(f"release {release_id!r} does not exist")
        if release.status == "CANCELLED":
            return _cancelled(release)
        if release.terminal:
            raise ConflictError(f"release {release_id} already ended {release.status}; there is nothing to cancel")
        cause = f"cancelled by {actor}" + (f": {reason}" if reason else "")
        fields = {"cancelled_by": actor, "error": "Cancelled", "cause": cause, "ended_at": self._clock()}
        if release.status == "PENDING" and self._releases.end(release.id, "CANCELLED", fields):
            self._ended(self._releases.get(release.id) or release)
            self._releases.settle(release.id)  # (never executed: nothing would reconcile it again)
        else:
            self._executions.stop(release.execution_arn, "Cancelled", cause)
            self._releases.end(release.id, "CANCELLED", fields)
            self.reconcile(release.id)
        self._metrics.count("ReleaseCancelled")
        ended = self._releases.get(release.id) or release
        if ended.status != "CANCELLED":
            raise ConflictError(f"release {release_id} ended {ended.status} before it could be cancelled")
        audit(self._auditor, actor, "release.cancel", f"release/{release.id}", release.stack_id, reason=reason or None)
        return _cancelled(ended)

    def _ended(self, release: Release) -> bool:
        """Tell the notification targets that the release ended: once it is settled (its execution ended
        and it holds no stage), whoever ended it (the state machine, the coordinator, a cancel)."""
        fields = {
            "error": release.error,
            "cause": release.cause,
            "superseded_by": release.superseded_by,
            "cancelled_by": release.cancelled_by,
            "failed_stage": release.failed_stage,
        }
        at = release.ended_at or self._clock()
        return emit(self._events, [notify.release_ended(release.stack_id, release.id, release.status, at, fields)])


def _cancelled(release: Release) -> dict[str, Any]:
    return {
        "release_id": release.id,
        "status": release.status,
        "cancelled_by": release.cancelled_by,
        "cause": release.cause,
        "ended_at": release.ended_at,
    }
