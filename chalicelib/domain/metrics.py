"""DORA's four keys of one stage of a stack over a window of days (definitions in docs/design.md).

Pure functions over deploys (stage runs of the chosen stage, from releases of every trigger) with the
window's end passed in, so that tests fix the clock. Performance levels follow the buckets of Google's
Four Keys project (dora-team/fourkeys, METRICS.md, from the 2019 State of DevOps Report).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from .clock import iso, parse_iso
from .errors import ValidationError

MIN_DAYS, MAX_DAYS, DEFAULT_DAYS = 1, 365, 30
# Releases received this long before the window can still deploy inside it (approvals wait for days).
LOOKBACK_DAYS = 7
# At most this many releases are read for one answer (newest first); older ones are left out and said so.
MAX_RELEASES = 1000
HOUR = 3600.0
DAY = 24 * HOUR
WEEK = 7 * DAY
MONTH = 730 * HOUR  # Four Keys' month: 730 hours
LEVELS = ("elite", "high", "medium", "low")
# An approval that said no: the stage never deployed, so the run is no deploy at all.
REJECTED = "rejected"


@dataclass(frozen=True)
class Deploy:
    """One finished deploy of the stage: a stage run that ended SUCCEEDED or FAILED."""

    release_id: str
    trigger: str  # webhook, manual, promote, redeploy, rollback
    succeeded: bool
    ended_at: datetime
    committed_at: datetime  # the commit's time (``pushed_at``: the pushed head commit's timestamp), else received


def parse_days(raw: str | None) -> int:
    """The ``days`` query parameter: an integer from 1 to 365 (absent: 30)."""
    if raw is None:
        return DEFAULT_DAYS
    if not raw.isascii() or not raw.isdigit() or not MIN_DAYS <= int(raw) <= MAX_DAYS:
        raise ValidationError(f"must be a whole number of days from {MIN_DAYS} to {MAX_DAYS}", "days")
    return int(raw)


def deploy_of(release: Any, run: Any) -> Deploy | None:
    """The deploy a release's stage run made, or None (not finished, skipped, rejected at the approval gate)."""
    if run is None or run.status not in ("SUCCEEDED", "FAILED") or not run.ended_at:
        return None
    if (run.approval or {}).get("decision") == REJECTED:
        return None
    committed = release.pushed_at or release.received_at
    try:
        committed_at = parse_iso(committed)
    except ValueError:
        committed_at = parse_iso(release.received_at)
    return Deploy(
        release_id=release.id,
        trigger=release.trigger,
        succeeded=run.status == "SUCCEEDED",
        ended_at=parse_iso(run.ended_at),
        committed_at=committed_at,
    )


def failed_changes(deploys: list[Deploy]) -> set[str]:
    """Release ids of the change deploys that failed: those that FAILED, and the last successful change
    deploy before each rollback (the deploy that the rollback undid)."""
    failed: set[str] = set()
    last_good: Deploy | None = None
    for deploy in sorted(deploys, key=lambda d: d.ended_at):
        if deploy.trigger == "rollback":
            if last_good is not None:
                failed.add(last_good.release_id)
                last_good = None
            continue
        if not deploy.succeeded:
            failed.add(deploy.release_id)
            last_good = None
        else:
            last_good = deploy
    return failed


def restore_times(deploys: list[Deploy], failed: set[str]) -> tuple[list[tuple[datetime, float]], bool]:
    """Each restore ``(when, seconds)``: from the first failed deploy after a healthy state to the next
    successful deploy that did not fail itself (a rollback included); and whether a failure is still open."""
    restores: list[tuple[datetime, float]] = []
    broken_since: datetime | None = None
    for deploy in sorted(deploys, key=lambda d: d.ended_at):
        if deploy.release_id in failed:
            broken_since = broken_since or deploy.ended_at
        elif deploy.succeeded and broken_since is not None:
            restores.append((deploy.ended_at, (deploy.ended_at - broken_since).total_seconds()))
            broken_since = None
    return restores, broken_since is not None


def frequency_level(deploy_days: set[date], start: date, days: int) -> tuple[str, str | None]:
    """Four Keys' deployment frequency bucket and level from the days that had a successful deploy.

    Daily (elite): the median week has 3 or more days with deploys. Weekly (high): the median week has
    one. Monthly (medium): the median 30-day month has one. Yearly (low): otherwise.
    """
    if not deploy_days:
        return "none", None
    per_week = [0] * max(1, -(-days // 7))
    per_month = [0] * max(1, -(-days // 30))
    for day in deploy_days:
        offset = min(max((day - start).days, 0), days - 1)
        per_week[min(offset // 7, len(per_week) - 1)] += 1
        per_month[min(offset // 30, len(per_month) - 1)] += 1
    if statistics.median(per_week) >= 3:
        return "daily", "elite"
    if statistics.median([1 if n else 0 for n in per_week]) >= 1:
        return "weekly", "high"
    if statistics.median(per_month) >= 1:
        return "monthly", "medium"
    return "yearly", "low"


def duration_level(seconds: float | None, elite: float, high: float, medium: float) -> str | None:
    """elite/high/medium/low for a median duration below each threshold (None without data)."""
    if seconds is None:
        return None
    for level, limit in zip(LEVELS, (elite, high, medium), strict=False):
        if seconds < limit:
            return level
    return "low"


def failure_level(rate: float | None) -> str | None:
    """Change failure rate level: ≤ 15 % elite, ≤ 30 % high, ≤ 45 % medium, else low."""
    if rate is None:
        return None
    if rate <= 0.15:
        return "elite"
    if rate <= 0.30:
        return "high"
    if rate <= 0.45:
        return "medium"
    return "low"


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def dora_metrics(deploys: list[Deploy], now: datetime, days: int) -> dict[str, Any]:
    """The four keys over ``[now - days, now]`` from every deploy known (those before the window count as
    history: a rollback in the window marks a change deployed before it as failed, and restores need the
    failure that started them)."""
    start = now - timedelta(days=days)
    failed = failed_changes(deploys)
    in_window = [d for d in deploys if start <= d.ended_at <= now]
    changes = [d for d in in_window if d.trigger != "rollback"]
    successful = [d for d in changes if d.succeeded]
    leads = [max(0.0, (d.ended_at - d.committed_at).total_seconds()) for d in successful]
    failures = [d for d in changes if d.release_id in failed]
    restores, still_failing = restore_times(deploys, failed)
    restored = [seconds for when, seconds in restores if start <= when <= now]
    deploy_days = {d.ended_at.date() for d in successful}
    bucket, frequency = frequency_level(deploy_days, start.date(), days)
    rate = round(len(failures) / len(changes), 4) if changes else None
    lead = _median(leads)
    restore = _median(restored)
    daily = []
    for offset in range((now.date() - start.date()).days + 1):
        day = start.date() + timedelta(days=offset)
        daily.append(
            {
                "date": day.isoformat(),
                "deployments": sum(1 for d in successful if d.ended_at.date() == day),
                "failures": sum(1 for d in failures if d.ended_at.date() == day),
            }
        )
    return {
        "window": {"start": iso(start), "end": iso(now), "days": days},
        "deployment_frequency": {
            "deployments": len(successful),
            "per_day": round(len(successful) / days, 3),
            "per_week": round(len(successful) * 7 / days, 3),
            "days_with_deployments": len(deploy_days),
            "bucket": bucket,
            "level": frequency,
        },
        "lead_time": {
            "median_seconds": lead,
            "samples": len(leads),
            "level": duration_level(lead, DAY, WEEK, MONTH),
        },
        "change_failure_rate": {
            "rate": rate,
            "failed": len(failures),
            "deployments": len(changes),
            "level": failure_level(rate),
        },
        "time_to_restore": {
            "median_seconds": restore,
            "samples": len(restored),
            "failing_now": still_failing,
            "level": duration_level(restore, HOUR, DAY, WEEK),
        },
        "daily": daily,
    }
