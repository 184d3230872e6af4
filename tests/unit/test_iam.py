"""Least privilege, checked offline: the ASL against its role, every policy against the rules.

The package is generated once per module with the real ``chalice package`` command and then
SAM-transformed, so Chalice's and SAM's generated roles are checked too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from botocore.credentials import Credentials

from chalicelib.cli.sigv4 import region_from_url, signed_headers
from deploy import checks

# Actions AWS only authorizes on Resource "*" (no resource-level permissions) and why we use them.
STAR_RESOURCE_ALLOWED = {
    "states:SendTaskSuccess": (
        "task tokens are not ARNs; the API handler, build Lambdas, stage coordinator and reconciler complete tasks"
    ),
    "states:SendTaskFailure": "as SendTaskSuccess",
}
# The one role that gets AWS-managed policies: the default CloudFormation role of stage deploys
# (parameter StageDeployPolicyArns, PowerUserAccess unless narrowed; see docs/deploy.md).
MANAGED_POLICY_ROLES = {"StageDeployRole"}

TABLE = {"Fn::GetAtt": ["StagecoachTable", "Arn"]}
INDEXES = {"Fn::Sub": "${StagecoachTable.Arn}/index/*"}
ACTIVE_INDEX = {"Fn::Sub": "${StagecoachTable.Arn}/index/gsi2"}
STAGE_STACK_ARN = {
    "Fn::Sub": "arn:${AWS::Partition}:cloudformation:${AWS::Region}:${AWS::AccountId}:stack/${StackNamePrefix}*/*"
}
LOGS = {"logs:CreateLogStream", "logs:PutLogEvents"}
CALLBACKS = {"states:SendTaskSuccess", "states:SendTaskFailure"}
# StageCoordinator: lanes are one TransactWriteItems (ConditionCheck on the stack + Updates), releases
# in flight come from gsi2; it reads stacks and change sets and deletes change sets and stacks (with the
# stage's RoleARN).
LANES = {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem", "dynamodb:ConditionCheckItem"}
STAGE_STACKS = {
    "cloudformation:DescribeStacks",
    "cloudformation:DescribeStackEvents",
    "cloudformation:DescribeChangeSet",
    "cloudformation:DeleteChangeSet",
    "cloudformation:DeleteStack",
    "iam:PassRole",
}
COORDINATOR = LANES | STAGE_STACKS | CALLBACKS
# Reconciler: the coordinator's release_ended, plus Describe/StopExecution and StartExecution (resume).
RECONCILER = COORDINATOR | {"states:DescribeExecution", "states:StopExecution", "states:StartExecution"}
# Whoever records a release or stage transition enqueues its notification event (SendMessageBatch).
PUBLISH = {"sqs:SendMessage"}
# What each Lambda may do, exactly (deploy/policies/*.json).
FUNCTION_ACTIONS = {
    "ApiHandlerRole": LOGS
    | RECONCILER  # cancel, and ?force=true on stack and stage deletion, go through the reconciler
    | PUBLISH
    | {
        "dynamodb:BatchGetItem",  # GET /stacks/{id}/metrics reads one stage's runs of many releases
        "dynamodb:BatchWriteItem",
        "dynamodb:DeleteItem",
        "dynamodb:PutItem",
        "states:GetExecutionHistory",
        "s3:GetObject",
        "secretsmanager:CreateSecret",
        "secretsmanager:DeleteSecret",
        "secretsmanager:GetSecretValue",
        "secretsmanager:PutSecretValue",
        "secretsmanager:TagResource",
    },
    "BuildWorkerRole": LOGS
    | CALLBACKS
    | {
        "secretsmanager:GetSecretValue",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "codebuild:StartBuild",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
    },
    "BuildStateChangedRole": LOGS | CALLBACKS | {"dynamodb:GetItem", "dynamodb:UpdateItem"},
    "SweepPendingReleasesRole": LOGS | RECONCILER | PUBLISH,
    "ExecutionStatusChangedRole": LOGS | RECONCILER | PUBLISH,
    "CoordinateStagesRole": LOGS
    | COORDINATOR
    | PUBLISH
    | {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"},
    # The notification worker reads the stack and release, records attempts, reads the stack's tokens
    # and secrets, re-sends a failing delivery (a retry) and gives up into the dead-letter queue.
    "DeliverNotificationsRole": LOGS
    | PUBLISH
    | {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "secretsmanager:GetSecretValue",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
    },
}
# Where each role may send messages: the notifications queue; the worker also its dead-letter queue.
SEND_QUEUES = {"DeliverNotificationsRole": {"NotificationQueue", "NotificationDeadLetterQueue"}}
# What each Lambda may Query: the API reads the table and both indexes, the others only gsi2.
QUERY_RESOURCES = {"ApiHandlerRole": [TABLE, INDEXES]}


@pytest.fixture(scope="module")
def cfn(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("package")
    (base / "statemachines").symlink_to(checks.ROOT / "statemachines", target_is_directory=True)
    path = checks.package(base / "out")
    return checks.sam_transform(checks.simulate_cloudformation_package(checks.load_template(path), path.parent))


@pytest.fixture(scope="module")
def definition() -> dict[str, Any]:
    data = json.loads(checks.ASL.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def iam_data() -> dict[str, Any]:
    """cfn-lint's copy of the Service Authorization Reference (actions and their resource types)."""
    import cfnlint

    path = Path(cfnlint.__file__).parent / "data" / "AdditionalSpecs" / "Policies.json"
    data = json.loads(path.read_text())
    assert isinstance(data, dict)
    return data


def _machine_role(cfn: dict[str, Any]) -> str:
    role = cfn["Resources"]["ReleaseStateMachine"]["Properties"]["RoleArn"]
    assert role["Fn::GetAtt"][1] == "Arn"
    return str(role["Fn::GetAtt"][0])


def _statements(cfn: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (where, statement)
        for where, document in checks.identity_policies(cfn)
        for statement in checks.as_list(document["Statement"])
    ]


# ------------------------------------------------------------------ ASL → state machine role


def test_walker_finds_tasks_in_maps_iterators_and_parallel_branches() -> None:
    task = {"Type": "Task", "Resource": "arn:aws:states:::dynamodb:getItem", "End": True}
    asl = {
        "States": {
            "A": {**task, "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken"},
            "M": {"Type": "Map", "ItemProcessor": {"States": {"B": task}}},
            "Old": {"Type": "Map", "Iterator": {"States": {"C": {**task, "Resource": "arn:aws:states:::sns:publish"}}}},
            "P": {
                "Type": "Parallel",
                "Branches": [
                    {"States": {"D": {**task, "Resource": "arn:aws:states:::aws-sdk:s3:getObject"}}},
                    {
                        "States": {
                            "E": {
                                **task,
                                "Resource": "arn:aws:states:::aws-sdk:dynamodb:transactWriteItems",
                                "Parameters": {"TransactItems": [{"Put": {}}, {"ConditionCheck": {}}]},
                            }
                        }
                    },
                ],
            },
        }
    }
    assert [where for where, _ in checks.task_states(asl["States"])] == ["A", "M/B", "Old/C", "P[0]/D", "P[1]/E"]
    assert set(checks.asl_actions(asl)) == {
        "sqs:SendMessage",
        "dynamodb:GetItem",
        "sns:Publish",
        "s3:GetObject",
        "dynamodb:PutItem",
        "dynamodb:ConditionCheckItem",
    }


def test_integration_mapping() -> None:
    def actions(resource: str, **params: Any) -> set[str]:
        return checks.task_actions({"Type": "Task", "Resource": resource, "Parameters": params})

    assert actions("arn:aws:states:::dynamodb:updateItem") == {"dynamodb:UpdateItem"}
    assert actions("arn:aws:states:::aws-sdk:dynamodb:putItem.waitForTaskToken") == {"dynamodb:PutItem"}
    assert actions("arn:aws:states:::aws-sdk:cloudformation:describeStacks") == {"cloudformation:DescribeStacks"}
    assert actions(
        "arn:aws:states:::aws-sdk:cloudformation:createChangeSet", **{"TemplateURL.$": "$.u", "RoleARN.$": "$.r"}
    ) == {"cloudformation:CreateChangeSet", "s3:GetObject", "iam:PassRole"}
    assert actions("arn:aws:states:::aws-sdk:sfn:startExecution") == {"states:StartExecution"}
    with pytest.raises(checks.UnknownIntegration):
        actions("arn:aws:states:::glue:startJobRun.sync")


def test_state_machine_role_allows_exactly_what_the_asl_uses(cfn: dict[str, Any], definition: dict[str, Any]) -> None:
    needed = checks.asl_actions(definition)
    allowed = checks.allowed_actions(checks.role_policy_documents(cfn, _machine_role(cfn)))
    missing = {a: sorted(states) for a, states in needed.items() if a not in allowed}
    unused = sorted(set(allowed) - set(needed))
    assert not missing, f"the ASL uses actions its role does not allow: {missing}"
    assert not unused, f"the state machine role allows actions no Task uses: {unused}"


def test_state_machine_role_acts_on_its_own_resources(cfn: dict[str, Any], definition: dict[str, Any]) -> None:
    allowed = checks.allowed_actions(checks.role_policy_documents(cfn, _machine_role(cfn)))
    subs = cfn["Resources"]["ReleaseStateMachine"]["Properties"]["DefinitionSubstitutions"]
    table = checks.references(subs["TableName"])
    queues = checks.references(subs["BuildQueueUrl"]) | checks.references(subs["StageQueueUrl"])
    assert queues == {"BuildQueue", "StageQueue"}
    for action, resources in allowed.items():
        refs = checks.references(resources)
        if action.startswith("dynamodb:"):
            assert refs == table, action
        elif action.startswith("sqs:"):
            assert refs == queues, action
        elif action == "s3:GetObject":
            assert refs == checks.references(subs["ArtifactBucket"]), action
        elif action.startswith("cloudformation:"):
            assert resources == [STAGE_STACK_ARN], action


# Who may pass stage deploy roles to CloudFormation: the state machine (CreateChangeSet) and whoever
# runs StageCoordinator clean-ups (DeleteStack with the stage's RoleARN).
PASS_ROLE_ROLES = {
    "ReleaseStateMachineRole",
    "CoordinateStagesRole",
    "ExecutionStatusChangedRole",
    "SweepPendingReleasesRole",
    "ApiHandlerRole",
}


def test_pass_role_only_to_cloudformation_for_stage_deploy_roles(cfn: dict[str, Any]) -> None:
    assert _machine_role(cfn) in PASS_ROLE_ROLES
    path = cfn["Resources"]["StageDeployRole"]["Properties"]["Path"]
    passing = set()
    for role, resource in cfn["Resources"].items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        statements = [
            s
            for document in checks.role_policy_documents(cfn, role)
            for s in checks.as_list(document["Statement"])
            if "iam:PassRole" in checks.as_list(s["Action"])
        ]
        if not statements:
            continue
        passing.add(role)
        assert len(statements) == 1, role
        statement = statements[0]
        assert checks.as_list(statement["Action"]) == ["iam:PassRole"], role
        assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}}
        (arn,) = checks.as_list(statement["Resource"])
        assert arn == {"Fn::Sub": f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:role{path}*"}, role
    assert passing == PASS_ROLE_ROLES


def test_stage_deploy_role_is_for_cloudformation_and_reads_artifacts(cfn: dict[str, Any]) -> None:
    props = cfn["Resources"]["StageDeployRole"]["Properties"]
    trust = props["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Principal"] for s in trust] == [{"Service": "cloudformation.amazonaws.com"}]
    allowed = checks.allowed_actions(checks.role_policy_documents(cfn, "StageDeployRole"))
    assert set(allowed) == {"s3:GetObject"}
    assert checks.references(allowed["s3:GetObject"]) == {"ArtifactBucket"}


# ------------------------------------------------------------------ Lambda roles


@pytest.mark.parametrize("role", sorted(FUNCTION_ACTIONS))
def test_function_role_allows_exactly_its_actions(cfn: dict[str, Any], role: str) -> None:
    allowed = checks.allowed_actions(checks.role_policy_documents(cfn, role))
    assert set(allowed) == FUNCTION_ACTIONS[role]


@pytest.mark.parametrize("role", sorted(FUNCTION_ACTIONS))
def test_function_roles_touch_only_stagecoach_resources(cfn: dict[str, Any], role: str) -> None:
    allowed = checks.allowed_actions(checks.role_policy_documents(cfn, role))
    for action, resources in allowed.items():
        if action in STAR_RESOURCE_ALLOWED:
            continue
        refs = checks.references(resources) - {"AWS::Partition", "AWS::Region", "AWS::AccountId"}
        service = action.split(":")[0]
        expected = {
            "dynamodb": {"StagecoachTable"},
            "states": {"ReleaseStateMachine"},
            "s3": {"ArtifactBucket"},
            "codebuild": {"BuildProject"},
            "secretsmanager": set(),
            "cloudformation": {"StackNamePrefix"},
            "iam": set(),
        }.get(service)
        if action == "sqs:SendMessage":
            for resource in resources:
                assert checks.references([resource]) <= SEND_QUEUES.get(role, {"NotificationQueue"}), role
            assert checks.references(resources) == SEND_QUEUES.get(role, {"NotificationQueue"}), role
            continue
        if service == "sqs":
            expected = {_consumed_queue(cfn, role)}
        if action.startswith("logs:"):
            assert len(refs) == 1 and next(iter(refs)).endswith("LogGroup"), action
        else:
            assert refs == expected, f"{role}: {action} on {resources}"
        if action.startswith("cloudformation:"):
            assert resources == [STAGE_STACK_ARN], f"{role}: {action} on {resources}"
    if "dynamodb:Query" in allowed:
        assert allowed["dynamodb:Query"] == QUERY_RESOURCES.get(role, [ACTIVE_INDEX]), role


def _function_of(cfn: dict[str, Any], role: str) -> str:
    (function,) = [
        name
        for name, resource in cfn["Resources"].items()
        if resource["Type"] == "AWS::Lambda::Function" and resource["Properties"]["Role"]["Fn::GetAtt"][0] == role
    ]
    return function


def _consumed_queue(cfn: dict[str, Any], role: str) -> str:
    """The queue resource whose name ends the ARN of the role's function's SQS event source mapping."""
    function = _function_of(cfn, role)
    arns = [
        resource["Properties"]["EventSourceArn"]["Fn::Sub"]
        for resource in cfn["Resources"].values()
        if resource["Type"] == "AWS::Lambda::EventSourceMapping"
        and resource["Properties"]["FunctionName"] == {"Ref": function}
    ]
    assert len(arns) == 1, f"{function} has {len(arns)} SQS event sources"
    queues = [
        name
        for name, resource in cfn["Resources"].items()
        if resource["Type"] == "AWS::SQS::Queue" and arns[0].endswith(f":{resource['Properties']['QueueName']}")
    ]
    assert len(queues) == 1, arns[0]
    return queues[0]


@pytest.mark.parametrize("role", ["BuildWorkerRole", "CoordinateStagesRole", "DeliverNotificationsRole"])
def test_queue_consumers_receive_from_their_own_queue(cfn: dict[str, Any], role: str) -> None:
    """Exactly what the Lambda SQS poller needs, on the queue it polls (the GetAtt also orders creation)."""
    allowed = checks.allowed_actions(checks.role_policy_documents(cfn, role))
    sqs = {a: r for a, r in allowed.items() if a.startswith("sqs:") and a not in PUBLISH}
    assert set(sqs) == {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
    queue = _consumed_queue(cfn, role)
    for resources in sqs.values():
        assert resources == [{"Fn::GetAtt": [queue, "Arn"]}], role


@pytest.mark.parametrize("role", sorted(FUNCTION_ACTIONS))
def test_functions_write_logs_to_their_own_log_group(cfn: dict[str, Any], role: str) -> None:
    group = cfn["Resources"][_function_of(cfn, role)]["Properties"]["LoggingConfig"]["LogGroup"]
    allowed = checks.allowed_actions(checks.role_policy_documents(cfn, role))
    for action in LOGS:
        assert allowed[action] == [{"Fn::GetAtt": [group["Ref"], "Arn"]}], f"{role}: {action}"


def test_webhook_secrets_policy_matches_the_secret_prefix(cfn: dict[str, Any]) -> None:
    prefix = cfn["Resources"]["APIHandler"]["Properties"]["Environment"]["Variables"]["STAGECOACH_SECRET_PREFIX"]
    allowed = checks.allowed_actions([cfn["Resources"]["WebhookSecretsPolicy"]["Properties"]["PolicyDocument"]])
    for action, resources in allowed.items():
        assert action.startswith("secretsmanager:")
        for resource in resources:
            assert resource["Fn::Sub"].endswith(f":secret:{prefix}*")
    attached = cfn["Resources"]["ApiHandlerRole"]["Properties"]["ManagedPolicyArns"]
    assert {"Ref": "WebhookSecretsPolicy"} in attached


def test_clone_credentials_policies_match_the_clone_secret_prefix(cfn: dict[str, Any]) -> None:
    variables = cfn["Resources"]["APIHandler"]["Properties"]["Environment"]["Variables"]
    prefix = variables["STAGECOACH_CLONE_SECRET_PREFIX"]
    assert prefix != variables["STAGECOACH_SECRET_PREFIX"], "the build worker must not read webhook secrets"
    for policy in ("CloneCredentialsPolicy", "CloneCredentialsReadPolicy"):
        allowed = checks.allowed_actions([cfn["Resources"][policy]["Properties"]["PolicyDocument"]])
        for action, resources in allowed.items():
            assert action.startswith("secretsmanager:")
            for resource in resources:
                assert resource["Fn::Sub"].endswith(f":secret:{prefix}*")
    read = checks.allowed_actions([cfn["Resources"]["CloneCredentialsReadPolicy"]["Properties"]["PolicyDocument"]])
    assert set(read) == {"secretsmanager:GetSecretValue"}
    attached = {
        role: cfn["Resources"][role]["Properties"].get("ManagedPolicyArns", [])
        for role in ("ApiHandlerRole", "BuildWorkerRole", "BuildProjectRole", "BuildStateChangedRole")
    }
    assert {"Ref": "CloneCredentialsPolicy"} in attached["ApiHandlerRole"]
    assert {"Ref": "CloneCredentialsReadPolicy"} in attached["BuildWorkerRole"]
    assert {"Ref": "CloneCredentialsReadPolicy"} in attached["BuildProjectRole"], "CodeBuild reads sourceAuth secrets"
    assert not attached["BuildStateChangedRole"]


def test_notification_secrets_policies_match_their_prefix(cfn: dict[str, Any]) -> None:
    variables = cfn["Resources"]["APIHandler"]["Properties"]["Environment"]["Variables"]
    prefix = variables["STAGECOACH_NOTIFY_SECRET_PREFIX"]
    assert prefix not in (variables["STAGECOACH_SECRET_PREFIX"], variables["STAGECOACH_CLONE_SECRET_PREFIX"])
    for policy in ("NotificationSecretsPolicy", "NotificationSecretsReadPolicy"):
        allowed = checks.allowed_actions([cfn["Resources"][policy]["Properties"]["PolicyDocument"]])
        for action, resources in allowed.items():
            assert action.startswith("secretsmanager:")
            for resource in resources:
                assert resource["Fn::Sub"].endswith(f":secret:{prefix}*")
    read = checks.allowed_actions([cfn["Resources"]["NotificationSecretsReadPolicy"]["Properties"]["PolicyDocument"]])
    assert set(read) == {"secretsmanager:GetSecretValue"}
    attached = {
        role: cfn["Resources"][role]["Properties"].get("ManagedPolicyArns", [])
        for role in ("ApiHandlerRole", "DeliverNotificationsRole")
    }
    assert {"Ref": "NotificationSecretsPolicy"} in attached["ApiHandlerRole"]
    assert attached["DeliverNotificationsRole"] == [{"Ref": "NotificationSecretsReadPolicy"}]


def test_each_function_has_its_own_role(cfn: dict[str, Any]) -> None:
    roles = {
        name: fn["Properties"]["Role"]["Fn::GetAtt"][0]
        for name, fn in cfn["Resources"].items()
        if fn["Type"] == "AWS::Lambda::Function"
    }
    assert sorted(roles.values()) == sorted(FUNCTION_ACTIONS)


# ------------------------------------------------------------------ every policy in the template


def test_no_wildcard_actions(cfn: dict[str, Any]) -> None:
    for where, statement in _statements(cfn):
        if statement.get("Effect") != "Allow":
            continue
        assert "NotAction" not in statement and "NotResource" not in statement, where
        for action in checks.as_list(statement["Action"]):
            assert action != "*" and not action.endswith(":*"), f"{where}: {action}"
            assert "*" not in action, f"{where}: {action}"


def test_resource_star_only_where_aws_requires_it(cfn: dict[str, Any], iam_data: dict[str, Any]) -> None:
    for where, statement in _statements(cfn):
        if statement.get("Effect") != "Allow" or "*" not in checks.as_list(statement.get("Resource", [])):
            continue
        for action in checks.as_list(statement["Action"]):
            assert action in STAR_RESOURCE_ALLOWED, f"{where}: {action} on Resource '*'"
            service, name = action.split(":")
            resource_types = iam_data[service]["Actions"][name.lower()].get("Resources", [])
            assert not resource_types, f"{action} supports resource-level permissions; name its resources"


def test_every_action_exists(cfn: dict[str, Any], iam_data: dict[str, Any]) -> None:
    for where, statement in _statements(cfn):
        for action in checks.as_list(statement["Action"]):
            service, name = action.split(":")
            if name == "*":
                continue
            assert name.lower() in iam_data[service]["Actions"], f"{where}: unknown action {action}"


def test_aws_managed_policies_only_on_the_stage_deploy_role(cfn: dict[str, Any]) -> None:
    for name, resource in cfn["Resources"].items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        for arn in checks.as_list(resource["Properties"].get("ManagedPolicyArns", [])):
            if isinstance(arn, dict) and arn.get("Ref") in cfn["Resources"]:
                continue  # a managed policy of this template: checked with the others
            assert name in MANAGED_POLICY_ROLES, f"{name} attaches {arn}"
            assert arn == {"Ref": "StageDeployPolicyArns"}


def test_service_roles_trust_their_service_in_this_account(cfn: dict[str, Any]) -> None:
    for role, service in (("ReleaseStateMachineRole", "states"), ("BuildProjectRole", "codebuild")):
        (statement,) = cfn["Resources"][role]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert statement["Principal"] == {"Service": f"{service}.amazonaws.com"}
        assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


# ------------------------------------------------------------------ SigV4


FAKE = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "FAKE-SESSION-TOKEN")
API = "https://abc123defg.execute-api.eu-west-1.amazonaws.com/api/stacks?limit=5"


def test_sigv4_authorization_header_has_the_execute_api_scope() -> None:
    body = b'{"name": "hello"}'
    headers = signed_headers("post", API, body, {"Content-Type": "application/json"}, credentials=FAKE)
    auth = headers["Authorization"]
    date = headers["X-Amz-Date"]
    assert re.fullmatch(r"\d{8}T\d{6}Z", date)
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/{date[:8]}/eu-west-1/execute-api/aws4_request, ")
    signed = re.search(r"SignedHeaders=([^,]+)", auth)
    assert signed and signed.group(1).split(";") == ["content-type", "host", "x-amz-date", "x-amz-security-token"]
    assert re.search(r"Signature=[0-9a-f]{64}$", auth)
    assert headers["X-Amz-Security-Token"] == "FAKE-SESSION-TOKEN"
    assert headers["Content-Type"] == "application/json"


def test_sigv4_signature_covers_the_body() -> None:
    one = signed_headers("POST", API, b"a", credentials=FAKE)
    two = signed_headers("POST", API, b"b", credentials=FAKE)
    if one["X-Amz-Date"] == two["X-Amz-Date"]:
        assert one["Authorization"] != two["Authorization"]


def test_sigv4_region_from_url_env_or_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    assert region_from_url(API) == "eu-west-1"
    assert region_from_url("https://stagecoach.example.com/api/") is None
    monkeypatch.setenv("AWS_REGION", "ap-southeast-2")
    custom = signed_headers("GET", "https://stagecoach.example.com/api/stacks", credentials=FAKE)
    assert "/ap-southeast-2/execute-api/aws4_request" in custom["Authorization"]
    given = signed_headers("GET", API, credentials=FAKE, region="us-west-2")
    assert "/us-west-2/execute-api/aws4_request" in given["Authorization"]
