"""Stacks and their ordered stages: validation and every change, as pure functions."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import ConflictError, NotFoundError, ValidationError

PROVIDERS = ("github", "gitlab", "bitbucket")
# Stage names and stack ids never contain "--": it separates them in CloudFormation stack names.
STAGE_NAME = re.compile(r"^[a-z](?:-?[a-z0-9])*$")
STAGE_NAME_MAX = 32
STACK_ID = re.compile(r"^[a-z](?:-?[a-z0-9])*$")
STACK_ID_MAX = 40
EXECUTION_MODES = ("SUPERSEDED", "QUEUED")
FULL_NAME = re.compile(r"^~?[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)+$")  # "~user/repo": Bitbucket Server personal projects
REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d$")
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
PARAMETER_KEY = re.compile(r"^[A-Za-z0-9]{1,255}$")
MAX_STAGES = 20
DEFAULT_APPROVAL_TIMEOUT = 24 * 3600
MAX_APPROVAL_TIMEOUT = 7 * 24 * 3600


@dataclass(frozen=True)
class Repository:
    """Where a stack's code lives."""

    provider: str
    full_name: str
    clone_url: str

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


def _string(value: Any, name: str, max_len: int = 256) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("must be a non-empty string", name)
    if len(value) > max_len:
        raise ValidationError(f"must be at most {max_len} characters", name)
    return value


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError("must be true or false", name)
    return value


def _int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(f"must be an integer from {low} to {high}", name)
    return value


def _patterns(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > 50:
        raise ValidationError("must be a list of at most 50 glob patterns", name)
    return tuple(_string(item, f"{name}[{i}]") for i, item in enumerate(value))


def _relative_path(value: Any, name: str) -> str:
    path = _string(value, name, 512)
    if path.startswith("/") or ".." in path.split("/"):
        raise ValidationError("must be a relative path inside the repository", name)
    return path


def _clone_url(value: Any, name: str) -> str:
    url = _string(value, name, 2048)
    if url.startswith("https://") and len(url) > len("https://"):
        return url
    if url.startswith("file:///") or url.startswith("/"):
        return url
    raise ValidationError("must be an https URL, an absolute path or a file:// URL", name)


def slugify(text: str) -> str:
    """A stack id from a name: lower case, ``[a-z0-9-]``, at most 40 characters."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:STACK_ID_MAX].strip("-")
    return slug


def cfn_stack_name(stack_id: str, stage: str) -> str:
    """The CloudFormation stack of a stage: ``{stack}--{stage}``.

    Neither part contains ``--`` and stack ids start with a letter, so two (stack, stage) pairs never
    share a name (``shop-api``/``prod`` → ``shop-api--prod``, ``shop``/``api-prod`` → ``shop--api-prod``).
    """
    return f"{stack_id}--{stage}"


def _stack_id(value: Any) -> str:
    if not isinstance(value, str) or len(value) > STACK_ID_MAX or not STACK_ID.match(value):
        raise ValidationError(
            f"must start with a letter and use a-z, 0-9 and single '-' (at most {STACK_ID_MAX} characters)", "id"
        )
    return value


def _stage_name(value: Any, name: str) -> str:
    if not isinstance(value, str) or len(value) > STAGE_NAME_MAX or not STAGE_NAME.match(value):
        raise ValidationError(
            f"must start with a letter and use a-z, 0-9 and single '-' (at most {STAGE_NAME_MAX} characters)", name
        )
    return value


def _execution_mode(value: Any) -> str:
    if value not in EXECUTION_MODES:
        raise ValidationError(f"must be one of {', '.join(EXECUTION_MODES)}", "execution_mode")
    return str(value)


def parse_repository(value: Any, name: str = "repository") -> Repository:
    """Validate a repository object."""
    data = _object(value, name)
    _reject_unknown(data, {"provider", "full_name", "clone_url"}, f"{name}.")
    provider = _string(data.get("provider"), f"{name}.provider")
    if provider not in PROVIDERS:
        raise ValidationError(f"must be one of {', '.join(PROVIDERS)}", f"{name}.provider")
    full_name = _string(data.get("full_name"), f"{name}.full_name")
    if not FULL_NAME.match(full_name):
        raise ValidationError("must look like owner/name", f"{name}.full_name")
    return Repository(provider, full_name, _clone_url(data.get("clone_url"), f"{name}.clone_url"))


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
        if region is not None and (not isinstance(region, str) or not REGION.match(region)):
            raise ValidationError("must be an AWS region like eu-west-1, or null", f"{where}region")
        out["region"] = region
    if "role_arn" in data:
        role = data["role_arn"]
        if role is not None and (not isinstance(role, str) or not ROLE_ARN.match(role)):
            raise ValidationError("must be an IAM role ARN, or null", f"{where}role_arn")
        out["role_arn"] = role
    if "parameters" in data:
        params = _object(data["parameters"], f"{where}parameters")
        if len(params) > 200:
            raise ValidationError("at most 200 parameters", f"{where}parameters")
        for key, val in params.items():
            if not PARAMETER_KEY.match(key):
                raise ValidationError("parameter names are alphanumeric", f"{where}parameters.{key}")
            if not isinstance(val, str) or len(val) > 4096:
                raise ValidationError("must be a string", f"{where}parameters.{key}")
        out["parameters"] = dict(params)
    return out


def parse_stage(value: Any, where: str = "") -> Stage:
    """Validate a new stage."""
    data = _object(value, where.rstrip(".") or "body")
    _reject_unknown(data, STAGE_FIELDS | ({"position", "version"} if not where else set()), where)
    name = _stage_name(data.get("name"), f"{where}name")
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
    }
    _reject_unknown(data, allowed)
    name = _string(data.get("name"), "name", 100)
    stack_id = _stack_id(data.get("id", slugify(name)))
    raw_stages = data.get("stages")
    if not isinstance(raw_stages, list) or not raw_stages:
        raise ValidationError("a stack needs at least one stage", "stages")
    if len(raw_stages) > MAX_STAGES:
        raise ValidationError(f"at most {MAX_STAGES} stages", "stages")
    stages = tuple(parse_stage(s, f"stages[{i}].") for i, s in enumerate(raw_stages))
    _unique_names(stages)
    return Stack(
        id=stack_id,
        name=name,
        repository=parse_repository(data.get("repository")),
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
    )


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
    version = data["version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValidationError("must be an integer", "version")
    if version != stack.version:
        raise ConflictError(f"stack {stack.id!r} is at version {stack.version}, not {version}")


def _touch(stack: Stack, now: str, **changes: Any) -> Stack:
    return replace(stack, updated_at=now, version=stack.version + 1, **changes)


def patch_stack(stack: Stack, body: Any, now: str) -> Stack:
    """Apply a ``PATCH /stacks/{id}`` body; ``version`` must match the stored one."""
    data = _object(body, "body")
    _reject_unknown(
        data,
        {"version", "name", "repository", "branches", "tags", "template_path", "buildspec_path", "execution_mode"},
    )
    _check_version(stack, data, required=True)
    changes: dict[str, Any] = {}
    if "execution_mode" in data:
        changes["execution_mode"] = _execution_mode(data["execution_mode"])
    if "name" in data:
        changes["name"] = _string(data["name"], "name", 100)
    if "repository" in data:
        changes["repository"] = parse_repository(data["repository"])
    if "branches" in data:
        changes["branches"] = _patterns(data["branches"], "branches")
    if "tags" in data:
        changes["tags"] = _patterns(data["tags"], "tags")
    if "template_path" in data:
        changes["template_path"] = _relative_path(data["template_path"], "template_path")
    if "buildspec_path" in data:
        changes["buildspec_path"] = _relative_path(data["buildspec_path"], "buildspec_path")
    return _touch(stack, now, **changes)


def _position(value: Any, upper: int) -> int:
    return _int(value, "position", 0, upper)


def add_stage(stack: Stack, body: Any, now: str) -> Stack:
    """Insert a stage at ``position`` (default last)."""
    data = _object(body, "body")
    stage = parse_stage(data)
    _check_version(stack, data, required=False)
    if any(s.name == stage.name for s in stack.stages):
        raise ConflictError(f"stack {stack.id!r} already has a stage {stage.name!r}")
    if len(stack.stages) >= MAX_STAGES:
        raise ValidationError(f"a stack has at most {MAX_STAGES} stages", "stages")
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
    if body is not None:
        _check_version(stack, _object(body, "body"), required=False)
    if len(stack.stages) == 1:
        raise ConflictError(f"{name!r} is the last stage of stack {stack.id!r}; a stack needs one")
    return _touch(stack, now, stages=tuple(s for s in stack.stages if s.name != name))
