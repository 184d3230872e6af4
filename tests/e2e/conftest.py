"""Fixtures of the release state machine tests: moto running statemachines/release.asl.json for real."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ["AWS_SECURITY_TOKEN"] = "testing"
os.environ["AWS_SESSION_TOKEN"] = "testing"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)

from tests.e2e.asl_harness import AslWorld


@pytest.fixture
def world() -> Iterator[AslWorld]:
    """A fresh emulated account (table, queues, bucket, release state machine) per test."""
    import boto3
    from moto import mock_aws

    from chalicelib.local.emulator import harden_moto
    from chalicelib.local.resources import ensure_resources

    harden_moto()
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        session = boto3.Session(region_name="us-east-1")
        resources = ensure_resources(session)
        w = AslWorld(session, resources)
        try:
            yield w
        finally:
            w.close()
