"""CloudFormation in the emulator, as AWS runs it: a patch of moto's CloudFormation backend.

moto 5.2.5 completes change sets and stack operations inside the call, never refuses an update, never rolls
back, answers a bad template with a 500 and leaves a stack half-updated after a failed deploy. With
``install()`` (called by ``harden_moto()``):

- change sets are created asynchronously: CREATE_PENDING, CREATE_IN_PROGRESS, then CREATE_COMPLETE or FAILED;
- ExecuteChangeSet and DeleteStack start an operation that ends ``delay`` seconds later (UPDATE_IN_PROGRESS →
  UPDATE_COMPLETE, DELETE_IN_PROGRESS → gone …), and DescribeStacks shows the previous state for ``stale``
  seconds after ExecuteChangeSet (eventual consistency);
- updates CloudFormation refuses are refused with its error codes and messages;
- a failed deploy rolls back (template, parameters, outputs and, as far as moto can, the resources);
  ``fail_next_deploy`` and a resource's ``Metadata: {"Stagecoach::Emulator": {"FailDeploy": "reason"}}``
  make a deploy fail on purpose, ``set_stack_status`` puts a stack in any state;
- templates are checked when the change set is created, with CloudFormation's messages (cfn_templates.py).

Time is read from an injectable monotonic clock and everything is evaluated when the emulator is called: no
threads, no sleeps. ``delay_seconds=0`` (the default) completes an operation at the first call after it
started, through the same code path. The extra state is plain data on each moto backend
(``export_state``/``import_state``).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from . import cfn_templates
from .cfn_templates import TemplateError

DELAY_ENV = "STAGECOACH_EMULATOR_CFN_DELAY_SECONDS"
STALE_ENV = "STAGECOACH_EMULATOR_CFN_STALE_SECONDS"
STATE_VERSION = 1
FAILED_ROLLBACKS = ("UPDATE_ROLLBACK_FAILED", "ROLLBACK_FAILED")
FINAL_STATUSES = ("UPDATE_ROLLBACK_COMPLETE", "ROLLBACK_COMPLETE", *FAILED_ROLLBACKS)
# https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_DescribeChangeSet.html
NO_CHANGES = "The submitted information didn't contain changes. Submit different information to create a change set."
DEFAULT_FAILURE = "Resource failed to deploy (emulated failure)"

log = logging.getLogger(__name__)
_LOCK = threading.RLock()
_installed = False


@dataclass
class Settings:
    """How long operations take and how long DescribeStacks lags behind, read from ``clock``."""

    delay_seconds: float = 0.0
    stale_seconds: float = 0.0
    clock: Callable[[], float] = time.monotonic


_settings = Settings()


def configure(
    delay_seconds: float | None = None,
    stale_seconds: float | None = None,
    clock: Callable[[], float] | None = None,
) -> Settings:
    """Change the given settings (the others stay); returns the previous settings."""
    global _settings
    if (delay_seconds is not None and delay_seconds < 0) or (stale_seconds is not None and stale_seconds < 0):
        raise ValueError("delay_seconds and stale_seconds must be >= 0")
    previous = _settings
    _settings = Settings(
        delay_seconds=previous.delay_seconds if delay_seconds is None else float(delay_seconds),
        stale_seconds=previous.stale_seconds if stale_seconds is None else float(stale_seconds),
        clock=previous.clock if clock is None else clock,
    )
    return previous


def restore(settings: Settings) -> None:
    """Put back settings returned by ``configure``."""
    global _settings
    _settings = settings


def current_settings() -> Settings:
    """The settings in force."""
    return _settings


def configure_from_environment(environ: Mapping[str, str] | None = None) -> Settings:
    """``configure`` from STAGECOACH_EMULATOR_CFN_DELAY_SECONDS / _STALE_SECONDS (unset: unchanged)."""
    env = os.environ if environ is None else environ
    values: dict[str, float] = {}
    for name, key in ((DELAY_ENV, "delay_seconds"), (STALE_ENV, "stale_seconds")):
        raw = env.get(name, "").strip()
        if not raw:
            continue
        try:
            values[key] = float(raw)
        except ValueError:
            raise ValueError(f"{name} must be a number of seconds, not {raw!r}") from None
    configure(delay_seconds=values.get("delay_seconds"), stale_seconds=values.get("stale_seconds"))
    return _settings


# --- the emulator's state: plain data hanging on each moto CloudFormation backend -----------------------


@dataclass
class Failure:
    """A deploy failing: the resource (None: the stack itself), the reason, and how its rollback ends."""

    resource: str | None
    reason: str
    final_status: str | None = None


@dataclass
class ChangeSetCreation:
    """A change set being created: it shows ``status`` (CREATE_COMPLETE or FAILED) ``seconds`` after ``started_at``."""

    stack_id: str
    started_at: float
    seconds: float
    status: str
    reason: str | None


@dataclass
class Operation:
    """The one operation in flight on a stack: CREATE / UPDATE (a change set), or DELETE.

    A phase lasts ``seconds``: FORWARD (CREATE_IN_PROGRESS …), then ROLLBACK if the deploy failed.
    """

    kind: str
    change_set_id: str | None
    phase: str
    phase_started_at: float
    seconds: float
    failure: Failure | None = None


@dataclass
class StaleView:
    """What DescribeStacks keeps showing until ``until``: the stack as it was before ExecuteChangeSet."""

    until: float
    status: str
    reason: str | None
    last_updated_time: str | None
    outputs: list[dict[str, Any]] | None
    parameters: list[dict[str, Any]]


@dataclass
class BackendState:
    """Everything the emulator adds to one account and region, keyed by change set id, stack id, stack name."""

    change_sets: dict[str, ChangeSetCreation] = field(default_factory=dict)
    operations: dict[str, Operation] = field(default_factory=dict)
    stale_views: dict[str, StaleView] = field(default_factory=dict)
    armed_failures: dict[str, Failure] = field(default_factory=dict)


def _state(backend: Any) -> BackendState:
    """The backend's state; moto's reset() empties the backend's __dict__, and with it this."""
    state = backend.__dict__.get("_stagecoach_cfn")
    if state is None:
        state = backend.__dict__["_stagecoach_cfn"] = BackendState()
    return state


def _backend(account_id: str | None = None, region: str | None = None) -> Any:
    from moto.cloudformation.models import cloudformation_backends
    from moto.core import DEFAULT_ACCOUNT_ID

    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return cloudformation_backends[account_id or DEFAULT_ACCOUNT_ID][region]


# --- errors, in CloudFormation's codes ---------------------------------------------------------------------


def _error(code: str, message: str) -> Exception:
    """A service error moto serialises with the code's HTTP status from the botocore model."""
    from moto.cloudformation.exceptions import CloudFormationError

    return CloudFormationError(code, message)


def _validation_error(message: str) -> Exception:
    from moto.cloudformation.exceptions import ValidationError

    return ValidationError(message=message)


def _not_updatable(stack: Any) -> Exception:
    return _validation_error(f"Stack:{stack.stack_id} is in {stack.status} state and can not be updated.")


def _is_updatable(status: str) -> bool:
    """https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/using-cfn-updating-stacks.html: no update
    of a stack in progress, rolled back after its creation (ROLLBACK_COMPLETE) or failed, but UPDATE_FAILED."""
    if status in ("ROLLBACK_COMPLETE", "REVIEW_IN_PROGRESS"):
        return False
    return not status.endswith("_IN_PROGRESS") and (not status.endswith("_FAILED") or status == "UPDATE_FAILED")


def _busy(status: str) -> bool:
    return status.endswith("_IN_PROGRESS") and status != "REVIEW_IN_PROGRESS"


# --- lookups -----------------------------------------------------------------------------------------------


def _active_stack(backend: Any, name_or_id: str) -> Any:
    """A stack that is not deleted, by name or id (None if there is none)."""
    stack = backend.stacks.get(name_or_id)
    if stack is not None:
        return stack
    return next((s for s in backend.stacks.values() if s.name == name_or_id), None)


def _find_change_set(backend: Any, name_or_id: str, stack_name: str | None = None) -> Any:
    """https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_DescribeChangeSet.html:
    ChangeSetNotFound (404) for a change set that does not exist (or was deleted)."""
    change_set = backend.change_sets.get(name_or_id)
    if change_set is None:
        change_set = next(
            (
                cs
                for cs in backend.change_sets.values()
                if cs.change_set_name == name_or_id and stack_name in (None, cs.stack_name, cs.stack_id)
            ),
            None,
        )
    if change_set is None:
        raise _error("ChangeSetNotFound", f"ChangeSet [{name_or_id}] does not exist")
    return change_set


def _delete_change_sets(backend: Any, stack_id: str, keep: Any = None) -> None:
    state = _state(backend)
    for change_set_id, change_set in list(backend.change_sets.items()):
        if change_set.stack_id == stack_id and change_set is not keep:
            del backend.change_sets[change_set_id]
            state.change_sets.pop(change_set_id, None)


# --- lazy evaluation: every call first brings the backend up to the clock ------------------------------


def settle(account_id: str | None = None, region: str | None = None) -> None:
    """Bring one account and region up to the clock (the emulator's own calls do this themselves)."""
    with _LOCK:
        _settle(_backend(account_id, region))


# Tests: stacks whose change sets ("change_set") or stack operations ("operation") never complete until let go.
_held: dict[str, set[str]] = {}


def hold(stack_name: str, what: str) -> None:
    """Keep the change sets (``what="change_set"``) or the operations (``"operation"``) of a stack in
    progress until ``let_go`` (a test's stand-in for a CloudFormation that takes very long)."""
    with _LOCK:
        _held.setdefault(stack_name, set()).add(what)


def let_go(stack_name: str) -> None:
    """Let what ``hold`` kept in progress complete at the next call."""
    with _LOCK:
        _held.pop(stack_name, None)


def _is_held(backend: Any, stack_id: str, what: str) -> bool:
    stack = backend.stacks.get(stack_id)
    return stack is not None and what in _held.get(stack.name, ())


def _settle(backend: Any) -> None:
    state = _state(backend)
    now = _settings.clock()
    for change_set_id, creation in list(state.change_sets.items()):
        change_set = backend.change_sets.get(change_set_id)
        if change_set is None:
            del state.change_sets[change_set_id]
        elif _is_held(backend, creation.stack_id, "change_set"):
            change_set.status = "CREATE_IN_PROGRESS"
        elif now >= creation.started_at + creation.seconds:
            change_set.status = creation.status
            change_set.execution_status = "AVAILABLE" if creation.status == "CREATE_COMPLETE" else "UNAVAILABLE"
            change_set.status_reason = creation.reason
            del state.change_sets[change_set_id]
        elif now >= creation.started_at + creation.seconds / 2:
            change_set.status = "CREATE_IN_PROGRESS"
    for stack_id, operation in list(state.operations.items()):
        if not _is_held(backend, stack_id, "operation"):
            _advance(backend, stack_id, operation, now)
    for stack_id, view in list(state.stale_views.items()):
        if now >= view.until:
            del state.stale_views[stack_id]


def _advance(backend: Any, stack_id: str, operation: Operation, now: float) -> None:
    """Run the operation's phases that have ended by ``now``; each ends where the previous one did."""
    state = _state(backend)
    while now >= operation.phase_started_at + operation.seconds:
        ended_at = operation.phase_started_at + operation.seconds
        stack = backend.stacks.get(stack_id)
        change_set = backend.change_sets.get(operation.change_set_id or "")
        if stack is None or (operation.kind != "DELETE" and change_set is None):
            del state.operations[stack_id]
            return
        if operation.kind == "DELETE":
            del state.operations[stack_id]
            _finish_delete(backend, stack)
            return
        if operation.phase == "FORWARD":
            failure = operation.failure or _apply(backend, stack, change_set)
            if failure is None:
                del state.operations[stack_id]
                _finish_deploy(stack, change_set, operation.kind)
                return
            operation.failure = failure
            operation.phase, operation.phase_started_at = "ROLLBACK", ended_at
            _start_rollback(stack, change_set, operation.kind, failure)
            continue
        del state.operations[stack_id]
        _finish_rollback(stack, change_set, operation)
        return


# --- CreateChangeSet -------------------------------------------------------------------------------------


@dataclass
class ChangeSetRequest:
    """A CreateChangeSet call."""

    stack_name: str
    change_set_name: str
    change_set_type: str = "UPDATE"
    template_body: str | None = None
    template_url: str | None = None
    use_previous_template: bool = False
    parameters: list[dict[str, Any]] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    capabilities: list[str] = field(default_factory=list)
    role_arn: str | None = None
    description: str | None = None
    notification_arns: list[str] = field(default_factory=list)


def create_change_set(backend: Any, request: ChangeSetRequest) -> tuple[str, str]:
    """CreateChangeSet: checks what CloudFormation checks at once, then creates the change set
    asynchronously. Returns (change set id, stack id).

    https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_CreateChangeSet.html: UPDATE needs a
    stack that exists and is not REVIEW_IN_PROGRESS; CREATE makes a REVIEW_IN_PROGRESS stack or reuses one.
    """
    from moto.cloudformation.exceptions import AlreadyExistsException
    from moto.cloudformation.utils import validate_create_change_set

    with _LOCK:
        _settle(backend)
        validate_create_change_set(request.change_set_name)
        kind = request.change_set_type
        if kind not in ("CREATE", "UPDATE"):
            raise _validation_error(f"ChangeSetType {kind} is not supported by the emulator (CREATE or UPDATE)")
        stack = _active_stack(backend, request.stack_name)
        if kind == "UPDATE":
            if stack is None or stack.status == "REVIEW_IN_PROGRESS":
                raise _validation_error(f"Stack [{request.stack_name}] does not exist")
            if not _is_updatable(stack.status):
                raise _not_updatable(stack)
        elif stack is not None and stack.status != "REVIEW_IN_PROGRESS":
            raise _validation_error(
                f"Stack [{request.stack_name}] already exists and cannot be created again "
                f"with the changeSet [{request.change_set_name}]."
            )
        if stack is not None and any(
            cs.stack_id == stack.stack_id and cs.change_set_name == request.change_set_name
            for cs in backend.change_sets.values()
        ):
            raise AlreadyExistsException(f"ChangeSet [{request.change_set_name}] already exists")
        body = _template_body(backend, request, stack)
        old_document = _document(stack.template) if kind == "UPDATE" else {}
        try:
            document = cfn_templates.parse_template(body)
            cfn_templates.check_template(document, backend.region_name)
            values = cfn_templates.parameter_values(
                document, _given_parameters(request.parameters, stack, old_document)
            )
        except TemplateError as error:
            raise _validation_error(str(error)) from None
        try:
            cfn_templates.check_capabilities(document, request.capabilities)
        except TemplateError as error:
            raise _error("InsufficientCapabilitiesException", str(error)) from None
        if stack is None:
            stack = _new_review_stack(backend, request, values)
        return _add_change_set(backend, stack, request, body, document, old_document, values)


def _template_body(backend: Any, request: ChangeSetRequest, stack: Any) -> str:
    if request.use_previous_template:
        if request.template_body or request.template_url:
            raise _validation_error("You cannot specify both usePreviousTemplate and Template Body/Template URL.")
        if request.change_set_type != "UPDATE" or not isinstance(stack.template, str):
            raise _validation_error("Either Template URL or Template Body must be specified.")
        return str(stack.template)
    if request.template_body:
        return request.template_body
    if not request.template_url:
        raise _validation_error("Either Template URL or Template Body must be specified.")
    from moto.cloudformation.utils import get_stack_from_s3_url
    from moto.utilities.utils import get_partition

    try:
        return get_stack_from_s3_url(
            request.template_url, account_id=backend.account_id, partition=get_partition(backend.region_name)
        )
    except Exception:
        # https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/troubleshooting.html: S3 errors
        raise _validation_error("S3 error: Access Denied") from None


def _document(template: Any) -> dict[str, Any]:
    """A deployed template as a dict ({} for a stack without one)."""
    if not isinstance(template, str):
        return {}
    try:
        return cfn_templates.parse_template(template)
    except TemplateError:
        return {}


def _deployed_parameters(stack: Any, document: Mapping[str, Any]) -> dict[str, str]:
    """The stack's parameter values, defaults included, as they were given (before moto's conversions)."""
    declared = document.get("Parameters") or {}
    values = {}
    for name, spec in declared.items():
        if name in stack.parameters:
            values[name] = str(stack.parameters[name])
        elif isinstance(spec, dict) and "Default" in spec:
            values[name] = cfn_templates.parameter_text(spec["Default"])
    return values


def _given_parameters(parameters: list[dict[str, Any]], stack: Any, old_document: Mapping[str, Any]) -> dict[str, str]:
    previous = _deployed_parameters(stack, old_document) if stack is not None else {}
    given: dict[str, str] = {}
    for parameter in parameters:
        key = parameter.get("ParameterKey")
        if not key:
            continue
        if parameter.get("UsePreviousValue") in (True, "true", "True"):
            if key in previous:
                given[key] = previous[key]
        elif parameter.get("ParameterValue") is not None:
            given[key] = str(parameter["ParameterValue"])
    return given


def _new_review_stack(backend: Any, request: ChangeSetRequest, values: dict[str, str]) -> Any:
    from moto.cloudformation.models import Stack
    from moto.cloudformation.utils import generate_stack_id

    stack = Stack(  # type: ignore[abstract]
        stack_id=generate_stack_id(request.stack_name, backend.region_name, backend.account_id),
        name=request.stack_name,
        template={},
        parameters=values,
        account_id=backend.account_id,
        region_name=backend.region_name,
        notification_arns=request.notification_arns,
        tags=request.tags,
        role_arn=request.role_arn,
    )
    stack.status = "REVIEW_IN_PROGRESS"
    stack._add_stack_event("REVIEW_IN_PROGRESS", resource_status_reason="User Initiated")
    backend.stacks[stack.stack_id] = stack
    return stack


def _physical_ids(stack: Any) -> dict[str, str]:
    ids: dict[str, str] = {}
    for name, resource in stack.resource_map._parsed_resources.items():
        try:
            physical_id = getattr(resource, "physical_resource_id", None)
        except Exception:
            continue
        if isinstance(physical_id, str) and name in stack.resource_map._resource_json_map:
            ids[name] = physical_id
    return ids


def _add_change_set(
    backend: Any,
    stack: Any,
    request: ChangeSetRequest,
    body: str,
    document: dict[str, Any],
    old_document: dict[str, Any],
    values: dict[str, str],
) -> tuple[str, str]:
    from moto.cloudformation.models import ChangeSet
    from moto.cloudformation.utils import generate_changeset_id

    change_set = ChangeSet(
        change_set_type=request.change_set_type,
        change_set_id=generate_changeset_id(request.change_set_name, backend.region_name, backend.account_id),
        change_set_name=request.change_set_name,
        stack=stack,
        template=body,
        parameters=values,
        description=request.description or "",
        notification_arns=request.notification_arns,
        tags=request.tags,
        role_arn=request.role_arn,
    )
    old_values = _deployed_parameters(stack, old_document) if request.change_set_type == "UPDATE" else {}
    tags_changed = bool(request.tags) and request.tags != stack.tags
    change_set.changes = cfn_templates.resource_changes(  # type: ignore[assignment]
        old_document, old_values, document, values, _physical_ids(stack), backend.region_name, tags_changed
    )
    change_set.capabilities = list(request.capabilities)  # type: ignore[attr-defined]
    change_set.status, change_set.execution_status, change_set.status_reason = "CREATE_PENDING", "UNAVAILABLE", None
    # Only the same template, parameters and tags make no change: new stack tags update the taggable resources.
    unchanged = request.change_set_type == "UPDATE" and document == old_document and values == old_values
    unchanged = unchanged and not tags_changed
    backend.change_sets[change_set.change_set_id] = change_set
    _state(backend).change_sets[change_set.change_set_id] = ChangeSetCreation(
        stack_id=stack.stack_id,
        started_at=_settings.clock(),
        seconds=_settings.delay_seconds,
        status="FAILED" if unchanged else "CREATE_COMPLETE",
        reason=NO_CHANGES if unchanged else None,
    )
    return change_set.change_set_id, stack.stack_id


# --- ExecuteChangeSet ------------------------------------------------------------------------------------


def execute_change_set(backend: Any, change_set_name: str, stack_name: str | None = None) -> None:
    """ExecuteChangeSet: starts the stack's CREATE or UPDATE and returns at once.

    https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_ExecuteChangeSet.html: only an
    AVAILABLE change set of a stack that is not in progress (else InvalidChangeSetStatus, 400); CloudFormation
    deletes the stack's other change sets; DescribeStacks shows the update.
    """
    with _LOCK:
        _settle(backend)
        change_set = _find_change_set(backend, change_set_name, stack_name)
        if change_set.execution_status != "AVAILABLE":
            raise _error(
                "InvalidChangeSetStatus",
                f"ChangeSet [{change_set.change_set_id}] cannot be executed in its current execution status "
                f"of [{change_set.execution_status}]",
            )
        stack = backend.stacks.get(change_set.stack_id)
        if stack is None:
            raise _error("ChangeSetNotFound", f"ChangeSet [{change_set_name}] does not exist")
        if _busy(stack.status):
            raise _error(
                "InvalidChangeSetStatus", f"Stack:{stack.stack_id} is in {stack.status} state and can not be updated."
            )
        kind = change_set.change_set_type
        if kind == "UPDATE" and not _is_updatable(stack.status):
            raise _not_updatable(stack)
        state, now = _state(backend), _settings.clock()
        if _settings.stale_seconds > 0:
            state.stale_views[stack.stack_id] = _stale_view(stack, now + _settings.stale_seconds)
        _delete_change_sets(backend, stack.stack_id, keep=change_set)
        change_set.execution_status = "EXECUTE_IN_PROGRESS"
        _set_status(stack, f"{kind}_IN_PROGRESS", "User Initiated")
        stack.last_updated_time = _utcnow()
        state.operations[stack.stack_id] = Operation(
            kind=kind,
            change_set_id=change_set.change_set_id,
            phase="FORWARD",
            phase_started_at=now,
            seconds=_settings.delay_seconds,
            failure=_planned_failure(state, stack, change_set),
        )


def _planned_failure(state: BackendState, stack: Any, change_set: Any) -> Failure | None:
    """The failure armed by ``fail_next_deploy``, else the one the template's Metadata asks for."""
    armed = state.armed_failures.pop(stack.name, None)
    if armed is not None:
        if armed.resource is None:
            names = [c["LogicalResourceId"] for c in change_set.changes if c["Action"] in ("Add", "Modify")]
            names = names or list(_document(change_set.template).get("Resources") or {})
            armed.resource = names[0] if names else None
        return armed
    asked = cfn_templates.emulator_failure(_document(change_set.template))
    return Failure(resource=asked[0], reason=asked[1]) if asked else None


def _stale_view(stack: Any, until: float) -> StaleView:
    last_updated = getattr(stack, "last_updated_time", None)
    return StaleView(
        until=until,
        status=stack.status,
        reason=getattr(stack, "status_reason", None),
        last_updated_time=last_updated.isoformat() if last_updated else None,
        outputs=_outputs(stack),
        parameters=_parameter_list(stack),
    )


def _outputs(stack: Any) -> list[dict[str, Any]] | None:
    try:
        return copy.deepcopy(stack.outputs)
    except Exception:
        return None


def _parameter_list(stack: Any) -> list[dict[str, Any]]:
    try:
        return copy.deepcopy(stack.parameter_list)
    except Exception:
        return []


def _utcnow() -> datetime:
    from moto.core.utils import utcnow

    return utcnow()


def _set_status(stack: Any, status: str, reason: str | None = None) -> None:
    stack.status = status
    stack.status_reason = reason
    stack._add_stack_event(status, resource_status_reason=reason)


def _resource_event(stack: Any, logical_id: str, resource_type: str, status: str, reason: str) -> None:
    from moto.cloudformation.models import Event

    stack.events.append(
        Event(
            stack_id=stack.stack_id,
            stack_name=stack.name,
            logical_resource_id=logical_id,
            physical_resource_id=_physical_ids(stack).get(logical_id, ""),
            resource_type=resource_type,
            resource_status=status,
            resource_status_reason=reason,
            resource_properties=None,
        )
    )


# --- applying a change set to moto, and undoing it when it fails --------------------------------------


@dataclass
class _Snapshot:
    """What a failed deploy must give back: the stack's own view and its resource map's bookkeeping."""

    stack_fields: dict[str, Any]
    map_fields: dict[str, Any]
    parsed: dict[str, Any]
    exports: dict[str, Any]


_STACK_FIELDS = ("template", "template_dict", "parameters", "description", "output_map", "tags", "role_arn")
_MAP_FIELDS = (
    "_template",
    "_resource_json_map",
    "input_parameters",
    "resolved_parameters",
    "lazy_condition_map",
    "no_echo_parameter_keys",
)


def _snapshot(backend: Any, stack: Any) -> _Snapshot:
    resource_map = stack.resource_map
    return _Snapshot(
        stack_fields={name: getattr(stack, name, None) for name in _STACK_FIELDS},
        map_fields={name: copy.copy(getattr(resource_map, name, None)) for name in _MAP_FIELDS},
        parsed=dict(resource_map._parsed_resources),
        exports=dict(backend.exports),
    )


def _apply(backend: Any, stack: Any, change_set: Any) -> Failure | None:
    """Deploy the change set into moto (resources, then the stack's template, parameters, outputs, tags,
    exports); on any error put everything back and return the failure (never raise: a deploy that fails is
    a rollback, not a 500)."""
    snapshot = _snapshot(backend, stack)
    resource: str | None = None
    try:
        try:
            change_set.apply()
        except Exception as error:
            changed = [c["LogicalResourceId"] for c in change_set.changes]
            resource = getattr(error, "_stagecoach_resource", None) or (changed[0] if changed else None)
            raise
        _refresh(backend, stack, change_set)  # an output or export that fails is the stack's failure
        return None
    except Exception as error:
        log.warning("emulated deploy of %s failed at %s: %r", stack.name, resource or "the stack", error)
        _undo(backend, stack, change_set, snapshot)
        return Failure(resource=resource, reason=_message(error))


def _message(error: Exception) -> str:
    message = getattr(error, "message", None)
    if isinstance(error, KeyError):
        return f"Template error: unresolved reference {error}"
    return str(message or error) or type(error).__name__


def _refresh(backend: Any, stack: Any, change_set: Any) -> None:
    """The stack as CloudFormation shows it after the deploy (moto only updates the resources)."""
    stack.template = change_set.template
    stack.parameters = dict(change_set.parameters)
    stack._parse_template()
    stack.description = stack.template_dict.get("Description")
    stack.output_map = stack._create_output_map()
    stack.outputs  # noqa: B018 - evaluated now: an output that cannot be resolved fails the deploy
    if change_set.tags:
        stack.tags = dict(change_set.tags)
    if change_set.role_arn:
        stack.role_arn = change_set.role_arn
    for name, export in list(backend.exports.items()):
        if export.exporting_stack_id == stack.stack_id:
            del backend.exports[name]
    for export in stack.exports:
        other = backend.exports.get(export.name)
        if other is not None:
            raise ValueError(f"Export with name {export.name} is already exported by stack {other.exporting_stack_id}")
        backend.exports[export.name] = export


def _undo(backend: Any, stack: Any, change_set: Any, snapshot: _Snapshot) -> None:
    """Roll moto back to the snapshot: the stack's view exactly, the resources as far as moto can (delete
    what the attempt created, update back what it replaced, create again what it deleted)."""
    from moto.cloudformation.parsing import parse_and_update_resource

    resource_map = stack.resource_map
    attempted = change_set.template_dict.get("Resources") or {}
    previous = snapshot.map_fields["_resource_json_map"] or {}
    parsed = resource_map._parsed_resources
    current = dict(parsed)
    for name, resource in current.items():
        if name in attempted and name not in snapshot.parsed and hasattr(resource, "__dict__"):
            _best_effort(f"delete {name}", resource_map._delete_resource, resource, attempted[name])
    for name, value in snapshot.map_fields.items():
        setattr(resource_map, name, value)
    replaced = [n for n in previous if n in current and n in snapshot.parsed and current[n] is not snapshot.parsed[n]]
    removed = [n for n in previous if n in snapshot.parsed and n not in current]
    parsed.clear()
    parsed.update(snapshot.parsed)
    for name in removed:
        del parsed[name]
        _best_effort(f"create {name} again", resource_map.__getitem__, name)
    for name in replaced:
        parsed[name] = current[name]
        args = (name, copy.deepcopy(previous[name]), resource_map, backend.account_id, backend.region_name)
        updated = _best_effort(f"update {name} back", parse_and_update_resource, *args)
        if updated is not None:
            parsed[name] = updated
    for name, value in snapshot.stack_fields.items():
        setattr(stack, name, value)
    backend.exports.clear()
    backend.exports.update(snapshot.exports)


def _best_effort(what: str, action: Callable[..., Any], *args: Any) -> Any:
    try:
        return action(*args)
    except Exception as error:
        log.warning("emulated rollback could not %s: %r", what, error)
        return None


def _track_failing_resources() -> None:
    """Tag an exception raised while moto creates or updates a resource with the resource's logical id
    (the innermost one), so a failed deploy names the resource that failed, as CloudFormation does."""
    import moto.cloudformation.parsing as parsing

    for name in ("parse_and_create_resource", "parse_and_update_resource"):
        original: Callable[..., Any] = getattr(parsing, name)

        @functools.wraps(original)
        def tracked(logical_id: str, *args: Any, __original: Callable[..., Any] = original, **kwargs: Any) -> Any:
            try:
                return __original(logical_id, *args, **kwargs)
            except Exception as error:
                if not hasattr(error, "_stagecoach_resource"):
                    with contextlib.suppress(AttributeError):
                        error._stagecoach_resource = logical_id  # type: ignore[attr-defined]
                raise

        setattr(parsing, name, tracked)


# --- the ends of an operation ------------------------------------------------------------------------------


def _finish_deploy(stack: Any, change_set: Any, kind: str) -> None:
    change_set.execution_status = "EXECUTE_COMPLETE"
    _set_status(stack, f"{kind}_COMPLETE")


def _start_rollback(stack: Any, change_set: Any, kind: str, failure: Failure) -> None:
    """https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/stack-failure-options.html: the failed
    resource, then the rollback, whose reason names the resource (ROLLBACK_IN_PROGRESS for a new stack)."""
    if failure.resource is None:
        reason = failure.reason
    else:
        existed = failure.resource in (_document(stack.template).get("Resources") or {})
        verb = "update" if existed else "create"
        resource = (_document(change_set.template).get("Resources") or {}).get(failure.resource) or {}
        _resource_event(stack, failure.resource, resource.get("Type", ""), f"{verb.upper()}_FAILED", failure.reason)
        reason = f"The following resource(s) failed to {verb}: [{failure.resource}]."
    if kind == "CREATE":
        _set_status(stack, "ROLLBACK_IN_PROGRESS", f"{reason.rstrip('.')}. Rollback requested by user.")
    else:
        _set_status(stack, "UPDATE_ROLLBACK_IN_PROGRESS", reason)


def _finish_rollback(stack: Any, change_set: Any, operation: Operation) -> None:
    """UPDATE_ROLLBACK_COMPLETE (the previous template, parameters and outputs are back) or ROLLBACK_COMPLETE
    for a new stack; *_ROLLBACK_FAILED when asked (a stack that needs ContinueUpdateRollback)."""
    assert operation.failure is not None
    rollback_failed = operation.failure.final_status in FAILED_ROLLBACKS
    if operation.kind == "CREATE":
        status = "ROLLBACK_FAILED" if rollback_failed else "ROLLBACK_COMPLETE"
        stack.template = change_set.template  # GetTemplate shows what it tried to create
    else:
        status = "UPDATE_ROLLBACK_FAILED" if rollback_failed else "UPDATE_ROLLBACK_COMPLETE"
    change_set.execution_status = "EXECUTE_FAILED"
    _set_status(stack, status, stack.status_reason)


def _finish_delete(backend: Any, stack: Any) -> None:
    """https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_DescribeStacks.html: a deleted
    stack is found by its id only (DELETE_COMPLETE); its change sets go with it."""
    try:
        stack.resource_map.delete()
    except Exception as error:
        _set_status(stack, "DELETE_FAILED", f"The following resource(s) failed to delete: {_message(error)}")
        return
    _set_status(stack, "DELETE_COMPLETE")
    stack.deletion_time = _utcnow()
    backend.stacks.pop(stack.stack_id, None)
    backend.deleted_stacks[stack.stack_id] = stack
    for name, export in list(backend.exports.items()):
        if export.exporting_stack_id == stack.stack_id:
            del backend.exports[name]
    _delete_change_sets(backend, stack.stack_id)
    _state(backend).stale_views.pop(stack.stack_id, None)


# --- the other calls ---------------------------------------------------------------------------------------


def delete_stack(backend: Any, name_or_stack_id: str) -> None:
    """DeleteStack: DELETE_IN_PROGRESS, then gone; a missing or deleted stack is no error, as on AWS.

    https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_DeleteStack.html
    """
    with _LOCK:
        _settle(backend)
        stack = _active_stack(backend, name_or_stack_id)
        if stack is None or stack.status == "DELETE_IN_PROGRESS":
            return
        if _busy(stack.status):
            raise _validation_error(f"Stack [{stack.name}] cannot be deleted while in status {stack.status}")
        state = _state(backend)
        state.stale_views.pop(stack.stack_id, None)
        _set_status(stack, "DELETE_IN_PROGRESS", "User Initiated")
        state.operations[stack.stack_id] = Operation(
            kind="DELETE",
            change_set_id=None,
            phase="FORWARD",
            phase_started_at=_settings.clock(),
            seconds=_settings.delay_seconds,
        )


def delete_change_set(backend: Any, change_set_name: str) -> None:
    """DeleteChangeSet; InvalidChangeSetStatus while it is being created or executed.

    https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_DeleteChangeSet.html
    """
    with _LOCK:
        _settle(backend)
        change_set = _find_change_set(backend, change_set_name)
        if change_set.status in ("CREATE_PENDING", "CREATE_IN_PROGRESS") or (
            change_set.execution_status == "EXECUTE_IN_PROGRESS"
        ):
            raise _error(
                "InvalidChangeSetStatus",
                "An operation on this ChangeSet is currently in progress. Please attempt this operation again later.",
            )
        del backend.change_sets[change_set.change_set_id]


def _describe_stacks(backend: Any, name_or_stack_id: str | None, original: Callable[..., Any]) -> list[Any]:
    """DescribeStacks, with the previous state for ``stale`` seconds after ExecuteChangeSet."""
    with _LOCK:
        _settle(backend)
        stacks: list[Any] = original(backend, name_or_stack_id)
        views = _state(backend).stale_views
        return [_stale_stack(stack, views[stack.stack_id]) if stack.stack_id in views else stack for stack in stacks]


class _StaleStack:
    """A stack as DescribeStacks showed it before the update started; reads anything else from the stack.

    Named ``Stack`` below: moto's serializer finds ``StackStatus`` as ``status`` through the class name.
    """

    def __init__(self, stack: Any, view: StaleView) -> None:
        self._stack = stack
        self.status, self.status_reason = view.status, view.reason
        self.last_updated_time = datetime.fromisoformat(view.last_updated_time) if view.last_updated_time else None
        self.outputs, self.parameter_list = view.outputs, view.parameters

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stack, name)


_StaleStack.__name__ = "Stack"


def _stale_stack(stack: Any, view: StaleView) -> Any:
    return _StaleStack(stack, view)


def _check_update_stack(backend: Any, name: str) -> None:
    """UpdateStack is refused as an UPDATE change set is (moto only refuses ROLLBACK_COMPLETE)."""
    with _LOCK:
        _settle(backend)
        stack = _active_stack(backend, name)
        if stack is not None and not _is_updatable(stack.status):
            raise _not_updatable(stack)


def validate_template(backend: Any, body: str) -> dict[str, Any]:
    """ValidateTemplate with the checks and messages of CreateChangeSet.

    https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_ValidateTemplate.html
    """
    try:
        document = cfn_templates.parse_template(body)
        cfn_templates.check_template(document, backend.region_name)
    except TemplateError as error:
        raise _validation_error(str(error)) from None
    parameters = []
    for name, spec in (document.get("Parameters") or {}).items():
        parameter: dict[str, Any] = {"ParameterKey": name, "NoEcho": bool(spec.get("NoEcho", False))}
        if "Default" in spec:
            parameter["DefaultValue"] = cfn_templates.parameter_text(spec["Default"])
        if "Description" in spec:
            parameter["Description"] = spec["Description"]
        parameters.append(parameter)
    capability, types = cfn_templates.required_capabilities(document)
    transform = document.get("Transform")
    result: dict[str, Any] = {
        "Parameters": parameters,
        "Description": document.get("Description"),
        "Capabilities": [capability] if capability else [],
        "DeclaredTransforms": [transform] if isinstance(transform, str) else list(transform or []),
    }
    if capability:
        result["CapabilitiesReason"] = f"The following resource(s) require capabilities: [{', '.join(types)}]"
    return result


# --- test and operator API ---------------------------------------------------------------------------------


def fail_next_deploy(
    stack_name: str,
    reason: str = DEFAULT_FAILURE,
    final_status: str | None = None,
    *,
    resource: str | None = None,
    account_id: str | None = None,
    region: str | None = None,
) -> None:
    """The next ExecuteChangeSet of ``stack_name`` fails at ``resource`` (default: the first resource the
    change set adds or modifies) and rolls back. ``final_status``: None or *ROLLBACK_COMPLETE for a
    rollback that works, *ROLLBACK_FAILED for one that fails (UPDATE_ or not, as the deploy is)."""
    if final_status is not None and final_status not in FINAL_STATUSES:
        raise ValueError(f"final_status must be one of {', '.join(FINAL_STATUSES)}")
    with _LOCK:
        state = _state(_backend(account_id, region))
        state.armed_failures[stack_name] = Failure(resource=resource, reason=reason, final_status=final_status)


def set_stack_status(
    stack_name: str,
    status: str,
    reason: str | None = None,
    *,
    account_id: str | None = None,
    region: str | None = None,
) -> None:
    """Put a stack into any state (as another actor would); an operation in flight is abandoned and its
    change set ends EXECUTE_FAILED."""
    with _LOCK:
        backend = _backend(account_id, region)
        _settle(backend)
        stack = _active_stack(backend, stack_name)
        if stack is None:
            raise ValueError(f"no stack {stack_name} in the emulator")
        state = _state(backend)
        operation = state.operations.pop(stack.stack_id, None)
        change_set = backend.change_sets.get(operation.change_set_id or "") if operation else None
        if change_set is not None and change_set.execution_status == "EXECUTE_IN_PROGRESS":
            change_set.execution_status = "EXECUTE_FAILED"
        state.stale_views.pop(stack.stack_id, None)
        _set_status(stack, status, reason)


# --- persistence ---------------------------------------------------------------------------------------------


def export_state() -> dict[str, Any]:
    """The emulator's state of every account and region, JSON-serialisable; times are ages (seconds)."""
    from moto.cloudformation.models import cloudformation_backends

    now = _settings.clock()
    backends = []
    with _LOCK:
        for account_id, regions in list(cloudformation_backends.items()):
            for region, backend in list(regions.items()):
                state = backend.__dict__.get("_stagecoach_cfn")
                if state is None or state == BackendState():
                    continue
                backends.append(
                    {
                        "account_id": account_id,
                        "region": region,
                        "change_sets": {
                            k: _aged(dataclasses.asdict(v), "started_at", now) for k, v in state.change_sets.items()
                        },
                        "operations": {
                            k: _aged(dataclasses.asdict(v), "phase_started_at", now)
                            for k, v in state.operations.items()
                        },
                        "stale_views": {
                            k: _aged(dataclasses.asdict(v), "until", now) for k, v in state.stale_views.items()
                        },
                        "armed_failures": {k: dataclasses.asdict(v) for k, v in state.armed_failures.items()},
                    }
                )
    return {"version": STATE_VERSION, "backends": backends}


def import_state(data: Mapping[str, Any]) -> None:
    """Replace the state of the accounts and regions in ``data`` (from ``export_state``), ages against now."""
    if data.get("version") != STATE_VERSION:
        raise ValueError(f"unsupported emulator state version {data.get('version')!r}")
    now = _settings.clock()
    with _LOCK:
        for entry in data.get("backends", []):
            backend = _backend(entry["account_id"], entry["region"])
            backend.__dict__["_stagecoach_cfn"] = BackendState(
                change_sets={
                    k: ChangeSetCreation(**_dated(v, "started_at", now)) for k, v in entry["change_sets"].items()
                },
                operations={k: _operation(_dated(v, "phase_started_at", now)) for k, v in entry["operations"].items()},
                stale_views={k: StaleView(**_dated(v, "until", now)) for k, v in entry["stale_views"].items()},
                armed_failures={k: Failure(**v) for k, v in entry["armed_failures"].items()},
            )


def fingerprint() -> int:
    """A hash of what the emulator's calls change (stack and change set statuses, events, operations in
    flight): a read that settled an operation changes it. Cheap: O(stacks)."""
    from moto.cloudformation.models import cloudformation_backends

    parts: list[Any] = []
    with _LOCK:
        for account_id, regions in list(cloudformation_backends.items()):
            for region, backend in list(regions.items()):
                state = _state(backend)
                parts.append((account_id, region, len(backend.deleted_stacks)))
                parts.extend((k, s.status, len(s.events)) for k, s in backend.stacks.items())
                parts.extend((k, c.status, c.execution_status) for k, c in backend.change_sets.items())
                parts.extend((k, o.phase, o.phase_started_at) for k, o in state.operations.items())
                parts.extend(state.change_sets)
                parts.extend(state.stale_views)
                parts.extend(state.armed_failures)
    return hash(tuple(parts))


def _aged(record: dict[str, Any], key: str, now: float) -> dict[str, Any]:
    record[f"{key}_age_seconds"] = now - record.pop(key)
    return record


def _dated(record: Mapping[str, Any], key: str, now: float) -> dict[str, Any]:
    fields = dict(record)
    fields[key] = now - fields.pop(f"{key}_age_seconds")
    return fields


def _operation(fields: dict[str, Any]) -> Operation:
    failure = fields.pop("failure")
    return Operation(**fields, failure=Failure(**failure) if failure else None)


# --- installation --------------------------------------------------------------------------------------------


def install() -> None:
    """Patch moto's CloudFormation backend and responses (idempotent)."""
    global _installed
    with _LOCK:
        if _installed:
            return
        _install()
        _installed = True


def _install() -> None:
    from moto.cloudformation.models import CloudFormationBackend
    from moto.cloudformation.responses import CloudFormationResponse, transform_dict
    from moto.core.responses import ActionResult

    def settled(name: str) -> None:
        original: Callable[..., Any] = getattr(CloudFormationBackend, name)

        @functools.wraps(original)
        def call(backend: Any, *args: Any, **kwargs: Any) -> Any:
            with _LOCK:
                _settle(backend)
                return original(backend, *args, **kwargs)

        setattr(CloudFormationBackend, name, call)

    for name in ("get_stack", "list_stacks", "list_change_sets"):
        settled(name)
    original_describe: Callable[..., Any] = CloudFormationBackend.describe_stacks
    original_update: Callable[..., Any] = CloudFormationBackend.update_stack

    def describe(backend: Any, name_or_stack_id: str) -> list[Any]:
        return _describe_stacks(backend, name_or_stack_id, original_describe)

    def describe_change_set(backend: Any, change_set_name: str) -> Any:
        with _LOCK:
            _settle(backend)
            return _find_change_set(backend, change_set_name)

    def update_stack(backend: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        with _LOCK:
            _check_update_stack(backend, name)
            return original_update(backend, name, *args, **kwargs)

    def backend_create_change_set(
        backend: Any,
        stack_name: str,
        change_set_name: str,
        template: str,
        parameters: dict[str, str],
        description: str,
        change_set_type: str,
        notification_arns: list[str] | None = None,
        tags: dict[str, str] | None = None,
        role_arn: str | None = None,
    ) -> tuple[str, str]:
        request = ChangeSetRequest(
            stack_name=stack_name,
            change_set_name=change_set_name,
            change_set_type=change_set_type,
            template_body=template,
            parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            tags=tags or {},
            role_arn=role_arn,
            description=description,
            notification_arns=notification_arns or [],
        )
        return create_change_set(backend, request)

    CloudFormationBackend.describe_stacks = describe  # type: ignore[method-assign,assignment]
    CloudFormationBackend.describe_change_set = describe_change_set  # type: ignore[method-assign,assignment]
    CloudFormationBackend.update_stack = update_stack  # type: ignore[method-assign,assignment]
    CloudFormationBackend.create_change_set = backend_create_change_set  # type: ignore[method-assign,assignment]
    CloudFormationBackend.execute_change_set = execute_change_set  # type: ignore[method-assign,assignment]
    CloudFormationBackend.delete_change_set = delete_change_set  # type: ignore[method-assign,assignment]
    CloudFormationBackend.delete_stack = delete_stack  # type: ignore[method-assign,assignment]

    def response_create_change_set(response: Any) -> Any:
        request = ChangeSetRequest(
            stack_name=response._get_param("StackName"),
            change_set_name=response._get_param("ChangeSetName"),
            change_set_type=response._get_param("ChangeSetType", "UPDATE"),
            template_body=response._get_param("TemplateBody"),
            template_url=response._get_param("TemplateURL"),
            use_previous_template=response._get_bool_param("UsePreviousTemplate", False),
            parameters=response._get_param("Parameters", []),
            tags={tag["Key"]: tag["Value"] for tag in response._get_param("Tags", [])},
            capabilities=response._get_param("Capabilities", []),
            role_arn=response._get_param("RoleARN"),
            description=response._get_param("Description"),
            notification_arns=response._get_param("NotificationARNs", []),
        )
        change_set_id, stack_id = create_change_set(response.cloudformation_backend, request)
        return ActionResult({"Id": change_set_id, "StackId": stack_id})

    def response_validate_template(response: Any) -> Any:
        body = response._get_param("TemplateBody")
        url = response._get_param("TemplateURL")
        backend = response.cloudformation_backend
        if url:
            body = _template_body(backend, ChangeSetRequest(stack_name="", change_set_name="", template_url=url), None)
        if not body:
            raise _validation_error("Either Template URL or Template Body must be specified.")
        return ActionResult(validate_template(backend, body))

    CloudFormationResponse.create_change_set = response_create_change_set  # type: ignore[method-assign,assignment]
    CloudFormationResponse.validate_template = response_validate_template  # type: ignore[method-assign,assignment]
    # DescribeChangeSet Tags are a list of {Key, Value}, as DescribeStacks Tags.
    CloudFormationResponse.RESPONSE_KEY_PATH_TO_TRANSFORMER["DescribeChangeSetOutput.Tags"] = transform_dict
    _track_failing_resources()
    _sub_references()


_SUB_NAME = re.compile(r"\$\{(?!!)([A-Za-z0-9_:.]+)\}")


def _sub_references() -> None:
    """A resource whose ``Fn::Sub`` names a parameter that changed is updated, as on AWS.

    moto 5.2.5 looks for changed parameters only in ``Ref``s of an unchanged resource, so a resource that
    uses ``!Sub "...${Sha}"`` kept its old value when only the parameter changed (the example service
    stamps its commit that way). CloudFormation resolves every reference, ``Fn::Sub`` variables included
    (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/intrinsic-function-reference-sub.html).
    """
    from moto.cloudformation import parsing

    def references(template: Any) -> list[str]:
        found: list[str] = []
        if isinstance(template, dict):
            for key, value in template.items():
                if key == "Ref":
                    found.append(value)
                elif key == "Fn::Sub":
                    text = value[0] if isinstance(value, list) and value else value
                    if isinstance(text, str):
                        found.extend(_SUB_NAME.findall(text))
                    found.extend(references(value[1:] if isinstance(value, list) else []))
                else:
                    found.extend(references(value))
        elif isinstance(template, list):
            for item in template:
                found.extend(references(item))
        return found

    parsing.get_references_from_template = references
