"""Least privilege and encryption, asserted on the plain CloudFormation the SAM translator makes of
template.yaml (the translate fixture): what SAM generates is judged too, not only what we wrote."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

CMK = {"Fn::GetAtt": ["DataKey", "Arn"]}
NO_VALUE = {"Ref": "AWS::NoValue"}
# EC2 network-interface actions have no resource-level permissions (IAM service authorization reference);
# these are the only actions allowed on "*" (docs/security.md).
RESOURCELESS_ACTIONS = {
    "ec2:CreateNetworkInterface",
    "ec2:DeleteNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeSubnets",
    "ec2:DescribeVpcs",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
}


def of_type(translated: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {lid: r.get("Properties", {}) for lid, r in translated["Resources"].items() if r["Type"] == kind}


def branches(value: Any) -> Iterator[Any]:
    """Every value a property can take: both sides of each Fn::If (NoValue dropped)."""
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        _, yes, no = value["Fn::If"]
        yield from branches(yes)
        yield from branches(no)
    elif value != NO_VALUE:
        yield value


def role_statements(role: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for policy in role.get("Policies", []):
        for statement in policy["PolicyDocument"]["Statement"]:
            yield from branches(statement)
    assert not role.get("ManagedPolicyArns"), "managed policies grant more than the functions use"


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_no_role_allows_every_action_or_a_service_wildcard(translated: dict[str, Any]) -> None:
    # Given every statement of every role the stack creates
    roles = of_type(translated, "AWS::IAM::Role")
    assert {"ScorerRole", "RollupRole"} <= set(roles)
    for name, role in roles.items():
        for statement in role_statements(role):
            # Then no action is "*" or "<service>:*" and nothing is allowed by NotAction
            assert "NotAction" not in statement, name
            for action in as_list(statement["Action"]):
                assert action != "*" and not action.endswith(":*"), (name, action)


def test_resource_star_only_for_actions_without_resource_level_permissions(translated: dict[str, Any]) -> None:
    # Given every allow statement on "*"
    for name, role in of_type(translated, "AWS::IAM::Role").items():
        for statement in role_statements(role):
            resources = [r for value in as_list(statement["Resource"]) for r in branches(value)]
            if "*" in resources:
                # Then it holds only EC2 network-interface actions
                assert set(as_list(statement["Action"])) <= RESOURCELESS_ACTIONS, (name, statement["Sid"])


def test_every_table_holding_text_is_encrypted_with_the_stack_key_and_expires(translated: dict[str, Any]) -> None:
    # Given the tables
    tables = of_type(translated, "AWS::DynamoDB::Table")
    assert tables
    for name, table in tables.items():
        # Then each is encrypted with the stack's key (when there is one) and has a TTL attribute
        sse = table["SSESpecification"]
        assert sse["SSEEnabled"] is True and sse["SSEType"] == "KMS", name
        assert sse["KMSMasterKeyId"] == {"Fn::If": ["UseCmk", CMK, NO_VALUE]}, name
        assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}, name


def test_topics_and_queues_use_the_stack_key(translated: dict[str, Any]) -> None:
    # Given the topics and queues
    for name, topic in of_type(translated, "AWS::SNS::Topic").items():
        # Then each names the stack's key when there is one
        assert CMK in list(branches(topic["KmsMasterKeyId"])), name
    queues = of_type(translated, "AWS::SQS::Queue")
    assert queues
    for name, queue in queues.items():
        assert queue["KmsMasterKeyId"] == {"Fn::If": ["UseCmk", CMK, NO_VALUE]}, name
        # And without it SQS-managed encryption is on: no queue is ever plain
        assert queue["SqsManagedSseEnabled"] == {"Fn::If": ["UseCmk", NO_VALUE, True]}, name


def test_the_data_bucket_is_kms_encrypted_versioned_logged_and_expiring(translated: dict[str, Any]) -> None:
    # Given the data bucket
    bucket = of_type(translated, "AWS::S3::Bucket")["DataBucket"]
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    # Then its default encryption is the stack's key, versions are kept and access is logged
    assert rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"] == {"Fn::If": ["UseCmk", CMK, NO_VALUE]}
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == {"Fn::If": ["UseCmk", "aws:kms", "AES256"]}
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": "LogBucket"}
    # And dead letters and failed batches expire, current and noncurrent versions alike, and roll-ups tier
    rules = {r["Id"]: r for r in bucket["LifecycleConfiguration"]["Rules"]}
    for rule_id, prefix in (("expire-dead-letters", "dead-letters/"), ("expire-failed-batches", "aws/lambda/")):
        assert rules[rule_id]["Prefix"] == prefix
        assert rules[rule_id]["ExpirationInDays"] == {"Ref": "DeadLetterRetentionDays"}
        assert "NoncurrentVersionExpiration" in rules[rule_id]
    assert rules["expire-noncurrent-versions"]["NoncurrentVersionExpiration"] == {
        "NoncurrentDays": {"Ref": "DeadLetterRetentionDays"}
    }
    assert rules["tier-rollups"]["Prefix"] == "rollups/"


@pytest.mark.parametrize("bucket", ["DataBucket", "LogBucket"])
def test_every_bucket_is_private_and_refuses_plain_http(translated: dict[str, Any], bucket: str) -> None:
    # Given the bucket and its policy
    props = of_type(translated, "AWS::S3::Bucket")[bucket]
    (policy,) = [p for p in of_type(translated, "AWS::S3::BucketPolicy").values() if p["Bucket"] == {"Ref": bucket}]
    # Then public access is blocked, ACLs are off and every non-TLS request is denied
    assert set(props["PublicAccessBlockConfiguration"].values()) == {True}
    assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    (deny,) = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
    assert deny["Action"] == "s3:*" and deny["Principal"] == "*"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert len(deny["Resource"]) == 2  # the bucket and its objects


def test_every_function_encrypts_its_environment_has_reserved_concurrency_and_vpc_option(
    translated: dict[str, Any],
) -> None:
    # Given the functions
    functions = of_type(translated, "AWS::Lambda::Function")
    assert {"ScoreTracesFunction", "RollupFunction"} <= set(functions)
    for name, function in functions.items():
        # Then environment variables are encrypted with the stack's key
        assert function["KmsKeyArn"] == {"Fn::If": ["UseCmk", CMK, NO_VALUE]}, name
        # And reserved concurrency comes from a parameter
        (condition, value, _) = function["ReservedConcurrentExecutions"]["Fn::If"]
        assert condition.startswith("Has"), name
        assert value["Ref"].endswith("ReservedConcurrency"), name
        # And VPC placement is an option
        vpc_condition, vpc, no = function["VpcConfig"]["Fn::If"]
        assert vpc_condition == "FunctionsInVpc" and no == NO_VALUE
        assert vpc["SubnetIds"] == {"Fn::Split": [",", {"Ref": "FunctionSubnetIds"}]}


def test_every_asynchronously_invoked_function_has_an_on_failure_destination(translated: dict[str, Any]) -> None:
    # Given the functions invoked asynchronously (EventBridge rules target them) and the invoke configs
    rules = of_type(translated, "AWS::Events::Rule").values()
    async_functions = {t["Arn"]["Fn::GetAtt"][0] for r in rules for t in r["Targets"]}
    configs = {c["FunctionName"]["Ref"]: c for c in of_type(translated, "AWS::Lambda::EventInvokeConfig").values()}
    assert async_functions == {"RollupFunction", "DigestFlushFunction"}
    for function in async_functions:
        # Then each sends a run that failed its retries to the encrypted failure queue
        assert configs[function]["DestinationConfig"]["OnFailure"]["Destination"] == {
            "Fn::GetAtt": ["AsyncFailureQueue", "Arn"]
        }
    # And each rule's target has a dead-letter queue for events EventBridge could not deliver
    for rule in rules:
        for target in rule["Targets"]:
            assert target["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": ["AsyncFailureQueue", "Arn"]}
    # And the SNS-invoked chat notifier sends failed invocations to its own encrypted dead-letter queue
    subscriptions = of_type(translated, "AWS::SNS::Subscription").values()
    assert [s["Endpoint"] for s in subscriptions if s["Protocol"] == "lambda"] == [
        {"Fn::GetAtt": ["ChatNotifierFunction", "Arn"]}
    ]
    assert configs["ChatNotifierFunction"]["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["ChatDeadLetterQueue", "Arn"]
    }
    # And the Kafka-invoked scorer has its own on-failure destination (the data bucket)
    (mapping,) = of_type(translated, "AWS::Lambda::EventSourceMapping").values()
    assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["DataBucket", "Arn"]}


def test_log_groups_are_encrypted_and_retained_for_a_bounded_time(translated: dict[str, Any]) -> None:
    # Given the functions' log groups
    for name, group in of_type(translated, "AWS::Logs::LogGroup").items():
        # Then each uses the stack's key and expires
        assert group["KmsKeyId"] == {"Fn::If": ["UseCmk", CMK, NO_VALUE]}, name
        assert group["RetentionInDays"] == {"Ref": "LogRetentionInDays"}, name


def test_the_alerts_api_logs_every_request_to_an_encrypted_log_group(translated: dict[str, Any]) -> None:
    # Given the HTTP API's stage as SAM translates it
    stages = of_type(translated, "AWS::ApiGatewayV2::Stage")
    (stage,) = stages.values()
    # Then access logs go to the API's own log group, which the stack's key encrypts (as every log group)
    settings = stage["AccessLogSettings"]
    assert settings["DestinationArn"] == {"Fn::GetAtt": ["AlertsApiAccessLogGroup", "Arn"]}
    for field in ("$context.requestId", "$context.routeKey", "$context.status", "$context.authorizer.claims.sub"):
        assert field in settings["Format"], field
    group = of_type(translated, "AWS::Logs::LogGroup")["AlertsApiAccessLogGroup"]
    assert group["KmsKeyId"] == {"Fn::If": ["UseCmk", CMK, NO_VALUE]}
