"""CodeBuild buildspec (version 0.2) parsing and artifact selection.

Pure Python (+ PyYAML). Used by the local builder, which stands in for CodeBuild when
Stagecoach runs on a laptop. What is supported:

- ``version: 0.2`` (only).
- ``env.variables``: a map of names to scalar values (numbers and booleans become strings).
- ``phases``: ``install``, ``pre_build``, ``build``, ``post_build``; each with ``commands``
  (list of strings), ``on-failure`` (``ABORT`` default, or ``CONTINUE``) and ``finally``.
- ``artifacts``: ``files`` (globs relative to ``base-directory``; ``*`` and ``?`` match inside
  one path segment, ``**`` matches any number of segments, so ``**/*`` is everything),
  ``base-directory`` and ``discard-paths``.

Other keys CodeBuild knows (``cache``, ``reports``, ``env.parameter-store``, ``run-as``,
``runtime-versions``, ...) are accepted but not executed; they are listed in
``BuildSpec.ignored_keys`` so the builder can warn. Unknown keys (typos such as ``pre-build``)
are a ``ValidationError``.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ValidationError

PHASE_ORDER: tuple[str, ...] = ("install", "pre_build", "build", "post_build")
ON_FAILURE_VALUES: tuple[str, ...] = ("ABORT", "CONTINUE")

_KNOWN_TOP = {"version", "env", "phases", "artifacts"}
_IGNORED_TOP = {"run-as", "proxy", "batch", "reports", "cache", "secondary-artifacts"}
_KNOWN_ENV = {"variables"}
_IGNORED_ENV = {
    "shell",
    "parameter-store",
    "secrets-manager",
    "exported-variables",
    "git-credential-helper",
}
_KNOWN_PHASE = {"commands", "on-failure", "finally"}
_IGNORED_PHASE = {"run-as", "runtime-versions"}
_KNOWN_ARTIFACTS = {"files", "base-directory", "discard-paths"}
_IGNORED_ARTIFACTS = {
    "name",
    "exclude-paths",
    "enable-symlinks",
    "s3-prefix",
    "secondary-artifacts",
}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Phase:
    """One buildspec phase; ``name`` is the buildspec key (``pre_build``)."""

    name: str
    commands: tuple[str, ...] = ()
    on_failure: str = "ABORT"
    finally_commands: tuple[str, ...] = ()

    @property
    def codebuild_name(self) -> str:
        """The phase name as CodeBuild reports it (``PRE_BUILD``)."""
        return self.name.upper()


@dataclass(frozen=True)
class Artifacts:
    files: tuple[str, ...]
    base_directory: str | None = None
    discard_paths: bool = False


@dataclass(frozen=True)
class BuildSpec:
    version: str
    env_variables: Mapping[str, str] = field(default_factory=dict)
    phases: tuple[Phase, ...] = ()
    """Only the phases present in the file, in execution order."""
    artifacts: Artifacts | None = None
    ignored_keys: tuple[str, ...] = ()
    """CodeBuild keys that were accepted but are not executed (dotted paths)."""

    def phase(self, name: str) -> Phase | None:
        return next((p for p in self.phases if p.name == name), None)


def parse_buildspec(text: str) -> BuildSpec:
    """Parse buildspec YAML text; raise ``ValidationError`` with a clear message if invalid."""
    import yaml  # imported here: PyYAML is not part of the Lambda runtime requirements

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValidationError(f"buildspec is not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise ValidationError("buildspec must be a YAML mapping with 'version' and 'phases'")

    ignored: list[str] = []
    _check_keys(doc, _KNOWN_TOP, _IGNORED_TOP, "", ignored)

    version = _parse_version(doc.get("version"))
    env_variables = _parse_env(doc.get("env"), ignored)
    phases = _parse_phases(doc.get("phases"), ignored)
    artifacts = _parse_artifacts(doc.get("artifacts"), ignored)
    return BuildSpec(
        version=version,
        env_variables=env_variables,
        phases=phases,
        artifacts=artifacts,
        ignored_keys=tuple(ignored),
    )


def _check_keys(
    node: Mapping[Any, Any],
    known: set[str],
    tolerated: set[str],
    where: str,
    ignored: list[str],
) -> None:
    for key in node:
        if not isinstance(key, str):
            raise ValidationError(f"keys must be strings, got {key!r}", field=where or None)
        if key in known:
            continue
        path = f"{where}.{key}" if where else key
        if key in tolerated:
            ignored.append(path)
            continue
        allowed = ", ".join(sorted(known | tolerated))
        raise ValidationError(f"unknown key '{key}' (allowed: {allowed})", field=where or None)


def _parse_version(value: Any) -> str:
    if value is None:
        raise ValidationError("is required (use version: 0.2)", field="version")
    text = str(value).strip()
    if text != "0.2":
        raise ValidationError(
            f"unsupported buildspec version '{text}' (only 0.2 is supported)",
            field="version",
        )
    return text


def _parse_env(value: Any, ignored: list[str]) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError("must be a mapping", field="env")
    _check_keys(value, _KNOWN_ENV, _IGNORED_ENV, "env", ignored)
    variables = value.get("variables")
    if variables is None:
        return {}
    if not isinstance(variables, dict):
        raise ValidationError("must be a mapping of NAME: value", field="env.variables")
    result: dict[str, str] = {}
    for name, raw in variables.items():
        where = f"env.variables.{name}"
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise ValidationError(
                f"invalid variable name {name!r} (letters, digits and _; not starting with a digit)",
                field="env.variables",
            )
        if name.startswith("CODEBUILD_"):
            raise ValidationError("names starting with CODEBUILD_ are reserved", field=where)
        if isinstance(raw, bool):
            result[name] = "true" if raw else "false"
        elif isinstance(raw, (str, int, float)):
            result[name] = str(raw)
        else:
            raise ValidationError(f"value must be a string, got {type(raw).__name__}", field=where)
    return result


def _parse_phases(value: Any, ignored: list[str]) -> tuple[Phase, ...]:
    if value is None:
        raise ValidationError(
            "is required (a mapping of install/pre_build/build/post_build)",
            field="phases",
        )
    if not isinstance(value, dict) or not value:
        raise ValidationError(
            "must be a non-empty mapping of install/pre_build/build/post_build",
            field="phases",
        )
    for name in value:
        if name not in PHASE_ORDER:
            raise ValidationError(
                f"unknown phase '{name}' (expected one of {', '.join(PHASE_ORDER)})",
                field="phases",
            )
    phases: list[Phase] = []
    for name in PHASE_ORDER:
        if name not in value:
            continue
        where = f"phases.{name}"
        body = value[name]
        if not isinstance(body, dict):
            raise ValidationError("must be a mapping with 'commands'", field=where)
        _check_keys(body, _KNOWN_PHASE, _IGNORED_PHASE, where, ignored)
        on_failure_raw = body.get("on-failure", "ABORT")
        on_failure = str(on_failure_raw).strip().upper()
        if on_failure not in ON_FAILURE_VALUES:
            raise ValidationError(
                f"must be ABORT or CONTINUE, got {on_failure_raw!r}",
                field=f"{where}.on-failure",
            )
        phases.append(
            Phase(
                name=name,
                commands=_parse_commands(body.get("commands"), f"{where}.commands"),
                on_failure=on_failure,
                finally_commands=_parse_commands(body.get("finally"), f"{where}.finally"),
            )
        )
    return tuple(phases)


def _parse_commands(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValidationError("must be a list of commands", field=where)
    commands: list[str] = []
    for index, item in enumerate(value):
        if isinstance(item, str):
            if not item.strip():
                raise ValidationError("command is empty", field=f"{where}[{index}]")
            commands.append(item)
        elif isinstance(item, dict):
            raise ValidationError(
                "command was read as a mapping; quote it (an unquoted ': ' makes YAML read a key/value pair)",
                field=f"{where}[{index}]",
            )
        else:
            raise ValidationError(
                f"command must be a string, got {type(item).__name__} {item!r}; quote it",
                field=f"{where}[{index}]",
            )
    return tuple(commands)


def _parse_artifacts(value: Any, ignored: list[str]) -> Artifacts | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValidationError("must be a mapping with 'files'", field="artifacts")
    _check_keys(value, _KNOWN_ARTIFACTS, _IGNORED_ARTIFACTS, "artifacts", ignored)

    files_raw = value.get("files")
    if isinstance(files_raw, str):
        files_raw = [files_raw]
    if not isinstance(files_raw, list) or not files_raw:
        raise ValidationError("is required: a non-empty list of paths/globs", field="artifacts.files")
    files: list[str] = []
    for index, item in enumerate(files_raw):
        if not isinstance(item, str) or not item.strip():
            raise ValidationError("must be a non-empty string", field=f"artifacts.files[{index}]")
        files.append(_relative_path(item, f"artifacts.files[{index}]"))

    base_raw = value.get("base-directory")
    base: str | None = None
    if base_raw is not None:
        if not isinstance(base_raw, str) or not base_raw.strip():
            raise ValidationError("must be a non-empty string", field="artifacts.base-directory")
        base = _relative_path(base_raw, "artifacts.base-directory")
        if base == ".":
            base = None
        elif any(ch in base for ch in "*?["):
            raise ValidationError(
                "globs are not supported in base-directory",
                field="artifacts.base-directory",
            )

    return Artifacts(
        files=tuple(files),
        base_directory=base,
        discard_paths=_parse_bool(value.get("discard-paths", False), "artifacts.discard-paths"),
    )


def _parse_bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in (
        "yes",
        "true",
        "no",
        "false",
    ):
        return value.strip().lower() in ("yes", "true")
    raise ValidationError(f"must be yes or no, got {value!r}", field=where)


def _relative_path(raw: str, where: str) -> str:
    text = raw.strip().replace("\\", "/")
    if text.startswith("/"):
        raise ValidationError("must be relative to the source directory", field=where)
    normalized = posixpath.normpath(text)
    if normalized == ".." or normalized.startswith("../"):
        raise ValidationError("must not point outside the source directory", field=where)
    return normalized


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Compile an artifact glob: ``*``/``?`` stay inside a segment, ``**`` spans segments."""
    segments = pattern.split("/")
    parts: list[str] = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**":
            parts.append(".*" if last else "(?:[^/]+/)*")
            continue
        translated = "".join("[^/]*" if ch == "*" else "[^/]" if ch == "?" else re.escape(ch) for ch in segment)
        parts.append(translated if last else translated + "/")
    return re.compile("".join(parts) + r"\Z")


def select_artifacts(artifacts: Artifacts, candidates: Iterable[str]) -> list[tuple[str, str]]:
    """Pick the files to upload.

    ``candidates`` are file paths relative to the base directory (POSIX separators). Returns
    ``(relative_path, artifact_key)`` pairs sorted by path; the key is the relative path, or its
    basename with ``discard-paths``. Two files with the same key are a ``ValidationError``.
    """
    regexes = [glob_to_regex(pattern) for pattern in artifacts.files]
    selected: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for path in sorted(set(candidates)):
        if not any(rx.match(path) for rx in regexes):
            continue
        key = posixpath.basename(path) if artifacts.discard_paths else path
        if key in seen:
            raise ValidationError(
                f"artifacts '{seen[key]}' and '{path}' both map to '{key}' (discard-paths)",
                field="artifacts.files",
            )
        seen[key] = path
        selected.append((path, key))
    return selected
