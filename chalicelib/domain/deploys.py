"""Deploying one stage with CloudFormation: what to do with the stack, and what the attempt came to.

Pure functions over what CloudFormation reports (DescribeStacks, DescribeChangeSet). The stage
coordinator calls them when a release enters a stage (``plan``) and when it leaves (``outcome``).
Completion is decided from the change set's ``ExecutionStatus`` together with the stack status, never
from a first DescribeStacks alone: right after ExecuteChangeSet, DescribeStacks can still show the
previous final status (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/using-cfn-updating-stacks-changesets-execute.html).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

OWNER_TAG = "stagecoach:stack"
STAGE_TAG = "stagecoach:stage"
NO_CHANGES = ("didn't contain changes", "No updates are to be performed")
# Stack statuses AWS refuses an UPDATE change set on, besides *_IN_PROGRESS
# (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/using-cfn-describing-stacks.html#cfn-console-view-stack-data-resources-status-codes).
BLOCKING_FAILURES = (
    "UPDATE_ROLLBACK_FAILED",
    "ROLLBACK_FAILED",
    "DELETE_FAILED",
    "CREATE_FAILED",
    "IMPORT_ROLLBACK_FAILED",
)


@dataclass(frozen=True)
class StackSnapshot:
    """A CloudFormation stack as DescribeStacks shows it (``status`` None: it does not exist)."""

    name: str
    status: str | None
    reason: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    outputs: list[dict[str, str]] = field(default_factory=list)
    last_updated: str | None = None
    failure_reason: str = ""  # the first failed resource's reason (stack events), when there is one

    @property
    def exists(self) -> bool:
        """The stack exists (DELETE_COMPLETE counts as gone)."""
        return self.status is not None and self.status != "DELETE_COMPLETE"


@dataclass(frozen=True)
class ChangeSetSnapshot:
    """A change set as DescribeChangeSet shows it (None fields: it does not exist)."""

    name: str
    status: str | None
    execution_status: str | None = None
    reason: str = ""
    changes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """CloudFormation refused it because it changes nothing."""
        return self.status == "FAILED" and any(text in self.reason for text in NO_CHANGES)


@dataclass(frozen=True)
class Plan:
    """What a release entering a stage does with the stack.

    ``action``: CREATE or UPDATE (make that change set), WAIT (the stack is busy: look again after a
    poll interval), DELETE (a stack that never got created: delete it, then wait), or FAIL (with
    ``status`` BLOCKED or FAILED, ``error`` and ``cause``).
    """

    action: str
    status: str = ""
    error: str = ""
    cause: str = ""


def change_set_name(execution_name: str, stage: str) -> str:
    """A change set name unique to one execution of one stage (a resumed release gets a new one)."""
    digest = hashlib.sha1(f"{execution_name}/{stage}".encode()).hexdigest()
    return f"stagecoach-{digest}"


def plan(stack: StackSnapshot, stack_id: str, stage: str) -> Plan:
    """Decide how to deploy the stage given its CloudFormation stack's state."""
    if not stack.exists:
        return Plan("CREATE")
    if stack.tags.get(OWNER_TAG) != stack_id or stack.tags.get(STAGE_TAG, stage) != stage:
        owner = stack.tags.get(OWNER_TAG)
        whose = f"carries {OWNER_TAG}={owner}" if owner else f"has no {OWNER_TAG} tag"
        return Plan(
            "FAIL",
            status="FAILED",
            error="StackNotOwned",
            cause=(
                f"CloudFormation stack {stack.name} {whose}: Stagecoach only changes stacks it created for "
                f"stack {stack_id!r}, stage {stage!r}. Delete or rename that stack, or deploy this stage under "
                "another name."
            ),
        )
    status = stack.status or ""
    if status == "REVIEW_IN_PROGRESS":
        return Plan("CREATE")
    if status == "ROLLBACK_COMPLETE":
        return Plan("DELETE")
    if status.endswith("_IN_PROGRESS"):
        return Plan("WAIT")
    if status in BLOCKING_FAILURES:
        return Plan(
            "FAIL",
            status="BLOCKED",
            error="StackBlocked",
            cause=(
                f"CloudFormation stack {stack.name} is {status} and Stagecoach will not change it. Repair it "
                "(for example continue or finish the rollback, or delete the stack) and deploy again."
                + (f" CloudFormation said: {stack.reason}" if stack.reason else "")
            ),
        )
    return Plan("UPDATE")


@dataclass(frozen=True)
class StageOutcome:
    """How a release's attempt at a stage ended.

    ``deployed``: the stage now runs this release's commit. ``drain``: CloudFormation is still changing
    the stack, so the stage must stay closed until it settles.
    """

    status: str
    error: str | None = None
    cause: str | None = None
    no_changes: bool = False
    deployed: bool = False
    drain: bool = False

    @property
    def succeeded(self) -> bool:
        """The stage deployed (or had nothing to change)."""
        return self.status == "SUCCEEDED"


def _stack_failure(stack: StackSnapshot) -> StageOutcome:
    status = stack.status or "DELETE_COMPLETE"
    why = stack.failure_reason or stack.reason
    cause = f"stack {stack.name} ended in {status}" + (f": {why}" if why else "")
    if status.endswith("_FAILED"):
        return StageOutcome(
            "BLOCKED",
            "StackBlocked",
            f"{cause}. Repair the stack (for example continue the rollback) and deploy again.",
        )
    return StageOutcome("FAILED", "DeployFailed", cause)


def settled_outcome(stack: StackSnapshot, change_set: ChangeSetSnapshot | None) -> StageOutcome | None:
    """What a deploy came to, if CloudFormation has finished with it (None while it is still going).

    ``*_COMPLETE_CLEANUP_IN_PROGRESS`` counts as settled: the update (or its rollback) is over and
    CloudFormation only removes old resources.
    """
    execution = change_set.execution_status if change_set else None
    status = (stack.status or "DELETE_COMPLETE").removesuffix("_CLEANUP_IN_PROGRESS")
    if execution == "EXECUTE_IN_PROGRESS" or status.endswith("_IN_PROGRESS"):
        return None
    if execution == "EXECUTE_COMPLETE" and status.endswith("_COMPLETE") and "ROLLBACK" not in status:
        return StageOutcome("SUCCEEDED", deployed=True)
    return _stack_failure(stack)


def outcome(
    result: dict[str, Any],
    phase: str,
    change_set: ChangeSetSnapshot | None,
    stack: StackSnapshot | None,
    approval_timeout_seconds: int = 0,
    approved: bool = False,
) -> StageOutcome:
    """Read what the state machine reports when a release leaves a stage.

    ``result`` is either a caught error (``{"Error", "Cause"}``: a rejected or timed-out approval, a
    refused change set, a deploy past its deadline) or the last CloudFormation reading of the stage
    (``{"kind": "prepared"|"executed", ...}``). ``phase`` is the holder's phase when it left.
    """
    error = result.get("Error")
    stale = change_set is None or change_set.execution_status == "OBSOLETE"
    if error and approved and stale:
        # The approved change set can no longer run: another change of the stack deleted or outdated it.
        name = stack.name if stack else "the stack"
        return StageOutcome(
            "FAILED",
            "ChangeSetStale",
            f"the approved change set for {name} can no longer be executed: the stack changed since it was "
            f"shown; nothing was deployed (CloudFormation said: {result.get('Cause') or error})",
        )
    if error:
        cause = str(result.get("Cause") or "")
        if error == "States.Timeout" and phase == "AWAITING_APPROVAL":
            return StageOutcome("FAILED", "ApprovalTimedOut", f"approval timed out after {approval_timeout_seconds} s")
        if error == "ApprovalRejected":
            return StageOutcome("FAILED", "ApprovalRejected", cause or "the approval was not given")
        if error == "DeployTimedOut":
            # REVIEW_IN_PROGRESS: a new stack waiting for its first change set, which CloudFormation is not
            # changing (the stage is free at once; the coordinator deletes the change set and the empty stack).
            status = (stack.status or "") if stack is not None else ""
            busy = status.endswith("_IN_PROGRESS") and status != "REVIEW_IN_PROGRESS"
            return StageOutcome("FAILED", "DeployTimedOut", cause or "the deploy did not finish in time", drain=busy)
        if error == "ChangeSetFailed":
            return StageOutcome("FAILED", "ChangeSetFailed", cause)
        if stack is not None and change_set is not None and change_set.execution_status == "EXECUTE_IN_PROGRESS":
            return StageOutcome("FAILED", "DeployFailed", cause, drain=True)
        # No change set: CloudFormation refused to make it (template errors in its words); else executing it failed.
        return StageOutcome("FAILED", "ChangeSetFailed" if change_set is None else "DeployFailed", cause or error)
    kind = result.get("kind")
    if kind == "prepared":
        if change_set is not None and change_set.empty:
            return StageOutcome("SUCCEEDED", no_changes=True, deployed=True)
        reason = change_set.reason if change_set else str(result.get("status") or "")
        name = stack.name if stack else "the stack"
        return StageOutcome("FAILED", "ChangeSetFailed", f"the change set for {name} failed: {reason}")
    if kind == "executed" and stack is not None:
        settled = settled_outcome(stack, change_set)
        if settled is not None:
            if change_set is not None and change_set.execution_status == "OBSOLETE":
                return StageOutcome(
                    "FAILED", "ChangeSetStale", f"the change set for {stack.name} is obsolete: the stack changed since"
                )
            return settled
        return StageOutcome("FAILED", "DeployFailed", f"stack {stack.name} is still {stack.status}", drain=True)
    return StageOutcome("FAILED", "DeployFailed", f"the stage ended without a result ({result})")


def flat_outputs(outputs: list[dict[str, str]]) -> dict[str, str]:
    """DescribeStacks outputs as a map."""
    return {str(o.get("OutputKey")): str(o.get("OutputValue", "")) for o in outputs if o.get("OutputKey")}
