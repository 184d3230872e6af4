"""DORA metrics of a stack's stage: reads the window's releases (bounded) and their runs of that stage."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from ..domain.clock import iso, parse_iso
from ..domain.errors import NotFoundError
from ..domain.metrics import LOOKBACK_DAYS, MAX_RELEASES, Deploy, deploy_of, dora_metrics, parse_days
from ..domain.stacks import is_stack_id
from .ports import ReleaseRepository, StackRepository

PAGE = 100


class DoraMetrics:
    """The four keys per stack and stage."""

    def __init__(self, stacks: StackRepository, releases: ReleaseRepository, clock: Callable[[], str]) -> None:
        self._stacks = stacks
        self._releases = releases
        self._clock = clock

    def for_stage(self, stack_id: str, stage: str | None, days_raw: str | None) -> dict[str, Any]:
        """``GET /stacks/{id}/metrics``: the stage (default the last one) over the last ``days`` days."""
        days = parse_days(days_raw)
        stack = self._stacks.get(stack_id) if is_stack_id(stack_id) else None
        if stack is None:
            raise NotFoundError(f"stack {stack_id!r} does not exist")
        name = stage if stage is not None else stack.stages[-1].name
        stack.stage(name)  # NotFoundError when the stack has no such stage
        now = parse_iso(self._clock())
        oldest = iso(now - timedelta(days=days + LOOKBACK_DAYS))
        deploys, read, truncated = self._deploys(stack_id, stack.uid, name, oldest)
        body = dora_metrics(deploys, now, days)
        return {"stack_id": stack_id, "stage": name, **body, "releases_read": read, "truncated": truncated}

    def _deploys(self, stack_id: str, stack_uid: str, stage: str, oldest: str) -> tuple[list[Deploy], int, bool]:
        """Deploys of ``stage`` by releases received since ``oldest``, newest first, at most MAX_RELEASES."""
        deploys: list[Deploy] = []
        read = 0
        token: str | None = None
        while True:
            page = self._releases.list_for_stack(stack_id, PAGE, token, None, None, stack_uid)
            fresh = [r for r in page.items if r.received_at >= oldest]
            read += len(fresh)
            ours = [r for r in fresh if stage in r.stages]
            runs = self._releases.stage_runs([r.id for r in ours], stage) if ours else {}
            for release in ours:
                deploy = deploy_of(release, runs.get(release.id))
                if deploy is not None:
                    deploys.append(deploy)
            if len(fresh) < len(page.items) or not page.next_token:
                return deploys, read, False
            if read >= MAX_RELEASES:
                return deploys, read, True
            token = page.next_token
