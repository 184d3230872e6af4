"""CodeBuild as the embedded control plane does it: the local builder on a thread, then an event.

Artifacts and the build log go to the emulator's S3; the build's end is announced as a CodeBuild
"Build State Change" event on the local events queue, which the event pump delivers to the same
handler EventBridge invokes on AWS.
"""

from __future__ import annotations

import json
import logging
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from chalicelib.domain import clone_urls
from chalicelib.domain.builds import BuildRequest, SourceCredentials
from chalicelib.domain.clock import now_iso

from .local_builder import LocalBuilder, LocalBuildRequest, LocalBuildResult, redact_text

log = logging.getLogger(__name__)
PROJECT = "stagecoach-local"
ACCOUNT = "123456789012"


def build_log_key(stack_id: str, release_id: str) -> str:
    """Where the local builder keeps a release's build log in the artifact bucket."""
    return f"{stack_id}/{release_id}/build.log"


def state_change_event(request: BuildRequest, result: LocalBuildResult, bucket: str, region: str) -> dict[str, Any]:
    """The EventBridge event CodeBuild would send for this result."""
    env = request.environment(bucket)
    log_key = build_log_key(request.stack_id, request.release_id)
    phases: list[dict[str, Any]] = [{"phase-type": "DOWNLOAD_SOURCE", "phase-status": "SUCCEEDED"}]
    if result.failed_phase:
        tail = [line for line in result.log_tail.splitlines() if line.strip()]
        phases = [{"phase-type": result.failed_phase, "phase-status": result.status, "phase-context": tail}]
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "CodeBuild Build State Change",
        "source": "aws.codebuild",
        "account": ACCOUNT,
        "time": result.ended_at,
        "region": region,
        "resources": [f"arn:aws:codebuild:{region}:{ACCOUNT}:build/{result.build_id}"],
        "detail": {
            "build-status": result.status,
            "project-name": PROJECT,
            "build-id": f"arn:aws:codebuild:{region}:{ACCOUNT}:build/{result.build_id}",
            "current-phase": result.failed_phase or "COMPLETED",
            "additional-information": {
                "environment": {
                    "environment-variables": [{"name": k, "value": v, "type": "PLAINTEXT"} for k, v in env.items()]
                },
                "phases": phases,
                "logs": {"deep-link": f"s3://{bucket}/{log_key}", "stream-name": result.build_id},
                "build-start-time": result.started_at,
                "build-end-time": result.ended_at,
                "resolved-source-version": result.resolved_sha,
            },
        },
    }


class LocalCodeBuild:
    """Builder port of the embedded mode."""

    def __init__(
        self, s3: Any, sqs: Any, bucket: str, events_queue_url: str, region: str, timeout_seconds: int
    ) -> None:
        self._s3 = s3
        self._sqs = sqs
        self._bucket = bucket
        self._events_queue_url = events_queue_url
        self._region = region
        self._timeout = timeout_seconds
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="local-build")
        self.running: dict[str, Future[None]] = {}

    def start(self, request: BuildRequest, credentials: SourceCredentials | None) -> str:
        """Start the build on a thread; returns its id at once. The clone URL gets its credentials back here."""
        build_id = f"{PROJECT}:{uuid.uuid4()}"
        clone_url = clone_urls.with_credentials(request.clone_url, credentials.userinfo) if credentials else None
        self.running[build_id] = self._pool.submit(self._build, build_id, request, clone_url or request.clone_url)
        return build_id

    def _build(self, build_id: str, request: BuildRequest, clone_url: str) -> None:
        try:
            self._build_and_announce(build_id, request, clone_url)
        except Exception:  # nothing else would notice: the release would wait for its build timeout
            log.exception("local build %s could not be completed or announced", build_id)
            raise
        finally:
            self.running.pop(build_id, None)

    def _build_and_announce(self, build_id: str, request: BuildRequest, clone_url: str) -> None:
        prefix = request.artifact_prefix

        def upload(relative: str, content: bytes) -> None:
            self._s3.put_object(Bucket=self._bucket, Key=f"{prefix}/{relative}", Body=content)

        try:
            result = LocalBuilder(upload).run(
                LocalBuildRequest(
                    build_id=build_id,
                    clone_url=clone_url,
                    sha=request.source_version,
                    buildspec_path=request.buildspec_path,
                    env=request.environment(self._bucket),
                    timeout_seconds=self._timeout,
                )
            )
        except Exception as exc:  # a bug in the builder must still end the build task
            log.exception("local build %s crashed", build_id)
            now = now_iso()
            reason = redact_text(str(exc), clone_url)
            result = LocalBuildResult(build_id, "FAULT", "PROVISIONING", reason, reason, (), now, now)
        self._s3.put_object(
            Bucket=self._bucket,
            Key=build_log_key(request.stack_id, request.release_id),
            Body=result.log.encode(),
            ContentType="text/plain; charset=utf-8",
        )
        event = state_change_event(request, result, self._bucket, self._region)
        self._sqs.send_message(QueueUrl=self._events_queue_url, MessageBody=json.dumps(event))
