"""Parameters: the Rules that reject inconsistent combinations, and their documentation.

CloudFormation evaluates Rules before any change; moto does not. Rule conditions and assertions are condition
functions over parameters, so each rule is handed to moto as conditions of a stack that has one output per
broken assertion: moto evaluates them for the parameter values, nothing here does.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest
from tests.template.support import CLUSTER_ARN, MSK_SCRAM, REPO, SCENARIOS, SELF_MANAGED_VPC, Deployment

_serial = itertools.count(1)


def rules_as_conditions(template: dict[str, Any]) -> dict[str, Any]:
    """A template with the original parameters whose outputs are the AssertDescriptions of broken rules."""
    conditions: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    for r, rule in enumerate(template["Rules"].values()):
        applies = rule.get("RuleCondition", {"Fn::Equals": ["1", "1"]})
        for a, assertion in enumerate(rule["Assertions"]):
            conditions[f"Broken{r}x{a}"] = {"Fn::And": [applies, {"Fn::Not": [assertion["Assert"]]}]}
            outputs[f"Broken{r}x{a}"] = {"Condition": f"Broken{r}x{a}", "Value": assertion["AssertDescription"]}
    return {
        "Parameters": template["Parameters"],
        "Conditions": conditions,
        # moto's null resource: a stack needs one
        "Resources": {"Nothing": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": outputs,
    }


@pytest.fixture(scope="module")
def violations(template: dict[str, Any], moto_endpoint: str) -> Callable[..., list[str]]:
    """``violations(**parameters)``: AssertDescriptions of the rule assertions these values break."""
    body = json.dumps(rules_as_conditions(template))

    def broken(**parameters: str) -> list[str]:
        cfn = Deployment.client_for(moto_endpoint, "cloudformation")
        name = f"rules{next(_serial):03d}"
        cfn.create_stack(
            StackName=name,
            TemplateBody=body,
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        )
        (stack,) = cfn.describe_stacks(StackName=name)["Stacks"]
        return [str(o["OutputValue"]) for o in stack.get("Outputs", [])]

    return broken


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_documented_scenarios_pass_the_rules(violations: Callable[..., list[str]], name: str) -> None:
    # Given a documented deployment scenario
    # Then no rule rejects it
    assert violations(**SCENARIOS[name]) == []


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({}, "KafkaSource=msk needs MskClusterArn."),
        ({**SELF_MANAGED_VPC, "KafkaBootstrapServers": ""}, "KafkaSource=self-managed needs KafkaBootstrapServers."),
        ({**SELF_MANAGED_VPC, "KafkaAuth": "iam"}, "IAM authentication exists only for MSK"),
        ({**MSK_SCRAM, "KafkaAuthSecretArn": ""}, "read their credentials from KafkaAuthSecretArn"),
        ({**MSK_SCRAM, "KafkaSecretsKmsKeyArn": ""}, "MSK SCRAM secrets must use a customer managed key"),
        ({**SELF_MANAGED_VPC, "KafkaSecurityGroupIds": ""}, "KafkaSubnetIds needs KafkaSecurityGroupIds."),
        (
            {"MskClusterArn": CLUSTER_ARN, "StartingPosition": "AT_TIMESTAMP"},
            "StartingPosition=AT_TIMESTAMP needs StartingPositionTimestamp.",
        ),
    ],
    ids=[
        "msk-without-cluster",
        "no-brokers",
        "iam-on-self-managed",
        "no-secret",
        "msk-scram-without-key",
        "no-security-group",
        "no-time",
    ],
)
def test_inconsistent_parameters_are_rejected_before_any_change(
    violations: Callable[..., list[str]], parameters: dict[str, str], message: str
) -> None:
    # Given a combination the parameter types alone accept
    # When the template's Rules are evaluated (CloudFormation does so before creating a change set)
    broken = violations(**parameters)
    # Then exactly that rule fails, with a message that says what is missing
    assert len(broken) == 1
    assert message in broken[0]


def test_every_parameter_is_grouped_and_documented(template: dict[str, Any]) -> None:
    # Given the template's parameters
    parameters = set(template["Parameters"])
    groups = template["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    grouped = [name for group in groups for name in group["Parameters"]]
    # Then the console shows each exactly once, and the deploy guide's table has a row for each
    assert sorted(grouped) == sorted(parameters)
    guide = (REPO / "docs" / "deploy.md").read_text()
    assert [name for name in sorted(parameters) if f"| `{name}` |" not in guide] == []
