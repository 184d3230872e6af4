"""docs/openapi.yaml is a valid OpenAPI 3.1 document of exactly the routes app.py has, with the domain's rules.

The fuzz test (tests/functional/test_fuzz.py) checks the running API against it; this one keeps the
document and the code from drifting where that is cheaper to see statically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from chalice.app import IAMAuthorizer
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from app import app
from chalicelib.domain import clone_urls, lanes, limits, notifications, releases, text
from chalicelib.domain import stacks as domain
from chalicelib.http import API_BODY_LIMIT, OPENAPI_DOCUMENT, WEBHOOK_BODY_LIMIT
from chalicelib.services.approvals import MAX_COMMENT
from chalicelib.services.deployments import MAX_REASON
from chalicelib.services.recovery import MAX_REASON as MAX_CANCEL_REASON
from chalicelib.services.stacks import MAX_PAGE

ROOT = Path(__file__).resolve().parents[2]
SPEC_PATH = ROOT / "docs" / "openapi.yaml"
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    document = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def schema(spec: dict[str, Any], name: str) -> dict[str, Any]:
    found = spec["components"]["schemas"][name]
    assert isinstance(found, dict)
    return found


def validator(spec: dict[str, Any], target: dict[str, Any]) -> Draft202012Validator:
    """A validator of ``target`` whose $refs resolve in the document."""
    resource = Resource.from_contents(spec, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource("urn:openapi", resource)
    return Draft202012Validator(_rebased(target), registry=registry)


def _rebased(value: Any) -> Any:
    """``value`` with local refs (#/components/...) pointing into the registered document."""
    if isinstance(value, dict):
        return {k: (f"urn:openapi{v}" if k == "$ref" and v.startswith("#") else _rebased(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_rebased(v) for v in value]
    return value


def operations(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def test_the_document_is_valid_openapi_3_1() -> None:
    from openapi_spec_validator import validate
    from openapi_spec_validator.readers import read_from_filename

    document, _ = read_from_filename(str(SPEC_PATH))
    validate(document)
    assert document["openapi"] == "3.1.0"


def test_the_app_serves_this_very_file() -> None:
    assert OPENAPI_DOCUMENT.resolve() == SPEC_PATH.resolve()


def test_every_route_is_documented_and_every_documented_operation_is_a_route(spec: dict[str, Any]) -> None:
    routes = {(method, path) for path, methods in app.routes.items() for method in methods}
    documented = set(operations(spec))
    assert sorted(routes - documented) == [], "routes missing from docs/openapi.yaml"
    assert sorted(documented - routes) == [], "documented operations app.py does not have"


def test_security_matches_the_authorizers(spec: dict[str, Any]) -> None:
    assert spec["security"] == [{"sigv4": []}]
    for (method, path), operation in operations(spec).items():
        signed = isinstance(app.routes[path][method].authorizer, IAMAuthorizer)
        assert ("security" not in operation) == signed, f"{method} {path}"
        if not signed:
            assert operation["security"] == []


def test_operation_ids_are_unique_and_every_operation_has_its_errors(spec: dict[str, Any]) -> None:
    ids = [op["operationId"] for op in operations(spec).values()]
    assert len(ids) == len(set(ids))
    for (method, path), operation in operations(spec).items():
        statuses = set(operation["responses"])
        assert "500" in statuses, f"{method} {path}"
        if "{" in path:
            assert "404" in statuses, f"{method} {path}"
        if "requestBody" in operation:
            assert {"400", "413", "415"} <= statuses, f"{method} {path}"
        if any(p["in"] == "query" for p in _resolved(spec, operation.get("parameters", []))):
            assert "400" in statuses, f"{method} {path}"
        for status, response in operation["responses"].items():
            if status >= "400":
                assert response["$ref"].startswith("#/components/responses/"), f"{method} {path} {status}"


def _resolved(spec: dict[str, Any], parameters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for parameter in parameters:
        if "$ref" in parameter:
            parameter = spec["components"]["parameters"][parameter["$ref"].rsplit("/", 1)[1]]
        out.append(parameter)
    return out


def test_every_error_response_is_the_error_shape(spec: dict[str, Any]) -> None:
    for name, response in spec["components"]["responses"].items():
        content = response["content"]["application/json"]
        if name in {"DeliveryReceived", "DeliveryAccepted", "Decided"}:
            continue
        assert content["schema"] == {"$ref": "#/components/schemas/Error"}, name
        assert "X-Request-Id" in response["headers"]
    assert schema(spec, "Error")["required"] == ["code", "message"]


def anchored(pattern: str) -> set[str]:
    """The ways a whole-match pattern may be written with ^ and $."""
    return {f"^{pattern}$", f"^(?:{pattern})$"}


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("Text", text.TEXT),
        ("StackId", domain.STACK_ID),
        ("StageName", domain.STAGE_NAME),
        ("ReleaseId", releases.RELEASE_ID),
        ("Ref", releases.BRANCH),
        ("Sha", releases.SHA),
        ("FullName", domain.FULL_NAME),
        ("Region", domain.REGION),
        ("RoleArn", domain.ROLE_ARN),
        ("RelativePath", domain.RELATIVE_PATH),
        ("CloneUrl", clone_urls.CLONE_URL),
        ("TargetUrl", notifications.TARGET_URL),
        ("WriteOnlyToken", notifications.TOKEN),
    ],
)
def test_patterns_are_the_domains(spec: dict[str, Any], name: str, pattern: str) -> None:
    assert schema(spec, name)["pattern"] in anchored(pattern)


def test_limits_are_the_domains(spec: dict[str, Any]) -> None:
    assert schema(spec, "Name")["maxLength"] == domain.MAX_NAME
    assert schema(spec, "FullName")["maxLength"] == domain.MAX_PATTERN_CHARS
    assert schema(spec, "CloneUrl")["maxLength"] == clone_urls.MAX_CLONE_URL
    assert schema(spec, "Patterns")["maxItems"] == domain.MAX_PATTERNS
    assert schema(spec, "Patterns")["items"]["maxLength"] == domain.MAX_PATTERN_CHARS
    assert schema(spec, "RelativePath")["maxLength"] == domain.MAX_PATH_CHARS
    assert schema(spec, "ApprovalTimeout")["maximum"] == domain.MAX_APPROVAL_TIMEOUT
    parameters = schema(spec, "Parameters")
    assert parameters["maxProperties"] == domain.MAX_PARAMETERS
    assert parameters["propertyNames"]["pattern"] in anchored(domain.PARAMETER_KEY)
    assert parameters["additionalProperties"]["maxLength"] == domain.MAX_PARAMETER_VALUE
    assert schema(spec, "Position")["maximum"] == domain.MAX_STAGES - 1
    assert schema(spec, "NewStack")["properties"]["stages"]["maxItems"] == domain.MAX_STAGES
    assert schema(spec, "Decision")["properties"]["comment"]["maxLength"] == MAX_COMMENT
    assert schema(spec, "DeliveryId")["pattern"] == f"^[!-~]{{1,{limits.MAX_KEY_CHARS}}}$"
    assert spec["components"]["parameters"]["Limit"]["schema"]["maximum"] == MAX_PAGE
    assert schema(spec, "Provider")["enum"] == list(domain.PROVIDERS)
    assert schema(spec, "ReleaseStatus")["enum"] == list(releases.RELEASE_STATUSES)
    assert schema(spec, "StageRunStatus")["enum"] == list(releases.STAGE_STATUSES)
    assert schema(spec, "StageStatus")["enum"] == list(lanes.STAGE_STATES)
    assert schema(spec, "ExecutionMode")["enum"] == list(domain.EXECUTION_MODES)
    assert schema(spec, "Trigger")["enum"] == list(releases.TRIGGERS)
    assert schema(spec, "StackId")["maxLength"] == domain.STACK_ID_MAX
    assert schema(spec, "StageName")["maxLength"] == domain.STAGE_NAME_MAX
    assert schema(spec, "Reason")["maxLength"] == MAX_REASON
    assert schema(spec, "Cancellation")["properties"]["reason"]["maxLength"] == MAX_CANCEL_REASON
    description = spec["info"]["description"]
    for figure in (f"{API_BODY_LIMIT // 1024 // 1024} MiB", f"{WEBHOOK_BODY_LIMIT // 1024 // 1024} MiB"):
        assert figure in description
    for figure in (limits.MAX_JSON_DEPTH, domain.MAX_STAGES, limits.MAX_STACK_SETTINGS_BYTES):
        assert str(figure) in description
    assert f"{limits.MAX_MESSAGE_BYTES // 1024} KiB" in description


def _examples(media: dict[str, Any]) -> list[Any]:
    found = [media["example"]] if "example" in media else []
    return found + [example["value"] for example in media.get("examples", {}).values()]


def test_every_example_is_valid_for_its_schema(spec: dict[str, Any]) -> None:
    checked = 0
    for operation in operations(spec).values():
        body = operation.get("requestBody", {})
        if "$ref" in body:
            body = spec["components"]["requestBodies"][body["$ref"].rsplit("/", 1)[1]]
        for media in body.get("content", {}).values():
            for example in _examples(media):
                validator(spec, media["schema"]).validate(example)
                checked += 1
    for response in spec["components"]["responses"].values():
        for media in response["content"].values():
            for example in _examples(media):
                validator(spec, media["schema"]).validate(example)
                checked += 1
    assert checked >= 15


def test_the_create_example_is_a_stack_the_domain_accepts(spec: dict[str, Any]) -> None:
    media = spec["paths"]["/stacks"]["post"]["requestBody"]["content"]["application/json"]
    for example in _examples(media):
        domain.parse_new_stack(example, "2026-11-27T12:00:00.000Z")


@pytest.mark.parametrize(
    ("name", "value", "valid"),
    [
        ("Text", "Hello", True),
        ("Text", "  ", False),
        ("Text", "a\nb", False),
        ("NewCloneUrl", "https://***@host/a.git", False),
        ("NewCloneUrl", "https://bot:tok@host/a.git", True),
        ("CloneUrl", "https://***@host/a.git", True),
        ("RelativePath", "a/../b", False),
        ("RelativePath", "a/..b/c", True),
        ("RelativePath", "/abs", False),
        ("TargetUrl", "https://hooks.slack.com/services/T/B/X", True),
        ("TargetUrl", "http://127.0.0.1:8080/hook", True),
        ("TargetUrl", "http://example.com/hook", False),
        ("TargetUrl", "https://user:pw@example.com/hook", False),
        ("TargetUrl", "https://example.com/a b", False),
    ],
)
def test_schemas_agree_with_the_domain_on_edge_values(spec: dict[str, Any], name: str, value: Any, valid: bool) -> None:
    assert validator(spec, schema(spec, name)).is_valid(value) is valid
    domain_pattern = {
        "Text": text.TEXT,
        "NewCloneUrl": clone_urls.CLONE_URL,
        "CloneUrl": clone_urls.CLONE_URL,
        "RelativePath": domain.RELATIVE_PATH,
        "TargetUrl": notifications.TARGET_URL,
    }[name]
    if name != "NewCloneUrl":
        assert text.matches(domain_pattern, value) is valid


@pytest.mark.parametrize(
    ("provider", "body", "event"),
    [
        ("github", "GitHubDelivery", {"x-github-event": "push"}),
        ("gitlab", "GitLabDelivery", {"x-gitlab-event": "Push Hook"}),
        ("bitbucket", "BitbucketDelivery", {"x-event-key": "repo:push"}),
    ],
)
def test_the_delivery_examples_are_pushes_the_parsers_read(
    spec: dict[str, Any], provider: str, body: str, event: dict[str, str]
) -> None:
    from chalicelib.domain.webhooks import parse_delivery

    media = spec["components"]["requestBodies"][body]["content"]["application/json"]
    delivery = parse_delivery(provider, event, media["examples"]["push"]["value"])
    assert delivery.kind == "push"
    assert [(p.ref, p.repository) for p in delivery.pushes] == [("refs/heads/main", "acme/hello")]


def test_the_notification_and_audit_examples_are_valid(spec: dict[str, Any]) -> None:
    for where, schema_name in (("/stacks/{stack_id}/notifications", "DeliveryPage"), ("/audit", "AuditPage")):
        operation = spec["paths"][where]["get"]
        example = operation["responses"]["200"]["content"]["application/json"]["example"]
        validator(spec, schema(spec, schema_name)).validate(example)
    patch = {
        "version": 1,
        "commit_status": {"token": "***"},
        "notifications": [{"type": "webhook", "url": "https://x.example/h", "secret": "***"}],
    }
    validator(spec, schema(spec, "StackPatch")).validate(patch)
    assert not validator(spec, schema(spec, "NewStack")).is_valid(
        {"name": "x", "repository": {}, "stages": [], "commit_status": {"token": "***"}}
    )
    assert not validator(spec, schema(spec, "Notification")).is_valid(
        {"type": "slack", "url": "https://x.example", "secret": "0123456789abcdef"}
    )
    assert not validator(spec, schema(spec, "Notification")).is_valid({"type": "webhook", "url": "https://x.example"})
    assert not validator(spec, schema(spec, "CommitStatusSettings")).is_valid(
        {"provider": "bitbucket-server", "token": "t"}
    )
