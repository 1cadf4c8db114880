"""Helpers for the template tests: template.yaml judged by the SAM translator and moto's CloudFormation.

A :class:`Deployment` is the translated template created by moto's ``create_stack`` on the session moto
server for one set of parameter values. Tests read what moto created through the service APIs (tables,
topics, roles, functions, ...). For what moto does not create (the Kafka mapping, alarms, the alias, the
bucket policy, the alarm subscription) or creates but ignores in part (bucket lifecycle, table recovery),
each property is also handed to moto as a stack output (``Fn::ToJsonString`` of the property, under the
resource's condition), so moto evaluates parameters, conditions and references there too. No intrinsic
function is evaluated by project code.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import boto3
from botocore.config import Config

from cotwatch_local import repo_root
from cotwatch_local.cloudformation import (
    CAPABILITIES,
    DUMMY_ACCESS_KEY,
    DUMMY_SECRET_KEY,
    AwsClients,
    for_moto,
    stage_artifacts,
    without_nulls,
)

REPO = repo_root()
TEMPLATE_PATH = REPO / "template.yaml"

ACCOUNT = "123456789012"  # moto's account
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

# Properties moto cannot evaluate as an output (it fails describe_stacks as a whole): the alias's !GetAtt
# on a version (no attributes in moto), a !Ref to the layer (moto returns an object) and the dashboard body
# (it names the alarms' ARNs, and alarms do not exist in moto). Tests read those from the translation.
NOT_PROBED = {
    ("AWS::Lambda::Alias", "FunctionVersion"),
    ("AWS::Lambda::Function", "Layers"),
    ("AWS::CloudWatch::Dashboard", "DashboardBody"),
}
PRESENT = "Present"
_serial = itertools.count(1)


def with_probes(translated: Mapping[str, Any]) -> dict[str, Any]:
    """The template moto creates (:func:`for_moto`), plus one output per property of every translated
    resource and one marking that the resource exists, each under the resource's condition."""
    result = for_moto(translated)
    outputs = result["Outputs"]
    for logical_id, resource in translated["Resources"].items():
        condition = {"Condition": resource["Condition"]} if "Condition" in resource else {}
        outputs[f"{PRESENT}{logical_id}"] = {"Value": "yes", **condition}
        for name, value in resource.get("Properties", {}).items():
            if (resource["Type"], name) not in NOT_PROBED:
                outputs[f"P{logical_id}X{name}"] = {"Value": {"Fn::ToJsonString": {name: value}}, **condition}
    return result


@dataclass
class Deployment:
    """One stack created by moto from the translated template, for one set of parameter values."""

    endpoint_url: str
    translated: Mapping[str, Any]
    parameters: Mapping[str, str]
    name: str = field(default_factory=lambda: f"cw{next(_serial):02d}")

    def __post_init__(self) -> None:
        stage_artifacts(AwsClients(self.endpoint_url, REGION))
        self.client("cloudformation").create_stack(
            StackName=self.name,
            TemplateBody=json.dumps(with_probes(self.translated)),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in self.parameters.items()],
            Capabilities=CAPABILITIES,
        )

    def client(self, service: str) -> Any:
        return self.client_for(self.endpoint_url, service)

    @staticmethod
    def client_for(endpoint_url: str, service: str) -> Any:
        """A boto3 client for the moto server, in the tests' region, with dummy credentials."""
        return boto3.client(
            service,  # type: ignore[call-overload]
            endpoint_url=endpoint_url,
            region_name=REGION,
            aws_access_key_id=DUMMY_ACCESS_KEY,
            aws_secret_access_key=DUMMY_SECRET_KEY,
            config=Config(account_id_endpoint_mode="disabled"),
        )

    @cached_property
    def outputs(self) -> dict[str, str]:
        (stack,) = self.client("cloudformation").describe_stacks(StackName=self.name)["Stacks"]
        return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}

    @cached_property
    def physical_ids(self) -> dict[str, str]:
        """Logical id -> physical id of what moto created (skipped resources have no entry)."""
        resources = self.client("cloudformation").describe_stack_resources(StackName=self.name)["StackResources"]
        return {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources if r.get("PhysicalResourceId")}

    def physical(self, logical_id: str) -> str:
        return self.physical_ids[logical_id]

    def has(self, logical_id: str) -> bool:
        """Whether the resource's condition holds (moto skips the output otherwise)."""
        return f"{PRESENT}{logical_id}" in self.outputs

    def resources(self, type_: str) -> list[str]:
        """Logical ids of the resources of a type that this deployment has."""
        return [lid for lid, r in self.translated["Resources"].items() if r["Type"] == type_ and self.has(lid)]

    def properties(self, logical_id: str) -> dict[str, Any]:
        """A resource's properties as moto evaluates them for this deployment."""
        assert self.has(logical_id), f"{logical_id} is not part of this deployment"
        prefix = f"P{logical_id}X"
        merged: dict[str, Any] = {}
        for key, value in self.outputs.items():
            if key.startswith(prefix):
                merged |= json.loads(value)
        cleaned: dict[str, Any] = without_nulls(merged)
        return cleaned

    @property
    def key_arn(self) -> str:
        """The stack's customer managed KMS key."""
        return f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{self.physical('DataKey')}"

    def role_statements(self, role: str) -> list[dict[str, Any]]:
        """The statements of the role's inline policies, as IAM (moto) holds them."""
        iam = self.client("iam")
        name = self.physical(role)
        assert iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"] == []
        statements: list[dict[str, Any]] = []
        for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
            document = iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"]
            statements += without_nulls(document)["Statement"]
        return statements
