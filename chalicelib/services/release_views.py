"""How releases are shown over the API: each stage in order with what happened to it."""

from __future__ import annotations

from typing import Any

from ..domain.releases import (
    Release,
    StageRun,
    change_preview,
    change_summary,
    duration_seconds,
    flat_outputs,
    stage_status,
)


def console_url(execution_arn: str) -> str:
    """The AWS console page of an execution."""
    region = execution_arn.split(":")[3] if execution_arn.count(":") >= 3 else "us-east-1"
    return f"https://{region}.console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{execution_arn}"


def stage_view(release: Release, name: str, position: int, run: StageRun | None) -> dict[str, Any]:
    """One stage of a release."""
    status = stage_status(release, run.status if run else None)
    view: dict[str, Any] = {"name": name, "position": position, "status": status}
    if run is None:
        return {
            **view,
            "started_at": None,
            "ended_at": None,
            "duration_seconds": None,
            "approval": None,
            "changes": None,
            "change_summary": None,
            "outputs": None,
            "no_changes": False,
            "error": None,
            "cause": None,
            "waiting_for": None,
            "superseded_by": None,
        }
    return {
        **view,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "duration_seconds": duration_seconds(run.started_at, run.ended_at),
        "approval": run.approval,  # {requested_at} from the state machine, then {decision, by, at, comment}
        "changes": change_preview(run.changes),  # what the approver sees while AWAITING_APPROVAL
        "change_summary": change_summary(run.changes),
        "outputs": flat_outputs(run.outputs),
        "no_changes": run.no_changes,
        "error": run.error,
        "cause": run.cause,
        "waiting_for": run.waiting_for if status == "WAITING" else None,
        "superseded_by": run.superseded_by,
    }


def build_view(release: Release) -> dict[str, Any] | None:
    """The release's build."""
    build = release.build
    if not build:
        return None
    return {
        "id": build.get("build_id"),
        "status": build.get("status"),
        "started_at": build.get("started_at"),
        "ended_at": build.get("ended_at"),
        "duration_seconds": duration_seconds(build.get("started_at"), build.get("ended_at")),
        "log": build.get("log"),
        "template_url": build.get("template_url"),
        "resolved_sha": build.get("resolved_sha"),
        "failed_phase": build.get("failed_phase"),
    }


def artifact_view(release: Release) -> dict[str, Any] | None:
    """Where the release's packaged template is kept (what promote and rollback deploy again)."""
    build = release.build or {}
    if not release.built:
        return None
    return {
        "template_url": build.get("template_url"),
        "bucket": build.get("artifact_bucket"),
        "key": build.get("artifact_key"),
    }


def release_view(release: Release, runs: dict[str, StageRun] | None = None) -> dict[str, Any]:
    """A release with its build and every stage in order."""
    runs = runs or {}
    return {
        "id": release.id,
        "stack_id": release.stack_id,
        "ref": release.ref,
        "sha": release.sha or (release.build or {}).get("resolved_sha") or "",
        "message": release.message,
        "author": release.author,
        "pushed_at": release.pushed_at,
        "received_at": release.received_at,
        "trigger": release.trigger,
        "status": release.status,
        "started_at": release.started_at,
        "ended_at": release.ended_at,
        "duration_seconds": duration_seconds(release.started_at, release.ended_at),
        "failed_stage": release.failed_stage,
        "error": release.error,
        "cause": release.cause,
        "superseded_by": release.superseded_by,
        "cancelled_by": release.cancelled_by,
        "source_release_id": release.source_release_id,
        "requested_by": release.requested_by,
        "build_id": (release.build or {}).get("build_id"),
        "artifact": artifact_view(release),
        "execution_name": release.execution_name,
        "execution_arn": release.execution_arn,
        "console_url": console_url(release.execution_arn),
        "build": build_view(release),
        "stages": [stage_view(release, name, i, runs.get(name)) for i, name in enumerate(release.stages)],
    }


def release_summary(release: Release) -> dict[str, Any]:
    """A release in a listing (no per-stage detail)."""
    view = release_view(release)
    view.pop("stages")
    return view
