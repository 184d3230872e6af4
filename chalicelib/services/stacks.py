"""Use cases on stacks and stages."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..domain import lanes
from ..domain import stacks as domain
from ..domain.errors import ConflictError, NotFoundError, ValidationError
from ..domain.releases import STAGE_TERMINAL, Release, flat_outputs
from ..domain.stacks import Stack
from .ports import (
    CloneCredentialStore,
    LaneStore,
    NotificationSecrets,
    Page,
    ReleaseRepository,
    SecretStore,
    StackRepository,
    StageState,
)

if TYPE_CHECKING:
    from .audit import Auditor

MAX_PAGE = 100
MAX_TOKEN_CHARS = 2048
ROTATION_GRACE_SECONDS = 3600


class ReleaseCanceller(Protocol):
    """Cancels a release (the reconciler)."""

    def cancel(self, release_id: str, body: Any, actor: str) -> dict[str, Any]:
        """Stop the release; it ends CANCELLED."""


def _current(deployed: lanes.Deployed | None) -> dict[str, Any] | None:
    if deployed is None:
        return None
    return {
        "release_id": deployed.release_id,
        "sha": deployed.sha,
        "message": deployed.message,
        "deployed_at": deployed.deployed_at,
    }


def stack_view(stack: Stack, states: dict[str, StageState] | None = None) -> dict[str, Any]:
    """The JSON form of a stack, stages in release order with their runtime state (the pipeline view)."""
    states = states or {}
    stages = []
    for position, stage in enumerate(stack.stages):
        state = states.get(stage.name, StageState(lanes.Lane(stack.id, stage.name)))
        holder = state.lane.holder
        stages.append(
            {
                **stage.to_dict(),
                "position": position,
                "status": state.status,
                "locked_by": holder.release_id if holder else None,
                "waiting": [w.release_id for w in state.lane.waiters],
                "current_release": _current(state.lane.deployed),
                "outputs": flat_outputs(state.outputs),
                "awaiting_approval": holder.release_id if holder and holder.phase == lanes.AWAITING_APPROVAL else None,
                "pin": None if state.lane.pin is None else dataclasses.asdict(state.lane.pin),
                "previous_releases": [_current(d) for d in state.lane.history[:5]],
            }
        )
    return {
        "id": stack.id,
        "name": stack.name,
        "execution_mode": stack.execution_mode,
        "repository": stack.repository.to_dict(),
        "branches": list(stack.branches),
        "tags": list(stack.tags),
        "template_path": stack.template_path,
        "buildspec_path": stack.buildspec_path,
        "stages": stages,
        "webhook": {"verified_at": stack.hook_verified_at, "urls": webhook_urls(stack.id)},
        "commit_status": stack.commit_status.to_dict() if stack.commit_status else None,
        "notifications": [t.to_dict() for t in stack.notifications],
        "created_at": stack.created_at,
        "updated_at": stack.updated_at,
        "version": stack.version,
    }


def parse_limit(raw: str | None) -> int:
    """The ``limit`` query parameter: 1..100, default 25."""
    if raw is None:
        return 25
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 3) or not 1 <= int(raw) <= MAX_PAGE:
        raise ValidationError(f"must be an integer from 1 to {MAX_PAGE}", "limit")
    return int(raw)


def parse_next_token(raw: str | None) -> str | None:
    """The ``next_token`` query parameter: a token a listing returned (checked further by the repository)."""
    if raw is None:
        return None
    if not raw or len(raw) > MAX_TOKEN_CHARS or not all("!" <= c <= "~" for c in raw):
        raise ValidationError("is not a token this API returned", "next_token")
    return raw


class StackService:
    """Create, read, change and delete stacks and their stages."""

    def __init__(
        self,
        stacks: StackRepository,
        secrets: SecretStore,
        credentials: CloneCredentialStore,
        lanes_store: LaneStore,
        releases: ReleaseRepository,
        clock: Callable[[], str],
        new_id: Callable[[str], str],
        canceller: Callable[[], ReleaseCanceller] | None = None,
        notification_secrets: NotificationSecrets | None = None,
        auditor: Auditor | None = None,
    ) -> None:
        self._stacks = stacks
        self._secrets = secrets
        self._credentials = credentials
        self._lanes = lanes_store
        self._releases = releases
        self._clock = clock
        self._new_id = new_id
        self._canceller = canceller
        self._notification_secrets = notification_secrets
        self._auditor = auditor

    def _audit(self, actor: str, action: str, target: str, stack_id: str, **detail: Any) -> None:
        if self._auditor is not None:
            self._auditor.record(actor, action, target, stack_id, **detail)

    def load(self, stack_id: str) -> Stack:
        """The stack or NotFoundError."""
        stack = self._stacks.get(stack_id) if domain.is_stack_id(stack_id) else None
        if stack is None:
            raise NotFoundError(f"stack {stack_id!r} does not exist")
        return stack

    def create(self, body: Any, actor: str = "") -> dict[str, Any]:
        """Validate and store a new stack, its webhook secret, clone credentials, commit-status token and
        webhook secrets; the only response showing the webhook secret (the others are never shown)."""
        stack = domain.parse_new_stack(body, self._clock(), uid=self._new_id("s"))
        self._stacks.create(stack)
        secret = None
        try:
            secret = self._secrets.create(stack.id)
            self._store_credentials(stack, None)
            self._store_notification_secrets(stack, None)
        except Exception:
            self._stacks.delete(stack.id, expected_version=stack.version)
            if secret is not None:
                self._secrets.delete(stack.id)
            raise
        self._audit(actor, "stack.create", f"stack/{stack.id}", stack.id, stages=[s.name for s in stack.stages])
        return _with_secret(stack_view(stack), secret)

    def _store_notification_secrets(self, stack: Stack, previous: Stack | None) -> None:
        """Keep the commit-status token and webhook secrets the stack now has (*** keeps a stored one)."""
        store = self._notification_secrets
        if store is None:
            return
        if previous is None and stack.commit_status is None and not stack.notifications:
            return
        if previous is not None and (
            stack.commit_status is previous.commit_status and stack.notifications is previous.notifications
        ):
            return
        stored = store.read(stack.id) if previous is not None else {}
        token = None
        if stack.commit_status is not None:
            token = stack.commit_status.token or stored.get("commit_status_token")
        kept: dict[str, str] = stored.get("webhooks") or {}
        webhooks = {
            t.key: secret
            for t in stack.notifications
            if t.type == "webhook" and (secret := t.secret or kept.get(t.key))
        }
        store.write(stack.id, {"commit_status_token": token, "webhooks": webhooks})

    def _store_credentials(self, stack: Stack, previous: domain.Repository | None) -> None:
        """Store the credentials the request gave; forget stored ones the new URL no longer stands for."""
        repository = stack.repository
        if repository.credentials is not None:
            self._credentials.put(stack.id, repository.provider, repository.clone_url, repository.credentials)
        elif previous is not None and previous.has_stored_credentials and not repository.has_stored_credentials:
            self._credentials.delete(stack.id)

    def rotate_webhook_secret(
        self, stack_id: str, grace_seconds: int = ROTATION_GRACE_SECONDS, actor: str = ""
    ) -> dict[str, Any]:
        """A new webhook secret, shown once; the previous one verifies for ``grace_seconds``."""
        stack = self.load(stack_id)
        secret = self._secrets.rotate(stack.id, grace_seconds)
        self._audit(actor, "webhook.rotate", f"stack/{stack.id}", stack.id)
        return {
            "stack_id": stack.id,
            "secret": secret,
            "previous_valid_for_seconds": grace_seconds,
            "urls": webhook_urls(stack.id),
        }

    def show(self, stack_id: str) -> dict[str, Any]:
        """A stack with the runtime state of its stages."""
        stack = self.load(stack_id)
        return stack_view(stack, self._lanes.states(stack_id))

    def list(self, limit: str | None, next_token: str | None) -> dict[str, Any]:
        """A page of stacks, each stage with its runtime state (status, current release, lock)."""
        page: Page = self._stacks.list(parse_limit(limit), parse_next_token(next_token))
        states = self._lanes.states_of(page.items) if page.items else {}
        return {"stacks": [stack_view(s, states.get(s.id)) for s in page.items], "next_token": page.next_token}

    def _change(
        self, stack_id: str, change: Callable[[Stack], Stack], audit: tuple[str, str, str, dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        stack = self.load(stack_id)
        changed = change(stack)
        self._stacks.save(changed, expected_version=stack.version)
        if changed.repository is not stack.repository:
            self._store_credentials(changed, stack.repository)
        self._store_notification_secrets(changed, stack)
        if audit is not None:
            actor, action, target, detail = audit
            self._audit(actor, action, target, stack.id, version=changed.version, **detail)
        return self.show(stack_id)

    def patch(self, stack_id: str, body: Any, actor: str = "") -> dict[str, Any]:
        """Change stack settings (optimistic on ``version``)."""
        fields = sorted(k for k in body if k != "version") if isinstance(body, dict) else []
        audit = (actor, "stack.update", f"stack/{stack_id}", {"fields": fields})
        return self._change(stack_id, lambda s: domain.patch_stack(s, body, self._clock()), audit)

    def add_stage(self, stack_id: str, body: Any, actor: str = "") -> dict[str, Any]:
        """Insert a stage."""
        name = body.get("name") if isinstance(body, dict) else None
        audit: tuple[str, str, str, dict[str, Any]] = (actor, "stage.create", f"stack/{stack_id}/stage/{name}", {})
        return self._change(stack_id, lambda s: domain.add_stage(s, body, self._clock()), audit)

    def update_stage(self, stack_id: str, name: str, body: Any, actor: str = "") -> dict[str, Any]:
        """Change or move a stage."""
        fields = sorted(k for k in body if k != "version") if isinstance(body, dict) else []
        audit = (actor, "stage.update", f"stack/{stack_id}/stage/{name}", {"fields": fields})
        return self._change(stack_id, lambda s: domain.update_stage(s, name, body, self._clock()), audit)

    def remove_stage(self, stack_id: str, name: str, body: Any, force: bool = False, actor: str = "") -> dict[str, Any]:
        """Remove a stage (never the last one); releases still to deploy it block it unless ``force``."""
        stack = self.load(stack_id)
        domain.remove_stage(stack, name, body, self._clock())  # validate before cancelling anything
        self._clear_way(stack, force, actor, f"remove stage {name!r} of", stage=name)
        audit = (actor, "stage.delete", f"stack/{stack_id}/stage/{name}", {"force": force or None})
        return self._change(stack_id, lambda s: domain.remove_stage(s, name, body, self._clock()), audit)

    def delete(self, stack_id: str, force: bool = False, actor: str = "") -> None:
        """Delete a stack; releases in flight block it unless ``force``, which cancels them first."""
        stack = self.load(stack_id)
        self._clear_way(stack, force, actor, "delete stack")
        self._stacks.delete(stack_id, expected_version=stack.version)
        self._secrets.delete(stack_id)
        if stack.repository.has_stored_credentials:
            self._credentials.delete(stack_id)
        if self._notification_secrets is not None and (stack.commit_status or stack.notifications):
            self._notification_secrets.delete(stack_id)
        self._audit(actor, "stack.delete", f"stack/{stack_id}", stack_id, force=force or None)

    def _clear_way(self, stack: Stack, force: bool, actor: str, what: str, stage: str | None = None) -> None:
        """Releases in flight (for ``stage``: that still have it to deploy) → 409, or cancelled with ``force``."""
        blocking = [r for r in self._releases.in_flight(stack.uid) if not r.terminal and self._concerns(r, stage)]
        if not blocking:
            return
        ids = ", ".join(r.id for r in blocking)
        if not force or self._canceller is None:
            raise ConflictError(
                f"cannot {what} {stack.id!r}: release(s) {ids} in flight; wait for them, cancel them, "
                "or repeat with ?force=true to cancel them"
            )
        canceller = self._canceller()
        for release in blocking:
            try:
                canceller.cancel(release.id, {"reason": f"forced: {what} {stack.id}"}, actor or "stagecoach")
            except ConflictError:
                continue  # it ended meanwhile

    def _concerns(self, release: Release, stage: str | None) -> bool:
        if stage is None:
            return True
        if stage not in release.stages:
            return False
        run = self._releases.stage_run(release.id, stage)
        return run is None or run.status not in STAGE_TERMINAL


def webhook_urls(stack_id: str) -> dict[str, str]:
    """Paths to give each Git provider."""
    return {p: f"/webhooks/{p}/{stack_id}" for p in ("github", "gitlab", "bitbucket")}


def _with_secret(view: dict[str, Any], secret: str) -> dict[str, Any]:
    view["webhook"] = {**view["webhook"], "secret": secret, "urls": webhook_urls(view["id"])}
    return view
