"""CloudFormation templates as CloudFormation reads them: parsing, the checks made when a change set is
created, parameter values, IAM capabilities and the resource changes a change set lists.

Pure Python (PyYAML, and cfn-lint's resource schemas for the resource types and their attributes), no
moto: ``chalicelib.local.cloudformation`` turns a ``TemplateError`` into CloudFormation's ValidationError.
The messages are CloudFormation's own words.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

import yaml

# https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/template-anatomy.html
SECTIONS = frozenset(
    {
        "AWSTemplateFormatVersion",
        "Description",
        "Metadata",
        "Parameters",
        "Rules",
        "Mappings",
        "Conditions",
        "Transform",
        "Resources",
        "Outputs",
        "Hooks",
    }
)
# https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/resources-section-structure.html
RESOURCE_KEYS = frozenset(
    {
        "Type",
        "Properties",
        "DependsOn",
        "Metadata",
        "Condition",
        "DeletionPolicy",
        "UpdatePolicy",
        "UpdateReplacePolicy",
        "CreationPolicy",
    }
)
# https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/pseudo-parameter-reference.html
PSEUDO_PARAMETERS = frozenset(
    {
        "AWS::AccountId",
        "AWS::NotificationARNs",
        "AWS::NoValue",
        "AWS::Partition",
        "AWS::Region",
        "AWS::StackId",
        "AWS::StackName",
        "AWS::URLSuffix",
    }
)
# https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/intrinsic-function-reference.html
_SHORT_FORMS = (
    "Ref",
    "Condition",
    "GetAtt",
    "Sub",
    "Join",
    "Select",
    "Split",
    "If",
    "Equals",
    "And",
    "Or",
    "Not",
    "FindInMap",
    "Base64",
    "Cidr",
    "ImportValue",
    "GetAZs",
    "Transform",
    "ToJsonString",
    "Length",
)
# https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/control-access-with-iam.html#using-iam-capabilities
_IAM_NAME_PROPERTY = {
    "AWS::IAM::AccessKey": None,
    "AWS::IAM::Group": "GroupName",
    "AWS::IAM::InstanceProfile": "InstanceProfileName",
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
    "AWS::IAM::Policy": None,
    "AWS::IAM::Role": "RoleName",
    "AWS::IAM::User": "UserName",
    "AWS::IAM::UserToGroupAddition": None,
}
_SUB_VARIABLE = re.compile(r"\$\{([^!}][^}]*)\}")
_DEFAULT_REGION = "us-east-1"


class TemplateError(Exception):
    """A template or its parameters that CloudFormation refuses; ``str()`` is CloudFormation's message."""


class _CfnYamlLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short forms (``!Ref``, ``!GetAtt`` …); any other tag is malformed YAML.

    Dates stay strings (``AWSTemplateFormatVersion: 2010-09-09``), as CloudFormation reads them.
    """


_CfnYamlLoader.yaml_implicit_resolvers = {
    first: [r for r in resolvers if r[0] != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _short_form(name: str, loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    if name in ("Ref", "Condition"):
        return {name: value}
    if name == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{name}": value}


for _name in _SHORT_FORMS:
    _CfnYamlLoader.add_constructor(f"!{_name}", functools.partial(_short_form, _name))


def parse_template(body: str) -> dict[str, Any]:
    """The template as a dict: JSON if it starts with ``{``, YAML otherwise (CloudFormation's rule)."""
    text = body.strip()
    if not text:
        raise TemplateError("Template format error: unsupported structure.")
    if text.startswith("{"):
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise TemplateError(
                f"Template format error: JSON not well-formed. (line {error.lineno}, column {error.colno})"
            ) from None
    else:
        try:
            document = yaml.load(text, Loader=_CfnYamlLoader)
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark or error.context_mark
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            raise TemplateError(f"Template format error: YAML not well-formed.{where}") from None
        except yaml.YAMLError:
            raise TemplateError("Template format error: YAML not well-formed.") from None
    if not isinstance(document, dict):
        raise TemplateError("Template format error: unsupported structure.")
    return document


@functools.lru_cache(maxsize=1)
def _schema_manager() -> Any:
    """cfn-lint's resource schemas (imported on first use: about a second, once per process)."""
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

    return PROVIDER_SCHEMA_MANAGER


@functools.lru_cache(maxsize=64)
def _resource_types(region: str) -> frozenset[str]:
    try:
        return frozenset(_schema_manager().get_resource_types(region))
    except Exception:
        return frozenset(_schema_manager().get_resource_types(_DEFAULT_REGION))


@functools.lru_cache(maxsize=1024)
def _resource_schema(region: str, resource_type: str) -> dict[str, Any] | None:
    """The resource type's schema (``getatts`` and ``createOnlyProperties``), None if unknown."""
    try:
        schema = _schema_manager().get_resource_schema(region, resource_type)
    except Exception:
        return None
    return {
        "getatts": list(schema.get_atts.keys()),
        "createOnlyProperties": schema.schema.get("createOnlyProperties", []),
        "taggable": bool((schema.schema.get("tagging") or {}).get("taggable")),
    }


def is_known_resource_type(resource_type: str, region: str = _DEFAULT_REGION) -> bool:
    """Whether CloudFormation knows the type in ``region`` (custom resources always)."""
    if resource_type.startswith("Custom::"):
        return True
    return resource_type in _resource_types(region)


def _references(node: Any) -> Iterator[tuple[str, str, str | None]]:
    """Every ``("Ref", name, None)``, ``("GetAtt", resource, attribute)`` and ``("Sub", name, None)`` in node."""
    if isinstance(node, list):
        for item in node:
            yield from _references(item)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key == "Ref" and isinstance(value, str):
            yield ("Ref", value, None)
        elif key == "Fn::GetAtt":
            parts = value.split(".", 1) if isinstance(value, str) else value
            if isinstance(parts, list) and parts and isinstance(parts[0], str):
                attribute = parts[1] if len(parts) > 1 and isinstance(parts[1], str) else None
                yield ("GetAtt", parts[0], attribute)
            if isinstance(parts, list):
                yield from _references(parts[1:])
        elif key == "Fn::Sub":
            text, variables = _sub_parts(value)
            for name in _SUB_VARIABLE.findall(text):
                if name.strip() not in variables:
                    yield ("Sub", name.strip(), None)
            yield from _references(variables)
        else:
            yield from _references(value)


def _sub_parts(value: Any) -> tuple[str, dict[str, Any]]:
    """Fn::Sub's string and variable map (``"text"`` or ``["text", {variables}]``)."""
    if isinstance(value, str):
        return value, {}
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], dict):
        return value[0], value[1]
    return "", {}


def _check_block(
    block: str, items: Mapping[str, Any], defined: set[str], resources: Mapping[str, Any], region: str
) -> None:
    unresolved: list[str] = []
    for node in items.values():
        depends_on = node.get("DependsOn", []) if isinstance(node, dict) else []
        for name in [depends_on] if isinstance(depends_on, str) else depends_on:
            if name not in resources and name not in unresolved:
                unresolved.append(name)
        for kind, name, attribute in _references(node):
            if kind == "Sub" and "." in name:
                target = name.split(".", 1)[0]
                if target not in resources:
                    raise TemplateError(f"Template error: instance of Fn::Sub references undefined resource {target}")
            elif kind in ("Ref", "Sub") and name not in defined and name not in unresolved:
                unresolved.append(name)
            elif kind == "GetAtt":
                _check_get_att(name, attribute, resources, region)
    if unresolved:
        raise TemplateError(
            f"Template format error: Unresolved resource dependencies [{', '.join(unresolved)}] "
            f"in the {block} block of the template"
        )


def _check_get_att(name: str, attribute: str | None, resources: Mapping[str, Any], region: str) -> None:
    if name not in resources:
        raise TemplateError(f"Template error: instance of Fn::GetAtt references undefined resource {name}")
    if attribute is None:
        return
    schema = _resource_schema(region, resources[name]["Type"])
    if schema is None:
        return
    if not any(attribute == known or re.fullmatch(known, attribute) for known in schema["getatts"]):
        raise TemplateError(
            f"Template error: resource {name} does not support attribute type {attribute} in Fn::GetAtt"
        )


def check_template(document: Mapping[str, Any], region: str = _DEFAULT_REGION) -> None:
    """What CloudFormation checks before it accepts a template (CreateChangeSet, ValidateTemplate).

    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/troubleshooting.html#troubleshooting-errors-template-validation
    """
    unknown = [key for key in document if key not in SECTIONS]
    if unknown:
        raise TemplateError(f"Template format error: Invalid template property or properties [{', '.join(unknown)}]")
    resources = document.get("Resources")
    if not isinstance(resources, dict) or not resources:
        raise TemplateError("Template format error: At least one Resources member must be defined.")
    for name, resource in resources.items():
        if not isinstance(resource, dict) or not isinstance(resource.get("Type"), str):
            raise TemplateError(
                f"Template format error: [/Resources/{name}] Every Resources object must contain a Type member."
            )
        for key in resource:
            if key not in RESOURCE_KEYS:
                raise TemplateError(f"Invalid template resource property '{key}'")
    parameters = document.get("Parameters") or {}
    if not isinstance(parameters, dict) or any(not isinstance(p, dict) or "Type" not in p for p in parameters.values()):
        raise TemplateError("Template format error: Every Parameters object must contain a Type member.")
    unrecognized = sorted({r["Type"] for r in resources.values() if not is_known_resource_type(r["Type"], region)})
    if unrecognized:
        raise TemplateError(f"Template format error: Unrecognized resource types: [{', '.join(unrecognized)}]")
    if "Transform" in document:
        return  # references are checked after the transform expands the template
    defined = set(parameters) | set(resources) | PSEUDO_PARAMETERS
    _check_block("Resources", resources, defined, resources, region)
    outputs = document.get("Outputs") or {}
    if isinstance(outputs, dict):
        _check_block("Outputs", outputs, defined, resources, region)


def parameter_text(value: Any) -> str:
    """A parameter value as CloudFormation passes it: a string (lists comma-separated)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(parameter_text(v) for v in value)
    return str(value)


def parameter_values(document: Mapping[str, Any], given: Mapping[str, str]) -> dict[str, str]:
    """Every declared parameter's value: given, else its Default; refused as CloudFormation refuses them.

    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/parameters-section-structure.html
    """
    declared = document.get("Parameters") or {}
    unknown = [name for name in given if name not in declared]
    if unknown:
        raise TemplateError(f"Parameters: [{', '.join(unknown)}] do not exist in the template")
    values: dict[str, str] = {}
    missing: list[str] = []
    for name, spec in declared.items():
        if name in given:
            values[name] = given[name]
        elif "Default" in spec:
            values[name] = parameter_text(spec["Default"])
        else:
            missing.append(name)
    if missing:
        raise TemplateError(f"Parameters: [{', '.join(missing)}] must have values")
    for name, spec in declared.items():
        allowed = spec.get("AllowedValues")
        if isinstance(allowed, list) and values[name] not in [parameter_text(a) for a in allowed]:
            raise TemplateError(f"Parameter '{name}' must be one of AllowedValues")
    return values


def required_capabilities(document: Mapping[str, Any]) -> tuple[str | None, list[str]]:
    """The IAM capability the template needs (None, CAPABILITY_IAM or CAPABILITY_NAMED_IAM) and the IAM
    resource types that need it."""
    resources = document.get("Resources") or {}
    iam = [r for r in resources.values() if isinstance(r, dict) and r.get("Type") in _IAM_NAME_PROPERTY]
    types = sorted({str(r["Type"]) for r in iam})
    named = any(_IAM_NAME_PROPERTY[r["Type"]] in (r.get("Properties") or {}) for r in iam)
    if not types:
        return None, []
    return ("CAPABILITY_NAMED_IAM" if named else "CAPABILITY_IAM"), types


def check_capabilities(document: Mapping[str, Any], capabilities: list[str]) -> None:
    """InsufficientCapabilities, as CloudFormation words it; raises ``TemplateError``."""
    needed, _ = required_capabilities(document)
    if needed is None or needed in capabilities:
        return
    if needed == "CAPABILITY_IAM" and "CAPABILITY_NAMED_IAM" in capabilities:
        return
    raise TemplateError(f"Requires capabilities : [{needed}]")


def _mentions(node: Any, names: set[str]) -> list[str]:
    """The parameters among ``names`` that ``node`` refers to (Ref or Fn::Sub), in order of appearance."""
    found: list[str] = []
    for kind, name, _ in _references(node):
        if kind in ("Ref", "Sub") and name in names and name not in found:
            found.append(name)
    return found


def resource_changes(
    old: Mapping[str, Any],
    old_parameters: Mapping[str, str],
    new: Mapping[str, Any],
    new_parameters: Mapping[str, str],
    physical_ids: Mapping[str, str] | None = None,
    region: str = _DEFAULT_REGION,
    tags_changed: bool = False,
) -> list[dict[str, Any]]:
    """DescribeChangeSet ``Changes[].ResourceChange`` of going from ``old`` to ``new``: Add, Remove, and Modify
    (direct edits, a changed parameter the resource refers to, or new stack tags, which CloudFormation
    propagates to every taggable resource) with Scope, Details and Replacement.

    https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_ResourceChange.html
    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-properties-resource-tags.html
    """
    physical_ids = physical_ids or {}
    before = old.get("Resources") or {}
    after = new.get("Resources") or {}
    changed = {k for k in set(old_parameters) | set(new_parameters) if old_parameters.get(k) != new_parameters.get(k)}
    changes: list[dict[str, Any]] = []
    for name, resource in after.items():
        if name not in before:
            changes.append({"Action": "Add", "LogicalResourceId": name, "ResourceType": resource["Type"]})
            continue
        details = _details(before[name], resource, changed, region)
        if tags_changed and (_resource_schema(region, resource["Type"]) or {}).get("taggable"):
            details.append(
                {
                    "Target": {"Attribute": "Tags", "RequiresRecreation": "Never"},
                    "Evaluation": "Static",
                    "ChangeSource": "DirectModification",
                }
            )
        if details:
            change = {
                "Action": "Modify",
                "LogicalResourceId": name,
                "ResourceType": resource["Type"],
                "Replacement": _replacement(details, _resource_schema(region, resource["Type"])),
                "Scope": sorted({d["Target"]["Attribute"] for d in details}),
                "Details": details,
            }
            if name in physical_ids:
                change["PhysicalResourceId"] = physical_ids[name]
            changes.append(change)
    for name, resource in before.items():
        if name not in after:
            change = {"Action": "Remove", "LogicalResourceId": name, "ResourceType": resource["Type"]}
            if name in physical_ids:
                change["PhysicalResourceId"] = physical_ids[name]
            changes.append(change)
    return changes


def _details(
    before: Mapping[str, Any], after: Mapping[str, Any], changed: set[str], region: str
) -> list[dict[str, Any]]:
    schema = _resource_schema(region, after["Type"])
    create_only = {p.removeprefix("/properties/") for p in (schema or {}).get("createOnlyProperties", [])}
    details: list[dict[str, Any]] = []
    old_properties, new_properties = before.get("Properties") or {}, after.get("Properties") or {}
    for prop in sorted(set(old_properties) | set(new_properties)):
        recreation = "Always" if prop in create_only else "Never"
        target = {"Attribute": "Properties", "Name": prop, "RequiresRecreation": recreation}
        if old_properties.get(prop) != new_properties.get(prop):
            details.append({"Target": target, "Evaluation": "Static", "ChangeSource": "DirectModification"})
            continue
        for parameter in _mentions(new_properties.get(prop), changed):
            details.append(
                {
                    "Target": target,
                    "Evaluation": "Static",
                    "ChangeSource": "ParameterReference",
                    "CausingEntity": parameter,
                }
            )
    for attribute in sorted(RESOURCE_KEYS - {"Type", "Properties", "DependsOn", "Condition"}):
        if before.get(attribute) != after.get(attribute):
            details.append(
                {
                    "Target": {"Attribute": attribute, "RequiresRecreation": "Never"},
                    "Evaluation": "Static",
                    "ChangeSource": "DirectModification",
                }
            )
    return details


def _replacement(details: list[dict[str, Any]], schema: dict[str, Any] | None) -> str:
    if any(d["Target"].get("RequiresRecreation") == "Always" for d in details):
        return "True"
    if schema is None and any(d["Target"]["Attribute"] == "Properties" for d in details):
        return "Conditional"
    return "False"


def emulator_failure(document: Mapping[str, Any]) -> tuple[str, str] | None:
    """The first resource asking the emulator to fail its deploy, with the reason: a resource with
    ``Metadata: {"Stagecoach::Emulator": {"FailDeploy": "reason"}}`` (see examples/hello-stack/README.md)."""
    for name, resource in (document.get("Resources") or {}).items():
        metadata = resource.get("Metadata") if isinstance(resource, dict) else None
        emulator = metadata.get("Stagecoach::Emulator") if isinstance(metadata, dict) else None
        if isinstance(emulator, dict) and emulator.get("FailDeploy"):
            return name, str(emulator["FailDeploy"])
    return None
