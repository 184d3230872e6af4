"""Notification adapters: the SQS queue and its dead-letter queue, urllib HTTP, delivery and audit items."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

from chalicelib.domain.clock import parse_iso
from chalicelib.domain.notifications import Event, OutboundRequest
from chalicelib.services.ports import AuditEntry, DeliveryAttempt, HttpResult, Page

from .models import AuditModel, DeliveryModel
from .pagination import decode_token, encode_token

DELIVERY_TTL_SECONDS = 14 * 24 * 3600
SQS_BATCH = 10


class SqsNotificationQueue:
    """EventPublisher and NotificationQueue on the ``stagecoach-notifications`` queue and its DLQ."""

    def __init__(self, client: Callable[[], Any], queue_url: Callable[[], str], dlq_url: Callable[[], str]) -> None:
        self._client = client
        self._queue_url = queue_url
        self._dlq_url = dlq_url

    def publish(self, events: Sequence[Event]) -> None:
        """One message per event (SendMessageBatch, 10 at a time); raises if any was not enqueued."""
        url = self._queue_url()
        if not url:
            return  # notifications are not configured in this deployment
        items = list(events)
        for start in range(0, len(items), SQS_BATCH):
            chunk = items[start : start + SQS_BATCH]
            entries = [{"Id": str(i), "MessageBody": json.dumps({"event": e.to_dict()})} for i, e in enumerate(chunk)]
            answer = self._client().send_message_batch(QueueUrl=url, Entries=entries)
            if answer.get("Failed"):
                raise RuntimeError(f"SQS refused {len(answer['Failed'])} notification event(s): {answer['Failed']}")

    def retry(self, message: dict[str, Any], delay_seconds: int) -> None:
        """The message again, after ``delay_seconds``."""
        self._client().send_message(
            QueueUrl=self._queue_url(), MessageBody=json.dumps(message), DelaySeconds=min(900, max(0, delay_seconds))
        )

    def dead_letter(self, message: dict[str, Any]) -> None:
        """Park the message in the dead-letter queue."""
        self._client().send_message(QueueUrl=self._dlq_url(), MessageBody=json.dumps(message))


class UrllibSender:
    """HttpSender with urllib: short connect/read timeout, no redirects followed, no exceptions."""

    def __init__(self, timeout_seconds: float = 5.0) -> None:
        self._timeout = timeout_seconds

    def send(self, request: OutboundRequest) -> HttpResult:
        """POST the request; the status, ``Retry-After`` and a short error."""
        outbound = urllib.request.Request(
            request.url, data=request.body, method=request.method, headers=request.headers
        )
        opener = urllib.request.build_opener(_NoRedirect)
        started = time.monotonic()

        def took() -> int:
            return int((time.monotonic() - started) * 1000)

        try:
            with opener.open(outbound, timeout=self._timeout) as response:
                response.read(65536)
                return HttpResult(response.status, response.headers.get("Retry-After"), None, took())
        except urllib.error.HTTPError as error:
            answer = b""
            with contextlib.suppress(Exception):
                answer = error.read(65536)
            retry_after = error.headers.get("Retry-After") if error.headers else None
            text = answer[:1000].decode("utf-8", "replace")
            return HttpResult(error.code, retry_after, f"HTTP {error.code}", took(), text)
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            return HttpResult(None, None, f"{type(error).__name__}: {reason}"[:300], took())


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A receiver's redirect is an answer (3xx), not somewhere to send the token."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _epoch(at: str) -> int:
    return int(parse_iso(at).timestamp())


class DynamoDeliveryLog:
    """Delivery attempts under ``NOTIFY#{stack_id}``, newest first, expiring after 14 days."""

    def record(self, attempt: DeliveryAttempt) -> None:
        """Write one attempt."""
        DeliveryModel(
            pk=f"NOTIFY#{attempt.stack_id}",
            sk=f"{attempt.at}#{attempt.delivery_id}#{attempt.attempt:04d}",
            delivery_id=attempt.delivery_id,
            event_id=attempt.event_id,
            event=attempt.event,
            release_id=attempt.release_id,
            stage=attempt.stage,
            target=attempt.target,
            target_type=attempt.target_type,
            attempt=attempt.attempt,
            outcome=attempt.outcome,
            at=attempt.at,
            status_code=attempt.status_code,
            error=attempt.error,
            duration_ms=attempt.duration_ms,
            next_attempt_in_seconds=attempt.next_attempt_in_seconds,
            expires_at=_epoch(attempt.at) + DELIVERY_TTL_SECONDS,
        ).save()

    def recent(self, stack_id: str, limit: int, next_token: str | None) -> Page:
        """A page of attempts, newest first."""
        pk = f"NOTIFY#{stack_id}"
        start = decode_token(next_token, {"pk", "sk"}, {"pk": pk})
        result = DeliveryModel.query(pk, scan_index_forward=False, limit=limit, last_evaluated_key=start)
        items = [
            DeliveryAttempt(
                stack_id=stack_id,
                delivery_id=i.delivery_id,
                event_id=i.event_id,
                event=i.event,
                release_id=i.release_id,
                stage=i.stage,
                target=i.target,
                target_type=i.target_type,
                attempt=int(i.attempt),
                outcome=i.outcome,
                at=i.at,
                status_code=int(i.status_code) if i.status_code is not None else None,
                error=i.error,
                duration_ms=int(i.duration_ms or 0),
                next_attempt_in_seconds=(
                    int(i.next_attempt_in_seconds) if i.next_attempt_in_seconds is not None else None
                ),
            )
            for i in result
        ]
        return Page(items, encode_token(result.last_evaluated_key))


class DynamoAuditLog:
    """Audit entries under ``AUDIT#{stack_id}``, and all of them in ``gsi1`` under ``AUDIT``; no TTL."""

    def append(self, entry: AuditEntry) -> None:
        """Write the entry (a new key every time: never overwrites)."""
        sk = f"{entry.at}#{entry.id}"
        AuditModel(
            pk=f"AUDIT#{entry.stack_id}",
            sk=sk,
            gsi1pk="AUDIT",
            gsi1sk=sk,
            id=entry.id,
            at=entry.at,
            actor=entry.actor,
            action=entry.action,
            target=entry.target,
            stack_id=entry.stack_id,
            detail_json=json.dumps(entry.detail, separators=(",", ":")),
        ).save(condition=AuditModel.pk.does_not_exist())

    def for_stack(self, stack_id: str, limit: int, next_token: str | None) -> Page:
        """A stack's entries, newest first."""
        pk = f"AUDIT#{stack_id}"
        start = decode_token(next_token, {"pk", "sk"}, {"pk": pk})
        result = AuditModel.query(pk, scan_index_forward=False, limit=limit, last_evaluated_key=start)
        return Page([_entry(i) for i in result], encode_token(result.last_evaluated_key))

    def everything(self, limit: int, next_token: str | None) -> Page:
        """Every entry, newest first (``gsi1``)."""
        start = decode_token(next_token, {"pk", "sk", "gsi1pk", "gsi1sk"}, {"gsi1pk": "AUDIT"})
        result = AuditModel.everything.query("AUDIT", scan_index_forward=False, limit=limit, last_evaluated_key=start)
        return Page([_entry(i) for i in result], encode_token(result.last_evaluated_key))


def _entry(item: AuditModel) -> AuditEntry:
    return AuditEntry(
        at=item.at,
        actor=item.actor,
        action=item.action,
        target=item.target,
        stack_id=item.stack_id,
        detail=json.loads(item.detail_json) if item.detail_json else {},
        id=item.id,
    )
