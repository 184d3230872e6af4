"""Build once per release: the queue worker starts builds, the build-event handler finishes the task."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..domain import clone_urls
from ..domain.builds import (
    BuildOutcome,
    BuildRequest,
    SourceCredentials,
    failure_cause,
    parse_build_event,
    parse_build_request,
    template_url,
)
from .ports import Builder, BuildRecords, CloneCredentialStore, Metrics, TaskCallbacks

log = logging.getLogger(__name__)


class BuildService:
    """Glue between the state machine's build task and the builder."""

    def __init__(
        self,
        builder: Builder,
        records: BuildRecords,
        callbacks: TaskCallbacks,
        credentials: CloneCredentialStore,
        artifact_bucket: Callable[[], str],
        region: Callable[[], str],
        clock: Callable[[], str],
        metrics: Metrics,
    ) -> None:
        self._metrics = metrics
        self._builder = builder
        self._credentials = credentials
        self._records = records
        self._callbacks = callbacks
        self._bucket = artifact_bucket
        self._region = region
        self._clock = clock

    def start(self, message_body: str) -> str:
        """Handle one build request from the queue: remember its token, start the build."""
        request = parse_build_request(message_body)
        self._records.put_build_token(request.release_id, request.task_token, request.template_key())
        credentials: SourceCredentials | None = None
        if clone_urls.has_stored_credentials(request.clone_url):
            credentials = self._credentials.get(request.stack_id)
            if credentials is None:
                return self._not_started(
                    request,
                    f"stack {request.stack_id!r} has no stored clone credentials for {request.clone_url};"
                    " set repository.clone_url again with them",
                )
        try:
            build_id = self._builder.start(request, credentials)
        except Exception as exc:
            log.exception("could not start the build of release %s", request.release_id)
            return self._not_started(request, f"the build could not be started: {exc}")
        self._metrics.count("BuildStarted")
        self._records.record_build(
            request.release_id, {"build_id": build_id, "status": "IN_PROGRESS", "started_at": self._clock()}
        )
        return build_id

    def _not_started(self, request: BuildRequest, cause: str) -> str:
        """Fail the build task: the release fails with ``cause``."""
        self._records.record_build(
            request.release_id, {"status": "FAILED", "failed_phase": "SUBMITTED", "ended_at": self._clock()}
        )
        self._callbacks.fail(request.task_token, "BuildNotStarted", cause)
        self._metrics.count("BuildNotStarted")
        return ""

    def finish(self, event_detail: dict[str, Any]) -> str:
        """Handle a build state-change event; returns what was done (for logs and tests)."""
        outcome = parse_build_event(event_detail)
        if not outcome.terminal:
            return "ignored: build still running"
        if not outcome.release_id:
            return "ignored: not a Stagecoach build"
        waiting = self._records.build_token(outcome.release_id)
        if waiting is None:
            return f"ignored: no build task waits for release {outcome.release_id}"
        token, template_key = waiting
        details = self._details(outcome)
        if outcome.succeeded:
            url = template_url(self._bucket(), template_key, self._region())
            artifact = {"template_url": url, "artifact_bucket": self._bucket(), "artifact_key": template_key}
            self._records.record_build(outcome.release_id, {**details, **artifact}, outcome.resolved_sha)
            self._callbacks.succeed(
                token,
                {
                    "build_id": outcome.build_id,
                    "template_url": url,
                    "artifact_bucket": self._bucket(),
                    "artifact_key": template_key,
                    "resolved_sha": outcome.resolved_sha or "",
                },
            )
            self._metrics.count("BuildSucceeded")
            return "succeeded"
        cause = failure_cause(outcome)
        self._records.record_build(outcome.release_id, {**details, "cause": cause}, outcome.resolved_sha)
        self._callbacks.fail(token, "BuildFailed", cause)
        self._metrics.count("BuildFailed")
        return "failed"

    def _details(self, outcome: BuildOutcome) -> dict[str, Any]:
        details: dict[str, Any] = {
            "build_id": outcome.build_id,
            "status": outcome.status,
            "started_at": outcome.started_at,
            "ended_at": outcome.ended_at or self._clock(),
            "log": outcome.log or None,
            "resolved_sha": outcome.resolved_sha,
            "failed_phase": outcome.failed_phase,
        }
        return {k: v for k, v in details.items() if v is not None}
