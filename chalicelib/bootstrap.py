"""The one wiring module: builds services from adapters, creating clients lazily and caching them.

Nothing here runs at import. ``reset()`` forgets everything (tests, and a changed environment).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from chalicelib.domain.clock import new_id, now_iso
from chalicelib.settings import Settings

if TYPE_CHECKING:  # imported lazily at run time (cold start)
    from aws_lambda_powertools import Logger
    from pynamodb.connection import Connection

    from chalicelib.adapters.callbacks import StepFunctionsCallbacks
    from chalicelib.adapters.cloudformation import BotoCloudFormation
    from chalicelib.adapters.executions import StepFunctionsExecutions
    from chalicelib.adapters.lanes_dynamo import DynamoLaneStore
    from chalicelib.adapters.metrics import PowertoolsMetrics
    from chalicelib.adapters.notifications import (
        DynamoAuditLog,
        DynamoDeliveryLog,
        SqsNotificationQueue,
        UrllibSender,
    )
    from chalicelib.adapters.releases_dynamo import DynamoReleaseRepository
    from chalicelib.adapters.secrets import (
        SecretsManagerCloneCredentials,
        SecretsManagerNotificationSecrets,
        SecretsManagerStore,
    )
    from chalicelib.adapters.stacks_dynamo import DynamoStackRepository
    from chalicelib.domain.releases import PipelineConfig
    from chalicelib.services.approvals import ApprovalService
    from chalicelib.services.audit import Auditor, AuditQueries
    from chalicelib.services.builds import BuildService
    from chalicelib.services.deployments import DeploymentService
    from chalicelib.services.dora import DoraMetrics
    from chalicelib.services.notifications import NotificationQueries, NotificationWorker
    from chalicelib.services.ports import Builder
    from chalicelib.services.recovery import Reconciler
    from chalicelib.services.release_queries import ReleaseQueries
    from chalicelib.services.releases import ReleaseStarter
    from chalicelib.services.stacks import StackService
    from chalicelib.services.stages import StageCoordinator

P = ParamSpec("P")
R = TypeVar("R")

# One lock for every factory: re-entrant, as factories call factories. Lambda runs one request at a time, but the
# local gateway serves each request on its own thread: without it, a burst arriving cold built one set of clients
# per thread (126 botocore clients for 30 requests, 1.4 s each), and boto3 client creation is not thread safe.
_BUILDING = threading.RLock()


class once(Generic[P, R]):
    """``functools.cache`` that builds each value once when threads ask for it at the same time."""

    def __init__(self, factory: Callable[P, R]) -> None:
        self._cached = functools.cache(factory)
        self._build: Callable[P, R] = self._cached  # the same function, typed with the factory's parameters
        functools.update_wrapper(self, factory)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        with _BUILDING:
            return self._build(*args, **kwargs)

    def cache_clear(self) -> None:
        """Forget the built values."""
        with _BUILDING:
            self._cached.cache_clear()

    def cache_info(self) -> functools._CacheInfo:
        """What ``functools.cache`` tells of its values."""
        return self._cached.cache_info()


@once
def settings() -> Settings:
    """The settings, read once."""
    return Settings.from_env()


@once
def _boto3_session() -> Any:
    """One boto3 session for every client: its loader reads each service's model once."""
    import boto3

    return boto3.session.Session()


@once
def client(service: str) -> Any:
    """A cached boto3 client (boto3 is imported on first use only)."""
    return _boto3_session().client(service, region_name=settings().region)


@once
def dynamodb() -> Connection:
    """The table's models bound to it, all sharing this connection's one botocore client."""
    from pynamodb.connection import Connection

    from chalicelib.adapters.models import bind_table

    connection = Connection()
    bind_table(settings().table, connection)
    return connection


@once
def stack_repository() -> DynamoStackRepository:
    """The DynamoDB stack repository."""
    from chalicelib.adapters.stacks_dynamo import DynamoStackRepository

    dynamodb()
    return DynamoStackRepository()


@once
def release_repository() -> DynamoReleaseRepository:
    """The DynamoDB release repository."""
    from chalicelib.adapters.releases_dynamo import DynamoReleaseRepository

    return DynamoReleaseRepository(dynamodb())


@once
def lane_store() -> DynamoLaneStore:
    """The stages' lanes in DynamoDB."""
    from chalicelib.adapters.lanes_dynamo import DynamoLaneStore

    return DynamoLaneStore(dynamodb())


@once
def secret_store() -> SecretsManagerStore:
    """Webhook secrets in Secrets Manager (cached in this warm process)."""
    from chalicelib.adapters.secrets import SecretsManagerStore

    return SecretsManagerStore(lambda: client("secretsmanager"), settings().secret_prefix)


@once
def clone_credentials() -> SecretsManagerCloneCredentials:
    """Clone URL credentials in Secrets Manager (in the form CodeBuild reads)."""
    from chalicelib.adapters.secrets import SecretsManagerCloneCredentials

    return SecretsManagerCloneCredentials(lambda: client("secretsmanager"), settings().clone_secret_prefix)


@once
def executions() -> StepFunctionsExecutions:
    """The release state machine."""
    from chalicelib.adapters.executions import StepFunctionsExecutions

    return StepFunctionsExecutions(lambda: client("stepfunctions"), settings().state_machine_arn)


@once
def callbacks() -> StepFunctionsCallbacks:
    """Task token callbacks."""
    from chalicelib.adapters.callbacks import StepFunctionsCallbacks

    return StepFunctionsCallbacks(lambda: client("stepfunctions"))


@once
def cloudformation() -> BotoCloudFormation:
    """CloudFormation reads of the stage coordinator."""
    from chalicelib.adapters.cloudformation import BotoCloudFormation

    return BotoCloudFormation(lambda: client("cloudformation"))


def pipeline_config() -> PipelineConfig:
    """What every release's execution input carries from configuration."""
    from chalicelib.domain.releases import PipelineConfig

    s = settings()
    return PipelineConfig(
        state_machine_arn=s.state_machine_arn,
        default_role_arn=s.default_cfn_role_arn,
        poll_seconds=s.poll_seconds,
        build_timeout_seconds=s.build_timeout_seconds,
        deploy_timeout_seconds=s.deploy_timeout_seconds,
    )


@once
def stack_service() -> StackService:
    """Use cases on stacks."""
    from chalicelib.services.stacks import StackService

    return StackService(
        stack_repository(),
        secret_store(),
        clone_credentials(),
        lane_store(),
        release_repository(),
        now_iso,
        new_id,
        reconciler,
        notification_secrets(),
        auditor(),
    )


@once
def release_starter() -> ReleaseStarter:
    """Webhooks, manual starts and the sweeper."""
    from chalicelib.services.releases import ReleaseStarter

    return ReleaseStarter(
        stack_repository(),
        release_repository(),
        executions(),
        secret_store(),
        pipeline_config,
        now_iso,
        new_id,
        metrics(),
        notification_queue(),
        auditor(),
    )


@once
def stage_coordinator() -> StageCoordinator:
    """Who deploys each stage next, and what each stage came to."""
    from chalicelib.services.stages import StageCoordinator

    return StageCoordinator(
        lane_store(),
        release_repository(),
        stack_repository(),
        cloudformation(),
        callbacks(),
        now_iso,
        metrics(),
        notification_queue(),
    )


@once
def deployment_service() -> DeploymentService:
    """Promote, redeploy, roll back and pin stages."""
    from chalicelib.services.deployments import DeploymentService

    return DeploymentService(
        stack_repository(),
        release_repository(),
        lane_store(),
        executions(),
        pipeline_config,
        now_iso,
        new_id,
        metrics(),
        notification_queue(),
        auditor(),
    )


@once
def reconciler() -> Reconciler:
    """Ends releases whose execution ended, frees their stages, cancels releases."""
    from chalicelib.services.recovery import Reconciler

    return Reconciler(
        release_repository(),
        executions(),
        stage_coordinator(),
        release_starter(),
        now_iso,
        metrics(),
        notification_queue(),
        auditor(),
    )


@once
def dora_metrics() -> DoraMetrics:
    """DORA's four keys per stack and stage."""
    from chalicelib.services.dora import DoraMetrics

    return DoraMetrics(stack_repository(), release_repository(), now_iso)


@once
def logger() -> Logger:
    """The powertools JSON logger."""
    from aws_lambda_powertools import Logger

    return Logger(service="stagecoach")


@once
def release_queries() -> ReleaseQueries:
    """Read side of releases."""
    from chalicelib.adapters.history import StepFunctionsHistory
    from chalicelib.adapters.logs import S3LogStore
    from chalicelib.services.release_queries import ReleaseQueries

    return ReleaseQueries(
        stack_repository(),
        release_repository(),
        StepFunctionsHistory(lambda: client("stepfunctions")),
        S3LogStore(lambda: client("s3")),
    )


@once
def builder() -> Builder:
    """CodeBuild on AWS; the local builder in the embedded mode."""
    s = settings()
    if s.builder == "local":
        from chalicelib.adapters.local_codebuild import LocalCodeBuild

        return LocalCodeBuild(
            client("s3"), client("sqs"), s.artifact_bucket, s.local_events_queue_url, s.region, s.build_timeout_seconds
        )
    from chalicelib.adapters.codebuild import CodeBuildBuilder

    return CodeBuildBuilder(client("codebuild"), s.codebuild_project, s.artifact_bucket)


@once
def build_service() -> BuildService:
    """The build worker and the build-event handler."""
    from chalicelib.services.builds import BuildService

    return BuildService(
        builder(),
        release_repository(),
        callbacks(),
        clone_credentials(),
        lambda: settings().artifact_bucket,
        lambda: settings().region,
        now_iso,
        metrics(),
    )


@once
def approval_service() -> ApprovalService:
    """Approve and reject."""
    from chalicelib.services.approvals import ApprovalService

    repository = release_repository()
    return ApprovalService(repository, repository, callbacks(), now_iso, lane_store(), notification_queue(), auditor())


@once
def notification_queue() -> SqsNotificationQueue:
    """The notifications queue (events in, retries) and its dead-letter queue."""
    from chalicelib.adapters.notifications import SqsNotificationQueue

    return SqsNotificationQueue(
        lambda: client("sqs"), lambda: settings().notifications_queue_url, lambda: settings().notifications_dlq_url
    )


@once
def notification_secrets() -> SecretsManagerNotificationSecrets:
    """Commit-status tokens and webhook secrets in Secrets Manager."""
    from chalicelib.adapters.secrets import SecretsManagerNotificationSecrets

    return SecretsManagerNotificationSecrets(lambda: client("secretsmanager"), settings().notify_secret_prefix)


@once
def delivery_log() -> DynamoDeliveryLog:
    """Delivery attempts in DynamoDB."""
    from chalicelib.adapters.notifications import DynamoDeliveryLog

    dynamodb()
    return DynamoDeliveryLog()


@once
def audit_log() -> DynamoAuditLog:
    """The audit trail in DynamoDB."""
    from chalicelib.adapters.notifications import DynamoAuditLog

    dynamodb()
    return DynamoAuditLog()


@once
def auditor() -> Auditor:
    """Appends audit entries for the services."""
    from chalicelib.services.audit import Auditor

    return Auditor(audit_log(), now_iso, new_id)


@once
def audit_queries() -> AuditQueries:
    """Read the audit trail."""
    from chalicelib.services.audit import AuditQueries

    return AuditQueries(audit_log())


@once
def http_sender() -> UrllibSender:
    """Outbound HTTP for notifications (short timeouts)."""
    from chalicelib.adapters.notifications import UrllibSender

    return UrllibSender(settings().notify_timeout_seconds)


@once
def notification_worker() -> NotificationWorker:
    """Delivers events to commit-status providers, Slack and webhooks."""
    from chalicelib.services.notifications import NotificationWorker

    s = settings()
    return NotificationWorker(
        stack_repository(),
        release_repository(),
        notification_secrets(),
        http_sender(),
        notification_queue(),
        delivery_log(),
        now_iso,
        lambda: settings().public_url,
        metrics(),
        s.notify_retry_base_seconds,
        s.notify_give_up_seconds,
    )


@once
def notification_queries() -> NotificationQueries:
    """Recent deliveries of a stack."""
    from chalicelib.services.notifications import NotificationQueries

    return NotificationQueries(stack_repository(), delivery_log())


@once
def metrics() -> PowertoolsMetrics:
    """Business metrics of this invocation."""
    from chalicelib.adapters.metrics import PowertoolsMetrics

    return PowertoolsMetrics()


def flush_metrics() -> None:
    """Publish what this invocation counted (nothing to do if no metric was ever counted)."""
    if metrics.cache_info().currsize:
        metrics().flush()


def publishes_metrics(handler: Callable[P, R]) -> Callable[P, R]:
    """Flush the invocation's metrics when an event handler returns or raises."""

    @functools.wraps(handler)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return handler(*args, **kwargs)
        finally:
            flush_metrics()

    return wrapper


def reset() -> None:
    """Forget every cached setting, client and service (every ``once`` factory of this module)."""
    for value in list(globals().values()):
        if isinstance(value, once):
            value.cache_clear()
