"""Stagecoach: routes and event handlers only. Work happens in chalicelib.services."""

from __future__ import annotations

from typing import Any

from chalice.app import Chalice, CloudWatchEvent, IAMAuthorizer, Rate, Request, Response, SQSEvent

from chalicelib import bootstrap, pages
from chalicelib.http import (
    WEBHOOK_CONTENT_TYPES,
    http_middleware,
    json_response,
    maps_errors,
    openapi_response,
    parse_json,
)
from chalicelib.services.release_queries import parse_flag

app = Chalice(app_name="stagecoach", configure_logs=False)
app.register_middleware(http_middleware(bootstrap.logger, bootstrap.flush_metrics), "http")
# Every route but /health and the webhooks (whose signature is their auth) needs SigV4 on AWS.
# chalice local and chalice.test let requests through: the embedded mode has no AWS identities.
IAM_AUTH = IAMAuthorizer()


def _request() -> Request:
    request = app.current_request
    assert request is not None, "called outside a request"
    return request


def _raw() -> bytes:
    raw = _request().raw_body
    return raw.encode() if isinstance(raw, str) else (raw or b"")


def _body() -> Any:
    return parse_json(_raw())


def _optional_body() -> Any:
    """The JSON body, or ``{}`` when there is none (a JSON ``null`` stays None: not an object)."""
    raw = _raw()
    return parse_json(raw) if raw else {}


def _query(name: str) -> str | None:
    params: Any = _request().query_params or {}
    value = params.get(name)
    return str(value) if value is not None else None


def _actor() -> str:
    """Who is calling: the IAM identity on AWS, else the local user."""
    identity = (_request().context or {}).get("identity") or {}
    return str(identity.get("userArn") or identity.get("caller") or identity.get("user") or "local-user")


@app.route("/health", methods=["GET"])
def health() -> dict[str, Any]:
    """Liveness: the process serves requests."""
    return {"status": "ok", "service": "stagecoach"}


@app.route("/openapi.yaml", methods=["GET"])
def openapi_document() -> Response:
    """The OpenAPI 3.1 document of this API (docs/openapi.yaml)."""
    return openapi_response()


@app.route("/stacks", methods=["POST"], authorizer=IAM_AUTH)
@maps_errors
def create_stack() -> Response:
    """Create a stack with its stages."""
    return json_response(bootstrap.stack_service().create(_body(), _actor()), 201)


@app.route("/stacks", methods=["GET"], authorizer=IAM_AUTH)
@maps_errors
def list_stacks() -> Response:
    """A page of stacks."""
    return json_response(bootstrap.stack_service().list(_query("limit"), _query("next_token")))


@app.route("/stacks/{stack_id}", methods=["GET"], authorizer=IAM_AUTH)
@maps_errors
def get_stack(stack_id: str) -> Response:
    """One stack with its stages' state."""
    return json_response(bootstrap.stack_service().show(stack_id))


@app.route("/stacks/{stack_id}", methods=["PATCH"], authorizer=IAM_AUTH)
@maps_errors
def patch_stack(stack_id: str) -> Response:
    """Change a stack (``version`` required)."""
    return json_response(bootstrap.stack_service().patch(stack_id, _body(), _actor()))


def _force() -> bool:
    return parse_flag(_query("force"), "force")


@app.route("/stacks/{stack_id}", methods=["DELETE"], authorizer=IAM_AUTH)
@maps_errors
def delete_stack(stack_id: str) -> Response:
    """Delete a stack (409 while releases are in flight, unless ``?force=true`` cancels them)."""
    bootstrap.stack_service().delete(stack_id, _force(), _actor())
    return Response(body="", status_code=204)


@app.route("/stacks/{stack_id}/stages", methods=["POST"], authorizer=IAM_AUTH)
@maps_errors
def add_stage(stack_id: str) -> Response:
    """Add a stage (``position`` optional, default last)."""
    return json_response(bootstrap.stack_service().add_stage(stack_id, _body(), _actor()), 201)


@app.route("/stacks/{stack_id}/stages/{stage}", methods=["PATCH"], authorizer=IAM_AUTH)
@maps_errors
def update_stage(stack_id: str, stage: str) -> Response:
    """Change or move a stage."""
    return json_response(bootstrap.stack_service().update_stage(stack_id, stage, _body(), actor=_actor()))


@app.route("/stacks/{stack_id}/stages/{stage}", methods=["DELETE"], authorizer=IAM_AUTH)
@maps_errors
def remove_stage(stack_id: str, stage: str) -> Response:
    """Remove a stage (never the last; ``?force=true`` cancels the releases still to deploy it)."""
    return json_response(bootstrap.stack_service().remove_stage(stack_id, stage, _optional_body(), _force(), _actor()))


@app.route("/stacks/{stack_id}/stages/{stage}/deployments", methods=["POST"], authorizer=IAM_AUTH)
@maps_errors
def promote_to_stage(stack_id: str, stage: str) -> Response:
    """Deploy a release's build to one stage (``{"release_id": R}``): a promote, or a redeploy of what it runs."""
    return json_response(bootstrap.deployment_service().promote(stack_id, stage, _body(), _actor()), 202)


@app.route("/stacks/{stack_id}/stages/{stage}/rollback", methods=["POST"], authorizer=IAM_AUTH)
@maps_errors
def roll_back_stage(stack_id: str, stage: str) -> Response:
    """Deploy an earlier release's build to one stage and pin it (``{"release_id"?, "reason"}``)."""
    return json_response(bootstrap.deployment_service().rollback(stack_id, stage, _body(), _actor()), 202)


@app.route("/stacks/{stack_id}/stages/{stage}/pin", methods=["DELETE"], authorizer=IAM_AUTH)
@maps_errors
def unpin_stage(stack_id: str, stage: str) -> Response:
    """Unpin a stage: automatic releases deploy it again."""
    return json_response(bootstrap.deployment_service().unpin(stack_id, stage, _actor()))


@app.route("/stacks/{stack_id}/webhook/rotate", methods=["POST"], authorizer=IAM_AUTH)
@maps_errors
def rotate_webhook_secret(stack_id: str) -> Response:
    """A new webhook secret, shown once; the previous one keeps working for an hour."""
    return json_response(bootstrap.stack_service().rotate_webhook_secret(stack_id, actor=_actor()))


def _webhook(provider: str, stack_id: str) -> Response:
    outcome = bootstrap.release_starter().receive(provider, stack_id, dict(_request().headers), _raw())
    return json_response(outcome.body, outcome.status)


@app.route("/webhooks/github/{stack_id}", methods=["POST"], content_types=WEBHOOK_CONTENT_TYPES)
@maps_errors
def github_webhook(stack_id: str) -> Response:
    """GitHub deliveries (X-Hub-Signature-256)."""
    return _webhook("github", stack_id)


@app.route("/webhooks/gitlab/{stack_id}", methods=["POST"], content_types=WEBHOOK_CONTENT_TYPES)
@maps_errors
def gitlab_webhook(stack_id: str) -> Response:
    """GitLab deliveries (X-Gitlab-Token)."""
    return _webhook("gitlab", stack_id)


@app.route("/webhooks/bitbucket/{stack_id}", methods=["POST"], content_types=WEBHOOK_CONTENT_TYPES)
@maps_errors
def bitbucket_webhook(stack_id: str) -> Response:
    """Bitbucket Cloud and Server/Data Center deliveries (X-Hub-Signature)."""
    return _webhook("bitbucket", stack_id)


@app.route("/stacks/{stack_id}/releases", methods=["POST"], authorizer=IAM_AUTH)
@maps_errors
def start_release(stack_id: str) -> Response:
    """Start a release of a ref or sha by hand (``Idempotency-Key`` makes retries safe)."""
    key = _request().headers.get("idempotency-key")
    outcome = bootstrap.release_starter().start_manual(stack_id, _body(), key, _actor())
    return json_response(outcome.body, outcome.status)


@app.route("/stacks/{stack_id}/releases", methods=["GET"], authorizer=IAM_AUTH)
@maps_errors
def list_releases(stack_id: str) -> Response:
    """A stack's releases, newest first (``limit``, ``next_token``, ``status``, ``ref``)."""
    return json_response(
        bootstrap.release_queries().list_for_stack(
            stack_id, _query("limit"), _query("next_token"), _query("status"), _query("ref")
        )
    )


@app.route("/releases/{release_id}", methods=["GET"], authorizer=IAM_AUTH)
@maps_errors
def get_release(release_id: str) -> Response:
    """One release with its build and each stage."""
    return json_response(bootstrap.release_queries().show(release_id))


@app.route("/releases/{release_id}/cancel", methods=["POST"], authorizer=IAM_AUTH)
@maps_errors
def cancel_release(release_id: str) -> Response:
    """Cancel a release (``{"reason": ...}`` optional): it ends CANCELLED and frees its stages."""
    return json_response(bootstrap.reconciler().cancel(release_id, _optional_body(), _actor()))


@app.schedule(Rate(1, unit=Rate.MINUTES))
@bootstrap.publishes_metrics
def sweep_pending_releases(event: CloudWatchEvent) -> dict[str, Any]:
    """Start releases still PENDING after a minute; reconcile releases whose execution ended or was lost."""
    return bootstrap.reconciler().sweep()


STAGE_QUEUE = "stagecoach-stages.fifo"


@app.on_sqs_message(queue=STAGE_QUEUE, batch_size=1)
@bootstrap.publishes_metrics
def coordinate_stages(event: SQSEvent) -> None:
    """Enter, approve and leave stages in the order the execution mode allows (the stage coordinator)."""
    for record in event:
        bootstrap.logger().info("stage request", extra={"result": bootstrap.stage_coordinator().handle(record.body)})


@app.on_cw_event({"source": ["aws.states"], "detail-type": ["Step Functions Execution Status Change"]})
@bootstrap.publishes_metrics
def execution_status_changed(event: CloudWatchEvent) -> str:
    """An execution ended: give its release its final status and free the stages it held."""
    return bootstrap.reconciler().execution_changed(event.detail)


BUILD_QUEUE = "stagecoach-builds"


@app.on_sqs_message(queue=BUILD_QUEUE, batch_size=1)
@bootstrap.publishes_metrics
def build_worker(event: SQSEvent) -> None:
    """Start the build a release's state machine asked for."""
    for record in event:
        bootstrap.build_service().start(record.body)


@app.on_cw_event({"source": ["aws.codebuild"], "detail-type": ["CodeBuild Build State Change"]})
@bootstrap.publishes_metrics
def build_state_changed(event: CloudWatchEvent) -> str:
    """A build ended: complete the release's build task with its template or its failure."""
    return str(bootstrap.build_service().finish(event.detail))


@app.route("/releases/{release_id}/stages/{stage}/approve", methods=["POST"], authorizer=IAM_AUTH)
@maps_errors
def approve_stage(release_id: str, stage: str) -> Response:
    """Approve a stage waiting for approval (``{"comment": ...}`` optional)."""
    decided = bootstrap.approval_service().decide(release_id, stage, True, _optional_body(), _actor())
    return json_response(decided)


@app.route("/releases/{release_id}/stages/{stage}/reject", methods=["POST"], authorizer=IAM_AUTH)
@maps_errors
def reject_stage(release_id: str, stage: str) -> Response:
    """Reject a stage waiting for approval: the release fails at that stage."""
    decided = bootstrap.approval_service().decide(release_id, stage, False, _optional_body(), _actor())
    return json_response(decided)


@app.route("/releases/{release_id}/history", methods=["GET"], authorizer=IAM_AUTH)
@maps_errors
def release_history(release_id: str) -> Response:
    """A timeline of the release's execution (``?raw=true`` for the Step Functions events, task tokens redacted)."""
    return json_response(bootstrap.release_queries().history(release_id, _query("raw")))


@app.route("/releases/{release_id}/build-log", methods=["GET"], authorizer=IAM_AUTH)
@maps_errors
def release_build_log(release_id: str) -> Response:
    """The build log (local builder) or a pointer to it (CloudWatch Logs)."""
    return json_response(bootstrap.release_queries().build_log(release_id))


NOTIFICATION_QUEUE = "stagecoach-notifications"
# One message takes at most ~55 s (11 targets, each given up on after one 5 s timeout): records that may not
# finish before the function's timeout are handed back (partial batch response) rather than cut off.
NOTIFICATION_RESERVE_MS = 60_000


@app.on_sqs_message(queue=NOTIFICATION_QUEUE, batch_size=10)
@bootstrap.publishes_metrics
def deliver_notifications(event: SQSEvent) -> dict[str, Any]:
    """Post release and stage events to commit-status providers, Slack and webhooks (partial batch failures)."""
    failures = []
    context: Any = event.context
    for record in event:
        if context.get_remaining_time_in_millis() < NOTIFICATION_RESERVE_MS:
            failures.append({"itemIdentifier": record.to_dict().get("messageId", "")})
            continue
        try:
            result = bootstrap.notification_worker().handle(record.body)
            bootstrap.logger().info("notification", extra={"result": result})
        except Exception:
            bootstrap.logger().exception("notification delivery failed; the message will be received again")
            failures.append({"itemIdentifier": record.to_dict().get("messageId", "")})
    return {"batchItemFailures": failures}


@app.route("/stacks/{stack_id}/notifications", methods=["GET"], authorizer=IAM_AUTH)
@maps_errors
def list_notifications(stack_id: str) -> Response:
    """Recent notification deliveries of a stack, newest first (``limit``, ``next_token``)."""
    return json_response(bootstrap.notification_queries().recent(stack_id, _query("limit"), _query("next_token")))


@app.route("/stacks/{stack_id}/audit", methods=["GET"], authorizer=IAM_AUTH)
@maps_errors
def stack_audit(stack_id: str) -> Response:
    """A stack's audit trail, newest first (kept after the stack is deleted)."""
    return json_response(bootstrap.audit_queries().for_stack(stack_id, _query("limit"), _query("next_token")))


@app.route("/audit", methods=["GET"], authorizer=IAM_AUTH)
@maps_errors
def audit_trail() -> Response:
    """Every audit entry, newest first (``limit``, ``next_token``)."""
    return json_response(bootstrap.audit_queries().everything(_query("limit"), _query("next_token")))


@app.route("/stacks/{stack_id}/metrics", methods=["GET"], authorizer=IAM_AUTH)
@maps_errors
def stack_metrics(stack_id: str) -> Response:
    """DORA's four keys of one stage (``stage``, default the last) over the last ``days`` days (1..365, 30)."""
    return json_response(bootstrap.dora_metrics().for_stage(stack_id, _query("stage"), _query("days")))


def _context_path() -> str:
    """The request's full path (on API Gateway it starts with the stage: the pages link from there)."""
    return str((_request().context or {}).get("path") or "/")


# The dashboard: data-free HTML/JS/CSS, open like /openapi.yaml; every figure on it comes from the
# signed API above (the browser signs with SigV4 on AWS; docs/deploy.md).
@app.route("/", methods=["GET"])
@maps_errors
def dashboard_overview() -> Response:
    """The dashboard: every stack with its stages."""
    return pages.overview_page(_context_path())


@app.route("/ui/stacks/{stack_id}", methods=["GET"])
@maps_errors
def dashboard_stack(stack_id: str) -> Response:
    """The dashboard page of one stack."""
    return pages.stack_page(stack_id, _context_path())


@app.route("/ui/releases/{release_id}", methods=["GET"])
@maps_errors
def dashboard_release(release_id: str) -> Response:
    """The dashboard page of one release."""
    return pages.release_page(release_id, _context_path())


@app.route("/ui/assets/{name}", methods=["GET"])
@maps_errors
def dashboard_asset(name: str) -> Response:
    """The dashboard's scripts and styles."""
    return pages.asset(name)
