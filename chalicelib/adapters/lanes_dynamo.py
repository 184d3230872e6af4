"""LaneStore on DynamoDB: a lane is the stage item ``STACK#{id}`` / ``STAGE#{name}``.

Every write is one transaction: the lane, conditional on the version it was read at, a condition
check that the stack is still the one the release belongs to (same ``uid``), and the stage runs.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from pynamodb.connection import Connection
from pynamodb.exceptions import TransactWriteError
from pynamodb.transactions import TransactWrite

from chalicelib.domain.errors import ConflictError
from chalicelib.domain.lanes import Contender, Deployed, Holder, Lane, Pin, Target
from chalicelib.domain.stacks import Stack
from chalicelib.services.ports import LaneChange, StageState

from .models import LaneModel, StackModel, StageRunModel, plain

STACK_SK = "#STACK"


def _target(data: dict[str, Any] | None) -> Target | None:
    if not data:
        return None
    return Target(
        cfn_stack_name=str(data.get("cfn_stack_name", "")),
        role_arn=str(data.get("role_arn", "")),
        change_set_name=str(data.get("change_set_name", "")),
        deploy_timeout_seconds=int(data.get("deploy_timeout_seconds", 3600)),
    )


def _target_json(target: Target | None) -> dict[str, Any] | None:
    if target is None:
        return None
    return {
        "cfn_stack_name": target.cfn_stack_name,
        "role_arn": target.role_arn,
        "change_set_name": target.change_set_name,
        "deploy_timeout_seconds": target.deploy_timeout_seconds,
    }


def lane_from_model(stack_id: str, stage: str, item: LaneModel | None) -> Lane:
    """The domain lane of an item (an empty lane at version 0 when there is none)."""
    if item is None:
        return Lane(stack_id, stage)
    holder_data = json.loads(item.holder_json) if item.holder_json else None
    holder = None
    if holder_data:
        holder = Holder(
            release_id=holder_data["release_id"],
            order=holder_data["order"],
            phase=holder_data["phase"],
            since=holder_data["since"],
            approval_token=holder_data.get("approval_token", ""),
            target=_target(holder_data.get("target")),
        )
    waiters = tuple(
        Contender(
            release_id=w["release_id"],
            order=w["order"],
            token=w["token"],
            since=w["since"],
            target=_target(w.get("target")) or Target("", ""),
            approval=bool(w.get("approval")),
            explicit=bool(w.get("explicit")),
            rollback=bool(w.get("rollback")),
        )
        for w in (json.loads(item.waiters_json) if item.waiters_json else [])
    )
    current = plain(item.current_release) if item.current_release is not None else None
    deployed = _deployed(current) if current and current.get("release_id") else None
    history = tuple(_deployed(d) for d in (json.loads(item.history_json) if item.history_json else []))
    pin_data = plain(item.pin) if item.pin is not None else None
    pinned = None
    if pin_data:
        pinned = Pin(**{k: str(pin_data.get(k, "")) for k in ("release_id", "sha", "by", "at", "reason")})
    return Lane(stack_id, stage, holder, waiters, deployed, int(item.lane_version or 0), history, pinned)


def _deployed(data: dict[str, Any]) -> Deployed:
    return Deployed(
        release_id=data["release_id"],
        order=data.get("order", ""),
        sha=data.get("sha", ""),
        message=data.get("message", ""),
        deployed_at=data.get("deployed_at", ""),
    )


def _state(stack_id: str, stage: str, item: LaneModel) -> StageState:
    return StageState(
        lane=lane_from_model(stack_id, stage, item),
        last_outcome=item.last_outcome,
        outputs=json.loads(item.outputs_json) if item.outputs_json else None,
        updated_at=item.updated_at,
    )


def _holder_json(holder: Holder | None) -> str | None:
    if holder is None:
        return None
    return json.dumps(
        {
            "release_id": holder.release_id,
            "order": holder.order,
            "phase": holder.phase,
            "since": holder.since,
            "approval_token": holder.approval_token,
            "target": _target_json(holder.target),
        }
    )


def _waiters_json(waiters: tuple[Contender, ...]) -> str | None:
    if not waiters:
        return None
    return json.dumps(
        [
            {
                "release_id": w.release_id,
                "order": w.order,
                "token": w.token,
                "since": w.since,
                "approval": w.approval,
                "explicit": w.explicit,
                "rollback": w.rollback,
                "target": _target_json(w.target),
            }
            for w in waiters
        ]
    )


def _deployed_map(deployed: Deployed | None) -> dict[str, Any] | None:
    if deployed is None:
        return None
    return {
        "release_id": deployed.release_id,
        "order": deployed.order,
        "sha": deployed.sha,
        "message": deployed.message,
        "deployed_at": deployed.deployed_at,
    }


def _actions(model: type[Any], fields: dict[str, Any]) -> list[Any]:
    """SET for values, REMOVE for None."""
    actions = []
    for name, value in fields.items():
        attribute = getattr(model, name)
        actions.append(attribute.remove() if value is None else attribute.set(value))
    return actions


class DynamoLaneStore:
    """Lanes in the single table."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def lane(self, stack_id: str, stage: str) -> Lane:
        """The lane, read consistently."""
        try:
            item = LaneModel.get(f"STACK#{stack_id}", f"STAGE#{stage}", consistent_read=True)
        except LaneModel.DoesNotExist:
            item = None
        return lane_from_model(stack_id, stage, item)

    def states(self, stack_id: str) -> dict[str, StageState]:
        """Every lane of the stack with its last outcome and outputs."""
        states: dict[str, StageState] = {}
        for item in LaneModel.query(f"STACK#{stack_id}", LaneModel.sk.startswith("STAGE#")):
            stage = item.sk.removeprefix("STAGE#")
            states[stage] = _state(stack_id, stage, item)
        return states

    def states_of(self, stacks: Sequence[Stack]) -> dict[str, dict[str, StageState]]:
        """One BatchGetItem per 100 stages (the stacks list their stages), not a query per stack."""
        keys = {(f"STACK#{stack.id}", f"STAGE#{stage.name}") for stack in stacks for stage in stack.stages}
        found: dict[str, dict[str, StageState]] = {stack.id: {} for stack in stacks}
        for item in LaneModel.batch_get(keys):
            stack_id, stage = item.pk.removeprefix("STACK#"), item.sk.removeprefix("STAGE#")
            found.setdefault(stack_id, {})[stage] = _state(stack_id, stage, item)
        return found

    def commit(self, change: LaneChange) -> None:
        """Lane + stack check + runs in one transaction; ConflictError if a condition fails."""
        lane = change.lane
        fields: dict[str, Any] = {
            "stack_uid": change.stack_uid or None,
            "holder_json": _holder_json(lane.holder),
            "waiters_json": _waiters_json(lane.waiters),
            "current_release": _deployed_map(lane.deployed),
            "history_json": json.dumps([_deployed_map(d) for d in lane.history]) if lane.history else None,
            "pin": None if lane.pin is None else dataclasses.asdict(lane.pin),
            "status": lane.holder.phase if lane.holder else (change.last_outcome or None),
            "lane_version": lane.version + 1,
            "updated_at": change.now or None,
        }
        if change.last_outcome is not None:
            fields["last_outcome"] = change.last_outcome
        if change.outputs is not None:
            fields["outputs_json"] = json.dumps(change.outputs)
        actions = _actions(LaneModel, {k: v for k, v in fields.items() if k != "status" or v is not None})
        if lane.holder is None and change.last_outcome is None:
            # nobody in the stage and nothing deployed now: show how the last deploy ended (or IDLE)
            actions.append(LaneModel.status.set(LaneModel.last_outcome | "IDLE"))
        stored = LaneModel.lane_version.does_not_exist() if lane.version == 0 else None
        version_ok = LaneModel.lane_version == lane.version
        condition = (stored | version_ok) if stored is not None else version_ok
        stack_ok = StackModel.uid == change.stack_uid if change.stack_uid else StackModel.uid.does_not_exist()
        try:
            with TransactWrite(connection=self._connection) as transaction:
                transaction.condition_check(StackModel, f"STACK#{lane.stack_id}", STACK_SK, condition=stack_ok)
                transaction.update(
                    LaneModel(f"STACK#{lane.stack_id}", f"STAGE#{lane.stage}"),
                    actions=actions,
                    condition=condition,
                )
                for run in change.runs:
                    transaction.update(
                        StageRunModel(f"RELEASE#{run.release_id}", f"STAGE#{run.stage}"),
                        actions=_actions(StageRunModel, run.fields),
                    )
        except TransactWriteError as exc:
            raise ConflictError(f"stage {lane.stage} of stack {lane.stack_id} changed meanwhile") from exc
