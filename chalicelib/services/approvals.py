"""Manual approvals: a person resumes (or stops) a release waiting before a stage."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..domain.errors import ConflictError, NotFoundError, ValidationError
from ..domain.releases import is_release_id
from .ports import ApprovalRecords, ReleaseRepository, TaskCallbacks

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
    """Approve or reject a stage that waits for approval; each request is decided once."""

    def __init__(
        self,
        releases: ReleaseRepository,
        approvals: ApprovalRecords,
        callbacks: TaskCallbacks,
        clock: Callable[[], str],
    ) -> None:
        self._releases = releases
        self._approvals = approvals
        self._callbacks = callbacks
        self._clock = clock

    def decide(self, release_id: str, stage: str, approve: bool, body: Any, actor: str) -> dict[str, Any]:
        """Record the decision and resume the execution (SendTaskSuccess / SendTaskFailure)."""
        comment = parse_comment(body)
        release = self._releases.get(release_id) if is_release_id(release_id) else None
        if release is None:
            raise NotFoundError(f"release {release_id!r} does not exist")
        if stage not in release.stages:
            raise NotFoundError(f"release {release_id!r} has no stage {stage!r}")
        token = self._approvals.waiting_token(release_id, stage)
        if token is None:
            raise ConflictError(f"stage {stage!r} of release {release_id!r} is not waiting for approval")
        decision = {
            "decision": "approved" if approve else "rejected",
            "by": actor,
            "at": self._clock(),
            "comment": comment,
        }
        if not self._approvals.decide(release_id, stage, token, decision):
            raise ConflictError(f"stage {stage!r} of release {release_id!r} was already decided")
        if approve:
            self._callbacks.succeed(token, decision)
        else:
            cause = f"rejected by {actor}" + (f": {comment}" if comment else "")
            self._callbacks.fail(token, "ApprovalRejected", cause)
        return {"release_id": release_id, "stage": stage, **decision}
