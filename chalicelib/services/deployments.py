"""Day-2 operations on one stage: promote a build that was tested, redeploy, roll back and pin, unpin.

None of these builds anything: the new release carries its source release's build (the packaged
template) and the state machine skips Build. They go through the stage coordinator like every
release: the stage's approval, its lane, superseding and recovery.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..domain import lanes
from ..domain import notifications as notify
from ..domain.errors import ConflictError, NotFoundError, ValidationError
from ..domain.releases import DEPLOYMENT_TRIGGERS, PipelineConfig, Release, is_release_id, new_deployment
from ..domain.stacks import Stack, is_stack_id
from ..domain.text import TEXT, matches
from .audit import Auditor, audit
from .notifications import emit
from .ports import EventPublisher, Executions, LaneChange, LaneStore, Metrics, ReleaseRepository, StackRepository

MAX_REASON = 2000
ATTEMPTS = 5


def _fields(body: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValidationError("must be an object", "body")
    unknown = set(body) - allowed
    if unknown:
        raise ValidationError("unknown field", sorted(unknown)[0])
    return body


def _release_id(value: Any, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not is_release_id(value):
        raise ValidationError("must be a release id (r and 26 digits or capital letters)", "release_id")
    return value


def _reason(value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_REASON or not matches(TEXT, value):
        raise ValidationError(f"say why, on one line of at most {MAX_REASON} characters", "reason")
    return value


class DeploymentService:
    """Promote, redeploy, roll back, unpin."""

    def __init__(
        self,
        stacks: StackRepository,
        releases: ReleaseRepository,
        lanes_store: LaneStore,
        executions: Executions,
        config: Callable[[], PipelineConfig],
        clock: Callable[[], str],
        new_id: Callable[[], str],
        metrics: Metrics,
        events: EventPublisher | None = None,
        auditor: Auditor | None = None,
    ) -> None:
        self._stacks = stacks
        self._releases = releases
        self._lanes = lanes_store
        self._executions = executions
        self._config = config
        self._clock = clock
        self._new_id = new_id
        self._metrics = metrics
        self._events = events
        self._auditor = auditor

    # ------------------------------------------------------------------ promote / redeploy

    def promote(self, stack_id: str, stage: str, body: Any, actor: str) -> dict[str, Any]:
        """Deploy release R's build to ``stage`` (``{"release_id": R}``); ``redeploy`` when the stage runs R."""
        data = _fields(body, {"release_id"})
        release_id = _release_id(data.get("release_id"), required=True)
        stack = self._stack(stack_id, stage)
        source = self._source(stack, str(release_id))
        lane = self._lanes.lane(stack.id, stage)
        deployed = lane.deployed
        trigger = "promote"
        if deployed is not None:
            if deployed.order > source.order:
                raise ConflictError(
                    f"release {source.id} is older than what stage {stage!r} runs ({deployed.release_id}); "
                    f"that is a rollback: POST /stacks/{stack.id}/stages/{stage}/rollback"
                )
            if deployed.order == source.order:
                trigger = "redeploy"
        return self._start(stack, stage, source, trigger, actor)

    # ------------------------------------------------------------------ rollback / pin

    def rollback(self, stack_id: str, stage: str, body: Any, actor: str) -> dict[str, Any]:
        """Deploy an earlier release's build to ``stage`` and pin the stage there.

        ``{"release_id": R?, "reason": "..."}``; without R, the release the stage ran before its current
        one. While pinned, automatic releases stop before the stage (HELD).
        """
        data = _fields(body, {"release_id", "reason"})
        reason = _reason(data.get("reason"))
        wanted = _release_id(data.get("release_id"), required=False)
        stack = self._stack(stack_id, stage)
        lane = self._lanes.lane(stack.id, stage)
        if wanted is None:
            wanted = self._previous(lane)
        source = self._source(stack, wanted)
        if lane.deployed is not None and lane.deployed.order == source.order:
            raise ConflictError(f"stage {stage!r} already runs release {source.id}; there is nothing to roll back")
        now = self._clock()
        self._pin(stack, stage, lanes.Pin(source.id, source.commit, actor, now, reason))
        self._metrics.count("StageRolledBack")
        return {**self._start(stack, stage, source, "rollback", actor), "pin": self._pin_view(stack.id, stage)}

    def unpin(self, stack_id: str, stage: str, actor: str) -> dict[str, Any]:
        """Let automatic releases deploy the stage again."""
        stack = self._stack(stack_id, stage)
        for _attempt in range(ATTEMPTS):
            lane = self._lanes.lane(stack.id, stage)
            if lane.pin is None:
                raise ConflictError(f"stage {stage!r} of stack {stack.id!r} is not pinned")
            step = lanes.unpin(lane, stack.execution_mode, self._clock())
            try:
                self._lanes.commit(LaneChange(stack_uid=stack.uid, lane=step.lane, now=self._clock()))
            except ConflictError:
                continue
            self._metrics.count("StageUnpinned")
            audit(self._auditor, actor, "stage.unpin", f"stack/{stack.id}/stage/{stage}", stack.id)
            return {"stack_id": stack.id, "stage": stage, "pin": None, "unpinned_by": actor}
        raise ConflictError(f"stage {stage!r} kept changing; try again")

    # ------------------------------------------------------------------ shared

    def _stack(self, stack_id: str, stage: str) -> Stack:
        stack = self._stacks.get(stack_id) if is_stack_id(stack_id) else None
        if stack is None:
            raise NotFoundError(f"stack {stack_id!r} does not exist")
        stack.stage(stage)  # NotFoundError if it has no such stage
        return stack

    def _source(self, stack: Stack, release_id: str) -> Release:
        """The release whose build is deployed: a promote/redeploy/rollback stands for its own source."""
        release = self._releases.get(release_id)
        if release is None:
            raise NotFoundError(f"release {release_id!r} does not exist")
        if release.stack_id != stack.id or (release.stack_uid and release.stack_uid != stack.uid):
            raise ConflictError(f"release {release_id} belongs to another stack ({release.stack_id})")
        if release.trigger in DEPLOYMENT_TRIGGERS and release.source_release_id:
            original = self._releases.get(release.source_release_id)
            if original is not None:
                release = original
        if not release.built:
            raise ConflictError(f"release {release.id} has no successful build to deploy")
        return release

    def _previous(self, lane: lanes.Lane) -> str:
        """What the stage ran before its current release (the source, for a deployment)."""
        current = lane.deployed.order if lane.deployed else None
        for earlier in lane.history:
            if earlier.order != current:
                return earlier.release_id
        raise ConflictError(f"stage {lane.stage!r} has no earlier release to roll back to; name one (release_id)")

    def _pin(self, stack: Stack, stage: str, pinned: lanes.Pin) -> None:
        for _attempt in range(ATTEMPTS):
            lane = self._lanes.lane(stack.id, stage)
            try:
                self._lanes.commit(LaneChange(stack_uid=stack.uid, lane=lanes.pin(lane, pinned), now=pinned.at))
                return
            except ConflictError:
                continue
        raise ConflictError(f"stage {stage!r} kept changing; try again")

    def _pin_view(self, stack_id: str, stage: str) -> dict[str, Any] | None:
        pinned = self._lanes.lane(stack_id, stage).pin
        return None if pinned is None else pin_view(pinned)

    def _start(self, stack: Stack, stage: str, source: Release, trigger: str, actor: str) -> dict[str, Any]:
        release = new_deployment(stack, stage, source, trigger, self._new_id(), self._clock(), self._config(), actor)
        self._releases.record(release, [])
        try:
            self._executions.start(release.execution_name, release.input_json)
        except Exception:  # stays PENDING; the sweeper starts it
            self._metrics.count("ExecutionStartFailed")
        else:
            emit(self._events, [notify.release_started(release.stack_id, release.id, self._clock())])
        self._metrics.count(f"Release{trigger.title()}")
        action = {"promote": "stage.promote", "redeploy": "stage.redeploy", "rollback": "stage.rollback"}[trigger]
        audit(
            self._auditor,
            actor,
            action,
            f"stack/{stack.id}/stage/{stage}",
            stack.id,
            release_id=release.id,
            source_release_id=source.id,
        )
        return {
            "release_id": release.id,
            "status": release.status,
            "trigger": trigger,
            "source_release_id": source.id,
            "stage": stage,
        }


def pin_view(pinned: lanes.Pin) -> dict[str, Any]:
    """A pin as the API shows it."""
    return {
        "release_id": pinned.release_id,
        "sha": pinned.sha,
        "by": pinned.by,
        "at": pinned.at,
        "reason": pinned.reason,
    }
