"""Shared fixtures: an emulated AWS account with every Stagecoach resource, and the app's client."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)


def stop_executions(state_machine_arn: str) -> None:
    """Abort executions still running so their threads do not write into the next test's account."""
    import time

    import boto3

    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    try:
        running = sfn.list_executions(stateMachineArn=state_machine_arn, statusFilter="RUNNING")["executions"]
    except sfn.exceptions.StateMachineDoesNotExist:
        return
    for execution in running:
        for _ in range(40):  # moto cannot stop an execution whose worker has not started yet
            try:
                sfn.stop_execution(executionArn=execution["executionArn"], error="TestEnded")
                break
            except Exception:
                time.sleep(0.05)
    if running:
        time.sleep(0.2)


@pytest.fixture
def aws() -> Iterator[Any]:
    """moto with state machine execution on, hardened, and every resource created; yields them."""
    import boto3
    from moto import mock_aws

    from chalicelib import bootstrap
    from chalicelib.local.emulator import harden_moto
    from chalicelib.local.resources import ensure_resources

    harden_moto()
    # Every error a state catches is logged by moto with the whole state tree; the history shows them.
    logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        resources = ensure_resources(boto3.session.Session(region_name="us-east-1"))
        saved = dict(os.environ)
        os.environ.update(resources.environment())
        os.environ["STAGECOACH_POLL_SECONDS"] = "1"
        bootstrap.reset()
        try:
            yield resources
        finally:
            stop_executions(resources.state_machine_arn)
            os.environ.clear()
            os.environ.update(saved)
            bootstrap.reset()


@pytest.fixture
def client(aws: Any) -> Iterator[Any]:
    """chalice.test.Client on the real app, against the emulated account."""
    from chalice.test import Client

    from app import app

    with Client(app, stage_name="local") as test_client:
        yield test_client
