"""Releases: one run of a stack's pipeline for one commit, from PENDING to SUCCEEDED or FAILED."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import ValidationError
from .limits import MAX_AUTHOR_CHARS, MAX_MESSAGE_BYTES, clip, truncate_utf8
from .stacks import Stack, cfn_stack_name
from .text import matches
from .webhooks import Push, execution_name

RELEASE_STATUSES = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "SUPERSEDED", "CANCELLED", "TIMED_OUT", "HELD")
ACTIVE = ("PENDING", "RUNNING")
TERMINAL = ("SUCCEEDED", "FAILED", "SUPERSEDED", "CANCELLED", "TIMED_OUT", "HELD")
# webhook and manual releases build a commit; the others deploy the build of ``source_release_id``.
TRIGGERS = ("webhook", "manual", "promote", "redeploy", "rollback")
DEPLOYMENT_TRIGGERS = ("promote", "redeploy", "rollback")
# PENDING and SKIPPED are derived (no stage-run item); the others are written by the stage coordinator.
STAGE_STATUSES = (
    "PENDING",
    "WAITING",
    "PREPARING",
    "AWAITING_APPROVAL",
    "DEPLOYING",
    "SUCCEEDED",
    "FAILED",
    "BLOCKED",
    "SUPERSEDED",
    "CANCELLED",
    "HELD",
    "SKIPPED",
)
STAGE_TERMINAL = ("SUCCEEDED", "FAILED", "BLOCKED", "SUPERSEDED", "CANCELLED", "HELD", "SKIPPED")
# How an execution that ended outside the state machine's own paths ends its release
# (StopExecution, States.Runtime, the history limit, the execution timeout).
EXECUTION_END = {"ABORTED": "CANCELLED", "TIMED_OUT": "TIMED_OUT", "FAILED": "FAILED", "SUCCEEDED": "SUCCEEDED"}
SHA = r"[0-9a-f]{7,64}"
# What Git refuses in a ref name (git check-ref-format): control characters, space, ~ ^ : ? * [ \
BRANCH = r"[^\x00-\x20\x7f~^:?*\[\\]{1,255}"
RELEASE_ID = r"r[0-9A-Z]{26}"
MAX_TIMESTAMP_CHARS = 64


@dataclass(frozen=True)
class Release:
    """A release record (docs/design.md, item ``RELEASE#{id}``)."""

    id: str
    stack_id: str
    ref: str
    sha: str
    trigger: str
    received_at: str
    execution_name: str
    execution_arn: str
    stages: tuple[str, ...]
    stack_uid: str = ""
    order: str = ""
    status: str = "PENDING"
    message: str = ""
    author: str = ""
    pushed_at: str | None = None
    input_json: str = ""
    started_at: str | None = None
    ended_at: str | None = None
    build: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    cause: str | None = None
    failed_stage: str | None = None
    superseded_by: str | None = None
    cancelled_by: str | None = None
    previous_executions: tuple[str, ...] = ()  # executions it ran in before the current one (resumed)
    source_release_id: str | None = None  # promote, redeploy, rollback: whose build it deploys
    requested_by: str | None = None

    @property
    def terminal(self) -> bool:
        """The release has ended."""
        return self.status in TERMINAL

    @property
    def built(self) -> bool:
        """Its build succeeded: its packaged template can be deployed (again) anywhere."""
        build = self.build or {}
        return build.get("status") == "SUCCEEDED" and bool(build.get("template_url")) and bool(build.get("build_id"))

    @property
    def commit(self) -> str:
        """The commit it deploys (the sha its build resolved when it was released by ref)."""
        return self.sha or str((self.build or {}).get("resolved_sha") or "")


@dataclass(frozen=True)
class PipelineConfig:
    """Settings the state machine reads from its input."""

    state_machine_arn: str
    default_role_arn: str
    poll_seconds: int
    build_timeout_seconds: int
    deploy_timeout_seconds: int = 3600
    # How long a release may wait for a stage held by others (they may wait days for an approval).
    stage_wait_timeout_seconds: int = 8 * 24 * 3600


def order_key(received_at: str, release_id: str) -> str:
    """When a commit was received, as a sortable key: releases of later commits have greater keys."""
    return f"{received_at}#{release_id}"


def execution_arn(state_machine_arn: str, name: str) -> str:
    """The ARN Step Functions gives an execution of that name (known before it starts)."""
    prefix, _, machine = state_machine_arn.partition(":stateMachine:")
    return f"{prefix}:execution:{machine}:{name}"


def is_release_id(value: str) -> bool:
    """``value`` could be a release id (anything else cannot exist)."""
    return matches(RELEASE_ID, value)


def push_key(stack: Stack, ref: str, sha: str) -> str:
    """Dedup key of a pushed commit: one release per (stack, ref, sha); a stack re-created with the
    same id is another stack (its ``uid`` differs)."""
    return f"PUSH#{stack.id}#{stack.uid}#{ref}#{sha}" if stack.uid else f"PUSH#{stack.id}#{ref}#{sha}"


def delivery_key(provider: str, delivery_id: str, ref: str | None = None) -> str:
    """Dedup key of a provider delivery (per ref: one Bitbucket delivery may carry several)."""
    return f"DELIVERY#{provider}#{delivery_id}" + (f"#{ref}" if ref else "")


def manual_ref(body: Any) -> tuple[str, str]:
    """``(ref, sha)`` of a manual release body ``{"ref": "main"}`` and/or ``{"sha": "..."}``.

    Without a sha the build resolves the ref; without a ref the sha is built detached.
    """
    if not isinstance(body, dict):
        raise ValidationError("must be an object", "body")
    unknown = set(body) - {"ref", "sha"}
    if unknown:
        raise ValidationError("unknown field", sorted(unknown)[0])
    if "ref" not in body and "sha" not in body:
        raise ValidationError("give a ref (branch or tag) or a sha", "ref")
    ref, sha = body.get("ref"), body.get("sha")
    if "sha" in body and (not isinstance(sha, str) or not matches(SHA, sha)):
        raise ValidationError("must be a hex commit sha (7 to 64 lower-case characters)", "sha")
    if "ref" in body:
        if not isinstance(ref, str) or not matches(BRANCH, ref):
            raise ValidationError(
                "must be a branch, tag or full ref: 1 to 255 characters, no spaces, control characters or ~^:?*[\\",
                "ref",
            )
        if not ref.startswith("refs/"):
            ref = f"refs/heads/{ref}"
    return (ref or "", sha or "")


def new_release(
    stack: Stack,
    release_id: str,
    now: str,
    config: PipelineConfig,
    push: Push | None = None,
    ref: str = "",
    sha: str = "",
) -> Release:
    """A PENDING release of ``stack`` for a push (trigger webhook) or a manual ref/sha."""
    trigger = "webhook" if push is not None else "manual"
    if push is not None:
        ref, sha = push.ref, push.sha
    name = execution_name(stack.id, ref or sha, sha or "0000000", release_id)
    release = Release(
        id=release_id,
        stack_id=stack.id,
        ref=ref or sha,
        sha=sha,
        trigger=trigger,
        received_at=now,
        execution_name=name,
        execution_arn=execution_arn(config.state_machine_arn, name),
        stages=tuple(s.name for s in stack.stages),
        stack_uid=stack.uid,
        order=order_key(now, release_id),
        message=truncate_utf8(push.message, MAX_MESSAGE_BYTES) if push else "",
        author=clip(push.author, MAX_AUTHOR_CHARS) if push else "",
        pushed_at=push.pushed_at if push and len(push.pushed_at or "") <= MAX_TIMESTAMP_CHARS else None,
    )
    return _with_input(release, stack, config)


def new_deployment(
    stack: Stack,
    stage: str,
    source: Release,
    trigger: str,
    release_id: str,
    now: str,
    config: PipelineConfig,
    by: str,
) -> Release:
    """A release that deploys ``source``'s build to one stage (promote, redeploy, rollback): no build.

    It keeps the source's commit order, so the rules about older commits apply to what it deploys.
    """
    name = execution_name(stack.id, source.ref or source.commit, source.commit or "0000000", release_id)
    release = Release(
        id=release_id,
        stack_id=stack.id,
        ref=source.ref,
        sha=source.commit,
        trigger=trigger,
        received_at=now,
        execution_name=name,
        execution_arn=execution_arn(config.state_machine_arn, name),
        stages=(stage,),
        stack_uid=stack.uid,
        order=source.order,
        message=source.message,
        author=source.author,
        pushed_at=source.pushed_at,
        build=dict(source.build),
        source_release_id=source.id,
        requested_by=by,
    )
    one_stage = replace(stack, stages=(stack.stage(stage),))
    data = execution_input(one_stage, release, config)
    data["build"] = {"build_id": source.build["build_id"], "template_url": source.build["template_url"]}
    return replace(release, input_json=json.dumps(data, separators=(",", ":")))


def _with_input(release: Release, stack: Stack, config: PipelineConfig) -> Release:
    return replace(release, input_json=json.dumps(execution_input(stack, release, config), separators=(",", ":")))


_RESUMED = re.compile(r"^(?P<base>.*)-r(?P<n>\d+)$")
EXECUTION_NAME_MAX = 80


def continuation(release: Release, state_machine_arn: str) -> Release:
    """The release moved to a new execution that resumes it where it stood.

    Same input, plus its build when the build succeeded (the state machine then skips Build); stages
    it already deployed answer "done" when the new execution enters them. The name gets ``-rN``.
    """
    data = json.loads(release.input_json)
    build = release.build or {}
    if build.get("status") == "SUCCEEDED" and build.get("template_url") and build.get("build_id"):
        data["build"] = {"build_id": build["build_id"], "template_url": build["template_url"]}
    match = _RESUMED.match(release.execution_name)
    base, n = (match.group("base"), int(match.group("n")) + 1) if match else (release.execution_name, 2)
    suffix = f"-r{n}"
    name = base[: EXECUTION_NAME_MAX - len(suffix)] + suffix
    return replace(
        release,
        execution_name=name,
        execution_arn=execution_arn(state_machine_arn, name),
        input_json=json.dumps(data, separators=(",", ":")),
        previous_executions=(*release.previous_executions, release.execution_arn),
    )


def stage_tags(stack: Stack, stage: str, release: Release) -> list[dict[str, str]]:
    """Tags every deployed CloudFormation stack carries: whose it is (checked before every update).

    No per-release tag: CloudFormation propagates stack tags to every taggable resource, so a tag that
    changes with each release would make every deploy modify every resource.
    """
    return [
        {"Key": "stagecoach:stack", "Value": stack.id},
        {"Key": "stagecoach:stage", "Value": stage},
    ]


def execution_input(stack: Stack, release: Release, config: PipelineConfig) -> dict[str, Any]:
    """The state machine input (contract in docs/design.md)."""
    return {
        "release": {
            "id": release.id,
            "pk": f"RELEASE#{release.id}",
            "stack_id": stack.id,
            "ref": release.ref,
            "sha": release.sha,
            "source_version": release.sha or release.ref,
            "message": release.message,
            "received_at": release.received_at,
        },
        "stack": {
            "id": stack.id,
            "pk": f"STACK#{stack.id}",
            "clone_url": stack.repository.clone_url,
            "full_name": stack.repository.full_name,
            "provider": stack.repository.provider,
            "template_path": stack.template_path,
            "buildspec_path": stack.buildspec_path,
        },
        "stages": [
            {
                "name": stage.name,
                "position": position,
                "sk": f"STAGE#{stage.name}",
                "approval": stage.approval,
                "approval_timeout_seconds": stage.approval_timeout_seconds,
                "auto_approve_when_no_changes": stage.auto_approve_when_no_changes,
                "cfn_stack_name": cfn_stack_name(stack.id, stage.name),
                "role_arn": stage.role_arn or config.default_role_arn,
                "parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in sorted(stage.parameters.items())],
                "tags": stage_tags(stack, stage.name, release),
            }
            for position, stage in enumerate(stack.stages)
        ],
        "config": {
            "poll_seconds": config.poll_seconds,
            "build_timeout_seconds": config.build_timeout_seconds,
            "deploy_timeout_seconds": config.deploy_timeout_seconds,
            "stage_wait_timeout_seconds": config.stage_wait_timeout_seconds,
        },
    }


def stage_status(release: Release, run_status: str | None) -> str:
    """A stage's status in a release: its run's status, else PENDING while running, SKIPPED once ended.

    A run left unfinished by a release that ended (the coordinator closes them; this covers the moment
    in between) shows as SKIPPED too.
    """
    if run_status and (run_status in STAGE_TERMINAL or not release.terminal):
        return run_status
    return "SKIPPED" if release.terminal else "PENDING"


@dataclass(frozen=True)
class StageRun:
    """One stage of one release, as the state machine recorded it."""

    name: str
    status: str
    started_at: str | None = None
    ended_at: str | None = None
    approval: dict[str, Any] | None = None
    changes: list[dict[str, Any]] | None = None
    outputs: list[dict[str, Any]] | None = None
    no_changes: bool = False
    error: str | None = None
    cause: str | None = None
    waiting_for: str | None = None
    superseded_by: str | None = None


def duration_seconds(started: str | None, ended: str | None) -> float | None:
    """Seconds between two ISO timestamps, or None if either is missing."""
    from .clock import parse_iso

    if not started or not ended:
        return None
    return round((parse_iso(ended) - parse_iso(started)).total_seconds(), 3)


def change_summary(changes: list[dict[str, Any]] | None) -> dict[str, int] | None:
    """Counts of resources added, modified, removed (and replaced) by a stage's change set."""
    if changes is None:
        return None
    summary = {"add": 0, "modify": 0, "remove": 0, "replace": 0}
    for change in changes:
        action = str(change.get("Action", "")).lower()
        if action in summary:
            summary[action] += 1
        if str(change.get("Replacement", "")) == "True":
            summary["replace"] += 1
    return summary


def change_preview(changes: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """A stage's change set, resource by resource, as a person reviews it before approving.

    From DescribeChangeSet ``Changes[].ResourceChange`` (with IncludePropertyValues on AWS); what
    CloudFormation did not say is None, never guessed.
    """
    if changes is None:
        return None
    preview = []
    for change in changes:
        details = []
        for detail in change.get("Details") or []:
            target = detail.get("Target") or {}
            details.append(
                {
                    "attribute": target.get("Attribute"),
                    "name": target.get("Name"),
                    "before": target.get("BeforeValue"),
                    "after": target.get("AfterValue"),
                }
            )
        preview.append(
            {
                "action": change.get("Action"),
                "logical_id": change.get("LogicalResourceId"),
                "resource_type": change.get("ResourceType"),
                "replacement": change.get("Replacement"),
                "details": details,
            }
        )
    return preview


def flat_outputs(outputs: Any) -> dict[str, str] | None:
    """Stack outputs as the state machine stores them (``[[{"OutputKey", "OutputValue"}]]``) → a map."""
    if outputs is None:
        return None
    flat: dict[str, str] = {}
    pending = [outputs]
    while pending:
        item = pending.pop()
        if isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, dict) and "OutputKey" in item:
            flat[str(item["OutputKey"])] = str(item.get("OutputValue", ""))
    return flat
