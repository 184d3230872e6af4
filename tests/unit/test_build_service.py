"""BuildService on in-memory fakes: the build event completes the build task and records the resolved sha."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.services.builds import BuildService
from tests.fakes import CountingMetrics, FixedClock, InMemoryBuildRecords, InMemoryCloneCredentials, RecordingCallbacks

NOW = "2026-11-27T12:00:00.000Z"
RESOLVED = "1f" * 20


def build_event(status: str, resolved: str | None, failed_phase: str | None = None) -> dict[str, Any]:
    """The ``detail`` of a CodeBuild Build State Change event of release r1."""
    phases = [{"phase-type": failed_phase, "phase-status": status, "phase-context": ["exit status 1"]}]
    return {
        "build-status": status,
        "build-id": "arn:aws:codebuild:us-east-1:123456789012:build/p:1",
        "additional-information": {
            "environment": {"environment-variables": [{"name": "STAGECOACH_RELEASE", "value": "r1"}]},
            "phases": phases if failed_phase else [],
            "resolved-source-version": resolved,
        },
    }


class UnusedBuilder:
    def start(self, request: Any, credentials: Any) -> str:
        raise AssertionError("finish() starts no build")


def service(records: InMemoryBuildRecords, callbacks: RecordingCallbacks) -> BuildService:
    return BuildService(
        UnusedBuilder(),
        records,
        callbacks,
        InMemoryCloneCredentials(),
        lambda: "artifacts",
        lambda: "us-east-1",
        FixedClock(NOW),
        CountingMetrics(),
    )


@pytest.mark.parametrize(("status", "failed_phase"), [("SUCCEEDED", None), ("FAILED", "BUILD")])
def test_a_release_by_ref_gets_the_sha_its_build_resolved(status: str, failed_phase: str | None) -> None:
    records, callbacks = InMemoryBuildRecords(shas={"r1": ""}), RecordingCallbacks()
    records.put_build_token("r1", "token-1", "hello/r1/build/template.yaml")

    done = service(records, callbacks).finish(build_event(status, RESOLVED, failed_phase))

    assert done == status.lower()
    assert records.shas["r1"] == RESOLVED
    assert records.builds["r1"]["resolved_sha"] == RESOLVED
    if status == "SUCCEEDED":
        assert callbacks.succeeded["token-1"]["resolved_sha"] == RESOLVED
    else:
        assert callbacks.failed["token-1"][0] == "BuildFailed"


def test_a_release_of_a_pushed_sha_keeps_it() -> None:
    pushed = "ab" * 20
    records, callbacks = InMemoryBuildRecords(shas={"r1": pushed}), RecordingCallbacks()
    records.put_build_token("r1", "token-1", "hello/r1/build/template.yaml")
    service(records, callbacks).finish(build_event("SUCCEEDED", RESOLVED))
    assert records.shas["r1"] == pushed


def test_a_build_that_resolved_nothing_leaves_the_sha_empty() -> None:
    records, callbacks = InMemoryBuildRecords(shas={"r1": ""}), RecordingCallbacks()
    records.put_build_token("r1", "token-1", "hello/r1/build/template.yaml")
    service(records, callbacks).finish(build_event("FAILED", None, "DOWNLOAD_SOURCE"))
    assert records.shas["r1"] == ""
    assert "DOWNLOAD_SOURCE" in callbacks.failed["token-1"][1]
