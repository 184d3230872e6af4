"""CloudFormation's template rules as the emulator applies them (chalicelib/local/cfn_templates.py), no moto."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.local.cfn_templates import (
    TemplateError,
    check_template,
    emulator_failure,
    parameter_values,
    parse_template,
    required_capabilities,
)

YAML = """\
AWSTemplateFormatVersion: 2010-09-09
Parameters:
  Stage: {Type: String, Default: dev, AllowedValues: [dev, prod]}
Resources:
  Topic:
    Type: AWS::SNS::Topic
    DependsOn: Queue
    Properties:
      TopicName: !Sub
        - "${Prefix}-${Stage}-${AWS::Region}-${!Literal}"
        - Prefix: !GetAtt Queue.QueueName
  Queue:
    Type: AWS::SQS::Queue
Outputs:
  Arn: {Value: !Ref Topic}
"""


def failure(document: dict[str, Any]) -> str:
    with pytest.raises(TemplateError) as caught:
        check_template(document)
    return str(caught.value)


def test_yaml_short_forms_and_dates_read_as_cloudformation_reads_them() -> None:
    document = parse_template(YAML)
    assert document["AWSTemplateFormatVersion"] == "2010-09-09"
    assert document["Resources"]["Topic"]["Properties"]["TopicName"]["Fn::Sub"][1] == {
        "Prefix": {"Fn::GetAtt": ["Queue", "QueueName"]}
    }
    check_template(document)  # Sub variables, pseudo parameters and ${!Literal} are not dependencies


def test_json_is_recognised_by_its_brace() -> None:
    assert parse_template(' \n{"Resources": {"Q": {"Type": "AWS::SQS::Queue"}}}') == {
        "Resources": {"Q": {"Type": "AWS::SQS::Queue"}}
    }
    with pytest.raises(TemplateError, match=r"^Template format error: JSON not well-formed. \(line 1, column 2\)$"):
        parse_template("{bad")


def test_unresolved_dependencies_are_listed_in_order() -> None:
    document = parse_template(YAML)
    document["Resources"]["Topic"]["DependsOn"] = ["Queue", "Ghost"]
    document["Resources"]["Queue"]["Properties"] = {"QueueName": {"Fn::Sub": "${Missing}-x"}}
    assert failure(document) == (
        "Template format error: Unresolved resource dependencies [Ghost, Missing] "
        "in the Resources block of the template"
    )


def test_a_transform_defers_the_reference_checks() -> None:
    document = {"Transform": "AWS::Serverless-2016-10-31", "Resources": {"Q": {"Type": "AWS::SQS::Queue"}}}
    document["Outputs"] = {"Api": {"Value": {"Ref": "ServerlessRestApi"}}}
    check_template(document)


def test_sections_and_parameters_must_be_well_formed() -> None:
    assert failure({"Resources": {"Q": {"Type": "AWS::SQS::Queue"}}, "Bogus": 1}) == (
        "Template format error: Invalid template property or properties [Bogus]"
    )
    assert failure({"Parameters": {"P": {}}, "Resources": {"Q": {"Type": "AWS::SQS::Queue"}}}) == (
        "Template format error: Every Parameters object must contain a Type member."
    )


def test_parameter_values_take_defaults_and_check_allowed_values() -> None:
    document = parse_template(YAML)
    assert parameter_values(document, {}) == {"Stage": "dev"}
    assert parameter_values(document, {"Stage": "prod"}) == {"Stage": "prod"}
    with pytest.raises(TemplateError, match=r"^Parameter 'Stage' must be one of AllowedValues$"):
        parameter_values(document, {"Stage": "qa"})


def test_iam_capabilities() -> None:
    role: dict[str, Any] = {"Type": "AWS::IAM::Role", "Properties": {}}
    assert required_capabilities({"Resources": {"R": role}}) == ("CAPABILITY_IAM", ["AWS::IAM::Role"])
    role["Properties"]["RoleName"] = "fixed"
    assert required_capabilities({"Resources": {"R": role}})[0] == "CAPABILITY_NAMED_IAM"
    assert required_capabilities(parse_template(YAML)) == (None, [])


def test_emulator_failure_metadata() -> None:
    document = parse_template(YAML)
    assert emulator_failure(document) is None
    document["Resources"]["Queue"]["Metadata"] = {"Stagecoach::Emulator": {"FailDeploy": "quota"}}
    assert emulator_failure(document) == ("Queue", "quota")
