"""DORA metrics on releases with known times: the domain rules and the service over in-memory fakes."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta

import pytest

from chalicelib.domain.clock import parse_iso
from chalicelib.domain.errors import NotFoundError, ValidationError
from chalicelib.domain.metrics import (
    DAY,
    HOUR,
    Deploy,
    dora_metrics,
    duration_level,
    failed_changes,
    failure_level,
    frequency_level,
    parse_days,
)
from chalicelib.domain.releases import PipelineConfig, Release, new_release
from chalicelib.domain.stacks import parse_new_stack
from chalicelib.services.dora import DoraMetrics
from tests.fakes import FixedClock, InMemoryReleaseRepository, InMemoryStackRepository, stack_body

NOW = parse_iso("2026-11-30T12:00:00Z")
CONFIG = PipelineConfig("arn:aws:states:us-east-1:123456789012:stateMachine:stagecoach-release", "arn:role", 1, 60)


def at(text: str) -> datetime:
    return parse_iso(text)


def deploy(n: int, ended: str, ok: bool = True, trigger: str = "webhook", committed: str | None = None) -> Deploy:
    end = at(ended)
    return Deploy(f"r{n}", trigger, ok, end, at(committed) if committed else end)


def test_parse_days_accepts_1_to_365_and_defaults_to_30() -> None:
    assert parse_days(None) == 30
    assert parse_days("1") == 1
    assert parse_days("365") == 365
    for bad in ("0", "366", "-1", "7.5", "", "abc", "١٢"):
        with pytest.raises(ValidationError) as raised:
            parse_days(bad)
        assert raised.value.field == "days"


def test_no_deploys_gives_no_values_and_no_levels() -> None:
    body = dora_metrics([], NOW, 30)
    assert body["deployment_frequency"]["deployments"] == 0
    assert body["deployment_frequency"]["level"] is None
    assert body["lead_time"] == {"median_seconds": None, "samples": 0, "level": None}
    assert body["change_failure_rate"]["rate"] is None
    assert body["time_to_restore"]["median_seconds"] is None
    assert len(body["daily"]) == 31
    assert body["window"] == {"start": "2026-10-31T12:00:00.000Z", "end": "2026-11-30T12:00:00.000Z", "days": 30}


def test_lead_time_is_the_median_from_commit_to_deployed() -> None:
    deploys = [
        deploy(1, "2026-11-29T10:00:00Z", committed="2026-11-29T09:00:00Z"),  # 1 h
        deploy(2, "2026-11-29T12:00:00Z", committed="2026-11-29T09:00:00Z"),  # 3 h
        deploy(3, "2026-11-29T20:00:00Z", committed="2026-11-28T20:00:00Z"),  # 24 h
    ]
    lead = dora_metrics(deploys, NOW, 30)["lead_time"]
    assert lead == {"median_seconds": 3 * HOUR, "samples": 3, "level": "elite"}


def test_failed_deploys_and_the_deploy_a_rollback_undid_are_failed_changes() -> None:
    deploys = [
        deploy(1, "2026-11-20T10:00:00Z"),
        deploy(2, "2026-11-21T10:00:00Z"),  # undone by the rollback below
        deploy(3, "2026-11-21T11:00:00Z", trigger="rollback"),
        deploy(4, "2026-11-22T10:00:00Z", ok=False),
        deploy(5, "2026-11-22T14:00:00Z"),
    ]
    assert failed_changes(deploys) == {"r2", "r4"}
    body = dora_metrics(deploys, NOW, 30)
    # the rollback is a remedy, not a change: 4 changes, 2 failed
    assert body["change_failure_rate"] == {"rate": 0.5, "failed": 2, "deployments": 4, "level": "low"}
    # r2 out at 10:00, restored by the rollback at 11:00; r4 failed at 10:00, r5 fixed it at 14:00
    assert body["time_to_restore"] == {
        "median_seconds": 2.5 * HOUR,
        "samples": 2,
        "failing_now": False,
        "level": "high",
    }
    assert body["deployment_frequency"]["deployments"] == 3  # r1, r2, r5 succeeded (r2 counts: it was deployed)
    day = {d["date"]: d for d in body["daily"]}
    assert day["2026-11-21"] == {"date": "2026-11-21", "deployments": 1, "failures": 1}
    assert day["2026-11-22"] == {"date": "2026-11-22", "deployments": 1, "failures": 1}


def test_consecutive_failures_are_one_outage_and_an_open_one_is_reported() -> None:
    deploys = [
        deploy(1, "2026-11-25T10:00:00Z", ok=False),
        deploy(2, "2026-11-25T12:00:00Z", ok=False),
        deploy(3, "2026-11-25T13:00:00Z"),
        deploy(4, "2026-11-29T13:00:00Z", ok=False),
    ]
    restore = dora_metrics(deploys, NOW, 30)["time_to_restore"]
    assert restore == {"median_seconds": 3 * HOUR, "samples": 1, "failing_now": True, "level": "high"}


def test_deploys_outside_the_window_are_history_only() -> None:
    deploys = [
        deploy(1, "2026-10-01T10:00:00Z"),  # before the 7-day window
        deploy(2, "2026-11-20T10:00:00Z"),
        deploy(3, "2026-11-24T10:00:00Z", trigger="rollback"),  # undoes r2 (outside the window)
        deploy(4, "2026-11-29T10:00:00Z"),
    ]
    body = dora_metrics(deploys, NOW, 7)
    assert body["deployment_frequency"]["deployments"] == 1
    assert body["change_failure_rate"]["rate"] == 0.0
    # r2 failed before the window; its restore ended inside it and counts
    assert body["time_to_restore"]["samples"] == 1
    assert body["time_to_restore"]["median_seconds"] == 4 * DAY


def test_frequency_buckets_follow_four_keys() -> None:
    start = at("2026-11-02T00:00:00Z").date()

    def days(*offsets: int) -> set[date]:
        return {start + timedelta(days=o) for o in offsets}

    daily = days(*[w * 7 + d for w in range(4) for d in (0, 1, 2)])
    assert frequency_level(daily, start, 28) == ("daily", "elite")
    assert frequency_level(days(0, 8, 15, 22), start, 28) == ("weekly", "high")
    assert frequency_level(days(0, 8), start, 28) == ("monthly", "medium")
    assert frequency_level(days(0), start, 90) == ("yearly", "low")
    assert frequency_level(set(), start, 30) == ("none", None)


def test_duration_and_failure_levels() -> None:
    assert duration_level(DAY - 1, DAY, 7 * DAY, 730 * HOUR) == "elite"
    assert duration_level(DAY, DAY, 7 * DAY, 730 * HOUR) == "high"
    assert duration_level(8 * DAY, DAY, 7 * DAY, 730 * HOUR) == "medium"
    assert duration_level(31 * DAY, DAY, 7 * DAY, 730 * HOUR) == "low"
    assert duration_level(None, DAY, 7 * DAY, 730 * HOUR) is None
    assert [failure_level(r) for r in (0.0, 0.15, 0.16, 0.3, 0.45, 0.46)] == [
        "elite",
        "elite",
        "high",
        "high",
        "medium",
        "low",
    ]


class World:
    def __init__(self, now: str = "2026-11-30T12:00:00.000Z") -> None:
        self.stacks = InMemoryStackRepository()
        self.releases = InMemoryReleaseRepository()
        self.stack = parse_new_stack(stack_body(id="hello"), "2026-11-01T00:00:00.000Z", uid="s1")
        self.stacks.create(self.stack)
        self.service = DoraMetrics(self.stacks, self.releases, FixedClock(now))
        self.n = 0

    def release(self, received: str, pushed: str | None = None, trigger: str = "webhook") -> Release:
        self.n += 1
        release = new_release(self.stack, f"r{'A' * 24}{self.n:02d}", received, CONFIG, sha="a" * 40, ref="main")
        release = replace(release, pushed_at=pushed, trigger=trigger, status="SUCCEEDED")
        self.releases.record(release, [])
        return release

    def ran(self, release: Release, stage: str, status: str, ended: str, decision: str | None = None) -> None:
        fields = {"status": status, "started_at": ended, "ended_at": ended}
        if decision:
            fields["approval"] = {"decision": decision}  # type: ignore[assignment]
        self.releases.write_run(release.id, stage, fields)


def test_the_service_reads_the_last_stage_of_every_trigger_and_ignores_rejections() -> None:
    world = World()
    first = world.release("2026-11-28T09:00:00.000Z", pushed="2026-11-28T08:00:00.000Z")
    world.ran(first, "dev", "SUCCEEDED", "2026-11-28T09:10:00.000Z")
    world.ran(first, "prod", "SUCCEEDED", "2026-11-28T10:00:00.000Z")  # lead time 2 h (from the commit)
    rejected = world.release("2026-11-29T09:00:00.000Z")
    world.ran(rejected, "prod", "FAILED", "2026-11-29T09:30:00.000Z", decision="rejected")
    promoted = world.release("2026-11-29T10:00:00.000Z", trigger="promote")
    world.ran(promoted, "prod", "SUCCEEDED", "2026-11-29T14:00:00.000Z")  # no pushed_at: 4 h from received
    body = world.service.for_stage("hello", None, None)
    assert body["stage"] == "prod"
    assert body["releases_read"] == 3
    assert body["truncated"] is False
    assert body["deployment_frequency"]["deployments"] == 2
    assert body["change_failure_rate"] == {"rate": 0.0, "failed": 0, "deployments": 2, "level": "elite"}
    assert body["lead_time"]["median_seconds"] == 3 * HOUR
    dev = world.service.for_stage("hello", "dev", "7")
    assert dev["deployment_frequency"]["deployments"] == 1
    assert dev["window"]["days"] == 7


def test_the_service_stops_at_releases_older_than_the_window_and_lookback() -> None:
    world = World()
    old = world.release("2026-09-01T09:00:00.000Z")
    world.ran(old, "prod", "SUCCEEDED", "2026-09-01T10:00:00.000Z")
    recent = world.release("2026-11-29T09:00:00.000Z")
    world.ran(recent, "prod", "SUCCEEDED", "2026-11-29T10:00:00.000Z")
    body = world.service.for_stage("hello", "prod", "30")
    assert body["releases_read"] == 1
    assert body["deployment_frequency"]["deployments"] == 1


def test_the_service_refuses_unknown_stacks_stages_and_bad_days() -> None:
    world = World()
    with pytest.raises(NotFoundError):
        world.service.for_stage("nope", None, None)
    with pytest.raises(NotFoundError):
        world.service.for_stage("hello", "staging", None)
    with pytest.raises(ValidationError):
        world.service.for_stage("hello", None, "0")


def test_the_answer_and_the_documented_example_match_the_published_schema() -> None:
    from pathlib import Path

    import yaml

    from tests.unit.test_openapi import validator

    spec = yaml.safe_load((Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml").read_text())
    media = spec["paths"]["/stacks/{stack_id}/metrics"]["get"]["responses"]["200"]["content"]["application/json"]
    check = validator(spec, media["schema"])
    check.validate(media["example"])
    world = World()
    first = world.release("2026-11-28T09:00:00.000Z", pushed="2026-11-28T08:00:00.000Z")
    world.ran(first, "prod", "FAILED", "2026-11-28T10:00:00.000Z")
    check.validate(world.service.for_stage("hello", None, "365"))
    check.validate(World().service.for_stage("hello", "dev", "1"))
