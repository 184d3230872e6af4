"""Builds: the request the state machine queues, and what a CodeBuild state-change event means."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from .errors import BadRequestError

TERMINAL_BUILD_STATUSES = ("SUCCEEDED", "FAILED", "FAULT", "STOPPED", "TIMED_OUT")
BUILD_DIRECTORY = "build"


@dataclass(frozen=True)
class SourceCredentials:
    """A stack's clone credentials, as the build worker fetched them when starting a build.

    ``userinfo`` is what goes back into ``https://***@host/...`` (the local builder clones with it);
    ``reference`` is the secret's ARN, which CodeBuild is given instead of the value.
    """

    userinfo: str = field(repr=False)
    reference: str


@dataclass(frozen=True)
class BuildRequest:
    """What the state machine asks the builder for (SQS message body); ``clone_url`` never has credentials."""

    task_token: str
    release_id: str
    stack_id: str
    source_version: str
    clone_url: str
    buildspec_path: str
    template_path: str

    @property
    def artifact_prefix(self) -> str:
        """Where the build's artifacts go in the artifact bucket."""
        return f"{self.stack_id}/{self.release_id}/{BUILD_DIRECTORY}"

    def template_key(self) -> str:
        """Key of the packaged template every stage deploys."""
        return f"{self.artifact_prefix}/{self.template_path}"

    def environment(self, bucket: str) -> dict[str, str]:
        """Environment variables every build gets (CodeBuild and the local builder alike)."""
        return {
            "STAGECOACH_STACK": self.stack_id,
            "STAGECOACH_RELEASE": self.release_id,
            "STAGECOACH_SHA": self.source_version,
            "ARTIFACT_BUCKET": bucket,
            "ARTIFACT_PREFIX": self.artifact_prefix,
        }


def parse_build_request(body: str) -> BuildRequest:
    """The build request in an SQS message body; BadRequestError if it is not one."""
    try:
        data = json.loads(body)
        return BuildRequest(
            task_token=str(data["task_token"]),
            release_id=str(data["release_id"]),
            stack_id=str(data["stack_id"]),
            source_version=str(data.get("sha") or data.get("ref") or ""),
            clone_url=str(data["clone_url"]),
            buildspec_path=str(data["buildspec_path"]),
            template_path=str(data["template_path"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise BadRequestError(f"not a build request: {exc}") from exc


def template_url(bucket: str, key: str, region: str) -> str:
    """The S3 URL CloudFormation reads a template from."""
    return f"https://{bucket}.s3.{region}.amazonaws.com/{key}"


@dataclass(frozen=True)
class BuildOutcome:
    """A CodeBuild "Build State Change" event, read."""

    build_id: str
    status: str
    release_id: str | None
    artifact_prefix: str | None
    resolved_sha: str | None
    failed_phase: str | None
    failed_reason: str | None
    log: dict[str, Any]
    started_at: str | None
    ended_at: str | None

    @property
    def terminal(self) -> bool:
        """The build has ended."""
        return self.status in TERMINAL_BUILD_STATUSES

    @property
    def succeeded(self) -> bool:
        """The build ended well."""
        return self.status == "SUCCEEDED"


def _codebuild_time(value: Any) -> str | None:
    """CodeBuild event times look like ``Nov 27, 2026 2:30:00 PM``; keep ISO strings as they are."""
    if not value:
        return None
    text = str(value)
    if "T" in text:
        return text
    from datetime import datetime

    from .clock import iso

    try:
        return iso(datetime.strptime(text, "%b %d, %Y %I:%M:%S %p").replace(tzinfo=UTC))
    except ValueError:
        return text


def parse_build_event(detail: dict[str, Any]) -> BuildOutcome:
    """Read the ``detail`` of a CodeBuild Build State Change event."""
    info = detail.get("additional-information") or {}
    variables = {
        v.get("name"): v.get("value") for v in (info.get("environment") or {}).get("environment-variables", [])
    }
    failed = [p for p in info.get("phases") or [] if p.get("phase-status") not in (None, "SUCCEEDED")]
    first_failure = failed[0] if failed else {}
    reason = "; ".join(str(c) for c in first_failure.get("phase-context") or [] if c) or None
    logs = info.get("logs") or {}
    return BuildOutcome(
        build_id=str(detail.get("build-id", "")),
        status=str(detail.get("build-status", "")),
        release_id=variables.get("STAGECOACH_RELEASE"),
        artifact_prefix=variables.get("ARTIFACT_PREFIX"),
        resolved_sha=info.get("resolved-source-version") or None,
        failed_phase=first_failure.get("phase-type"),
        failed_reason=reason,
        log={k: logs[k] for k in ("group-name", "stream-name", "deep-link") if logs.get(k)},
        started_at=_codebuild_time(info.get("build-start-time")),
        ended_at=_codebuild_time(info.get("build-end-time") or info.get("build-complete-time")),
    )


def failure_cause(outcome: BuildOutcome) -> str:
    """One readable sentence of why a build failed, with where its log is."""
    where = outcome.log.get("deep-link") or outcome.log.get("stream-name") or "the build log"
    phase = outcome.failed_phase or "unknown phase"
    reason = f": {outcome.failed_reason}" if outcome.failed_reason else ""
    return f"build {outcome.build_id} {outcome.status} in {phase}{reason} (log: {where})"
