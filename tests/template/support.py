"""Helpers for the offline template tests: the SAM translation of template.yaml (what CloudFormation
deploys), that translation seen for one set of parameter values, and the parameter sets the tests use.

No Docker, AWS credentials or network: the translator runs with a stub for its one online lookup (managed
policy ARNs), and conditions are evaluated by the local stack's template reader.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from samtranslator.translator.transform import transform

from cotwatch_local import repo_root
from cotwatch_local.resources import NO_VALUE, TemplateContext

REPO: Path = repo_root()
TEMPLATE_PATH: Path = REPO / "template.yaml"

STACK = "cw-test"
ACCOUNT = "111122223333"
REGION = "eu-west-1"
CLUSTER_ARN = f"arn:aws:kafka:{REGION}:{ACCOUNT}:cluster/traces/0b1c2d3e-aaaa-bbbb-cccc-0123456789ab-7"
SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:AmazonMSK_cotwatch-AbCdEf"
CA_SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:kafka-root-ca-AbCdEf"
SECRETS_KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"

# Parameter sets for the deployments the tests look at; every other parameter keeps its default.
MSK_IAM: dict[str, str] = {"KafkaSource": "msk", "MskClusterArn": CLUSTER_ARN}
MSK_SCRAM: dict[str, str] = {
    **MSK_IAM,
    "KafkaAuth": "sasl-scram-512",
    "KafkaAuthSecretArn": SECRET_ARN,
    "KafkaSecretsKmsKeyArn": SECRETS_KEY_ARN,  # MSK requires a customer managed key on SCRAM secrets
}
MSK_MTLS: dict[str, str] = {**MSK_IAM, "KafkaAuth": "mtls", "KafkaAuthSecretArn": SECRET_ARN}
SELF_MANAGED_VPC: dict[str, str] = {
    "KafkaSource": "self-managed",
    "KafkaBootstrapServers": "b-1.kafka.internal:9096,b-2.kafka.internal:9096",
    "KafkaAuth": "sasl-scram-512",
    "KafkaAuthSecretArn": SECRET_ARN,
    "KafkaServerRootCaSecretArn": CA_SECRET_ARN,
    "KafkaSecretsKmsKeyArn": SECRETS_KEY_ARN,
    "KafkaSubnetIds": "subnet-0aa,subnet-0bb",
    "KafkaSecurityGroupIds": "sg-0cc",
}
SELF_MANAGED_PUBLIC: dict[str, str] = {
    "KafkaSource": "self-managed",
    "KafkaBootstrapServers": "kafka.example.com:9094",
    "KafkaAuth": "mtls",
    "KafkaAuthSecretArn": SECRET_ARN,
}
SCENARIOS: dict[str, dict[str, str]] = {
    "msk-iam": MSK_IAM,
    "msk-scram": MSK_SCRAM,
    "msk-mtls": MSK_MTLS,
    "self-managed-vpc": SELF_MANAGED_VPC,
    "self-managed-public": SELF_MANAGED_PUBLIC,
    "aws-managed-keys": {**MSK_IAM, "EncryptionKeys": "aws-managed"},
    "provisioned": {**MSK_IAM, "ScorerProvisionedConcurrency": "2", "ScorerReservedConcurrency": "10"},
}


class NoManagedPolicies:
    """The translator's managed-policy loader, offline. It is only consulted to expand managed policy names
    in a function's ``Policies``; the functions here have explicit roles, so an empty map is exact."""

    def load(self) -> dict[str, str]:
        return {}


def packaged(template: Mapping[str, Any]) -> dict[str, Any]:
    """The template as ``sam build`` + ``sam package`` hand it to CloudFormation: local code locations
    replaced by S3 objects and the image by an ECR URI (the translator insists on those)."""
    result = copy.deepcopy(dict(template))
    for resource in result["Resources"].values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function":
            if props.get("PackageType") == "Image":
                props["ImageUri"] = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/cotwatch:test"
            else:
                props["CodeUri"] = "s3://cotwatch-artifacts/function.zip"
        elif resource["Type"] == "AWS::Serverless::LayerVersion":
            props["ContentUri"] = "s3://cotwatch-artifacts/layer.zip"
    return result


def translate(template: Mapping[str, Any]) -> dict[str, Any]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_DEFAULT_REGION", REGION)  # the translator builds partition-aware ARNs from it
        translated: dict[str, Any] = transform(packaged(template), {}, NoManagedPolicies())
    return translated


def prune(value: Any, context: TemplateContext) -> Any:
    """Take every ``Fn::If`` branch the conditions choose and drop ``AWS::NoValue``; leave other intrinsics."""
    if isinstance(value, Mapping):
        if set(value) == {"Fn::If"}:
            condition, when_true, when_false = value["Fn::If"]
            return prune(when_true if context.condition(condition) else when_false, context)
        if dict(value) == {"Ref": "AWS::NoValue"}:
            return NO_VALUE
        pruned = {key: prune(item, context) for key, item in value.items()}
        return {key: item for key, item in pruned.items() if item is not NO_VALUE}
    if isinstance(value, list):
        return [item for item in (prune(v, context) for v in value) if item is not NO_VALUE]
    return value


@dataclass(frozen=True)
class Deployment:
    """The translated template as CloudFormation sees it for one set of parameter values."""

    template: Mapping[str, Any]
    context: TemplateContext

    def resources(self, type_: str | None = None) -> dict[str, Mapping[str, Any]]:
        """Resources whose ``Condition`` holds, optionally of one type."""
        return {
            logical_id: resource
            for logical_id, resource in self.template["Resources"].items()
            if self.context.resource_condition_holds(resource) and type_ in (None, resource["Type"])
        }

    def has(self, logical_id: str) -> bool:
        return logical_id in self.resources()

    def raw(self, logical_id: str) -> dict[str, Any]:
        """A resource's properties with conditions applied and the remaining intrinsics as written."""
        props: dict[str, Any] = prune(self.resources()[logical_id].get("Properties", {}), self.context)
        return props

    def resolved(self, logical_id: str) -> dict[str, Any]:
        """A resource's properties evaluated as far as parameters, pseudo parameters and the names of the
        stack's tables, bucket and topics allow; what needs anything else (a role ARN, a function version)
        is left out."""
        props: dict[str, Any] = self.context.resolve(self.raw(logical_id), lenient=True)
        return props
