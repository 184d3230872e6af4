"""Use cases that create and start releases: webhooks, manual starts and the PENDING sweeper."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ..domain import notifications as notify
from ..domain import webhooks
from ..domain.clock import iso, parse_iso
from ..domain.errors import NotFoundError, UnauthorizedError, ValidationError
from ..domain.limits import MAX_KEY_CHARS
from ..domain.releases import (
    PipelineConfig,
    Release,
    continuation,
    delivery_key,
    manual_ref,
    new_release,
    push_key,
)
from ..domain.stacks import Stack, is_stack_id
from .audit import Auditor, audit
from .notifications import emit
from .ports import EventPublisher, Executions, Metrics, ReleaseRepository, SecretStore, StackRepository

log = logging.getLogger(__name__)
SWEEP_AGE = timedelta(minutes=1)


@dataclass(frozen=True)
class Outcome:
    """What a delivery or manual start led to: an HTTP status and a JSON body."""

    status: int
    body: dict[str, Any]


class ReleaseStarter:
    """Turns pushes into releases (exactly one per pushed commit) and starts their executions."""

    def __init__(
        self,
        stacks: StackRepository,
        releases: ReleaseRepository,
        executions: Executions,
        secrets: SecretStore,
        config: Callable[[], PipelineConfig],
        clock: Callable[[], str],
        new_id: Callable[[], str],
        metrics: Metrics,
        events: EventPublisher | None = None,
        auditor: Auditor | None = None,
    ) -> None:
        self._stacks = stacks
        self._releases = releases
        self._executions = executions
        self._secrets = secrets
        self._config = config
        self._clock = clock
        self._new_id = new_id
        self._metrics = metrics
        self._events = events
        self._auditor = auditor

    # ------------------------------------------------------------------ webhooks

    def receive(self, provider: str, stack_id: str, headers: Mapping[str, str], body: bytes) -> Outcome:
        """Verify, parse and act on one provider delivery."""
        headers = {k.lower(): v for k, v in headers.items()}
        stack = self._stack(stack_id)
        self._verify(provider, stack_id, headers, body)
        payload = webhooks.read_body(provider, headers.get("content-type"), body)
        delivery = webhooks.parse_delivery(provider, headers, payload)
        if delivery.kind == "ping":
            self._stacks.mark_hook_verified(stack_id, self._clock())
            return Outcome(200, {"ok": True, "hook_verified": True})
        outcome = self._act_on(stack, delivery)
        if stack.hook_verified_at is None:  # once: a warm push stays at three AWS calls
            self._mark_verified_after_delivery(stack_id)
        return outcome

    def _mark_verified_after_delivery(self, stack_id: str) -> None:
        """A signed delivery proves the hook works as much as a ping; never fail the delivery for it."""
        try:
            self._stacks.mark_hook_verified(stack_id, self._clock())
        except Exception:
            log.exception("could not mark the webhook of stack %s verified", stack_id)

    def _act_on(self, stack: Stack, delivery: webhooks.Delivery) -> Outcome:
        """Releases for the pushes of a verified delivery (or why it starts none)."""
        if delivery.kind != "push":
            self._metrics.count("WebhookIgnored")
            return Outcome(202, {"ignored": f"event {delivery.event!r} does not start releases"})
        results = []
        reasons = []
        for push in delivery.pushes:
            reason = self._why_ignored(stack, push)
            if reason:
                reasons.append(reason)
                continue
            keys = [push_key(stack, push.ref, push.sha)]
            if delivery.delivery_id:
                keys.append(delivery_key(delivery.provider, delivery.delivery_id, push.ref))
            results.append(self._create_and_start(stack, keys, push=push))
        if not results:
            self._metrics.count("WebhookIgnored")
            return Outcome(202, {"ignored": "; ".join(reasons) or "no ref changes in the delivery"})
        return _combine(results)

    def _verify(self, provider: str, stack_id: str, headers: Mapping[str, str], body: bytes) -> None:
        if webhooks.verify_signature(provider, headers, body, self._secrets.secrets(stack_id)):
            return
        # A cached secret must never make a freshly rotated one fail: read again once.
        if webhooks.verify_signature(provider, headers, body, self._secrets.secrets(stack_id, fresh=True)):
            return
        self._metrics.count("WebhookUnauthorized")
        raise UnauthorizedError("the webhook signature or token is missing or does not match this stack's secret")

    @staticmethod
    def _why_ignored(stack: Stack, push: webhooks.Push) -> str | None:
        if push.deleted:
            return f"{push.ref} was deleted"
        if push.repository.lower() != stack.repository.full_name.lower():
            return f"repository {push.repository!r} is not this stack's ({stack.repository.full_name!r})"
        if not webhooks.ref_matches(push.ref, stack.branches, stack.tags):
            return f"{push.ref} matches none of the stack's branches or tags"
        return None

    # ------------------------------------------------------------------ manual

    def start_manual(self, stack_id: str, body: Any, idempotency_key: str | None, actor: str = "") -> Outcome:
        """``POST /stacks/{id}/releases``: a release of a ref or sha through the same path."""
        ref, sha = manual_ref(body)
        if idempotency_key is not None and not is_idempotency_key(idempotency_key):
            raise ValidationError(f"must be 1 to {MAX_KEY_CHARS} visible ASCII characters", "Idempotency-Key")
        stack = self._stack(stack_id)
        keys = [delivery_key("manual", f"{stack_id}#{stack.uid}#{idempotency_key}")] if idempotency_key else []
        outcome = self._create_and_start(stack, keys, ref=ref, sha=sha)
        if outcome.status == 202:  # a new release (a replayed Idempotency-Key changes nothing)
            target = f"release/{outcome.body.get('release_id')}"
            audit(self._auditor, actor, "release.start", target, stack.id, ref=ref or None, sha=sha or None)
        return outcome

    # ------------------------------------------------------------------ shared path

    def _stack(self, stack_id: str) -> Stack:
        stack = self._stacks.get(stack_id) if is_stack_id(stack_id) else None
        if stack is None:
            raise NotFoundError(f"stack {stack_id!r} does not exist")
        return stack

    def _create_and_start(
        self, stack: Stack, keys: list[str], push: webhooks.Push | None = None, ref: str = "", sha: str = ""
    ) -> Outcome:
        release = new_release(stack, self._new_id(), self._clock(), self._config(), push=push, ref=ref, sha=sha)
        existing_id = self._releases.record(release, keys)
        if existing_id is None:
            self._metrics.count("ReleaseCreated")
            return Outcome(202, self._start(release, stack.notifies))
        self._metrics.count("DuplicateDelivery")
        existing = self._releases.get(existing_id)
        if existing is None:  # the key outlived its release (TTL): nothing to resume
            return Outcome(200, {"release_id": existing_id, "status": "UNKNOWN", "duplicate": True})
        body = self._start(existing, stack.notifies) if existing.status == "PENDING" else _summary(existing)
        return Outcome(200, {**body, "duplicate": True})

    def _start(self, release: Release, notifies: bool = True) -> dict[str, Any]:
        """Start the execution of a PENDING release; a failure leaves it PENDING for a retry. ``release.started``
        is published when the stack ``notifies`` (a push to a stack without targets makes no extra AWS call; the
        sweeper, which has no stack at hand, always publishes: the worker finds no target)."""
        try:
            self._executions.start(release.execution_name, release.input_json)
        except Exception:
            self._metrics.count("ExecutionStartFailed")
            log.exception("StartExecution failed; release %s stays PENDING for the sweeper", release.id)
        else:
            if notifies:
                emit(self._events, [notify.release_started(release.stack_id, release.id, self._clock())])
        return _summary(release)

    def resume(self, release: Release) -> str:
        """Start a new execution for a RUNNING release whose execution was lost (a restarted emulator)."""
        moved = continuation(release, self._config().state_machine_arn)
        if not self._releases.switch_execution(release.id, release.execution_arn, moved):
            return release.execution_arn  # someone else resumed it first
        self._executions.start(moved.execution_name, moved.input_json)
        return moved.execution_arn

    def sweep(self) -> list[str]:
        """Start every release still PENDING a minute after it was received; returns their ids."""
        cutoff = iso(parse_iso(self._clock()) - SWEEP_AGE)
        started = []
        for release_id in self._releases.pending_before(cutoff, limit=100):
            release = self._releases.get(release_id)
            if release is not None and release.status == "PENDING":
                self._start(release)
                started.append(release_id)
        if started:
            self._metrics.count("PendingReleasesSwept", len(started))
        return started


def is_idempotency_key(value: str) -> bool:
    """An ``Idempotency-Key`` header we can keep: 1 to MAX_KEY_CHARS visible ASCII characters."""
    return 0 < len(value) <= MAX_KEY_CHARS and all("!" <= c <= "~" for c in value)


def _summary(release: Release) -> dict[str, Any]:
    return {"release_id": release.id, "status": release.status, "execution_arn": release.execution_arn}


def _combine(results: list[Outcome]) -> Outcome:
    if len(results) == 1:
        return results[0]
    status = 202 if any(r.status == 202 for r in results) else 200
    first = results[0].body
    return Outcome(status, {**first, "releases": [r.body for r in results]})
