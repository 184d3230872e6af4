"""Releases: one run of a stack's pipeline for one commit, from PENDING to SUCCEEDED or FAILED."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .errors import ValidationError
from .limits import MAX_AUTHOR_CHARS, MAX_MESSAGE_BYTES, clip, truncate_utf8
from .stacks import Stack
from .text import matches
from .webhooks import Push, execution_name

RELEASE_STATUSES = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED")
TERMINAL = ("SUCCEEDED", "FAILED")
STAGE_STATUSES = ("PENDING", "AWAITING_APPROVAL", "DEPLOYING", "SUCCEEDED", "FAILED", "SKIPPED", "BLOCKED")
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

    @property
    def terminal(self) -> bool:
        """The release has ended."""
        return self.status in TERMINAL


@dataclass(frozen=True)
class PipelineConfig:
    """Settings the state machine reads from its input."""

    state_machine_arn: str
    default_role_arn: str
    poll_seconds: int
    build_timeout_seconds: int
    lock_retry_seconds: int = 2
    lock_max_attempts: int = 1800
    deploy_timeout_seconds: int = 3600


def execution_arn(state_machine_arn: str, name: str) -> str:
    """The ARN Step Functions gives an execution of that name (known before it starts)."""
    prefix, _, machine = state_machine_arn.partition(":stateMachine:")
    return f"{prefix}:execution:{machine}:{name}"


def is_release_id(value: str) -> bool:
    """``value`` could be a release id (anything else cannot exist)."""
    return matches(RELEASE_ID, value)


def push_key(stack_id: str, ref: str, sha: str) -> str:
    """Dedup key of a pushed commit: one release per (stack, ref, sha)."""
    return f"PUSH#{stack_id}#{ref}#{sha}"


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
        message=truncate_utf8(push.message, MAX_MESSAGE_BYTES) if push else "",
        author=clip(push.author, MAX_AUTHOR_CHARS) if push else "",
        pushed_at=push.pushed_at if push and len(push.pushed_at or "") <= MAX_TIMESTAMP_CHARS else None,
    )
    return _with_input(release, stack, config)


def _with_input(release: Release, stack: Stack, config: PipelineConfig) -> Release:
    from dataclasses import replace

    return replace(release, input_json=json.dumps(execution_input(stack, release, config), separators=(",", ":")))


def stage_tags(stack: Stack, stage: str, release: Release) -> list[dict[str, str]]:
    """Tags every deployed CloudFormation stack carries."""
    return [
        {"Key": "stagecoach:stack", "Value": stack.id},
        {"Key": "stagecoach:stage", "Value": stage},
        {"Key": "stagecoach:release", "Value": release.id},
        {"Key": "stagecoach:sha", "Value": release.sha or "unresolved"},
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
                "cfn_stack_name": f"{stack.id}-{stage.name}",
                "role_arn": stage.role_arn or config.default_role_arn,
                "parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in sorted(stage.parameters.items())],
                "tags": stage_tags(stack, stage.name, release),
            }
            for position, stage in enumerate(stack.stages)
        ],
        "config": {
            "poll_seconds": config.poll_seconds,
            "lock_retry_seconds": config.lock_retry_seconds,
            "lock_max_attempts": config.lock_max_attempts,
            "build_timeout_seconds": config.build_timeout_seconds,
            "deploy_timeout_seconds": config.deploy_timeout_seconds,
        },
    }


def stage_status(release: Release, run_status: str | None) -> str:
    """A stage's status in a release: its run's status, else PENDING while running, SKIPPED once ended."""
    if run_status:
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
