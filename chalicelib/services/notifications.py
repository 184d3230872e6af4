"""Notifications: publishing events after a transition, and the worker that delivers them.

Releases never wait on a receiver: the services only enqueue events (``emit``) after the transition
is written; the worker (an SQS-triggered Lambda, the event pump locally) posts each event to the
stack's commit-status provider and to each Slack/webhook target that asked for its kind, retries a
failing target alone with a growing delay (``Retry-After`` wins), and gives up into the dead-letter
queue after a bounded time. Every attempt is recorded for ``GET /stacks/{id}/notifications``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ..domain import notifications as n
from ..domain.clock import parse_iso
from ..domain.errors import NotFoundError
from ..domain.notifications import Event, OutboundRequest
from ..domain.releases import Release
from ..domain.stacks import Stack, is_stack_id
from .ports import (
    DeliveryAttempt,
    DeliveryLog,
    EventPublisher,
    HttpSender,
    Metrics,
    NotificationQueue,
    NotificationSecrets,
    ReleaseRepository,
    StackRepository,
)
from .stacks import parse_limit, parse_next_token

log = logging.getLogger(__name__)


def emit(publisher: EventPublisher | None, events: Sequence[Event]) -> bool:
    """Publish ``events``; a failure is logged and answered False, never raised (the transition it follows is
    already recorded)."""
    if publisher is None or not events:
        return True
    try:
        publisher.publish(events)
    except Exception:
        log.exception("could not enqueue %d notification event(s): %s", len(events), [e.id for e in events])
        return False
    return True


@dataclass(frozen=True)
class _Target:
    key: str
    type: str
    requests: list[OutboundRequest]


class NotificationWorker:
    """Delivers one queue message: an event (to every target that wants it) or a retry (to one target)."""

    def __init__(
        self,
        stacks: StackRepository,
        releases: ReleaseRepository,
        secrets: NotificationSecrets,
        sender: HttpSender,
        queue: NotificationQueue,
        deliveries: DeliveryLog,
        clock: Callable[[], str],
        public_url: Callable[[], str],
        metrics: Metrics,
        base_delay_seconds: int = n.BASE_DELAY_SECONDS,
        give_up_seconds: int = n.GIVE_UP_SECONDS,
    ) -> None:
        self._stacks = stacks
        self._releases = releases
        self._secrets = secrets
        self._sender = sender
        self._queue = queue
        self._deliveries = deliveries
        self._clock = clock
        self._public_url = public_url
        self._metrics = metrics
        self._base_delay = base_delay_seconds
        self._give_up = give_up_seconds

    def handle(self, body: str) -> str:
        """Deliver one message; returns what happened (for logs and tests). Raises only if the
        message must be received again (a retry or a dead letter could not be enqueued)."""
        try:
            data = json.loads(body)
            event = Event.from_dict(data["event"])
            only = str(data["target"]) if data.get("target") else None
            attempt = int(data.get("attempt") or 1)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("dropping a message that is not a notification: %s", exc)
            return "dropped: not a notification"
        first_at = str(data.get("first_at") or self._clock())
        stack = self._stacks.get(event.stack_id)
        release = self._releases.get(event.release_id)
        if stack is None or release is None or (release.stack_uid and stack.uid != release.stack_uid):
            return "skipped: the stack or release is gone"
        targets = [t for t in self._targets(stack, release, event) if only is None or t.key == only]
        outcomes = [self._deliver(stack, event, target, attempt, first_at) for target in targets]
        return ", ".join(outcomes) or "no target wants it"

    def _targets(self, stack: Stack, release: Release, event: Event) -> list[_Target]:
        ctx = self._context(stack, release)
        secrets = self._secrets.read(stack.id) if stack.commit_status or stack.notifications else {}
        targets: list[_Target] = []
        if stack.commit_status is not None and n.commit_status_wants(event):
            token = secrets.get("commit_status_token")
            requests = n.commit_status_requests(stack.commit_status, str(token or ""), event, ctx) if token else []
            if requests or not token:
                targets.append(_Target(n.COMMIT_STATUS_KEY, f"commit-status:{stack.commit_status.provider}", requests))
        webhook_secrets: dict[str, str] = secrets.get("webhooks") or {}
        for target in stack.notifications:
            if not n.wants(target, event):
                continue
            if target.type == "slack":
                targets.append(_Target(target.key, "slack", [n.slack_request(target, event, ctx)]))
                continue
            secret = webhook_secrets.get(target.key)
            requests = [n.webhook_request(target, secret, event, ctx)] if secret else []
            targets.append(_Target(target.key, "webhook", requests))
        return targets

    def _context(self, stack: Stack, release: Release) -> n.Context:
        sha = release.sha or str((release.build or {}).get("resolved_sha") or "")
        return n.Context(
            stack_name=stack.name,
            full_name=stack.repository.full_name,
            sha=sha,
            ref=release.ref,
            message=release.message,
            author=release.author,
            trigger=release.trigger,
            stages=tuple(release.stages),
            release_url=f"{self._public_url().rstrip('/')}/releases/{release.id}",
        )

    def _deliver(self, stack: Stack, event: Event, target: _Target, attempt: int, first_at: str) -> str:
        now = self._clock()
        delivery = n.delivery_id(event, target.key)

        def record(outcome: str, status: int | None, error: str | None, ms: int, delay: int | None = None) -> None:
            self._deliveries.record(
                DeliveryAttempt(
                    stack_id=stack.id,
                    delivery_id=delivery,
                    event_id=event.id,
                    event=event.type,
                    release_id=event.release_id,
                    stage=event.stage,
                    target=target.key,
                    target_type=target.type,
                    attempt=attempt,
                    outcome=outcome,
                    at=now,
                    status_code=status,
                    error=error,
                    duration_ms=ms,
                    next_attempt_in_seconds=delay,
                )
            )

        if not target.requests:
            record("failed", None, "no token or secret is stored for this target", 0)
            self._metrics.count("NotificationFailed")
            return f"{target.key}: no secret"
        status: int | None = None
        error: str | None = None
        retry_after: str | None = None
        elapsed = 0
        delivered = False
        for request in target.requests:
            result = self._sender.send(request)
            status, error, retry_after = result.status, result.error, result.retry_after
            elapsed += result.duration_ms
            delivered = status is not None and 200 <= status < 300
            if n.unchanged(target.type, status, result.body):
                delivered, error = True, "the commit already has that state"
            if not delivered:
                break
        if delivered:
            record("delivered", status, error, elapsed)
            self._metrics.count("NotificationDelivered")
            return f"{target.key}: delivered"
        error = error or f"HTTP {status}"
        message = {"event": event.to_dict(), "target": target.key, "attempt": attempt + 1, "first_at": first_at}
        delay = n.retry_delay(attempt, n.retry_after_seconds(retry_after), self._base_delay)
        deadline = parse_iso(first_at) + timedelta(seconds=self._give_up)
        if n.retryable(status) and parse_iso(now) + timedelta(seconds=delay) <= deadline:
            self._queue.retry(message, delay)
            record("retrying", status, error, elapsed, delay)
            self._metrics.count("NotificationRetried")
            return f"{target.key}: retry in {delay} s"
        self._queue.dead_letter({**message, "attempt": attempt, "error": error, "status_code": status})
        record("failed", status, error, elapsed)
        self._metrics.count("NotificationFailed")
        return f"{target.key}: gave up ({error})"


class NotificationQueries:
    """Recent delivery attempts of a stack."""

    def __init__(self, stacks: StackRepository, deliveries: DeliveryLog) -> None:
        self._stacks = stacks
        self._deliveries = deliveries

    def recent(self, stack_id: str, limit: str | None, next_token: str | None) -> dict[str, Any]:
        """A page of the stack's delivery attempts, newest first."""
        size, token = parse_limit(limit), parse_next_token(next_token)
        if not is_stack_id(stack_id) or self._stacks.get(stack_id) is None:
            raise NotFoundError(f"stack {stack_id!r} does not exist")
        page = self._deliveries.recent(stack_id, size, token)
        return {"deliveries": [a.to_dict() for a in page.items], "next_token": page.next_token}
