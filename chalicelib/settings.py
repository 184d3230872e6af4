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
    notifications_queue_url: str = ""
    notifications_dlq_url: str = ""
    notify_secret_prefix: str = "stagecoach/notify/"
    public_url: str = ""
    notify_timeout_seconds: float = 5.0
    notify_retry_base_seconds: int = 5
    notify_give_up_seconds: int = 3600

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
            notifications_queue_url=env.get("STAGECOACH_NOTIFICATIONS_QUEUE_URL", ""),
            notifications_dlq_url=env.get("STAGECOACH_NOTIFICATIONS_DLQ_URL", ""),
            notify_secret_prefix=env.get("STAGECOACH_NOTIFY_SECRET_PREFIX", "stagecoach/notify/"),
            public_url=env.get("STAGECOACH_PUBLIC_URL", ""),
            notify_timeout_seconds=float(env.get("STAGECOACH_NOTIFY_TIMEOUT_SECONDS", "5")),
            notify_retry_base_seconds=int(env.get("STAGECOACH_NOTIFY_RETRY_BASE_SECONDS", "5")),
            notify_give_up_seconds=int(env.get("STAGECOACH_NOTIFY_GIVE_UP_SECONDS", "3600")),
        )
