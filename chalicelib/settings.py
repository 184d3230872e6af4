"""Configuration from the environment, read when first needed (never at import)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    """Every setting the app reads; see docs/design.md for their meaning."""

    table: str
    state_machine_arn: str
    build_queue_url: str
    artifact_bucket: str
    builder: str
    codebuild_project: str
    local_events_queue_url: str
    poll_seconds: int
    build_timeout_seconds: int
    deploy_timeout_seconds: int
    secret_prefix: str
    clone_secret_prefix: str
    default_cfn_role_arn: str
    region: str

    @classmethod
    def from_env(cls) -> "Settings":
        """Read the settings from ``os.environ``."""
        env = os.environ
        return cls(
            table=env.get("STAGECOACH_TABLE", "stagecoach"),
            state_machine_arn=env.get("STAGECOACH_STATE_MACHINE_ARN", ""),
            build_queue_url=env.get("STAGECOACH_BUILD_QUEUE_URL", ""),
            artifact_bucket=env.get("STAGECOACH_ARTIFACT_BUCKET", ""),
            builder=env.get("STAGECOACH_BUILDER", "codebuild"),
            codebuild_project=env.get("STAGECOACH_CODEBUILD_PROJECT", ""),
            local_events_queue_url=env.get("STAGECOACH_LOCAL_EVENTS_QUEUE_URL", ""),
            poll_seconds=int(env.get("STAGECOACH_POLL_SECONDS", "10")),
            build_timeout_seconds=int(env.get("STAGECOACH_BUILD_TIMEOUT_SECONDS", "3600")),
            deploy_timeout_seconds=int(env.get("STAGECOACH_DEPLOY_TIMEOUT_SECONDS", "3600")),
            secret_prefix=env.get("STAGECOACH_SECRET_PREFIX", "stagecoach/webhooks/"),
            clone_secret_prefix=env.get("STAGECOACH_CLONE_SECRET_PREFIX", "stagecoach/clone/"),
            default_cfn_role_arn=env.get(
                "STAGECOACH_DEFAULT_CFN_ROLE_ARN", "arn:aws:iam::123456789012:role/stagecoach-cfn"
            ),
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        )
