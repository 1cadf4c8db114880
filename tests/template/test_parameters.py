"""Parameters: the Rules that reject inconsistent combinations, and their documentation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from tests.template.support import CLUSTER_ARN, MSK_SCRAM, REPO, SCENARIOS, SELF_MANAGED_VPC

from cotwatch_local.resources import TemplateContext


def holds(expression: Mapping[str, Any], context: TemplateContext) -> bool:
    """Evaluate a rule expression (Equals/Not/And/Or over parameters), as CloudFormation does at deploy."""
    ((function, argument),) = expression.items()
    if function == "Fn::Equals":
        left, right = (context.resolve(side) for side in argument)
        return str(left) == str(right)
    if function == "Fn::Not":
        return not holds(argument[0], context)
    if function == "Fn::And":
        return all(holds(item, context) for item in argument)
    if function == "Fn::Or":
        return any(holds(item, context) for item in argument)
    raise AssertionError(f"unexpected rule function {function}")


def violations(template: dict[str, Any], **parameters: str) -> list[str]:
    """AssertDescriptions of the rule assertions these parameter values break."""
    context = TemplateContext(template, parameter_overrides=parameters)
    broken: list[str] = []
    for rule in template["Rules"].values():
        if "RuleCondition" in rule and not holds(rule["RuleCondition"], context):
            continue
        broken += [a["AssertDescription"] for a in rule["Assertions"] if not holds(a["Assert"], context)]
    return broken


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_documented_scenarios_pass_the_rules(template: dict[str, Any], name: str) -> None:
    assert violations(template, **SCENARIOS[name]) == []


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
    template: dict[str, Any], parameters: dict[str, str], message: str
) -> None:
    # Given a combination the parameter types alone accept
    # When the template's Rules are evaluated (CloudFormation does so before creating a change set)
    broken = violations(template, **parameters)
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
