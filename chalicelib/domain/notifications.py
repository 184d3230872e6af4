"""Outbound notifications: events, their targets' settings, the exact requests each target gets, and retries.

Pure Python: the stage coordinator, the reconciler and the release starter make ``Event``s; the
notification worker turns each into requests for the stack's commit-status provider and its Slack
and webhook targets (``requests_for``), and decides how long to wait before trying again (``retry_delay``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

from .errors import ConflictError, ValidationError
from .text import CONTROL, matches

STORED = "***"  # what a write-only token or secret is shown as
MAX_NOTIFICATIONS = 10
MAX_URL = 2048
MAX_TOKEN = 1024
MIN_SECRET = 16
MAX_SECRET = 256
# https anywhere; http only to this machine (a local receiver); never user info or control characters.
TARGET_URL = (
    rf"https://[^/?#@{CONTROL}\x20]+(?:[/?#][^{CONTROL}\x20]*)?"
    rf"|http://(?:127\.0\.0\.1|localhost|\[::1\])(?::[0-9]{{1,5}})?(?:[/?#][^{CONTROL}\x20]*)?"
)
TARGET_URL_RULE = "must be an https:// URL, or an http:// URL of 127.0.0.1 or localhost, without user info"
TOKEN = r"[!-~]+"  # visible ASCII, as HTTP headers carry it

EVENT_TYPES = (
    "release.started",
    "stage.waiting",
    "stage.started",
    "stage.awaiting_approval",
    "stage.succeeded",
    "stage.failed",
    "stage.superseded",
    "stage.cancelled",
    "stage.held",
    "release.ended",
)
DEFAULT_EVENTS = (
    "release.started",
    "stage.awaiting_approval",
    "stage.succeeded",
    "stage.failed",
    "release.ended",
)
STAGE_EVENTS = {
    "WAITING": "stage.waiting",
    "PREPARING": "stage.started",
    "DEPLOYING": "stage.started",
    "AWAITING_APPROVAL": "stage.awaiting_approval",
    "SUCCEEDED": "stage.succeeded",
    "FAILED": "stage.failed",
    "BLOCKED": "stage.failed",
    "SUPERSEDED": "stage.superseded",
    "CANCELLED": "stage.cancelled",
    "HELD": "stage.held",
}
COMMIT_STATUS_PROVIDERS = ("github", "gitlab", "bitbucket", "bitbucket-server")
PUBLIC_APIS = {
    "github": "https://api.github.com",
    "gitlab": "https://gitlab.com/api/v4",
    "bitbucket": "https://api.bitbucket.org",
}
NOTIFICATION_TYPES = ("slack", "webhook")
USER_AGENT = "Stagecoach-Notifications/1"


# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class Event:
    """Something that happened to a release, once it was durably recorded.

    ``id`` is deterministic (release, stage, status): a replayed transition makes the same event, so
    receivers and commit statuses see the same delivery id and stay idempotent.
    """

    id: str
    type: str
    stack_id: str
    release_id: str
    status: str
    at: str
    stage: str | None = None
    detail: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (the queue message)."""
        return {
            "id": self.id,
            "type": self.type,
            "stack_id": self.stack_id,
            "release_id": self.release_id,
            "stage": self.stage,
            "status": self.status,
            "at": self.at,
            "detail": dict(self.detail),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Event:
        """The event of a queue message; ValueError/KeyError/TypeError if it is not one."""
        detail = data.get("detail") or {}
        if not isinstance(detail, dict) or data["type"] not in EVENT_TYPES:
            raise ValueError("not an event")
        return cls(
            id=str(data["id"]),
            type=str(data["type"]),
            stack_id=str(data["stack_id"]),
            release_id=str(data["release_id"]),
            status=str(data["status"]),
            at=str(data["at"]),
            stage=str(data["stage"]) if data.get("stage") else None,
            detail={str(k): str(v) for k, v in detail.items() if v is not None},
        )


def release_started(stack_id: str, release_id: str, at: str) -> Event:
    """The release's execution started."""
    return Event(f"{release_id}.started", "release.started", stack_id, release_id, "RUNNING", at)


def release_ended(stack_id: str, release_id: str, status: str, at: str, fields: Mapping[str, Any]) -> Event:
    """The release reached its final ``status``."""
    return Event(
        f"{release_id}.{status.lower()}",
        "release.ended",
        stack_id,
        release_id,
        status,
        at,
        detail=_detail(fields),
    )


def stage_event(stack_id: str, release_id: str, stage: str, status: str, at: str, fields: Mapping[str, Any]) -> Event:
    """A stage run of the release reached ``status`` (WAITING, DEPLOYING, SUCCEEDED, ...)."""
    return Event(
        f"{release_id}.{stage}.{status.lower()}",
        STAGE_EVENTS[status],
        stack_id,
        release_id,
        status,
        at,
        stage=stage,
        detail=_detail(fields),
    )


def _detail(fields: Mapping[str, Any]) -> dict[str, str]:
    keep = ("cause", "error", "superseded_by", "waiting_for", "cancelled_by", "failed_stage")
    return {k: str(fields[k])[:500] for k in keep if fields.get(k)}


# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class CommitStatus:
    """Where commit statuses go; ``token`` is write-only (set only in the request that gave it)."""

    provider: str
    api_url: str
    token: str | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, str]:
        """JSON form (the token shown as ``***``)."""
        return {"provider": self.provider, "api_url": self.api_url, "token": STORED}

    def stored(self) -> dict[str, str]:
        """What the table keeps (no token)."""
        return {"provider": self.provider, "api_url": self.api_url}


@dataclass(frozen=True)
class Notification:
    """A Slack or webhook target; a webhook's ``secret`` is write-only like a token."""

    type: str
    url: str
    events: tuple[str, ...]
    secret: str | None = field(default=None, repr=False, compare=False)

    @property
    def key(self) -> str:
        """A stable name of the target (type and URL): where its secret is kept, and its deliveries' target."""
        return f"{self.type}-{hashlib.sha256(self.url.encode()).hexdigest()[:12]}"

    def to_dict(self) -> dict[str, Any]:
        """JSON form (a webhook's secret shown as ``***``)."""
        out: dict[str, Any] = {"type": self.type, "url": self.url, "events": list(self.events)}
        if self.type == "webhook":
            out["secret"] = STORED
        return out

    def stored(self) -> dict[str, Any]:
        """What the table keeps (no secret)."""
        return {"type": self.type, "url": self.url, "events": list(self.events)}


COMMIT_STATUS_KEY = "commit-status"


def _object(value: Any, name: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError("must be an object", name)
    return value


def _unknown(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in data:
        if key not in allowed:
            raise ValidationError("unknown field", f"{where}.{key}")


def _url(value: Any, name: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_URL or not matches(TARGET_URL, value):
        raise ValidationError(f"{TARGET_URL_RULE} (at most {MAX_URL} characters)", name)
    return value


def parse_commit_status(value: Any, repository_provider: str, current: CommitStatus | None) -> CommitStatus | None:
    """Validate ``commit_status`` (None removes it); ``token`` ``***`` keeps the stored one."""
    if value is None:
        return None
    data = _object(value, "commit_status")
    _unknown(data, {"provider", "api_url", "token"}, "commit_status")
    provider = data.get("provider", repository_provider)
    if provider not in COMMIT_STATUS_PROVIDERS:
        raise ValidationError(f"must be one of {', '.join(COMMIT_STATUS_PROVIDERS)}", "commit_status.provider")
    if "api_url" in data and data["api_url"] is not None:
        api_url = _url(data["api_url"], "commit_status.api_url").rstrip("/")
    elif provider in PUBLIC_APIS:
        api_url = PUBLIC_APIS[provider]
    else:
        raise ValidationError("is required for bitbucket-server (the server's base URL)", "commit_status.api_url")
    if "token" not in data:
        raise ValidationError("is required (write-only; *** keeps the stored one)", "commit_status.token")
    token = data["token"]
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN or not matches(TOKEN, token):
        raise ValidationError(f"must be 1 to {MAX_TOKEN} visible ASCII characters", "commit_status.token")
    if token == STORED:
        if current is None:
            raise ConflictError("commit_status.token: the stack has no stored token for *** to stand for")
        return CommitStatus(provider, api_url)
    return CommitStatus(provider, api_url, token)


def parse_notifications(value: Any, current: tuple[Notification, ...]) -> tuple[Notification, ...]:
    """Validate ``notifications``; a webhook's ``secret`` ``***`` keeps the secret stored for its URL."""
    if not isinstance(value, list) or len(value) > MAX_NOTIFICATIONS:
        raise ValidationError(f"must be a list of at most {MAX_NOTIFICATIONS} targets", "notifications")
    stored_keys = {n.key for n in current if n.type == "webhook"}
    out: list[Notification] = []
    for i, raw in enumerate(value):
        where = f"notifications[{i}]"
        data = _object(raw, where)
        kind = data.get("type")
        if kind not in NOTIFICATION_TYPES:
            raise ValidationError(f"must be one of {', '.join(NOTIFICATION_TYPES)}", f"{where}.type")
        _unknown(data, {"type", "url", "events", "secret"} if kind == "webhook" else {"type", "url", "events"}, where)
        if "url" not in data:
            raise ValidationError("is required", f"{where}.url")
        url = _url(data["url"], f"{where}.url")
        events = _events(data.get("events", list(DEFAULT_EVENTS)), f"{where}.events")
        target = Notification(str(kind), url, events)
        if kind == "webhook":
            secret = data.get("secret")
            if not isinstance(secret, str):
                raise ValidationError("is required (write-only; *** keeps the stored one)", f"{where}.secret")
            if secret == STORED:
                if target.key not in stored_keys:
                    raise ConflictError(f"{where}.secret: no secret is stored for this URL for *** to stand for")
            elif not MIN_SECRET <= len(secret) <= MAX_SECRET or not matches(TOKEN, secret):
                raise ValidationError(
                    f"must be {MIN_SECRET} to {MAX_SECRET} visible ASCII characters", f"{where}.secret"
                )
            else:
                target = Notification(str(kind), url, events, secret)
        if any(n.key == target.key for n in out):
            raise ValidationError("the same type and URL twice", f"{where}.url")
        out.append(target)
    return tuple(out)


def _events(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or len(value) > len(EVENT_TYPES):
        raise ValidationError(f"must be a non-empty list of {', '.join(EVENT_TYPES)}", name)
    for i, item in enumerate(value):
        if item not in EVENT_TYPES:
            raise ValidationError(f"must be one of {', '.join(EVENT_TYPES)}", f"{name}[{i}]")
    return tuple(dict.fromkeys(value))


def commit_status_from(data: Mapping[str, Any] | None) -> CommitStatus | None:
    """The settings the table keeps, read back (no token)."""
    if not data:
        return None
    return CommitStatus(str(data["provider"]), str(data["api_url"]))


def notifications_from(data: list[Mapping[str, Any]] | None) -> tuple[Notification, ...]:
    """The targets the table keeps, read back (no secrets)."""
    return tuple(Notification(str(d["type"]), str(d["url"]), tuple(d.get("events") or ())) for d in data or [])


# ---------------------------------------------------------------- requests


@dataclass(frozen=True)
class Context:
    """What a request says besides the event: the release's commit and the stack."""

    stack_name: str
    full_name: str
    sha: str
    ref: str
    message: str
    author: str
    trigger: str
    stages: tuple[str, ...]
    release_url: str


@dataclass(frozen=True)
class OutboundRequest:
    """One HTTP request to a target."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes


def _short(sha: str) -> str:
    return sha[:7]


def describe(event: Event) -> str:
    """A short description of the event (a commit status's description, ≤ 140 characters)."""
    detail = event.detail
    text = {
        "RUNNING": "queued",
        "WAITING": f"waiting behind release {detail.get('waiting_for', '')}".strip(),
        "PREPARING": "preparing the change set",
        "DEPLOYING": "deploying",
        "AWAITING_APPROVAL": "waiting for approval",
        "SUCCEEDED": "deployed",
        "FAILED": f"failed: {detail.get('cause') or detail.get('error') or 'see the release'}",
        "BLOCKED": f"failed: {detail.get('cause') or 'blocked'}",
        "SUPERSEDED": f"superseded by {detail.get('superseded_by', 'a newer release')}",
        "CANCELLED": f"cancelled{': ' + detail['cause'] if detail.get('cause') else ''}",
        "HELD": f"held: {detail.get('cause') or 'the stage is pinned'}",
        "TIMED_OUT": "timed out",
    }.get(event.status, event.status.lower())
    return text if len(text) <= 140 else text[:139] + "…"


# commit status state per provider for each stage status
_GITHUB = {"SUCCEEDED": "success", "FAILED": "failure", "BLOCKED": "failure"}
# GitLab: running only while CloudFormation deploys (it refuses running → pending, see ``unchanged``).
_GITLAB = {"DEPLOYING": "running", "SUCCEEDED": "success", "FAILED": "failed"}
_GITLAB.update(BLOCKED="failed")
_BITBUCKET = {"SUCCEEDED": "SUCCESSFUL", "FAILED": "FAILED", "BLOCKED": "FAILED"}
_STOPPED = ("SUPERSEDED", "CANCELLED", "HELD")
_PENDING = ("RUNNING", "WAITING", "PREPARING", "DEPLOYING", "AWAITING_APPROVAL")


def commit_state(provider: str, status: str) -> str | None:
    """The provider's state for a stage status (None: the status is not shown)."""
    if status not in _PENDING and status not in _STOPPED and status not in _BITBUCKET:
        return None
    if provider == "github":
        return _GITHUB.get(status, "error" if status in _STOPPED else "pending")
    if provider == "gitlab":
        return _GITLAB.get(status, "canceled" if status in _STOPPED else "pending")
    if provider == "bitbucket":
        return _BITBUCKET.get(status, "STOPPED" if status in _STOPPED else "INPROGRESS")
    return _BITBUCKET.get(status, "CANCELLED" if status in _STOPPED else "INPROGRESS")


def status_key(stage: str) -> str:
    """The per-stage context (GitHub), name (GitLab) or key (Bitbucket, ≤ 40 characters)."""
    return f"stagecoach/{stage}"


def _bitbucket_key(stage: str) -> str:
    key = f"stagecoach-{stage}"
    return key if len(key) <= 40 else f"stagecoach-{hashlib.sha256(stage.encode()).hexdigest()[:28]}"


def commit_status_requests(config: CommitStatus, token: str, event: Event, ctx: Context) -> list[OutboundRequest]:
    """The provider API calls for ``event``: one per stage it concerns (every stage when a release starts)."""
    if not ctx.sha or event.type == "release.ended":
        return []
    stages = list(ctx.stages) if event.type == "release.started" else [event.stage or ""]
    state = commit_state(config.provider, event.status)
    if state is None:
        return []
    description = describe(event)
    return [_commit_status(config, token, stage, state, description, ctx) for stage in stages if stage]


def _commit_status(
    config: CommitStatus, token: str, stage: str, state: str, description: str, ctx: Context
) -> OutboundRequest:
    api, sha = config.api_url, ctx.sha
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    body: dict[str, Any]
    if config.provider == "github":
        # https://docs.github.com/en/rest/commits/statuses#create-a-commit-status
        url = f"{api}/repos/{ctx.full_name}/statuses/{sha}"
        headers.update(
            {
                "Accept": "application/vnd.github+json",
                "Authorization": f"Bearer {token}",
                "X-GitHub-Api-Version": "2022-11-28",
            }
        )
        body = {"state": state, "target_url": ctx.release_url, "description": description, "context": status_key(stage)}
    elif config.provider == "gitlab":
        # https://docs.gitlab.com/api/commits/#set-the-pipeline-status-of-a-commit
        url = f"{api}/projects/{quote(ctx.full_name, safe='')}/statuses/{sha}"
        headers["PRIVATE-TOKEN"] = token
        body = {"state": state, "name": status_key(stage), "target_url": ctx.release_url, "description": description}
    elif config.provider == "bitbucket":
        # https://developer.atlassian.com/cloud/bitbucket/rest/api-group-commit-statuses/
        url = f"{api}/2.0/repositories/{ctx.full_name}/commit/{sha}/statuses/build"
    else:
        # Bitbucket Data Center: /rest/api/latest/projects/{projectKey}/repos/{repositorySlug}/commits/{commitId}/builds
        project, _, slug = ctx.full_name.partition("/")
        repo = f"projects/{quote(project, safe='~')}/repos/{quote(slug, safe='')}"
        url = f"{api}/rest/api/latest/{repo}/commits/{sha}/builds"
    if config.provider in ("bitbucket", "bitbucket-server"):  # the same build-status body on both
        headers["Authorization"] = f"Bearer {token}"
        body = {
            "key": _bitbucket_key(stage),
            "state": state,
            "url": ctx.release_url,
            "name": status_key(stage),
            "description": description,
        }
    return OutboundRequest("POST", url, headers, json.dumps(body).encode())


def webhook_payload(event: Event, ctx: Context) -> dict[str, Any]:
    """The JSON a generic webhook receives."""
    return {
        "event": event.type,
        "id": event.id,
        "stack_id": event.stack_id,
        "release_id": event.release_id,
        "stage": event.stage,
        "status": event.status,
        "sha": ctx.sha,
        "ref": ctx.ref,
        "message": ctx.message,
        "author": ctx.author,
        "trigger": ctx.trigger,
        "at": event.at,
        "url": ctx.release_url,
        "description": describe(event),
        "detail": dict(event.detail),
    }


def signature(secret: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of the body>``, the ``X-Stagecoach-Signature-256`` header."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def delivery_id(event: Event, target_key: str) -> str:
    """The same for every attempt of one event to one target (``X-Stagecoach-Delivery``)."""
    return hashlib.sha256(f"{event.id}|{target_key}".encode()).hexdigest()[:32]


def webhook_request(target: Notification, secret: str, event: Event, ctx: Context) -> OutboundRequest:
    """A signed generic webhook delivery."""
    body = json.dumps(webhook_payload(event, ctx), separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Stagecoach-Event": event.type,
        "X-Stagecoach-Delivery": delivery_id(event, target.key),
        "X-Stagecoach-Signature-256": signature(secret, body),
    }
    return OutboundRequest("POST", target.url, headers, body)


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_request(target: Notification, event: Event, ctx: Context) -> OutboundRequest:
    """A Slack incoming-webhook message: ``text`` (the fallback) plus ``blocks``."""
    if event.type == "release.ended":
        headline = f"{ctx.stack_name}: release {event.status.lower().replace('_', ' ')}"
        reason = event.detail.get("cause") or event.detail.get("superseded_by")
        headline += f" ({reason})" if reason and event.status != "SUCCEEDED" else ""
    else:
        where = f" stage *{event.stage}*" if event.stage else ""
        headline = f"{ctx.stack_name}:{where} {describe(event)}"
    headline = headline[:300]
    text = f"{_slack_escape(headline)} (release {event.release_id}, {_short(ctx.sha) or 'no commit yet'})"
    subject = _slack_escape((ctx.message.splitlines() or [""])[0][:200])
    fields = [
        {"type": "mrkdwn", "text": f"*Stack*\n{_slack_escape(ctx.stack_name)}"},
        {"type": "mrkdwn", "text": f"*Stage*\n{event.stage or '-'}"},
        {"type": "mrkdwn", "text": f"*Status*\n{event.status}"},
        {"type": "mrkdwn", "text": f"*Commit*\n`{_short(ctx.sha) or '-'}` {subject}"},
        {"type": "mrkdwn", "text": f"*Author*\n{_slack_escape(ctx.author or '-')}"},
    ]
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": _slack_escape(headline)}},
        {"type": "section", "fields": fields},
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"<{ctx.release_url}|Release {event.release_id}>"}],
        },
    ]
    body = json.dumps({"text": text, "blocks": blocks}).encode()
    return OutboundRequest("POST", target.url, {"Content-Type": "application/json", "User-Agent": USER_AGENT}, body)


def wants(target: Notification, event: Event) -> bool:
    """The target asked for this kind of event."""
    return event.type in target.events


def unchanged(target_type: str, status: int | None, body: str) -> bool:
    """The provider refused a status it already has: GitLab answers 400 "Cannot transition status via
    :enqueue from :pending" to pending → pending (and running → running); the commit shows the right state."""
    return target_type == "commit-status:gitlab" and status == 400 and "Cannot transition status" in body


def commit_status_wants(event: Event) -> bool:
    """Commit statuses follow every stage event and a release's start (not its end: each stage shows it)."""
    return event.type != "release.ended"


# ---------------------------------------------------------------- retries

BASE_DELAY_SECONDS = 5
MAX_DELAY_SECONDS = 900  # SQS DelaySeconds limit
GIVE_UP_SECONDS = 3600


def retryable(status: int | None) -> bool:
    """Worth trying again: no answer (timeout, refused), 408, 425, 429 or a 5xx."""
    return status is None or status in (408, 425, 429) or status >= 500


def retry_after_seconds(value: str | None, now: datetime | None = None) -> int | None:
    """A ``Retry-After`` header (seconds or an HTTP date) in whole seconds, or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0, int((when - (now or datetime.now(UTC))).total_seconds() + 0.999))


def retry_delay(attempt: int, retry_after: int | None, base: int = BASE_DELAY_SECONDS) -> int:
    """Seconds before attempt ``attempt + 1``: ``Retry-After`` if given, else exponential; at most 900."""
    if retry_after is not None:
        return min(MAX_DELAY_SECONDS, max(1, retry_after))
    return min(MAX_DELAY_SECONDS, base * 2 ** max(0, attempt - 1))
