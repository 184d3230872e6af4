"""Offline checks of the packaged template: packaging, the SAM transform, ASL → IAM actions.

Used by tests/unit/test_template.py and tests/unit/test_iam.py; nothing here talks to AWS.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
MERGE_TEMPLATE = ROOT / "deploy" / "template.yaml"
ASL = ROOT / "statemachines" / "release.asl.json"
STAGE = "prod"
#: Where `make package` writes; relative paths in the packaged template are relative to it.
PACKAGE_DIR = ROOT / "out"
FAKE_ARTIFACT_BUCKET = "stagecoach-packaging-bucket"


def chalice_command() -> list[str]:
    """``chalice`` of this interpreter's environment."""
    exe = Path(sys.executable).with_name("chalice")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "chalice.cli"]


def package(outdir: Path, region: str = "us-east-1") -> Path:
    """``chalice package --stage prod --merge-template deploy/template.yaml outdir``; the template path."""
    if outdir.exists():
        shutil.rmtree(outdir)
    env = {**os.environ, "AWS_DEFAULT_REGION": region}
    subprocess.run(
        [*chalice_command(), "package", "--stage", STAGE, "--merge-template", str(MERGE_TEMPLATE), str(outdir)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return outdir / "sam.yaml"


def load_template(path: Path) -> dict[str, Any]:
    """A packaged template (Chalice writes plain YAML/JSON without short-form tags)."""
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def local_paths(template: Mapping[str, Any]) -> dict[tuple[str, str], str]:
    """(resource, property) → local path that ``aws cloudformation package`` uploads."""
    found: dict[tuple[str, str], str] = {}
    for name, resource in template.get("Resources", {}).items():
        props = resource.get("Properties", {})
        for prop in ("CodeUri", "DefinitionUri", "ContentUri"):
            value = props.get(prop)
            if isinstance(value, str) and not value.startswith("s3://"):
                found[(name, prop)] = value
    return found


def simulate_cloudformation_package(template: Mapping[str, Any], template_dir: Path) -> dict[str, Any]:
    """What ``aws cloudformation package`` does: every local path becomes an S3 location.

    Raises FileNotFoundError if a path does not exist relative to ``template_dir``.
    """
    packaged = json.loads(json.dumps(template))
    for (name, prop), path in local_paths(template).items():
        target = (template_dir / path).resolve()
        if not target.exists():
            raise FileNotFoundError(f"{name}.{prop}: {path} does not exist relative to {template_dir}")
        key = f"stagecoach/{target.name}"
        props = packaged["Resources"][name]["Properties"]
        props[prop] = (
            {"Bucket": FAKE_ARTIFACT_BUCKET, "Key": key}
            if prop == "DefinitionUri"
            else f"s3://{FAKE_ARTIFACT_BUCKET}/{key}"
        )
    return packaged


def fixed_managed_policies() -> dict[str, str]:
    """The managed-policy map the SAM translator asks for (fixed ARNs; no IAM call)."""
    names = (
        "AWSLambdaBasicExecutionRole",
        "AWSLambdaSQSQueueExecutionRole",
        "AWSXrayWriteOnlyAccess",
        "AWSLambdaRole",
    )
    return {name: f"arn:aws:iam::aws:policy/service-role/{name}" for name in names}


def sam_transform(template: Mapping[str, Any]) -> dict[str, Any]:
    """The CloudFormation the SAM transform makes of a packaged template."""
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    translator = Translator(None, Parser())
    result = translator.translate(
        json.loads(json.dumps(template)),
        parameter_values={"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012", "AWS::Partition": "aws"},
        get_managed_policy_map=fixed_managed_policies,
    )
    return dict(result)


def cfn_lint(template: Mapping[str, Any]) -> list[Any]:
    """cfn-lint's matches (errors, warnings, informational) for a template."""
    from cfnlint.api import lint

    return list(lint(json.dumps(template), regions=["us-east-1"]))


# ------------------------------------------------------------------ ASL


def task_states(states: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every Task state, with its path, including Map (ItemProcessor/Iterator) and Parallel branches."""
    for name, state in states.items():
        where = f"{path}{name}"
        kind = state.get("Type")
        if kind == "Task":
            yield where, state
        elif kind == "Map":
            for key in ("ItemProcessor", "Iterator"):
                if key in state:
                    yield from task_states(state[key].get("States", {}), f"{where}/")
        elif kind == "Parallel":
            for i, branch in enumerate(state.get("Branches", [])):
                yield from task_states(branch.get("States", {}), f"{where}[{i}]/")


class UnknownIntegration(ValueError):
    """A Task resource whose IAM actions this module does not know yet."""


_OPTIMIZED: dict[tuple[str, str], set[str]] = {
    ("dynamodb", "getItem"): {"dynamodb:GetItem"},
    ("dynamodb", "putItem"): {"dynamodb:PutItem"},
    ("dynamodb", "updateItem"): {"dynamodb:UpdateItem"},
    ("dynamodb", "deleteItem"): {"dynamodb:DeleteItem"},
    ("sqs", "sendMessage"): {"sqs:SendMessage"},
    ("sns", "publish"): {"sns:Publish"},
    ("lambda", "invoke"): {"lambda:InvokeFunction"},
    ("events", "putEvents"): {"events:PutEvents"},
    ("states", "startExecution"): {"states:StartExecution"},
    ("codebuild", "startBuild"): {"codebuild:StartBuild"},
}
# .sync (run a job) needs more than the start call: polling and the managed EventBridge rule.
_SYNC_EXTRA: dict[tuple[str, str], set[str]] = {
    ("states", "startExecution"): {
        "states:DescribeExecution",
        "states:StopExecution",
        "events:PutTargets",
        "events:PutRule",
        "events:DescribeRule",
    },
    ("codebuild", "startBuild"): {
        "codebuild:StopBuild",
        "codebuild:BatchGetBuilds",
        "events:PutTargets",
        "events:PutRule",
        "events:DescribeRule",
    },
}
_SDK_PREFIX = {"sfn": "states", "eventbridge": "events", "cloudwatchlogs": "logs", "cloudwatch": "cloudwatch"}
_TRANSACT_ITEM = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}
_OPTIMIZED_ARN = re.compile(
    r"^arn:aws[a-z-]*:states:::(?P<service>[a-z0-9-]+):(?P<api>[A-Za-z0-9]+)(?P<pattern>\..+)?$"
)
_SDK_ARN = re.compile(
    r"^arn:aws[a-z-]*:states:::aws-sdk:(?P<service>[a-z0-9]+):(?P<api>[A-Za-z0-9]+)(?P<pattern>\..+)?$"
)


def _arguments(state: Mapping[str, Any]) -> dict[str, Any]:
    raw = state.get("Parameters", state.get("Arguments", {}))
    return {str(k).removesuffix(".$"): v for k, v in raw.items()} if isinstance(raw, dict) else {}


def task_actions(state: Mapping[str, Any]) -> set[str]:
    """The IAM actions the state machine's role needs to run one Task state."""
    resource = str(state.get("Resource", ""))
    args = _arguments(state)
    sdk = _SDK_ARN.match(resource)
    if sdk:
        service, api = sdk["service"], sdk["api"]
        prefix = _SDK_PREFIX.get(service, service)
        if (service, api) == ("dynamodb", "transactWriteItems"):
            items = args.get("TransactItems")
            if not isinstance(items, list):
                raise UnknownIntegration(f"{resource}: TransactItems must be a literal list to derive its actions")
            actions = set()
            for item in items:
                for op in item:
                    if op not in _TRANSACT_ITEM:
                        raise UnknownIntegration(f"{resource}: unknown transact item {op}")
                    actions.add(_TRANSACT_ITEM[op])
            return actions
        if (service, api) == ("dynamodb", "transactGetItems"):
            return {"dynamodb:GetItem"}
        actions = {f"{prefix}:{api[0].upper()}{api[1:]}"}
        if service == "cloudformation":
            if "TemplateURL" in args:
                actions.add("s3:GetObject")  # CloudFormation reads TemplateURL as the caller
            if "RoleARN" in args:
                actions.add("iam:PassRole")
        return actions
    optimized = _OPTIMIZED_ARN.match(resource)
    if optimized:
        key = (optimized["service"], optimized["api"])
        if key not in _OPTIMIZED:
            raise UnknownIntegration(f"{resource}: add its IAM actions to deploy/checks.py")
        actions = set(_OPTIMIZED[key])
        if (optimized["pattern"] or "").startswith(".sync"):
            actions |= _SYNC_EXTRA.get(key, set())
        return actions
    if resource.startswith("arn:aws") and ":lambda:" in resource:
        return {"lambda:InvokeFunction"}
    raise UnknownIntegration(f"{resource}: add its IAM actions to deploy/checks.py")


def asl_actions(definition: Mapping[str, Any]) -> dict[str, set[str]]:
    """IAM action → the Task states (paths) that need it."""
    needed: dict[str, set[str]] = {}
    for where, state in task_states(definition["States"]):
        for action in task_actions(state):
            needed.setdefault(action, set()).add(where)
    return needed


# ------------------------------------------------------------------ IAM


def as_list(value: Any) -> list[Any]:
    """A policy element that may be one value or a list."""
    return value if isinstance(value, list) else [value]


def identity_policies(template: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(resource name, policy document) of every identity policy in a CloudFormation template."""
    for name, resource in template.get("Resources", {}).items():
        kind, props = resource.get("Type"), resource.get("Properties", {})
        if kind == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                yield f"{name}/{policy.get('PolicyName')}", policy["PolicyDocument"]
        elif kind in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy", "AWS::IAM::RolePolicy"):
            yield name, props["PolicyDocument"]


def role_policy_documents(template: Mapping[str, Any], role: str) -> list[dict[str, Any]]:
    """Inline policies of a role, then its template-defined managed policies."""
    props = template["Resources"][role]["Properties"]
    documents = [p["PolicyDocument"] for p in props.get("Policies", [])]
    for arn in as_list(props.get("ManagedPolicyArns", [])):
        if isinstance(arn, dict) and "Ref" in arn and arn["Ref"] in template["Resources"]:
            documents.append(template["Resources"][arn["Ref"]]["Properties"]["PolicyDocument"])
    return documents


def allowed_actions(documents: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Action → resources it is allowed on, over ``documents``."""
    allowed: dict[str, list[Any]] = {}
    for document in documents:
        for statement in as_list(document["Statement"]):
            if statement.get("Effect") != "Allow":
                continue
            for action in as_list(statement.get("Action", [])):
                allowed.setdefault(action, []).extend(as_list(statement.get("Resource", [])))
    return allowed


def references(value: Any) -> set[str]:
    """Logical ids a value refers to through Ref, Fn::GetAtt or Fn::Sub."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                found.add(inner)
            elif key == "Fn::GetAtt":
                parts = inner.split(".", 1) if isinstance(inner, str) else inner
                found.add(str(parts[0]))
            elif key == "Fn::Sub":
                text = inner if isinstance(inner, str) else inner[0]
                found |= {m.split(".", 1)[0] for m in re.findall(r"\$\{([^}!]+)\}", text)}
                if not isinstance(inner, str):
                    found |= references(inner[1])
            else:
                found |= references(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= references(inner)
    return found
