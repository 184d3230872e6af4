"""Manual approvals: a person resumes (or stops) a release waiting before a stage."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..domain import lanes
from ..domain import notifications as notify
from ..domain.errors import ConflictError, NotFoundError, ValidationError
from ..domain.releases import Release, is_release_id
from .audit import Auditor, audit
from .notifications import emit
from .ports import ApprovalRecords, EventPublisher, LaneChange, LaneStore, ReleaseRepository, TaskCallbacks

MAX_COMMENT = 2000


def parse_comment(body: Any) -> str:
    """The optional ``comment`` of an approve/reject body (``{}`` when the request had none)."""
    if not isinstance(body, dict):
        raise ValidationError("must be an object", "body")
    unknown = set(body) - {"comment"}
    if unknown:
        raise ValidationError("unknown field", sorted(unknown)[0])
    comment = body.get("comment", "")
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
        raise ValidationError(f"must be a string of at most {MAX_COMMENT} characters", "comment")
    return comment


class ApprovalService:
    """Approve or reject a stage that waits for approval; safe to retry.

    The execution is resumed first (SendTaskSuccess / SendTaskFailure on the task token the stage run
    holds) and the decision recorded after: a failed call keeps the token, so a retry works; a retry of a
    decision that already went through answers the same decision. Whoever completes the token first
    wins, so an approval racing a newer release that supersedes this one can never deploy both.
    """

    def __init__(
        self,
        releases: ReleaseRepository,
        approvals: ApprovalRecords,
        callbacks: TaskCallbacks,
        clock: Callable[[], str],
        lanes_store: LaneStore,
        events: EventPublisher | None = None,
        auditor: Auditor | None = None,
    ) -> None:
        self._events = events
        self._auditor = auditor
        self._releases = releases
        self._approvals = approvals
        self._callbacks = callbacks
        self._clock = clock
        self._lanes = lanes_store

    def decide(self, release_id: str, stage: str, approve: bool, body: Any, actor: str) -> dict[str, Any]:
        """Resume the execution with the decision (SendTaskSuccess / SendTaskFailure), then record it."""
        comment = parse_comment(body)
        wanted = "approved" if approve else "rejected"
        release = self._load(release_id, stage)
        token = self._approvals.waiting_token(release_id, stage)
        if token is None or release.terminal:
            return self._already_decided(release, stage, wanted, actor)
        decision = {"decision": wanted, "by": actor, "at": self._clock(), "comment": comment}
        if approve:
            resumed = self._callbacks.succeed(token, decision)
        else:
            cause = f"rejected by {actor}" + (f": {comment}" if comment else "")
            resumed = self._callbacks.fail(token, "ApprovalRejected", cause)
        if not resumed:
            current = self._releases.get(release_id) or release
            raise ConflictError(_not_waiting(current, stage))
        self._approvals.record_decision(release_id, stage, token, decision)
        if approve:
            self._mark_deploying(release, stage)
            at = str(decision["at"])
            emit(self._events, [notify.stage_event(release.stack_id, release.id, stage, "DEPLOYING", at, {})])
        target = f"release/{release_id}/stage/{stage}"
        action = "stage.approve" if approve else "stage.reject"
        audit(self._auditor, actor, action, target, release.stack_id, comment=comment or None)
        return {"release_id": release_id, "stage": stage, **decision}

    def _mark_deploying(self, release: Release, stage: str) -> None:
        """The stage's holder deploys now (its approval token is spent): show it, best effort."""
        for _attempt in range(3):
            lane = self._lanes.lane(release.stack_id, stage)
            decided = lanes.approval_decided(lane, release.id)
            if decided == lane:
                return
            try:
                self._lanes.commit(LaneChange(stack_uid=release.stack_uid, lane=decided, now=self._clock()))
                return
            except ConflictError:
                continue

    def _load(self, release_id: str, stage: str) -> Release:
        release = self._releases.get(release_id) if is_release_id(release_id) else None
        if release is None:
            raise NotFoundError(f"release {release_id!r} does not exist")
        if stage not in release.stages:
            raise NotFoundError(f"release {release_id!r} has no stage {stage!r}")
        return release

    def _already_decided(self, release: Release, stage: str, wanted: str, actor: str) -> dict[str, Any]:
        """A retry of the same person's decision answers it again; anything else is a conflict."""
        run = self._releases.stage_run(release.id, stage)
        approval = (run.approval if run is not None else None) or {}
        if approval.get("decision") == wanted and approval.get("by") == actor:
            return {
                "release_id": release.id,
                "stage": stage,
                **{k: approval.get(k) for k in ("decision", "by", "at", "comment")},
            }
        if approval.get("decision"):
            raise ConflictError(
                f"stage {stage!r} of release {release.id} was already {approval['decision']} by {approval.get('by')}"
            )
        raise ConflictError(_not_waiting(release, stage))


def _not_waiting(release: Release, stage: str) -> str:
    if release.status == "SUPERSEDED":
        return (
            f"release {release.id} was superseded by release {release.superseded_by} "
            f"(a newer commit); approve that release instead"
        )
    if release.terminal:
        return f"release {release.id} has ended ({release.status}); stage {stage!r} no longer waits for approval"
    return f"stage {stage!r} of release {release.id} is not waiting for approval"
