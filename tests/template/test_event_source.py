"""The scorer's Kafka event source mapping and function settings, per deployment scenario.

moto cannot create a Kafka mapping (nor the alias): their properties are moto's evaluation of the
translated ones for each deployment. The functions and the schedule rule are read back from moto.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from tests.template.support import (
    CA_SECRET_ARN,
    CLUSTER_ARN,
    MSK_IAM,
    MSK_MTLS,
    MSK_SCRAM,
    SECRET_ARN,
    SELF_MANAGED_PUBLIC,
    SELF_MANAGED_VPC,
    Deployment,
)

ESM = "ScoreTracesEventSource"
ALIAS = "ScoreTracesFunctionAliaslive"
# Lambda caps functions behind a Kafka event source at 14 minutes.
KAFKA_MAX_TIMEOUT = 840


def parameter(template: dict[str, Any], name: str) -> dict[str, Any]:
    spec: dict[str, Any] = template["Parameters"][name]
    return spec


def test_one_raw_mapping_serves_both_kinds_of_cluster(template: dict[str, Any], translated: dict[str, Any]) -> None:
    # Given the template: no SAM Kafka event on the function (cfn-lint rejects DestinationConfig and
    # MaximumBatchingWindowInSeconds on SAM's SelfManagedKafka), one AWS::Lambda::EventSourceMapping instead
    assert "Events" not in template["Resources"]["ScoreTracesFunction"]["Properties"]
    mappings = [lid for lid, r in translated["Resources"].items() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    assert mappings == [ESM]
    # And it invokes the live alias (where provisioned concurrency lives), not $LATEST
    assert translated["Resources"][ESM]["Properties"]["FunctionName"] == {"Ref": ALIAS}


def test_msk_with_iam_auth(deploy: Callable[..., Deployment]) -> None:
    # Given an MSK cluster with IAM authentication (the defaults)
    stack = deploy(**MSK_IAM)
    esm = stack.properties(ESM)
    # Then the mapping reads the traces topic of that cluster under a stack-specific consumer group
    assert esm["EventSourceArn"] == CLUSTER_ARN
    assert esm["Topics"] == ["cotwatch-traces"]
    assert esm["AmazonManagedKafkaEventSourceConfig"] == {"ConsumerGroupId": f"{stack.name}-scorer"}
    # And nothing self-managed, no secret (IAM needs none) and no VPC settings (Lambda takes the cluster's)
    assert "SelfManagedEventSource" not in esm
    assert "SelfManagedKafkaEventSourceConfig" not in esm
    assert "SourceAccessConfigurations" not in esm


@pytest.mark.parametrize(
    ("parameters", "auth_type"),
    [(MSK_SCRAM, "SASL_SCRAM_512_AUTH"), (MSK_MTLS, "CLIENT_CERTIFICATE_TLS_AUTH")],
    ids=["scram", "mtls"],
)
def test_msk_with_a_secret(deploy: Callable[..., Deployment], parameters: dict[str, str], auth_type: str) -> None:
    # Given MSK with SASL/SCRAM-512 or mutual TLS
    esm = deploy(**parameters).properties(ESM)
    # Then the one access configuration names the secret
    assert esm["SourceAccessConfigurations"] == [{"Type": auth_type, "URI": SECRET_ARN}]


def test_self_managed_kafka_in_a_vpc(deploy: Callable[..., Deployment]) -> None:
    # Given self-managed brokers in two subnets, SCRAM, a private root CA and one security group
    stack = deploy(**SELF_MANAGED_VPC)
    esm = stack.properties(ESM)
    # Then the mapping lists the brokers instead of a cluster ARN
    assert "EventSourceArn" not in esm
    assert "AmazonManagedKafkaEventSourceConfig" not in esm
    assert esm["SelfManagedEventSource"] == {
        "Endpoints": {"KafkaBootstrapServers": ["b-1.kafka.internal:9096", "b-2.kafka.internal:9096"]}
    }
    assert esm["SelfManagedKafkaEventSourceConfig"] == {"ConsumerGroupId": f"{stack.name}-scorer"}
    # And the secret, the CA, each subnet and the security group become access configurations
    assert esm["SourceAccessConfigurations"] == [
        {"Type": "SASL_SCRAM_512_AUTH", "URI": SECRET_ARN},
        {"Type": "SERVER_ROOT_CA_CERTIFICATE", "URI": CA_SECRET_ARN},
        {"Type": "VPC_SUBNET", "URI": "subnet:subnet-0aa"},
        {"Type": "VPC_SUBNET", "URI": "subnet:subnet-0bb"},
        {"Type": "VPC_SECURITY_GROUP", "URI": "security_group:sg-0cc"},
    ]


def test_self_managed_kafka_on_public_endpoints(deploy: Callable[..., Deployment]) -> None:
    # Given public brokers with mutual TLS
    esm = deploy(**SELF_MANAGED_PUBLIC).properties(ESM)
    # Then only the client certificate is configured: no VPC entries
    assert esm["SourceAccessConfigurations"] == [{"Type": "CLIENT_CERTIFICATE_TLS_AUTH", "URI": SECRET_ARN}]
    assert esm["SelfManagedEventSource"] == {"Endpoints": {"KafkaBootstrapServers": ["kafka.example.com:9094"]}}


def test_self_managed_kafka_without_auth_or_vpc_has_no_access_configurations(
    deploy: Callable[..., Deployment],
) -> None:
    # Given an unauthenticated listener on public brokers
    esm = deploy(**{**SELF_MANAGED_PUBLIC, "KafkaAuth": "none", "KafkaAuthSecretArn": ""}).properties(ESM)
    # Then the property is left out entirely (an empty list is invalid)
    assert "SourceAccessConfigurations" not in esm


def test_error_handling_and_batching_in_every_scenario(scenario: Deployment, template: dict[str, Any]) -> None:
    # Given any deployment
    esm = scenario.properties(ESM)
    # Then failed records are reported one by one, retried a bounded number of times, bisected, aged out,
    # and whatever is finally discarded goes to the data bucket
    assert esm["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert esm["BisectBatchOnFunctionError"] == "true"
    assert esm["DestinationConfig"] == {"OnFailure": {"Destination": f"arn:aws:s3:::{scenario.physical('DataBucket')}"}}
    retries, age = int(esm["MaximumRetryAttempts"]), int(esm["MaximumRecordAgeInSeconds"])
    assert 0 <= retries <= 10
    assert 60 <= age <= 604_800
    # And the parameters cannot make them unbounded (-1 means infinite for both)
    assert parameter(template, "MaximumRetryAttempts")["MinValue"] == 0
    assert parameter(template, "MaximumRecordAgeInSeconds")["MinValue"] == 60
    # And batching, start position and provisioned pollers (which those controls need) come from parameters
    # (Number parameters reach the properties as numbers)
    assert (esm["BatchSize"], esm["MaximumBatchingWindowInSeconds"]) == (100, 1)
    assert esm["StartingPosition"] == "TRIM_HORIZON"
    assert "StartingPositionTimestamp" not in esm
    assert esm["ProvisionedPollerConfig"] == {"MinimumPollers": 1, "MaximumPollers": 10}
    assert esm["Enabled"] == "true"


def test_parameters_reach_the_mapping(deploy: Callable[..., Deployment]) -> None:
    # Given non-default tuning
    esm = deploy(
        **MSK_IAM,
        BatchSize="500",
        MaximumBatchingWindowInSeconds="5",
        MaximumRetryAttempts="2",
        MaximumRecordAgeInSeconds="3600",
        BisectBatchOnFunctionError="false",
        StartingPosition="AT_TIMESTAMP",
        StartingPositionTimestamp="1767225600",
        MinimumPollers="2",
        MaximumPollers="20",
        ConsumerGroupId="cotwatch-prod",
        EventSourceEnabled="false",
    ).properties(ESM)
    # Then each lands on its property
    assert esm["BatchSize"] == 500
    assert esm["MaximumBatchingWindowInSeconds"] == 5
    assert esm["MaximumRetryAttempts"] == 2
    assert esm["MaximumRecordAgeInSeconds"] == 3600
    assert esm["BisectBatchOnFunctionError"] == "false"
    assert (esm["StartingPosition"], esm["StartingPositionTimestamp"]) == ("AT_TIMESTAMP", "1767225600")
    assert esm["ProvisionedPollerConfig"] == {"MinimumPollers": 2, "MaximumPollers": 20}
    assert esm["AmazonManagedKafkaEventSourceConfig"] == {"ConsumerGroupId": "cotwatch-prod"}
    assert esm["Enabled"] == "false"


def test_scorer_timeout_and_memory_stay_within_what_kafka_allows(template: dict[str, Any]) -> None:
    # Given the scorer's sizing parameters
    timeout, memory = parameter(template, "ScorerTimeout"), parameter(template, "ScorerMemorySize")
    # Then no value the parameters accept exceeds the 14-minute Kafka limit, and the default leaves headroom
    assert timeout["MaxValue"] <= KAFKA_MAX_TIMEOUT
    assert timeout["Default"] < KAFKA_MAX_TIMEOUT
    # And memory stays within Lambda's range with at least one full vCPU (1,769 MB) by default
    assert 1769 <= memory["Default"] <= memory["MaxValue"] <= 10240


def test_the_scorer_and_the_rollup_are_images_and_the_api_a_zip_on_the_shared_layer(
    translated: dict[str, Any],
) -> None:
    resources = translated["Resources"]
    # Given the translated functions
    api = resources["AlertsApiFunction"]["Properties"]
    # Then the scorer (torch) and the roll-up (pyarrow) are container images (no runtime, handler or layers:
    # images carry their own)
    for logical_id, image in (("ScoreTracesFunction", "score_traces"), ("RollupFunction", "rollup_counters")):
        props = resources[logical_id]["Properties"]
        assert props["PackageType"] == "Image"
        assert "ImageUri" in props["Code"]
        assert not {"Runtime", "Handler", "Layers"} & set(props)
        assert resources[logical_id]["Metadata"]["DockerContext"] == "."
        assert resources[logical_id]["Metadata"]["Dockerfile"] == f"functions/{image}/Dockerfile"
    assert resources["ScoreTracesFunction"]["Metadata"]["DockerTag"] == "python3.12"
    assert resources["RollupFunction"]["Metadata"]["DockerTag"] == "python3.12"
    # And the alerts API is a python3.11 zip using the shared layer
    assert (api["Runtime"], api["Handler"]) == ("python3.11", "app.lambda_handler")
    (layer,) = api["Layers"]
    assert resources[layer["Ref"]]["Type"] == "AWS::Lambda::LayerVersion"
    assert layer["Ref"].startswith("SharedLayer")


def test_the_rollup_runs_hourly(deploy: Callable[..., Deployment]) -> None:
    # Given the EventBridge rule SAM makes of the function's schedule
    stack = deploy(**MSK_IAM)
    (rule_id,) = [r for r in stack.resources("AWS::Events::Rule") if r.startswith("RollupFunction")]
    events = stack.client("events")
    rule = events.describe_rule(Name=stack.physical(rule_id))
    # Then it fires every hour, five minutes past by default (once the hour is complete), at the roll-up
    assert (rule["ScheduleExpression"], rule["State"]) == ("cron(5 * * * ? *)", "ENABLED")
    (target,) = events.list_targets_by_rule(Rule=stack.physical(rule_id))["Targets"]
    function = stack.client("lambda").get_function_configuration(FunctionName=stack.physical("RollupFunction"))
    assert target["Arn"] == function["FunctionArn"]
    # And a failed run is retried twice within the hour
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 3600}


def test_digests_are_flushed_every_minute(deploy: Callable[..., Deployment]) -> None:
    # Given the EventBridge rule SAM makes of the digest flush's schedule
    stack = deploy(**MSK_IAM)
    (rule_id,) = [r for r in stack.resources("AWS::Events::Rule") if r.startswith("DigestFlushFunction")]
    events = stack.client("events")
    rule = events.describe_rule(Name=stack.physical(rule_id))
    # Then it fires every minute at the flush, so a window's digest goes out within a minute of its end
    assert (rule["ScheduleExpression"], rule["State"]) == ("rate(1 minute)", "ENABLED")
    (target,) = events.list_targets_by_rule(Rule=stack.physical(rule_id))["Targets"]
    function = stack.client("lambda").get_function_configuration(FunctionName=stack.physical("DigestFlushFunction"))
    assert target["Arn"] == function["FunctionArn"]


def test_the_alias_follows_configuration_changes(template: dict[str, Any]) -> None:
    # Given the scorer's alias settings
    props = template["Resources"]["ScoreTracesFunction"]["Properties"]
    # Then a change of memory or environment alone also publishes a version, so the alias the mapping
    # invokes never keeps running stale settings
    assert props["AutoPublishAlias"] == "live"
    assert props["AutoPublishAliasAllProperties"] is True


@pytest.mark.parametrize(("provisioned", "reserved"), [("0", "0"), ("4", "16")])
def test_concurrency_settings_are_optional(deploy: Callable[..., Deployment], provisioned: str, reserved: str) -> None:
    # Given provisioned and reserved concurrency parameters (0 = off)
    stack = deploy(**MSK_IAM, ScorerProvisionedConcurrency=provisioned, ScorerReservedConcurrency=reserved)
    alias = stack.properties(ALIAS)
    lam = stack.client("lambda")
    reservation = lam.get_function_concurrency(FunctionName=stack.physical("ScoreTracesFunction"))
    # Then 0 leaves the properties out, anything else sets them (provisioned on the alias the mapping invokes)
    if provisioned == "0":
        assert "ProvisionedConcurrencyConfig" not in alias
        assert "ReservedConcurrentExecutions" not in reservation
    else:
        assert alias["ProvisionedConcurrencyConfig"] == {"ProvisionedConcurrentExecutions": int(provisioned)}
        assert reservation["ReservedConcurrentExecutions"] == int(reserved)
