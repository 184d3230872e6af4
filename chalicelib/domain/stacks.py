"""Stacks and their ordered stages: validation and every change, as pure functions."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from . import clone_urls
from .errors import ConflictError, NotFoundError, ValidationError
from .limits import MAX_STACK_SETTINGS_BYTES, clip
from .notifications import CommitStatus, Notification, parse_commit_status, parse_notifications
from .text import TEXT, matches

PROVIDERS = ("github", "gitlab", "bitbucket")
# Stage names and stack ids start with a letter and never contain "--": it separates them in CloudFormation
# stack names (``cfn_stack_name``).
STAGE_NAME = r"[a-z](?:-?[a-z0-9])*"
STAGE_NAME_MAX = 32
STACK_ID = r"[a-z](?:-?[a-z0-9])*"
STACK_ID_MAX = 40
EXECUTION_MODES = ("SUPERSEDED", "QUEUED")
FULL_NAME = r"~?[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)+"  # "~user/repo": Bitbucket Server personal projects
REGION = r"[a-z]{2}(?:-[a-z]+)+-[0-9]"
ROLE_ARN = r"arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]{1,512}"
PARAMETER_KEY = r"[A-Za-z0-9]{1,255}"
RELATIVE_PATH = rf"(?!/)(?!(?:[^/]*/)*\.\.(?:/|$)){TEXT}"
SLUGGABLE = r"[A-Za-z]"  # a name gives a stack id (slugify) only if it has one of these
MAX_STAGES = 20
MAX_PARAMETERS = 200
MAX_PARAMETER_VALUE = 4096
MAX_PATTERNS = 50
MAX_NAME = 100
MAX_PATTERN_CHARS = 256
MAX_PATH_CHARS = 512
DEFAULT_APPROVAL_TIMEOUT = 24 * 3600
MAX_APPROVAL_TIMEOUT = 7 * 24 * 3600


def is_stack_id(value: str) -> bool:
    """``value`` could be a stack id (anything else cannot exist)."""
    return len(value) <= STACK_ID_MAX and matches(STACK_ID, value)


def is_stage_name(value: str) -> bool:
    """``value`` could be a stage name."""
    return len(value) <= STAGE_NAME_MAX and matches(STAGE_NAME, value)


def cfn_stack_name(stack_id: str, stage: str) -> str:
    """The CloudFormation stack of a stage: ``{stack}--{stage}``.

    Neither part contains ``--`` and stack ids start with a letter, so two (stack, stage) pairs never
    share a name (``shop-api``/``prod`` → ``shop-api--prod``, ``shop``/``api-prod`` → ``shop--api-prod``).
    """
    return f"{stack_id}--{stage}"


@dataclass(frozen=True)
class Repository:
    """Where a stack's code lives.

    ``clone_url`` never holds credentials: ``https://user:token@host/...`` is kept as
    ``https://***@host/...`` and the user info goes to ``credentials`` only in the request that set
    it (the service stores it in Secrets Manager); stacks read back have ``credentials`` None.
    """

    provider: str
    full_name: str
    clone_url: str
    credentials: str | None = field(default=None, repr=False, compare=False)

    @property
    def has_stored_credentials(self) -> bool:
        """The clone URL stands for credentials kept in the secret store."""
        return clone_urls.has_stored_credentials(self.clone_url)

    def to_dict(self) -> dict[str, str]:
        """JSON form."""
        return {"provider": self.provider, "full_name": self.full_name, "clone_url": self.clone_url}


@dataclass(frozen=True)
class Stage:
    """One deployment target of a stack; its position is its index in ``Stack.stages``."""

    name: str
    approval: bool = False
    approval_timeout_seconds: int = DEFAULT_APPROVAL_TIMEOUT
    auto_approve_when_no_changes: bool = False
    region: str | None = None
    role_arn: str | None = None
    parameters: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (without position and runtime state)."""
        return {
            "name": self.name,
            "approval": self.approval,
            "approval_timeout_seconds": self.approval_timeout_seconds,
            "auto_approve_when_no_changes": self.auto_approve_when_no_changes,
            "region": self.region,
            "role_arn": self.role_arn,
            "parameters": dict(self.parameters),
        }


@dataclass(frozen=True)
class Stack:
    """A service and its release pipeline."""

    id: str
    name: str
    repository: Repository
    stages: tuple[Stage, ...]
    branches: tuple[str, ...] = ("main",)
    tags: tuple[str, ...] = ()
    template_path: str = "template.yaml"
    buildspec_path: str = "buildspec.yml"
    created_at: str = ""
    updated_at: str = ""
    version: int = 0
    hook_verified_at: str | None = None
    execution_mode: str = "SUPERSEDED"
    uid: str = ""  # tells this stack from an earlier one deleted with the same id
    commit_status: CommitStatus | None = None
    notifications: tuple[Notification, ...] = ()

    @property
    def notifies(self) -> bool:
        """Someone is told of this stack's releases (commit statuses or a notification target)."""
        return self.commit_status is not None or bool(self.notifications)

    def stage(self, name: str) -> Stage:
        """The stage called ``name``; NotFoundError if there is none."""
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise NotFoundError(f"stack {self.id!r} has no stage {name!r}")

    def position(self, name: str) -> int:
        """Index of the stage in release order."""
        return [s.name for s in self.stages].index(self.stage(name).name)


# ---------------------------------------------------------------- validation helpers


def _reject_unknown(data: Mapping[str, Any], allowed: set[str], where: str = "") -> None:
    for key in data:
        if key not in allowed:
            raise ValidationError("unknown field", f"{where}{key}")


def _object(value: Any, name: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError("must be an object", name)
    return value


def _string(value: Any, name: str, max_len: int = MAX_PATTERN_CHARS, pattern: str = TEXT) -> str:
    if not isinstance(value, str):
        raise ValidationError("must be a string", name)
    if len(value) > max_len:
        raise ValidationError(f"must be at most {max_len} characters (it has {len(value)})", name)
    if not matches(pattern, value):
        if pattern == TEXT:
            raise ValidationError("must have a visible character and no control characters", name)
        raise ValidationError(f"must match {pattern}", name)
    return value


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError("must be true or false", name)
    return value


def integer(value: Any) -> int | None:
    """``value`` as an int if it is a JSON integer (``3`` or ``3.0``, never ``true``), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _int(value: Any, name: str, low: int, high: int) -> int:
    number = integer(value)
    if number is None or not low <= number <= high:
        raise ValidationError(f"must be an integer from {low} to {high}", name)
    return number


def _patterns(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > MAX_PATTERNS:
        raise ValidationError(f"must be a list of at most {MAX_PATTERNS} glob patterns", name)
    return tuple(_string(item, f"{name}[{i}]") for i, item in enumerate(value))


def _relative_path(value: Any, name: str) -> str:
    path = _string(value, name, MAX_PATH_CHARS)
    if not matches(RELATIVE_PATH, path):
        raise ValidationError("must be a relative path inside the repository (no leading /, no ..)", name)
    return path


def _clone_url(value: Any, name: str, current: Repository | None) -> tuple[str, str | None]:
    """The public form of a clone URL and the credentials it carried (None if it had none)."""
    if not isinstance(value, str):
        raise ValidationError("must be a string", name)
    if len(value) > clone_urls.MAX_CLONE_URL:
        raise ValidationError(f"must be at most {clone_urls.MAX_CLONE_URL} characters (it has {len(value)})", name)
    if not matches(clone_urls.CLONE_URL, value):
        raise ValidationError(clone_urls.CLONE_URL_RULE, name)
    if clone_urls.has_stored_credentials(value):
        if current is None:
            raise ValidationError(
                "*** stands for credentials a stack already has; give them as https://user:token@host/...", name
            )
        if not current.has_stored_credentials:
            raise ConflictError(
                f"{name}: the stack has no stored credentials for *** to stand for; give them as"
                " https://user:token@host/..."
            )
        return value, None
    return clone_urls.split(value)


def slugify(text: str) -> str:
    """A stack id from a name: lower case, ``[a-z0-9-]``, at most 40 characters."""
    ascii_text = text.encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).lstrip("0123456789-")[:STACK_ID_MAX].strip("-")
    return slug


def _execution_mode(value: Any) -> str:
    if value not in EXECUTION_MODES:
        raise ValidationError(f"must be one of {', '.join(EXECUTION_MODES)}", "execution_mode")
    return str(value)


def parse_repository(value: Any, name: str = "repository", current: Repository | None = None) -> Repository:
    """Validate a repository object (``current``: the stack's repository when it is being changed)."""
    data = _object(value, name)
    _reject_unknown(data, {"provider", "full_name", "clone_url"}, f"{name}.")
    _require(data, ("provider", "full_name", "clone_url"), f"{name}.")
    provider = data["provider"]
    if provider not in PROVIDERS:
        raise ValidationError(f"must be one of {', '.join(PROVIDERS)}", f"{name}.provider")
    full_name = data["full_name"]
    if not isinstance(full_name, str) or len(full_name) > MAX_PATTERN_CHARS or not matches(FULL_NAME, full_name):
        raise ValidationError(
            f"must look like owner/name (at most {MAX_PATTERN_CHARS} characters)", f"{name}.full_name"
        )
    clone_url, credentials = _clone_url(data["clone_url"], f"{name}.clone_url", current)
    return Repository(provider, full_name, clone_url, credentials)


def _require(data: Mapping[str, Any], names: tuple[str, ...], where: str = "") -> None:
    for key in names:
        if key not in data:
            raise ValidationError("is required", f"{where}{key}")


STAGE_FIELDS = {
    "name",
    "approval",
    "approval_timeout_seconds",
    "auto_approve_when_no_changes",
    "region",
    "role_arn",
    "parameters",
}


def _stage_settings(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Validated stage settings present in ``data`` (all but the name)."""
    out: dict[str, Any] = {}
    if "approval" in data:
        out["approval"] = _bool(data["approval"], f"{where}approval")
    if "auto_approve_when_no_changes" in data:
        out["auto_approve_when_no_changes"] = _bool(
            data["auto_approve_when_no_changes"], f"{where}auto_approve_when_no_changes"
        )
    if "approval_timeout_seconds" in data:
        out["approval_timeout_seconds"] = _int(
            data["approval_timeout_seconds"], f"{where}approval_timeout_seconds", 1, MAX_APPROVAL_TIMEOUT
        )
    if "region" in data:
        region = data["region"]
        if region is not None and (not isinstance(region, str) or len(region) > 32 or not matches(REGION, region)):
            raise ValidationError("must be an AWS region like eu-west-1, or null", f"{where}region")
        out["region"] = region
    if "role_arn" in data:
        role = data["role_arn"]
        if role is not None and (not isinstance(role, str) or not matches(ROLE_ARN, role)):
            raise ValidationError("must be an IAM role ARN, or null", f"{where}role_arn")
        out["role_arn"] = role
    if "parameters" in data:
        params = _object(data["parameters"], f"{where}parameters")
        if len(params) > MAX_PARAMETERS:
            raise ValidationError(f"at most {MAX_PARAMETERS} parameters (it has {len(params)})", f"{where}parameters")
        for key, val in params.items():
            if not matches(PARAMETER_KEY, key):
                raise ValidationError(
                    "parameter names are 1 to 255 letters and digits", f"{where}parameters.{clip(key, 64)}"
                )
            if not isinstance(val, str) or len(val) > MAX_PARAMETER_VALUE:
                raise ValidationError(
                    f"must be a string of at most {MAX_PARAMETER_VALUE} characters", f"{where}parameters.{key}"
                )
        out["parameters"] = dict(params)
    return out


def parse_stage(value: Any, where: str = "") -> Stage:
    """Validate a new stage."""
    data = _object(value, where.rstrip(".") or "body")
    _reject_unknown(data, STAGE_FIELDS | ({"position", "version"} if not where else set()), where)
    name = data.get("name")
    if not isinstance(name, str) or not is_stage_name(name):
        raise ValidationError(
            f"must start with a letter and use a-z, 0-9 and single '-' (at most {STAGE_NAME_MAX} characters)",
            f"{where}name",
        )
    return Stage(name=name, **_stage_settings(data, where))


def parse_new_stack(body: Any, now: str, uid: str = "") -> Stack:
    """Validate a ``POST /stacks`` body into a new Stack (version 1); ``uid`` is the new stack's own."""
    data = _object(body, "body")
    allowed = {
        "id",
        "name",
        "repository",
        "branches",
        "tags",
        "template_path",
        "buildspec_path",
        "stages",
        "execution_mode",
        "commit_status",
        "notifications",
    }
    _reject_unknown(data, allowed)
    _require(data, ("name", "repository", "stages"))
    name = _string(data["name"], "name", MAX_NAME)
    if "id" in data:
        stack_id = data["id"]
        if not isinstance(stack_id, str) or not is_stack_id(stack_id):
            raise ValidationError(
                f"must start with a letter and use a-z, 0-9 and single '-' (at most {STACK_ID_MAX} characters)", "id"
            )
    else:
        stack_id = slugify(name)
        if not stack_id:
            raise ValidationError("is required when the name has no ASCII letter to make it from", "id")
    raw_stages = data["stages"]
    if not isinstance(raw_stages, list) or not raw_stages:
        raise ValidationError("a stack needs at least one stage", "stages")
    if len(raw_stages) > MAX_STAGES:
        raise ValidationError(f"at most {MAX_STAGES} stages (it has {len(raw_stages)})", "stages")
    stages = tuple(parse_stage(s, f"stages[{i}].") for i, s in enumerate(raw_stages))
    _unique_names(stages)
    repository = parse_repository(data.get("repository"))
    return _sized(
        Stack(
            id=stack_id,
            name=name,
            repository=repository,
            stages=stages,
            branches=_patterns(data["branches"], "branches") if "branches" in data else ("main",),
            tags=_patterns(data["tags"], "tags") if "tags" in data else (),
            template_path=_relative_path(data.get("template_path", "template.yaml"), "template_path"),
            buildspec_path=_relative_path(data.get("buildspec_path", "buildspec.yml"), "buildspec_path"),
            created_at=now,
            updated_at=now,
            version=1,
            execution_mode=_execution_mode(data["execution_mode"]) if "execution_mode" in data else "SUPERSEDED",
            uid=uid,
            commit_status=parse_commit_status(data.get("commit_status"), repository.provider, None),
            notifications=parse_notifications(data["notifications"], ()) if "notifications" in data else (),
        )
    )


def settings_size(stack: Stack) -> int:
    """Bytes of the stack's settings as compact ASCII JSON (what the limit counts)."""
    settings: dict[str, Any] = {
        "name": stack.name,
        "repository": stack.repository.to_dict(),
        "branches": stack.branches,
        "tags": stack.tags,
        "template_path": stack.template_path,
        "buildspec_path": stack.buildspec_path,
        "stages": [s.to_dict() for s in stack.stages],
    }
    if stack.commit_status is not None:
        settings["commit_status"] = stack.commit_status.stored()
    if stack.notifications:
        settings["notifications"] = [n.stored() for n in stack.notifications]
    return len(json.dumps(settings, separators=(",", ":")))


def _sized(stack: Stack) -> Stack:
    """``stack`` if its settings fit in MAX_STACK_SETTINGS_BYTES (what keeps its item and execution input small)."""
    size = settings_size(stack)
    if size > MAX_STACK_SETTINGS_BYTES:
        raise ValidationError(
            f"the stack's settings are {size} bytes of JSON; the limit is {MAX_STACK_SETTINGS_BYTES}"
            " (mostly stage parameters: keep large values elsewhere, e.g. in SSM Parameter Store)",
            "stages",
        )
    return stack


def _unique_names(stages: tuple[Stage, ...]) -> None:
    seen: set[str] = set()
    for i, stage in enumerate(stages):
        if stage.name in seen:
            raise ValidationError(f"duplicate stage name {stage.name!r}", f"stages[{i}].name")
        seen.add(stage.name)


def _check_version(stack: Stack, data: Mapping[str, Any], required: bool) -> None:
    if "version" not in data:
        if required:
            raise ValidationError("is required (the version you read)", "version")
        return
    version = integer(data["version"])
    if version is None:
        raise ValidationError("must be an integer", "version")
    if version != stack.version:
        raise ConflictError(f"stack {stack.id!r} is at version {stack.version}, not {version}")


def _touch(stack: Stack, now: str, **changes: Any) -> Stack:
    return _sized(replace(stack, updated_at=now, version=stack.version + 1, **changes))


def patch_stack(stack: Stack, body: Any, now: str) -> Stack:
    """Apply a ``PATCH /stacks/{id}`` body; ``version`` must match the stored one."""
    data = _object(body, "body")
    _reject_unknown(
        data,
        {
            "version",
            "name",
            "repository",
            "branches",
            "tags",
            "template_path",
            "buildspec_path",
            "execution_mode",
            "commit_status",
            "notifications",
        },
    )
    _check_version(stack, data, required=True)
    changes: dict[str, Any] = {}
    if "execution_mode" in data:
        changes["execution_mode"] = _execution_mode(data["execution_mode"])
    if "name" in data:
        changes["name"] = _string(data["name"], "name", MAX_NAME)
    if "repository" in data:
        changes["repository"] = parse_repository(data["repository"], current=stack.repository)
    if "branches" in data:
        changes["branches"] = _patterns(data["branches"], "branches")
    if "tags" in data:
        changes["tags"] = _patterns(data["tags"], "tags")
    if "template_path" in data:
        changes["template_path"] = _relative_path(data["template_path"], "template_path")
    if "buildspec_path" in data:
        changes["buildspec_path"] = _relative_path(data["buildspec_path"], "buildspec_path")
    if "commit_status" in data:
        provider = changes["repository"].provider if "repository" in changes else stack.repository.provider
        changes["commit_status"] = parse_commit_status(data["commit_status"], provider, stack.commit_status)
    if "notifications" in data:
        changes["notifications"] = parse_notifications(data["notifications"], stack.notifications)
    return _touch(stack, now, **changes)


def _position(value: Any, upper: int) -> int:
    """A valid position (0..MAX_STAGES-1); ConflictError past ``upper``, the end of this stack's stages."""
    position = _int(value, "position", 0, MAX_STAGES - 1)
    if position > upper:
        raise ConflictError(f"position {position} is past the end of the stack's stages (at most {upper} here)")
    return position


def add_stage(stack: Stack, body: Any, now: str) -> Stack:
    """Insert a stage at ``position`` (default last)."""
    data = _object(body, "body")
    stage = parse_stage(data)
    _check_version(stack, data, required=False)
    if any(s.name == stage.name for s in stack.stages):
        raise ConflictError(f"stack {stack.id!r} already has a stage {stage.name!r}")
    if len(stack.stages) >= MAX_STAGES:
        raise ConflictError(f"stack {stack.id!r} already has {MAX_STAGES} stages, the most a stack can have")
    position = _position(data["position"], len(stack.stages)) if "position" in data else len(stack.stages)
    stages = list(stack.stages)
    stages.insert(position, stage)
    return _touch(stack, now, stages=tuple(stages))


def update_stage(stack: Stack, name: str, body: Any, now: str) -> Stack:
    """Change a stage's settings and/or move it to ``position``."""
    data = _object(body, "body")
    current = stack.stage(name)
    _reject_unknown(data, (STAGE_FIELDS - {"name"}) | {"position", "version"})
    settings = _stage_settings(data, "")
    _check_version(stack, data, required=False)
    stages = [s for s in stack.stages if s.name != name]
    position = _position(data["position"], len(stages)) if "position" in data else stack.position(name)
    stages.insert(position, replace(current, **settings))
    return _touch(stack, now, stages=tuple(stages))


def remove_stage(stack: Stack, name: str, body: Any, now: str) -> Stack:
    """Remove a stage; the last stage of a stack cannot be removed."""
    stack.stage(name)
    data = _object(body, "body")
    _reject_unknown(data, {"version"})
    _check_version(stack, data, required=False)
    if len(stack.stages) == 1:
        raise ConflictError(f"{name!r} is the last stage of stack {stack.id!r}; a stack needs one")
    return _touch(stack, now, stages=tuple(s for s in stack.stages if s.name != name))
