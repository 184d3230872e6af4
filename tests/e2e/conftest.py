"""Fixtures of the release state machine tests: moto running statemachines/release.asl.json for real."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.asl_harness import AslWorld


@pytest.fixture
def world(aws: Any) -> Iterator[AslWorld]:
    """The emulated account of the ``aws`` fixture (tests/conftest.py), driven by the ASL harness with the
    stage coordinator running; a message the coordinator failed to handle fails the test."""
    import boto3

    w = AslWorld(boto3.Session(region_name="us-east-1"), aws)
    try:
        yield w
    finally:
        w.close()
    assert not w.coordinator.errors, "the stage coordinator failed:\n" + "\n".join(w.coordinator.errors)
