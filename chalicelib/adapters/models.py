"""pynamodb models of the single Stagecoach table (docs/design.md lists every item).

The table name is bound at first use by ``bind_table`` (from configuration), never at import.
"""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
    VersionAttribute,
)
from pynamodb.connection import Connection
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model


class _Gsi1(GlobalSecondaryIndex[Any]):
    class Meta:
        index_name = "gsi1"
        projection = AllProjection()

    gsi1pk = UnicodeAttribute(hash_key=True)
    gsi1sk = UnicodeAttribute(range_key=True)


class _Gsi2(GlobalSecondaryIndex[Any]):
    class Meta:
        index_name = "gsi2"
        projection = KeysOnlyProjection()

    gsi2pk = UnicodeAttribute(hash_key=True)
    gsi2sk = UnicodeAttribute(range_key=True)


class Item(Model):
    """Keys shared by every item of the table."""

    class Meta:
        table_name = "stagecoach"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)


class StageConfigMap(MapAttribute[str, Any]):
    """A stage's settings inside the stack item."""

    name = UnicodeAttribute()
    approval = BooleanAttribute(default=False)
    approval_timeout_seconds = NumberAttribute(default=86400)
    auto_approve_when_no_changes = BooleanAttribute(null=True)
    region = UnicodeAttribute(null=True)
    role_arn = UnicodeAttribute(null=True)
    parameters = MapAttribute[str, str](default=dict)


class StackModel(Item):
    """``STACK#{id}`` / ``#STACK``."""

    class Meta(Item.Meta):
        pass

    gsi1pk = UnicodeAttribute()
    gsi1sk = UnicodeAttribute()
    by_kind = _Gsi1()
    id = UnicodeAttribute()
    name = UnicodeAttribute()
    repository = MapAttribute[str, str]()
    branches = ListAttribute[str](default=list)
    tags = ListAttribute[str](default=list)
    template_path = UnicodeAttribute()
    buildspec_path = UnicodeAttribute()
    stages = ListAttribute(of=StageConfigMap)
    hook_verified_at = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    version = VersionAttribute()
    execution_mode = UnicodeAttribute(null=True)
    uid = UnicodeAttribute(null=True)
    commit_status = MapAttribute[str, Any](null=True)
    notifications_json = UnicodeAttribute(null=True)


class LaneModel(Item):
    """``STACK#{id}`` / ``STAGE#{name}``: the stage's lane, written by the stage coordinator only."""

    class Meta(Item.Meta):
        pass

    stack_uid = UnicodeAttribute(null=True)
    holder_json = UnicodeAttribute(null=True)
    waiters_json = UnicodeAttribute(null=True)
    current_release = MapAttribute[str, Any](null=True)
    last_outcome = UnicodeAttribute(null=True)
    history_json = UnicodeAttribute(null=True)
    pin = MapAttribute[str, Any](null=True)
    status = UnicodeAttribute(null=True)
    outputs_json = UnicodeAttribute(null=True)
    updated_at = UnicodeAttribute(null=True)
    lane_version = NumberAttribute(null=True)


def plain(value: Any) -> Any:
    """A pynamodb map/list value (raw ``MapAttribute`` included) as plain dicts and lists."""
    if hasattr(value, "as_dict"):
        return {k: plain(v) for k, v in value.as_dict().items()}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def bind_table(table_name: str, connection: Connection) -> None:
    """Point every model at ``table_name``, all using ``connection``'s one botocore client (pynamodb otherwise
    creates one per model class on first use, tens of ms each)."""
    client = connection.client
    for model in registered_models():
        model.Meta.table_name = table_name
        model._connection = None
        # pynamodb has no public way to hand a model a client; its Connection reuses ``_client`` once set.
        model._get_connection().connection._client = client


def registered_models() -> tuple[type[Model], ...]:
    """Every model class of the table, including those defined in other adapter modules."""
    found: list[type[Model]] = []
    stack: list[type[Model]] = [Item]
    while stack:
        cls = stack.pop()
        found.append(cls)
        stack.extend(cls.__subclasses__())
    return tuple(found)


class ReleaseModel(Item):
    """``RELEASE#{id}`` / ``#RELEASE``; listed per stack through ``gsi1``, PENDING ones through ``gsi2``."""

    class Meta(Item.Meta):
        pass

    gsi1pk = UnicodeAttribute()
    gsi1sk = UnicodeAttribute()
    gsi2pk = UnicodeAttribute(null=True)
    gsi2sk = UnicodeAttribute(null=True)
    by_stack = _Gsi1()
    pending = _Gsi2()
    id = UnicodeAttribute()
    stack_id = UnicodeAttribute()
    ref = UnicodeAttribute()
    sha = UnicodeAttribute(null=True)
    trigger = UnicodeAttribute()
    status = UnicodeAttribute()
    message = UnicodeAttribute(null=True)
    author = UnicodeAttribute(null=True)
    pushed_at = UnicodeAttribute(null=True)
    received_at = UnicodeAttribute()
    execution_name = UnicodeAttribute()
    execution_arn = UnicodeAttribute()
    stages = ListAttribute[str](default=list)
    input_json = UnicodeAttribute()
    started_at = UnicodeAttribute(null=True)
    ended_at = UnicodeAttribute(null=True)
    build = MapAttribute[str, Any](null=True)
    error = UnicodeAttribute(null=True)
    cause = UnicodeAttribute(null=True)
    failed_stage = UnicodeAttribute(null=True)
    stack_uid = UnicodeAttribute(null=True)
    order = UnicodeAttribute(null=True)
    superseded_by = UnicodeAttribute(null=True)
    cancelled_by = UnicodeAttribute(null=True)
    previous_executions = ListAttribute[str](null=True)
    source_release_id = UnicodeAttribute(null=True)
    requested_by = UnicodeAttribute(null=True)


class KeyModel(Item):
    """Dedup keys (``PUSH#…``, ``DELIVERY#…``) pointing at the release they created."""

    class Meta(Item.Meta):
        pass

    release_id = UnicodeAttribute()
    expires_at = NumberAttribute(null=True)


class StageRunModel(Item):
    """``RELEASE#{id}`` / ``STAGE#{name}``: one stage of one release (written by the state machine)."""

    class Meta(Item.Meta):
        pass

    status = UnicodeAttribute(null=True)
    started_at = UnicodeAttribute(null=True)
    ended_at = UnicodeAttribute(null=True)
    task_token = UnicodeAttribute(null=True)
    approval = MapAttribute[str, Any](null=True)
    changes_json = UnicodeAttribute(null=True)
    outputs_json = UnicodeAttribute(null=True)
    no_changes = BooleanAttribute(null=True)
    error = UnicodeAttribute(null=True)
    cause = UnicodeAttribute(null=True)
    waiting_for = UnicodeAttribute(null=True)
    superseded_by = UnicodeAttribute(null=True)


class BuildTokenModel(Item):
    """``RELEASE#{id}`` / ``#BUILD``: the task token of the release's build task."""

    class Meta(Item.Meta):
        pass

    task_token = UnicodeAttribute()
    template_key = UnicodeAttribute()
    expires_at = NumberAttribute(null=True)


class DeliveryModel(Item):
    """``NOTIFY#{stack_id}`` / ``{at}#{delivery_id}#{attempt}``: one delivery attempt (expires)."""

    class Meta(Item.Meta):
        pass

    delivery_id = UnicodeAttribute()
    event_id = UnicodeAttribute()
    event = UnicodeAttribute()
    release_id = UnicodeAttribute()
    stage = UnicodeAttribute(null=True)
    target = UnicodeAttribute()
    target_type = UnicodeAttribute()
    attempt = NumberAttribute()
    outcome = UnicodeAttribute()
    at = UnicodeAttribute()
    status_code = NumberAttribute(null=True)
    error = UnicodeAttribute(null=True)
    duration_ms = NumberAttribute(default=0)
    next_attempt_in_seconds = NumberAttribute(null=True)
    expires_at = NumberAttribute(null=True)


class AuditModel(Item):
    """``AUDIT#{stack_id}`` / ``{at}#{id}``; every entry also in ``gsi1`` under ``AUDIT`` / ``{at}#{id}``."""

    class Meta(Item.Meta):
        pass

    gsi1pk = UnicodeAttribute()
    gsi1sk = UnicodeAttribute()
    everything = _Gsi1()
    id = UnicodeAttribute()
    at = UnicodeAttribute()
    actor = UnicodeAttribute()
    action = UnicodeAttribute()
    target = UnicodeAttribute()
    stack_id = UnicodeAttribute()
    detail_json = UnicodeAttribute(null=True)
