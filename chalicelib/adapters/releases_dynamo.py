"""ReleaseRepository on DynamoDB (pynamodb): one transaction writes a release with its dedup keys."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from pynamodb.connection import Connection
from pynamodb.exceptions import TransactWriteError, UpdateError
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from chalicelib.domain.releases import Release, StageRun
from chalicelib.services.ports import Page

from .models import BuildTokenModel, Item, KeyModel, ReleaseModel, StageRunModel, plain
from .pagination import decode_token, encode_token

RELEASE_SK = "#RELEASE"
KEY_SK = "#KEY"
DELIVERY_TTL_SECONDS = 7 * 24 * 3600
RECORD_ATTEMPTS = 4
BUILD_SK = "#BUILD"
BUILD_TOKEN_TTL_SECONDS = 2 * 24 * 3600


# Why a transaction may be cancelled and still succeed when written again (or find its key taken).
RETRYABLE_CANCELLATIONS = {"ConditionalCheckFailed", "TransactionConflict", "None", None}


def _retryable(error: TransactWriteError) -> bool:
    """A cancelled transaction worth another try; a malformed one (an item too large...) is not."""
    if getattr(error, "cause_response_code", None) != "TransactionCanceledException":
        return getattr(error, "cause_response_code", None) in ("TransactionInProgressException", "ThrottlingException")
    return all(reason is None or reason.code in RETRYABLE_CANCELLATIONS for reason in error.cancellation_reasons)


def release_pk(release_id: str) -> str:
    """Partition key of a release, its stage runs and approvals."""
    return f"RELEASE#{release_id}"


def releases_of(stack_id: str, stack_uid: str) -> str:
    """``gsi1`` partition of a stack's releases (a stack re-created with the same id starts empty)."""
    return f"STACK#{stack_id}#{stack_uid}#RELEASES" if stack_uid else f"STACK#{stack_id}#RELEASES"


def activity_key(release: Release) -> str:
    """``gsi2`` sort key: by stack, then by arrival (PENDING and ACTIVE share it)."""
    return f"{release.stack_uid}#{release.received_at}#{release.id}"


def to_model(release: Release) -> ReleaseModel:
    """The item of a new release (in the sparse ``gsi2`` as PENDING until its execution starts)."""
    item = ReleaseModel(
        pk=release_pk(release.id),
        sk=RELEASE_SK,
        gsi1pk=releases_of(release.stack_id, release.stack_uid),
        gsi1sk=f"{release.received_at}#{release.id}",
        id=release.id,
        stack_id=release.stack_id,
        ref=release.ref,
        sha=release.sha or None,
        trigger=release.trigger,
        status=release.status,
        message=release.message or None,
        author=release.author or None,
        pushed_at=release.pushed_at,
        received_at=release.received_at,
        execution_name=release.execution_name,
        execution_arn=release.execution_arn,
        stages=list(release.stages),
        input_json=release.input_json,
        stack_uid=release.stack_uid or None,
        order=release.order or None,
        source_release_id=release.source_release_id,
        requested_by=release.requested_by,
        build=release.build or None,
    )
    if release.status == "PENDING":
        item.gsi2pk = "PENDING"
        item.gsi2sk = activity_key(release)
    return item


def _json(text: str | None) -> Any:
    return json.loads(text) if text else None


def run_from_model(item: StageRunModel) -> StageRun:
    """The domain stage run of an item."""
    return StageRun(
        name=item.sk.removeprefix("STAGE#"),
        status=item.status or "PENDING",
        started_at=item.started_at,
        ended_at=item.ended_at,
        approval=plain(item.approval) if item.approval is not None else None,
        changes=_json(item.changes_json),
        outputs=_json(item.outputs_json),
        no_changes=bool(item.no_changes),
        error=item.error,
        cause=item.cause,
        waiting_for=item.waiting_for,
        superseded_by=item.superseded_by,
    )


def from_model(item: ReleaseModel) -> Release:
    """The domain release of an item."""
    return Release(
        id=item.id,
        stack_id=item.stack_id,
        ref=item.ref,
        sha=item.sha or "",
        trigger=item.trigger,
        received_at=item.received_at,
        execution_name=item.execution_name,
        execution_arn=item.execution_arn,
        stages=tuple(item.stages or ()),
        status=item.status,
        message=item.message or "",
        author=item.author or "",
        pushed_at=item.pushed_at,
        input_json=item.input_json,
        started_at=item.started_at,
        ended_at=item.ended_at,
        build=plain(item.build) if item.build is not None else {},
        error=item.error,
        cause=item.cause,
        failed_stage=item.failed_stage,
        stack_uid=item.stack_uid or "",
        order=item.order or f"{item.received_at}#{item.id}",
        superseded_by=item.superseded_by,
        cancelled_by=item.cancelled_by,
        previous_executions=tuple(item.previous_executions or ()),
        source_release_id=item.source_release_id,
        requested_by=item.requested_by,
    )


class DynamoReleaseRepository:
    """Releases in the single table."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def record(self, release: Release, keys: list[str]) -> str | None:
        """Write the release and its keys in one transaction; on a taken key, the existing release id."""
        expires = int(time.time()) + DELIVERY_TTL_SECONDS
        for _attempt in range(RECORD_ATTEMPTS):
            try:
                with TransactWrite(connection=self._connection) as transaction:
                    transaction.save(to_model(release), condition=ReleaseModel.pk.does_not_exist())
                    for key in keys:
                        ttl = expires if key.startswith("DELIVERY#") else None
                        transaction.save(
                            KeyModel(pk=key, sk=KEY_SK, release_id=release.id, expires_at=ttl),
                            condition=KeyModel.pk.does_not_exist(),
                        )
                return None
            except TransactWriteError as exc:
                if not _retryable(exc):
                    raise
                for key in keys:
                    existing = self._key(key)
                    if existing is not None:
                        return existing
                # Cancelled by a concurrent transaction that has not committed yet: try again.
                time.sleep(0.05)
        raise RuntimeError(f"could not record release {release.id} after {RECORD_ATTEMPTS} attempts")

    @staticmethod
    def _key(key: str) -> str | None:
        try:
            return str(KeyModel.get(key, KEY_SK, consistent_read=True).release_id)
        except KeyModel.DoesNotExist:
            return None

    def get(self, release_id: str) -> Release | None:
        """The release, or None."""
        try:
            return from_model(ReleaseModel.get(release_pk(release_id), RELEASE_SK, consistent_read=True))
        except ReleaseModel.DoesNotExist:
            return None

    def get_with_runs(self, release_id: str) -> tuple[Release, dict[str, StageRun]] | None:
        """The release and its stage runs, from one query of the release's partition."""
        release: Release | None = None
        runs: dict[str, StageRun] = {}
        for raw in Item._get_connection().query(release_pk(release_id), consistent_read=True).get("Items", []):
            sk = raw["sk"]["S"]
            if sk == RELEASE_SK:
                release = from_model(ReleaseModel.from_raw_data(raw))
            elif sk.startswith("STAGE#"):
                run = run_from_model(StageRunModel.from_raw_data(raw))
                runs[run.name] = run
        return (release, runs) if release is not None else None

    def list_for_stack(
        self,
        stack_id: str,
        limit: int,
        next_token: str | None,
        status: str | None,
        ref: str | None,
        stack_uid: str = "",
    ) -> Page:
        """Newest first through ``gsi1``; status and ref filter the query."""
        start = decode_token(
            next_token, {"pk", "sk", "gsi1pk", "gsi1sk"}, {"gsi1pk": releases_of(stack_id, stack_uid), "sk": RELEASE_SK}
        )
        condition = None
        if status:
            condition = ReleaseModel.status == status
        if ref:
            ref_condition = ReleaseModel.ref == ref
            condition = ref_condition if condition is None else condition & ref_condition
        result = ReleaseModel.by_stack.query(
            releases_of(stack_id, stack_uid),
            scan_index_forward=False,
            limit=limit,
            last_evaluated_key=start,
            filter_condition=condition,
            page_size=limit if condition is None else max(limit * 4, 25),
        )
        items = [from_model(i) for i in result]
        return Page(items, encode_token(result.last_evaluated_key))

    def pending_before(self, cutoff: str, limit: int) -> list[str]:
        """PENDING releases received before ``cutoff`` (the sparse ``gsi2``; few are ever PENDING)."""
        found = []
        for item in ReleaseModel.pending.query("PENDING"):
            _uid, received_at, _id = (item.gsi2sk or "##").rsplit("#", 2)
            if received_at < cutoff:
                found.append(item.pk.removeprefix("RELEASE#"))
            if len(found) >= limit:
                break
        return found

    def started(self) -> list[str]:
        """Releases in the ``ACTIVE`` index: started, not yet seen to end and free their stages."""
        return [i.pk.removeprefix("RELEASE#") for i in ReleaseModel.pending.query("ACTIVE")]

    def in_flight(self, stack_uid: str) -> list[Release]:
        """The stack's PENDING and ACTIVE releases, oldest first."""
        keys: list[str] = []
        for kind in ("PENDING", "ACTIVE"):
            keys.extend(
                i.pk.removeprefix("RELEASE#")
                for i in ReleaseModel.pending.query(kind, ReleaseModel.gsi2sk.startswith(f"{stack_uid}#"))
            )
        found = [r for r in (self.get(k) for k in keys) if r is not None]
        return sorted(found, key=lambda r: r.order)

    def end(self, release_id: str, status: str, fields: dict[str, Any]) -> bool:
        """Final status and fields, only if the release is still PENDING or RUNNING."""
        actions: list[Action] = [ReleaseModel.status.set(status)]
        for name, value in fields.items():
            attribute = getattr(ReleaseModel, name)
            actions.append(attribute.remove() if value is None else attribute.set(value))
        try:
            ReleaseModel(pk=release_pk(release_id), sk=RELEASE_SK).update(
                actions=actions, condition=ReleaseModel.status.is_in("PENDING", "RUNNING")
            )
        except UpdateError as exc:
            if getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def settle(self, release_id: str) -> None:
        """Out of the ``gsi2`` index (PENDING or ACTIVE)."""
        ReleaseModel(pk=release_pk(release_id), sk=RELEASE_SK).update(
            actions=[ReleaseModel.gsi2pk.remove(), ReleaseModel.gsi2sk.remove()],
            condition=ReleaseModel.pk.exists(),
        )

    def switch_execution(self, release_id: str, current_arn: str, moved: Release) -> bool:
        """Point the release at the execution that resumes it (conditional on the current one)."""
        try:
            ReleaseModel(pk=release_pk(release_id), sk=RELEASE_SK).update(
                actions=[
                    ReleaseModel.execution_name.set(moved.execution_name),
                    ReleaseModel.execution_arn.set(moved.execution_arn),
                    ReleaseModel.input_json.set(moved.input_json),
                    ReleaseModel.previous_executions.set(list(moved.previous_executions)),
                ],
                condition=ReleaseModel.execution_arn == current_arn,
            )
        except UpdateError as exc:
            if getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def runs(self, release_id: str) -> dict[str, StageRun]:
        """The release's stage runs by name."""
        found = self.get_with_runs(release_id)
        return found[1] if found else {}

    def stage_run(self, release_id: str, stage: str) -> StageRun | None:
        """One stage run, read consistently."""
        try:
            return run_from_model(StageRunModel.get(release_pk(release_id), f"STAGE#{stage}", consistent_read=True))
        except StageRunModel.DoesNotExist:
            return None

    def stage_runs(self, release_ids: Sequence[str], stage: str) -> dict[str, StageRun]:
        """One stage's runs of many releases through BatchGetItem (100 keys a request, unprocessed keys retried)."""
        keys = [(release_pk(release_id), f"STAGE#{stage}") for release_id in dict.fromkeys(release_ids)]
        found: dict[str, StageRun] = {}
        for item in StageRunModel.batch_get(keys):
            found[item.pk.removeprefix("RELEASE#")] = run_from_model(item)
        return found

    def put_build_token(self, release_id: str, token: str, template_key: str) -> None:
        """Remember the build task's token (a retried build task replaces it)."""
        BuildTokenModel(
            pk=release_pk(release_id),
            sk=BUILD_SK,
            task_token=token,
            template_key=template_key,
            expires_at=int(time.time()) + BUILD_TOKEN_TTL_SECONDS,
        ).save()

    def build_token(self, release_id: str) -> tuple[str, str] | None:
        """``(task_token, template_key)`` of the release's build task."""
        try:
            item = BuildTokenModel.get(release_pk(release_id), BUILD_SK, consistent_read=True)
        except BuildTokenModel.DoesNotExist:
            return None
        return item.task_token, item.template_key

    def record_build(self, release_id: str, build: dict[str, Any], resolved_sha: str | None = None) -> None:
        """Set the release's build details and, in the same update, a sha it lacks (a release by ref)."""
        actions: list[Any] = [ReleaseModel.build.set(build)]
        if resolved_sha:
            actions.append(ReleaseModel.sha.set(ReleaseModel.sha | resolved_sha))  # if_not_exists(sha, :sha)
        ReleaseModel(pk=release_pk(release_id), sk=RELEASE_SK).update(
            actions=actions, condition=ReleaseModel.pk.exists()
        )

    def waiting_token(self, release_id: str, stage: str) -> str | None:
        """The approval task token of a stage that is AWAITING_APPROVAL."""
        try:
            run = StageRunModel.get(release_pk(release_id), f"STAGE#{stage}", consistent_read=True)
        except StageRunModel.DoesNotExist:
            return None
        return run.task_token if run.status == "AWAITING_APPROVAL" and run.task_token else None

    def record_decision(self, release_id: str, stage: str, token: str, decision: dict[str, Any]) -> bool:
        """After the execution resumed: the decision, once (the first recorded decision stays), and the token
        dropped. It does not depend on the stage still waiting: the coordinator may have closed the stage run
        (a rejection goes straight to leaving the stage) before this is written."""
        run = StageRunModel(pk=release_pk(release_id), sk=f"STAGE#{stage}")
        actions: list[Action] = [StageRunModel.approval[key].set(value) for key, value in decision.items()]
        try:
            run.update(
                actions=[*actions, StageRunModel.task_token.remove()],
                condition=StageRunModel.pk.exists() & StageRunModel.approval["decision"].does_not_exist(),
            )
        except UpdateError as exc:
            if getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException":
                return False
            raise
        if decision["decision"] in ("approved", "auto"):
            try:  # the stage deploys now (the coordinator writes its final status when it leaves)
                run.update(
                    actions=[StageRunModel.status.set("DEPLOYING")],
                    condition=StageRunModel.status == "AWAITING_APPROVAL",
                )
            except UpdateError as exc:
                if getattr(exc, "cause_response_code", None) != "ConditionalCheckFailedException":
                    raise
        return True
