"""The AWS template: `chalice package` + deploy/template.yaml, validated offline.

The package is generated once per module with the real ``chalice package`` command.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from chalicelib.local.resources import placeholders, substitutions, table_definition
from deploy import checks

FUNCTIONS = (
    "APIHandler",
    "BuildWorker",
    "BuildStateChanged",
    "SweepPendingReleases",
    "CoordinateStages",
    "ExecutionStatusChanged",
    "DeliverNotifications",
)
# Settings that only the embedded mode uses (chalicelib/settings.py reads them too).
LOCAL_ONLY_SETTINGS = {"STAGECOACH_LOCAL_EVENTS_QUEUE_URL"}
# Settings whose defaults are right on AWS (Lambda sets AWS_REGION itself).
DEFAULTED_SETTINGS = {
    "STAGECOACH_BUILD_TIMEOUT_SECONDS",
    "STAGECOACH_DEPLOY_TIMEOUT_SECONDS",
    "STAGECOACH_NOTIFY_TIMEOUT_SECONDS",
    "STAGECOACH_NOTIFY_RETRY_BASE_SECONDS",
    "STAGECOACH_NOTIFY_GIVE_UP_SECONDS",
}
# Lambda's guidance for SQS event sources: a visibility timeout of at least 6 x the function timeout.
VISIBILITY_FACTOR = 6
# cfn-lint findings we accept, by rule id (none today: keep each with its reason).
IGNORED_LINT_RULES: dict[str, str] = {}


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """(out dir, template) of `chalice package --stage prod --merge-template deploy/template.yaml`."""
    base = tmp_path_factory.mktemp("package")
    # out/ sits next to statemachines/ as in the repository, so ../statemachines resolves the same.
    (base / "statemachines").symlink_to(checks.ROOT / "statemachines", target_is_directory=True)
    path = checks.package(base / "out")
    return path.parent, checks.load_template(path)


@pytest.fixture(scope="module")
def sam(packaged: tuple[Path, dict[str, Any]]) -> dict[str, Any]:
    return packaged[1]


@pytest.fixture(scope="module")
def cfn(packaged: tuple[Path, dict[str, Any]]) -> dict[str, Any]:
    """The CloudFormation that `aws cloudformation package` + the SAM transform make of it."""
    outdir, template = packaged
    return checks.sam_transform(checks.simulate_cloudformation_package(template, outdir))


@pytest.fixture(scope="module")
def asl_text() -> str:
    return checks.ASL.read_text()


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def _errors(matches: list[Any]) -> list[str]:
    return [str(m) for m in matches if m.rule.id.startswith("E") and m.rule.id not in IGNORED_LINT_RULES]


# ------------------------------------------------------------------ lint and transform


def test_packaged_sam_template_passes_cfn_lint(sam: dict[str, Any]) -> None:
    assert _errors(checks.cfn_lint(sam)) == []


def test_transformed_template_passes_cfn_lint(cfn: dict[str, Any]) -> None:
    matches = checks.cfn_lint(cfn)
    assert _errors(matches) == []
    warnings = [str(m) for m in matches if m.rule.id.startswith("W") and m.rule.id not in IGNORED_LINT_RULES]
    assert warnings == []


def test_sam_transform_yields_the_functions_and_state_machine(cfn: dict[str, Any]) -> None:
    assert "Transform" not in cfn
    functions = _resources(cfn, "AWS::Lambda::Function")
    assert set(FUNCTIONS) <= set(functions)
    machines = _resources(cfn, "AWS::StepFunctions::StateMachine")
    assert list(machines) == ["ReleaseStateMachine"]
    props = machines["ReleaseStateMachine"]["Properties"]
    assert props["DefinitionS3Location"]["Key"].endswith("release.asl.json")


# ------------------------------------------------------------------ the state machine


def test_state_machine_definition_is_the_repository_file(sam: dict[str, Any]) -> None:
    uri = sam["Resources"]["ReleaseStateMachine"]["Properties"]["DefinitionUri"]
    assert isinstance(uri, str), "DefinitionUri must be a local path that `cloudformation package` uploads"
    # Relative to out/sam.yaml, where `make package` writes it.
    assert (checks.PACKAGE_DIR / uri).resolve() == checks.ASL.resolve()
    assert not list((checks.ROOT / "deploy").rglob("*.asl.json")), "no copy of the definition in deploy/"


def test_every_placeholder_has_a_substitution_and_no_more(sam: dict[str, Any], asl_text: str) -> None:
    subs = sam["Resources"]["ReleaseStateMachine"]["Properties"]["DefinitionSubstitutions"]
    assert set(subs) == placeholders(asl_text)


def test_substitutions_refer_to_template_resources(sam: dict[str, Any]) -> None:
    subs = sam["Resources"]["ReleaseStateMachine"]["Properties"]["DefinitionSubstitutions"]
    pseudo = {"AWS::Region", "AWS::AccountId", "AWS::Partition", "AWS::URLSuffix", "AWS::StackName"}
    for name, value in subs.items():
        assert isinstance(value, dict) and set(value) <= {"Ref", "Fn::GetAtt", "Fn::Sub"}, name
        refs = checks.references(value)
        assert refs, f"{name} refers to nothing"
        for ref in refs:
            assert ref in sam["Resources"] or ref in pseudo, f"{name} refers to unknown {ref}"


def test_local_and_aws_substitute_the_same_names(sam: dict[str, Any]) -> None:
    subs = sam["Resources"]["ReleaseStateMachine"]["Properties"]["DefinitionSubstitutions"]
    assert set(subs) == set(substitutions("us-east-1", "t", "q", "b", "s"))


def test_rendered_definition_is_valid_json(sam: dict[str, Any], asl_text: str) -> None:
    subs = sam["Resources"]["ReleaseStateMachine"]["Properties"]["DefinitionSubstitutions"]
    rendered = re.sub(r"\$\{([A-Za-z0-9_]+)\}", lambda m: f"value-of-{m.group(1)}", asl_text)
    assert set(subs) >= set(re.findall(r"\$\{([A-Za-z0-9_]+)\}", asl_text))
    json.loads(rendered)


def test_table_substitution_is_the_table(sam: dict[str, Any]) -> None:
    subs = sam["Resources"]["ReleaseStateMachine"]["Properties"]["DefinitionSubstitutions"]
    assert subs.get("TableName") == {"Ref": "StagecoachTable"}
    assert subs.get("BuildQueueUrl") == {"Ref": "BuildQueue"}
    assert subs.get("StageQueueUrl") == {"Ref": "StageQueue"}
    assert subs.get("ArtifactBucket") == {"Ref": "ArtifactBucket"}


def _sqs_tasks(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        where: state
        for where, state in checks.task_states(definition["States"])
        if state["Resource"].startswith("arn:aws:states:::sqs:sendMessage")
    }


def test_stage_requests_go_to_the_fifo_queue_by_stack(asl_text: str) -> None:
    """Every request to the stage queue names its message group (required by FIFO): the stack."""
    tasks = _sqs_tasks(json.loads(asl_text))
    assert {s["Parameters"]["QueueUrl"] for s in tasks.values()} == {"${BuildQueueUrl}", "${StageQueueUrl}"}
    to_stages = {where: s for where, s in tasks.items() if s["Parameters"]["QueueUrl"] == "${StageQueueUrl}"}
    assert {where.rsplit("/", 1)[-1] for where in to_stages} == {"EnterStage", "RequestApproval", "LeaveStage"}
    for where, state in to_stages.items():
        assert state["Parameters"]["MessageGroupId.$"] == "$.stack.id", where
        assert "MessageDeduplicationId" not in state["Parameters"], f"{where}: the queue deduplicates by content"
    for where, state in tasks.items():
        if where not in to_stages:
            assert "MessageGroupId" not in str(state["Parameters"]), f"{where}: the build queue is not FIFO"


# ------------------------------------------------------------------ data


def test_table_schema_matches_the_embedded_mode(sam: dict[str, Any]) -> None:
    props = sam["Resources"]["StagecoachTable"]["Properties"]
    local = table_definition("ignored")
    del local["TableName"]
    for key, value in local.items():
        assert _canonical(props[key]) == _canonical(value), key
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert "TableName" not in props  # the name comes from the stack; the Lambdas get it by Ref


def _canonical(value: Any) -> Any:
    if isinstance(value, list):
        return sorted((_canonical(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    return value


def test_artifact_bucket_is_private_encrypted_versioned_and_expires(sam: dict[str, Any]) -> None:
    props = sam["Resources"]["ArtifactBucket"]["Properties"]
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert all(props["PublicAccessBlockConfiguration"].values())
    assert len(props["PublicAccessBlockConfiguration"]) == 4
    assert props["VersioningConfiguration"]["Status"] == "Enabled"
    rules = props["LifecycleConfiguration"]["Rules"]
    assert any(r["Status"] == "Enabled" and "ExpirationInDays" in r for r in rules)


def test_build_queue_is_the_one_chalice_listens_to(sam: dict[str, Any]) -> None:
    import app

    queue = sam["Resources"]["BuildQueue"]["Properties"]
    assert queue["QueueName"] == app.BUILD_QUEUE
    source = sam["Resources"]["BuildWorker"]["Properties"]["Events"]["BuildWorkerSqsEventSource"]
    assert source["Properties"]["Queue"]["Fn::Sub"].endswith(f":{queue['QueueName']}")


@pytest.mark.parametrize(
    ("queue", "function", "dead_letters"),
    [
        ("BuildQueue", "BuildWorker", "BuildDeadLetterQueue"),
        ("StageQueue", "CoordinateStages", "StageDeadLetterQueue"),
        ("NotificationQueue", "DeliverNotifications", "NotificationDeadLetterQueue"),
    ],
)
def test_queues_have_a_dead_letter_queue_and_outlast_their_function(
    sam: dict[str, Any], queue: str, function: str, dead_letters: str
) -> None:
    props = sam["Resources"][queue]["Properties"]
    timeout = sam["Resources"][function]["Properties"]["Timeout"]
    assert props["VisibilityTimeout"] >= VISIBILITY_FACTOR * timeout
    redrive = props["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": [dead_letters, "Arn"]}
    assert 1 <= redrive["maxReceiveCount"] <= 10
    assert sam["Resources"][dead_letters]["Type"] == "AWS::SQS::Queue"


def test_stage_queue_is_the_fifo_queue_chalice_listens_to(sam: dict[str, Any]) -> None:
    import app

    queue = sam["Resources"]["StageQueue"]["Properties"]
    assert queue["QueueName"] == app.STAGE_QUEUE
    assert queue["QueueName"].endswith(".fifo")
    assert queue["FifoQueue"] is True
    assert queue["ContentBasedDeduplication"] is True  # the ASL sends no MessageDeduplicationId
    source = sam["Resources"]["CoordinateStages"]["Properties"]["Events"]["CoordinateStagesSqsEventSource"]
    assert source["Properties"]["Queue"]["Fn::Sub"].endswith(f":{queue['QueueName']}")
    assert source["Properties"]["BatchSize"] == 1


def test_notification_queue_is_the_one_chalice_listens_to_with_partial_batch_failures(cfn: dict[str, Any]) -> None:
    import app

    queue = cfn["Resources"]["NotificationQueue"]["Properties"]
    assert queue["QueueName"] == app.NOTIFICATION_QUEUE
    assert "FifoQueue" not in queue  # a standard queue: per-target retries are delayed copies (DelaySeconds)
    assert queue["MessageRetentionPeriod"] <= 4 * 24 * 3600
    (mapping,) = [
        r["Properties"]
        for r in _resources(cfn, "AWS::Lambda::EventSourceMapping").values()
        if r["Properties"]["FunctionName"] == {"Ref": "DeliverNotifications"}
    ]
    assert mapping["EventSourceArn"]["Fn::Sub"].endswith(f":{queue['QueueName']}")
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_notification_worker_links_to_the_api_unless_a_public_url_is_given(sam: dict[str, Any]) -> None:
    variables = sam["Resources"]["DeliverNotifications"]["Properties"]["Environment"]["Variables"]
    condition, given, default = variables["STAGECOACH_PUBLIC_URL"]["Fn::If"]
    assert condition == "HasPublicUrl" and given == {"Ref": "PublicUrl"}
    assert "RestAPI" in checks.references(default)
    for function in FUNCTIONS:
        env = sam["Resources"][function]["Properties"]["Environment"]["Variables"]
        assert env["STAGECOACH_NOTIFICATIONS_QUEUE_URL"] == {"Ref": "NotificationQueue"}, function
        if function != "DeliverNotifications":
            assert env["STAGECOACH_PUBLIC_URL"] == {"Ref": "PublicUrl"}, function  # RestAPI would be a cycle


def test_stage_dead_letter_queue_is_fifo(sam: dict[str, Any]) -> None:
    """SQS requires the dead-letter queue of a FIFO queue to be FIFO."""
    queue = sam["Resources"]["StageDeadLetterQueue"]["Properties"]
    assert queue["FifoQueue"] is True
    assert queue["QueueName"].endswith(".fifo")


def test_fifo_event_source_has_no_batching_window(cfn: dict[str, Any]) -> None:
    """Lambda supports no batching window on FIFO queues; Chalice's default 0 is dropped (AWS::NoValue)."""
    (mapping,) = [
        r["Properties"]
        for r in _resources(cfn, "AWS::Lambda::EventSourceMapping").values()
        if r["Properties"]["EventSourceArn"]["Fn::Sub"].endswith(".fifo")
    ]
    assert mapping["FunctionName"] == {"Ref": "CoordinateStages"}
    assert mapping.get("MaximumBatchingWindowInSeconds", {"Ref": "AWS::NoValue"}) == {"Ref": "AWS::NoValue"}


def test_queues_are_encrypted(sam: dict[str, Any]) -> None:
    for name, queue in _resources(sam, "AWS::SQS::Queue").items():
        assert queue["Properties"]["SqsManagedSseEnabled"] is True, name


def test_execution_events_reach_the_reconciler_for_this_state_machine_only(cfn: dict[str, Any]) -> None:
    rules = {
        name: r["Properties"]
        for name, r in _resources(cfn, "AWS::Events::Rule").items()
        if r["Properties"]["Targets"][0]["Arn"] == {"Fn::GetAtt": ["ExecutionStatusChanged", "Arn"]}
    }
    (rule,) = rules.values()
    pattern = rule["EventPattern"]
    assert pattern["source"] == ["aws.states"]
    assert pattern["detail-type"] == ["Step Functions Execution Status Change"]
    assert pattern["detail"]["stateMachineArn"] == [{"Ref": "ReleaseStateMachine"}]
    # Every status the handler acts on (it ignores RUNNING).
    assert pattern["detail"]["status"] == [{"anything-but": ["RUNNING"]}]


def test_codebuild_project(sam: dict[str, Any]) -> None:
    props = sam["Resources"]["BuildProject"]["Properties"]
    assert props["Source"]["Type"] in ("NO_SOURCE", "GITHUB")
    assert props["Environment"]["Image"] == "aws/codebuild/standard:7.0"
    assert props["Artifacts"]["Type"] == "S3"
    assert props["Artifacts"]["Location"] == {"Ref": "ArtifactBucket"}
    assert props["ServiceRole"] == {"Fn::GetAtt": ["BuildProjectRole", "Arn"]}
    # The project may run as long as the state machine waits for a build (3600 s by default).
    assert props["TimeoutInMinutes"] * 60 >= 3600


# ------------------------------------------------------------------ the functions


def _settings_read() -> set[str]:
    source = (checks.ROOT / "chalicelib" / "settings.py").read_text()
    return set(re.findall(r"env\.get\(\s*\"(STAGECOACH_[A-Z_]+)\"", source))


EXPECTED_ENVIRONMENT = {
    "STAGECOACH_TABLE": {"Ref": "StagecoachTable"},
    "STAGECOACH_STATE_MACHINE_ARN": {"Ref": "ReleaseStateMachine"},
    "STAGECOACH_BUILD_QUEUE_URL": {"Ref": "BuildQueue"},
    "STAGECOACH_ARTIFACT_BUCKET": {"Ref": "ArtifactBucket"},
    "STAGECOACH_CODEBUILD_PROJECT": {"Ref": "BuildProject"},
    "STAGECOACH_DEFAULT_CFN_ROLE_ARN": {"Fn::GetAtt": ["StageDeployRole", "Arn"]},
    "STAGECOACH_BUILDER": "codebuild",
    "STAGECOACH_POLL_SECONDS": "10",
}


@pytest.mark.parametrize("function", FUNCTIONS)
def test_function_environment(sam: dict[str, Any], function: str) -> None:
    variables = sam["Resources"][function]["Properties"]["Environment"]["Variables"]
    for name, value in EXPECTED_ENVIRONMENT.items():
        assert variables.get(name) == value, name
    missing = _settings_read() - LOCAL_ONLY_SETTINGS - DEFAULTED_SETTINGS - set(variables)
    assert not missing, f"{function} lacks settings the app reads: {sorted(missing)}"
    assert not (LOCAL_ONLY_SETTINGS & set(variables))


def test_chalice_resource_names(sam: dict[str, Any]) -> None:
    """deploy/template.yaml merges into these names; a rename in Chalice would silently add new ones."""
    functions = _resources(sam, "AWS::Serverless::Function")
    assert set(functions) == set(FUNCTIONS)
    for name, function in functions.items():
        assert "CodeUri" in function["Properties"], f"{name} exists only in deploy/template.yaml"


def test_gateway_answers_unknown_routes_and_its_own_errors_in_the_api_error_shape(cfn: dict[str, Any]) -> None:
    apis = _resources(cfn, "AWS::ApiGateway::RestApi")
    (api,) = apis.values()
    responses = api["Properties"]["Body"]["x-amazon-apigateway-gateway-responses"]
    missing = responses["MISSING_AUTHENTICATION_TOKEN"]
    assert missing["statusCode"] == "404"
    for kind in ("MISSING_AUTHENTICATION_TOKEN", "DEFAULT_4XX", "DEFAULT_5XX"):
        template = responses[kind]["responseTemplates"]["application/json"]
        rendered = json.loads(
            template.replace("$context.error.messageString", '"the message"')
            .replace("$context.error.responseType", "ACCESS_DENIED")
            .replace("$context.requestId", "req-1")
        )
        assert set(rendered) == {"code", "message"}, kind
    assert (
        json.loads(missing["responseTemplates"]["application/json"].replace("$context.requestId", "r"))["code"]
        == "NotFound"
    )


def test_the_package_serves_the_published_openapi_document(packaged: tuple[Path, dict[str, Any]]) -> None:
    import zipfile

    with zipfile.ZipFile(packaged[0] / "deployment.zip") as package:
        served = package.read("chalicelib/openapi.yaml")
    assert served == (checks.ROOT / "docs" / "openapi.yaml").read_bytes()


def test_outputs(sam: dict[str, Any]) -> None:
    outputs = sam["Outputs"]
    for name in ("ApiUrl", "GitHubWebhookUrl", "GitHubWebhookSetup", "DefaultCloudFormationRoleArn"):
        assert name in outputs
    assert "RestAPI" in checks.references(outputs["ApiUrl"]["Value"])
    assert outputs["GitHubWebhookUrl"]["Value"]["Fn::Sub"].endswith("/webhooks/github/{stack_id}")
