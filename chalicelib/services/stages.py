"""The stage coordinator: decides which release deploys a stage, and records what each stage came to.

The release state machine asks it three things, each as an SQS message carrying a task token
(``sqs:sendMessage.waitForTaskToken`` on a FIFO queue, one message group per stack, so the messages of a
stack are handled one at a time): ``enter`` a stage, ``approval`` (the change set is ready, ask a person),
and ``leave`` a stage (with the last CloudFormation reading or the error that ended it). The coordinator
answers the token when the release may go on: at once, or later when the release it waits behind leaves
(a parked release costs no state transitions). The ordering rules live in ``chalicelib.domain.lanes``;
this service reads the lane, applies a rule, writes the lane and the stage runs in one conditional
transaction, then ends superseded releases and completes the task tokens.

Answers to the state machine: success with the plan (``enter``) or nothing; failures name what happened:
``Superseded`` and ``ReleaseEnded`` (recorded here, the iteration just stops), ``StageFailed`` (recorded
here, the release is FAILED), ``StackBusy`` (wait a poll interval and enter again), ``StageDone`` (a
resumed release finds the stage already deployed).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from ..domain import deploys, lanes
from ..domain import notifications as notify
from ..domain.clock import iso, parse_iso
from ..domain.errors import BadRequestError, ConflictError
from ..domain.lanes import Contender, Deployed, Lane, Step, Target
from ..domain.releases import DEPLOYMENT_TRIGGERS, STAGE_TERMINAL, Release
from ..domain.stacks import Stack
from .notifications import emit
from .ports import (
    CloudFormation,
    EventPublisher,
    LaneChange,
    LaneStore,
    Metrics,
    ReleaseRepository,
    RunUpdate,
    StackRepository,
    TaskCallbacks,
)

log = logging.getLogger(__name__)
ATTEMPTS = 8


@dataclass(frozen=True)
class StageMessage:
    """A request of the state machine (the SQS message body)."""

    op: str
    token: str
    release_id: str
    stage: str
    cfn_stack_name: str = ""
    role_arn: str = ""
    approval: bool = False
    auto_approve: bool = False
    execution_name: str = ""
    deploy_timeout_seconds: int = 3600
    approval_timeout_seconds: int = 0
    change_set_name: str = ""
    result: dict[str, Any] = field(default_factory=dict)


def parse_stage_message(body: str) -> StageMessage:
    """The message in an SQS body; BadRequestError if it is not one."""
    try:
        data = json.loads(body)
        op = str(data["op"])
        if op not in ("enter", "approval", "leave"):
            raise ValueError(f"unknown op {op!r}")
        result = data.get("result") or {}
        return StageMessage(
            op=op,
            token=str(data["token"]),
            release_id=str(data["release_id"]),
            stage=str(data["stage"]),
            cfn_stack_name=str(data.get("cfn_stack_name") or ""),
            role_arn=str(data.get("role_arn") or ""),
            approval=bool(data.get("approval")),
            auto_approve=bool(data.get("auto_approve")),
            execution_name=str(data.get("execution_name") or ""),
            deploy_timeout_seconds=int(data.get("deploy_timeout_seconds") or 3600),
            approval_timeout_seconds=int(data.get("approval_timeout_seconds") or 0),
            change_set_name=str(data.get("change_set_name") or ""),
            result=result if isinstance(result, dict) else {},
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise BadRequestError(f"not a stage message: {exc}") from exc


@dataclass
class _Effects:
    """What to do once the lane is written: end releases, complete tokens, clean up CloudFormation."""

    ends: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # (release, status, fields)
    succeed: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    fail: list[tuple[str, str, str]] = field(default_factory=list)
    discard: list[Target] = field(default_factory=list)  # change sets that will never be executed
    delete_stacks: list[tuple[str, str]] = field(default_factory=list)


class StageCoordinator:
    """Entering, approving and leaving stages, in the order the lane rules allow."""

    def __init__(
        self,
        lanes_store: LaneStore,
        releases: ReleaseRepository,
        stacks: StackRepository,
        cloudformation: CloudFormation,
        callbacks: TaskCallbacks,
        clock: Callable[[], str],
        metrics: Metrics,
        events: EventPublisher | None = None,
    ) -> None:
        self._events = events
        self._lanes = lanes_store
        self._releases = releases
        self._stacks = stacks
        self._cfn = cloudformation
        self._callbacks = callbacks
        self._clock = clock
        self._metrics = metrics

    # ------------------------------------------------------------------ entry point

    def handle(self, body: str) -> str:
        """Handle one message of the state machine; returns what was done (for logs and tests)."""
        message = parse_stage_message(body)
        release = self._releases.get(message.release_id)
        if release is None or release.terminal:
            status = release.status if release else "missing"
            self._callbacks.fail(message.token, "ReleaseEnded", f"release {message.release_id} has ended ({status})")
            return f"{message.op}: release {message.release_id} ended ({status})"
        stack = self._stacks.get(release.stack_id)
        if stack is None or (release.stack_uid and stack.uid != release.stack_uid):
            cause = f"stack {release.stack_id!r} was deleted"
            self._releases.end(release.id, "CANCELLED", {"ended_at": self._clock(), "cause": cause})
            self._callbacks.fail(message.token, "ReleaseEnded", cause)
            return f"{message.op}: {cause}"
        handler = {"enter": self._enter, "approval": self._approval, "leave": self._leave}[message.op]
        for _attempt in range(ATTEMPTS):
            try:
                return handler(message, release, stack)
            except ConflictError:
                self._metrics.count("LaneConflict")
        raise ConflictError(f"stage {message.stage} of stack {stack.id} kept changing; the message will be retried")

    # ------------------------------------------------------------------ enter

    def _enter(self, m: StageMessage, release: Release, stack: Stack) -> str:
        # Only a resumed release (a new execution) can enter a stage it already deployed.
        run = self._releases.stage_run(release.id, m.stage) if release.previous_executions else None
        if run is not None and run.status == "SUCCEEDED":
            self._callbacks.fail(m.token, "StageDone", f"stage {m.stage} is already deployed by this release")
            return f"enter {m.stage}: already done"
        now = self._clock()
        target = Target(
            cfn_stack_name=m.cfn_stack_name,
            role_arn=m.role_arn,
            change_set_name=deploys.change_set_name(m.execution_name, m.stage),
            deploy_timeout_seconds=m.deploy_timeout_seconds,
        )
        contender = Contender(
            release.id,
            release.order,
            m.token,
            now,
            target,
            approval=m.approval,
            explicit=release.trigger in DEPLOYMENT_TRIGGERS,
            rollback=release.trigger == "rollback",
        )
        lane = self._lanes.lane(stack.id, m.stage)
        blocker = self._blocker(stack, m.stage)
        step = lanes.arrive(lane, contender, stack.execution_mode, now, blocker)
        if step.preempt is not None:
            holder = step.preempt
            cause = f"superseded by release {release.id} at stage {m.stage}"
            if self._callbacks.fail(holder.approval_token, "Superseded", cause):
                step = step.then(lanes.preempted(step.lane, holder, stack.execution_mode, now, blocker))
            else:  # the approval was decided first: the holder deploys, this release waits
                decided = lanes.approval_decided(lane, holder.release_id)
                step = lanes.arrive(decided, contender, stack.execution_mode, now, blocker)
        self._carry_out(stack, m.stage, step, now, blocker)
        return f"enter {m.stage}: " + _describe(step, release.id)

    # ------------------------------------------------------------------ approval

    def _approval(self, m: StageMessage, release: Release, stack: Stack) -> str:
        change_set = self._cfn.change_set(m.cfn_stack_name, m.change_set_name) if m.change_set_name else None
        if change_set is not None and change_set.status == "FAILED" and not change_set.empty:
            # Nothing a person could approve: the stage fails with CloudFormation's reason.
            cause = f"the change set for {m.cfn_stack_name} failed: {change_set.reason}"
            self._callbacks.fail(m.token, "ChangeSetFailed", cause)
            return f"approval {m.stage}: the change set failed"
        now = self._clock()
        lane = self._lanes.lane(stack.id, m.stage)
        blocker = self._blocker(stack, m.stage)
        step = lanes.approval_requested(lane, release.id, m.token, stack.execution_mode, now, blocker)
        if step.ignored:
            self._callbacks.fail(m.token, "ReleaseEnded", step.ignored)
            return f"approval {m.stage}: {step.ignored}"
        runs: list[RunUpdate] = []
        effects = _Effects()
        if not any(s.release_id == release.id for s in step.superseded):
            # the change the person approves, as CloudFormation describes it (docs: "changes" of a stage)
            fields: dict[str, Any] = {"changes_json": json.dumps(change_set.changes if change_set else [])}
            if m.auto_approve and change_set is not None and change_set.empty:
                decision = {"decision": "auto", "by": "stagecoach", "at": now, "comment": "no changes to approve"}
                fields.update(status="DEPLOYING", approval={"requested_at": now, **decision})
                step = replace(step, lane=lanes.approval_decided(step.lane, release.id))
                effects.succeed.append((m.token, decision))
            else:
                fields.update(status="AWAITING_APPROVAL", task_token=m.token, approval={"requested_at": now})
            runs.append(RunUpdate(release.id, m.stage, fields))
        self._carry_out(stack, m.stage, step, now, blocker, runs=runs, previous=lane, effects=effects)
        return f"approval {m.stage}: " + ("approved (no changes)" if effects.succeed else _describe(step, release.id))

    # ------------------------------------------------------------------ leave

    def _leave(self, m: StageMessage, release: Release, stack: Stack) -> str:
        now = self._clock()
        lane = self._lanes.lane(stack.id, m.stage)
        holder = lane.holder
        if holder is None or holder.release_id != release.id:
            return self._answer_late_leave(m, release)
        change_set = self._cfn.change_set(m.cfn_stack_name, m.change_set_name) if m.change_set_name else None
        cfn_stack = self._cfn.stack(m.cfn_stack_name)
        approved = False
        if m.result.get("Error") and holder.phase != lanes.AWAITING_APPROVAL:
            run = self._releases.stage_run(release.id, m.stage)
            approved = bool(run and run.approval and run.approval.get("decision") in ("approved", "auto"))
        outcome = deploys.outcome(
            m.result, holder.phase, change_set, cfn_stack, m.approval_timeout_seconds, approved=approved
        )
        deployed = self._deployed(release, now) if outcome.deployed else None
        blocker = self._blocker(stack, m.stage, passed=release.id)
        leaving = lane
        if outcome.deployed and release.trigger in ("promote", "redeploy"):
            leaving = replace(lane, pin=None)  # a promote to a pinned stage unpins it
        step = lanes.depart(leaving, release.id, deployed, stack.execution_mode, now, blocker, drain=outcome.drain)
        fields: dict[str, Any] = {
            "status": outcome.status,
            "ended_at": now,
            "error": outcome.error,
            "cause": outcome.cause,
            "no_changes": outcome.no_changes,
            "task_token": None,
        }
        if change_set is not None and not outcome.no_changes:
            fields["changes_json"] = json.dumps(change_set.changes)
        elif outcome.no_changes:
            fields["changes_json"] = "[]"
        if outcome.deployed:
            fields["outputs_json"] = json.dumps(cfn_stack.outputs)
        effects = _Effects()
        if change_set is not None and change_set.execution_status in ("AVAILABLE", "UNAVAILABLE") and holder.target:
            effects.discard.append(holder.target)
        if outcome.succeeded:
            effects.succeed.append((m.token, {"status": outcome.status, "no_changes": outcome.no_changes}))
        else:
            cause = outcome.cause or outcome.error or "the stage failed"
            ending = {"failed_stage": m.stage, "error": outcome.error, "cause": cause, "ended_at": now}
            effects.ends.append((release.id, "FAILED", ending))
            failure = {"stage": m.stage, "status": outcome.status, "error": outcome.error, "cause": cause}
            effects.fail.append((m.token, "StageFailed", json.dumps(failure)))
        self._carry_out(
            stack,
            m.stage,
            step,
            now,
            blocker,
            runs=[RunUpdate(release.id, m.stage, fields)],
            previous=lane,
            effects=effects,
            # a refused or timed-out approval deployed nothing: the stage keeps showing its last deploy
            last_outcome=None if outcome.error in ("ApprovalRejected", "ApprovalTimedOut") else outcome.status,
            outputs=cfn_stack.outputs if outcome.deployed else None,
        )
        self._metrics.count(f"Stage{outcome.status.title()}")
        return f"leave {m.stage}: {outcome.status}" + (f" ({outcome.error})" if outcome.error else "")

    def _answer_late_leave(self, m: StageMessage, release: Release) -> str:
        """A leave for a stage the release no longer holds (a redelivered message): answer as recorded."""
        run = self._releases.stage_run(release.id, m.stage)
        status = getattr(run, "status", None)
        if status in notify.STAGE_EVENTS:  # the first handling may have died before publishing: again, same id
            fields = {k: getattr(run, k, None) for k in ("cause", "error", "superseded_by")}
            at = str(getattr(run, "ended_at", None) or self._clock())
            emit(self._events, [notify.stage_event(release.stack_id, release.id, m.stage, str(status), at, fields)])
        if status == "SUCCEEDED":
            self._callbacks.succeed(m.token, {"status": status})
        else:
            cause = getattr(run, "cause", None) or f"release {release.id} no longer holds stage {m.stage}"
            self._callbacks.fail(m.token, "ReleaseEnded", str(cause))
        return f"leave {m.stage}: already left ({status})"

    # ------------------------------------------------------------------ a release ended (reconciler)

    def release_ended(self, release: Release, stages: list[str]) -> bool:
        """Free what an ended release holds or waits for on ``stages``; True once nothing is left draining.

        A stage whose change set is still executing stays closed (DRAINING) until CloudFormation settles;
        call again later (the sweeper does) to record how it ended and let the next release in.
        """
        stack = self._stacks.get(release.stack_id)
        if stack is None or (release.stack_uid and stack.uid != release.stack_uid):
            return True
        settled = True
        for stage in stages:
            for _attempt in range(ATTEMPTS):
                try:
                    settled = self._free(release, stack, stage) and settled
                    break
                except ConflictError:
                    self._metrics.count("LaneConflict")
            else:
                settled = False
        return settled

    def _free(self, release: Release, stack: Stack, stage: str) -> bool:
        now = self._clock()
        lane = self._lanes.lane(stack.id, stage)
        blocker = self._blocker(stack, stage, passed=release.id)
        holder = lane.holder
        mode = stack.execution_mode
        closed = "CANCELLED" if release.status == "CANCELLED" else "FAILED"
        why = release.cause or f"release ended {release.status}"
        if lane.waiter(release.id) is not None:
            step = lanes.withdraw(lane, release.id, mode, now, blocker)
            runs = [RunUpdate(release.id, stage, {"status": closed, "ended_at": now, "cause": why, "task_token": None})]
            self._carry_out(stack, stage, step, now, blocker, runs=runs, previous=lane)
            return True
        if holder is None or holder.release_id != release.id:
            self._carry_out(stack, stage, lanes.advance(lane, mode, now, blocker), now, blocker, previous=lane)
            return True
        target = holder.target
        effects = _Effects()
        fields: dict[str, Any] = {"ended_at": now, "task_token": None}
        deployed: Deployed | None = None
        outputs = None
        if target is not None and holder.phase in (lanes.DEPLOYING, lanes.DRAINING):
            cfn_stack = self._cfn.stack(target.cfn_stack_name)
            change_set = self._cfn.change_set(target.cfn_stack_name, target.change_set_name)
            executed = change_set is not None and change_set.execution_status not in ("AVAILABLE", "UNAVAILABLE")
            settled = deploys.settled_outcome(cfn_stack, change_set) if executed else None
            if executed and settled is None:
                if holder.phase != lanes.DRAINING:
                    step = lanes.depart(lane, release.id, None, mode, now, blocker, drain=True)
                    note = f"{why}; CloudFormation is still changing stack {target.cfn_stack_name}"
                    runs = [RunUpdate(release.id, stage, {"status": closed, "cause": note, "task_token": None})]
                    self._carry_out(stack, stage, step, now, blocker, runs=runs, previous=lane)
                return False
            if settled is not None and settled.deployed:
                deployed = self._deployed(release, now)
                outputs = cfn_stack.outputs
                fields.update(
                    status="SUCCEEDED", outputs_json=json.dumps(outputs), cause=f"{why}; the deploy completed"
                )
            elif settled is not None:
                fields.update(status=closed, error=settled.error, cause=f"{why}; {settled.cause}")
            else:
                fields.update(status=closed, cause=why)
            if not executed and change_set is not None:
                effects.discard.append(target)
        else:
            fields.update(status=closed, cause=why)
            if target is not None:
                effects.discard.append(target)
        if holder.phase == lanes.DRAINING:
            step = lanes.finish_drain(lane, release.id, deployed, mode, now, blocker)
        else:
            step = lanes.depart(lane, release.id, deployed, mode, now, blocker)
        self._carry_out(
            stack,
            stage,
            step,
            now,
            blocker,
            runs=[RunUpdate(release.id, stage, fields)],
            previous=lane,
            effects=effects,
            last_outcome=str(fields["status"]),
            outputs=outputs,
        )
        return True

    # ------------------------------------------------------------------ shared

    def _deployed(self, release: Release, now: str) -> Deployed:
        sha = release.sha or str((release.build or {}).get("resolved_sha") or "")
        return Deployed(release.id, release.order, sha, release.message, now)

    def _blocker(self, stack: Stack, stage: str, passed: str = "") -> lanes.Blocker:
        """QUEUED mode: the oldest release still in flight that has not passed ``stage`` yet."""
        cache: list[Release] = []
        loaded = False

        def blocker(contender: Contender) -> str | None:
            nonlocal loaded
            if stack.execution_mode != "QUEUED":
                return None
            if not loaded:
                cache.extend(self._releases.in_flight(stack.uid))
                loaded = True
            for other in cache:
                if other.order >= contender.order:
                    break
                if other.id in (contender.release_id, passed) or stage not in other.stages or other.terminal:
                    continue
                run = self._releases.stage_run(other.id, stage)
                if run is None or run.status not in STAGE_TERMINAL:
                    return other.id
            return None

        return blocker

    def _plan(self, stack: Stack, lane: Lane, contender: Contender, now: str) -> deploys.Plan:
        """What the granted contender does with its CloudFormation stack now."""
        target = contender.target
        plan = deploys.plan(self._cfn.stack(target.cfn_stack_name), stack.id, lane.stage)
        since = lane.holder.since if lane.holder else now
        timed_out = parse_iso(now) - parse_iso(since) > timedelta(seconds=target.deploy_timeout_seconds)
        if plan.action in ("WAIT", "DELETE") and timed_out:
            return deploys.Plan(
                "FAIL",
                status="FAILED",
                error="DeployTimedOut",
                cause=(
                    f"CloudFormation stack {target.cfn_stack_name} stayed busy for more than "
                    f"{target.deploy_timeout_seconds} s"
                ),
            )
        return plan

    def _carry_out(
        self,
        stack: Stack,
        stage: str,
        step: Step,
        now: str,
        blocker: lanes.Blocker,
        runs: list[RunUpdate] | None = None,
        previous: Lane | None = None,
        effects: _Effects | None = None,
        last_outcome: str | None = None,
        outputs: list[dict[str, str]] | None = None,
    ) -> None:
        """Resolve grants against CloudFormation, write the lane and runs, then the effects."""
        runs = list(runs or [])
        effects = effects or _Effects()
        lane = step.lane
        pending = list(step.granted)
        superseded = list(step.superseded)
        parked = list(step.parked)
        held = list(step.held)
        while pending:
            contender = pending.pop(0)
            plan = self._plan(stack, lane, contender, now)
            holder = lane.holder
            if plan.action != "FAIL":
                since = holder.since if holder else now
                deadline = iso(parse_iso(since) + timedelta(seconds=contender.target.deploy_timeout_seconds))
                phase = lanes.PREPARING if contender.approval else lanes.DEPLOYING
                fields: dict[str, Any] = {"status": phase, "waiting_for": None}
                if since == now:
                    fields["started_at"] = now
                runs.append(RunUpdate(contender.release_id, stage, fields))
                if plan.action in ("CREATE", "UPDATE"):
                    answer = {
                        "change_set_type": plan.action,
                        "change_set_name": contender.target.change_set_name,
                        "deadline": deadline,
                        "granted_at": since,
                    }
                    effects.succeed.append((contender.token, answer))
                else:
                    if plan.action == "DELETE":
                        effects.delete_stacks.append((contender.target.cfn_stack_name, contender.target.role_arn))
                    cause = f"CloudFormation stack {contender.target.cfn_stack_name} is busy"
                    effects.fail.append((contender.token, "StackBusy", cause))
                continue
            runs.append(
                RunUpdate(
                    contender.release_id,
                    stage,
                    {
                        "status": plan.status,
                        "error": plan.error,
                        "cause": plan.cause,
                        "started_at": holder.since if holder else now,
                        "ended_at": now,
                        "waiting_for": None,
                    },
                )
            )
            ending = {"failed_stage": stage, "error": plan.error, "cause": plan.cause, "ended_at": now}
            effects.ends.append((contender.release_id, "FAILED", ending))
            failure = {"stage": stage, "status": plan.status, "error": plan.error, "cause": plan.cause}
            effects.fail.append((contender.token, "StageFailed", json.dumps(failure)))
            last_outcome = plan.status
            after = lanes.depart(lane, contender.release_id, None, stack.execution_mode, now, blocker)
            lane = after.lane
            pending.extend(after.granted)
            superseded.extend(after.superseded)
            parked.extend(after.parked)
            held.extend(after.held)
        for gone in superseded:
            runs.append(
                RunUpdate(
                    gone.release_id,
                    stage,
                    {
                        "status": "SUPERSEDED",
                        "superseded_by": gone.by,
                        "ended_at": now,
                        "task_token": None,
                        "waiting_for": None,
                    },
                )
            )
            cause = f"superseded by release {gone.by} at stage {stage}"
            if gone.target is not None:
                effects.discard.append(gone.target)
            fields = {"superseded_by": gone.by, "ended_at": now, "cause": cause, "failed_stage": stage}
            effects.ends.append((gone.release_id, "SUPERSEDED", fields))
            if gone.token:
                effects.fail.append((gone.token, "Superseded", cause))
        for contender, behind in parked:
            runs.append(RunUpdate(contender.release_id, stage, {"status": "WAITING", "waiting_for": behind}))
        for contender in held:
            pinned = lane.pin
            cause = f"held by the pin on stage {stage}" + (
                f" (rolled back to {pinned.release_id} by {pinned.by}: {pinned.reason})" if pinned else ""
            )
            fields = {"status": "HELD", "ended_at": now, "cause": cause, "waiting_for": None, "task_token": None}
            runs.append(RunUpdate(contender.release_id, stage, fields))
            ending = {"failed_stage": stage, "cause": cause, "ended_at": now}
            effects.ends.append((contender.release_id, "HELD", ending))
            effects.fail.append((contender.token, "Held", cause))
        merged = _merge_runs(runs)
        if lane != previous or runs:
            self._lanes.commit(
                LaneChange(
                    stack_uid=stack.uid,
                    lane=lane,
                    runs=tuple(merged),
                    last_outcome=last_outcome,
                    outputs=outputs,
                    now=now,
                )
            )
        self._effects(effects, lane, stage_events(stack.id, merged, now))

    def _effects(self, effects: _Effects, lane: Lane, events: list[notify.Event] | None = None) -> None:
        events = list(events or [])
        for release_id, status, fields in effects.ends:
            self._releases.end(release_id, status, fields)  # the reconciler publishes release.ended once settled
            self._metrics.count(f"Release{status.title()}")
        for token, output in effects.succeed:
            self._callbacks.succeed(token, output)
        for token, error, cause in effects.fail:
            self._callbacks.fail(token, error, cause)
        # After the answers, so releases move on while SQS takes the events; still before the handler returns,
        # so a crash here redelivers the message and its replay publishes the same events again.
        emit(self._events, events)
        for target in effects.discard:
            try:
                self._discard(target, keep_stack=lane.holder is not None)
            except Exception:  # clean-up only: a leftover change set is never executed
                log.warning("could not delete change set %s of %s", target.change_set_name, target.cfn_stack_name)
        for stack_name, role_arn in effects.delete_stacks:
            self._cfn.delete_stack(stack_name, role_arn)

    def _discard(self, target: Target, keep_stack: bool) -> None:
        """Delete a change set that will not be executed, and the empty stack a CREATE change set made.

        Deleting a CREATE change set leaves its stack in REVIEW_IN_PROGRESS with no resources
        (https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_DeleteChangeSet.html);
        it stays when another release now holds the stage (its own CREATE change set goes on it).
        """
        try:
            self._cfn.delete_change_set(target.cfn_stack_name, target.change_set_name)
        except Exception:  # e.g. still being created (InvalidChangeSetStatus); deleting its empty stack takes it too
            log.warning("could not delete change set %s of %s", target.change_set_name, target.cfn_stack_name)
        if not keep_stack and self._cfn.stack(target.cfn_stack_name).status == "REVIEW_IN_PROGRESS":
            self._cfn.delete_stack(target.cfn_stack_name, target.role_arn)


def stage_events(stack_id: str, runs: list[RunUpdate], now: str) -> list[notify.Event]:
    """The notification events of the stage runs a commit wrote (those whose status changed)."""
    return [
        notify.stage_event(stack_id, run.release_id, run.stage, str(run.fields["status"]), now, run.fields)
        for run in runs
        if run.fields.get("status") in notify.STAGE_EVENTS
    ]


def _merge_runs(runs: list[RunUpdate]) -> list[RunUpdate]:
    """One update per stage run (later fields win), in first-seen order."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for run in runs:
        merged.setdefault((run.release_id, run.stage), {}).update(run.fields)
    return [RunUpdate(release_id, stage, fields) for (release_id, stage), fields in merged.items()]


def _describe(step: Step, release_id: str) -> str:
    if any(g.release_id == release_id for g in step.granted):
        return "entered"
    gone = next((s for s in step.superseded if s.release_id == release_id), None)
    if gone is not None:
        return f"superseded by {gone.by}"
    behind = next((b for c, b in step.parked if c.release_id == release_id), None)
    if behind is not None:
        return f"waits behind {behind}"
    if any(h.release_id == release_id for h in step.held):
        return "held by the stage's pin"
    return step.ignored or "recorded"
